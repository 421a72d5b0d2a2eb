"""Running the operator CLI in tests: in-process, wide console, no traceback allowed."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from pipeline.cli import app


def invoke(*args: object):
    result = CliRunner(env={"COLUMNS": "250"}).invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"uncaught {result.exception!r}\n{result.output}"
    )
    assert "Traceback" not in result.output
    return result


def last_json(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])
