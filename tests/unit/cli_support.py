"""Running the operator CLI in tests: in-process, consoles of a set width, no traceback; fake AWS settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import botocore.loaders
from typer.testing import CliRunner

from pipeline import console as cli_console
from pipeline.cli import app
from tests.support.moto import REGION as REGION  # the CLI tests' region
from tests.support.moto import fake_aws_environment

# Each CLI call makes a fresh boto3 session, which re-reads botocore's JSON models (most of a CLI test's
# run time on moto); one shared, caching loader keeps the tests fast.
SHARED_LOADER = botocore.loaders.create_loader()


@contextmanager
def console_width(width: int) -> Iterator[None]:
    """The CLI's consoles `width` columns wide. They read COLUMNS once, when pipeline.console is imported, so
    CliRunner(env={"COLUMNS": ...}) cannot widen them, and a COLUMNS exported by the shell running pytest
    would narrow them (tables cut to "local-…")."""
    consoles = (cli_console.console, cli_console.err_console)
    before = [c.width for c in consoles]
    for c in consoles:
        c.width = width
    try:
        yield
    finally:
        for c, was in zip(consoles, before, strict=True):
            c.width = was


def invoke(*args: object, width: int = 250):
    """The CLI in-process, its console `width` columns wide (wide enough for every table's cells by default)."""
    with console_width(width):
        result = CliRunner().invoke(app, [str(a) for a in args])
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
