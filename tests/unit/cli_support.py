"""Running the operator CLI in tests: in-process, wide console, no traceback allowed; fake AWS settings."""

from __future__ import annotations

import json

import botocore.loaders
from typer.testing import CliRunner

from pipeline.cli import app
from tests.support.moto import REGION as REGION  # the CLI tests' region
from tests.support.moto import fake_aws_environment

# Each CLI call makes a fresh boto3 session, which re-reads botocore's JSON models (most of a CLI test's
# run time on moto); one shared, caching loader keeps the tests fast.
SHARED_LOADER = botocore.loaders.create_loader()


def invoke(*args: object):
    result = CliRunner(env={"COLUMNS": "250"}).invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"uncaught {result.exception!r}\n{result.output}"
    )
    assert "Traceback" not in result.output
    return result


def last_json(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def one_error_line(result) -> str:
    """The stderr of a command that failed as the CLI should: `error: ...` and at most a `hint: ...`."""
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), result.output
    assert len(lines) <= 2 and all(line.startswith(("error:", "hint:")) for line in lines), result.output
    return result.stderr


def summary_value(out: str, label: str) -> str:
    """The value on a summary line ` <label>   <value>`."""
    line = next(line for line in out.splitlines() if line.startswith(f" {label} "))
    return line[len(label) + 1:].strip()


def use_fake_aws(monkeypatch, tmp_path) -> None:
    """Fake credentials and region (tests/support/moto.py), and one botocore loader for every session."""
    import botocore.session

    fake_aws_environment(monkeypatch, tmp_path)
    monkeypatch.setattr(botocore.session, "create_loader", lambda *args, **kwargs: SHARED_LOADER)
