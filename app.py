#!/usr/bin/env python3
"""The CDK app: the only place that reads CDK context and the environment."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from aws_cdk import App, Environment

from churn.config import PipelineSettings
from churn.layout import SAMPLE_DATA, SAMPLE_SPEC
from churn.naming import DEFAULT_STACK_NAME
from churn.schema import FeatureSpec
from stacks.churn_stack import ChurnPipelineStack
from stacks.nag import add_security_checks

ROOT = Path(__file__).resolve().parent


def _flag(value: object) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


def _path(value: object, default: str) -> Path:
    path = Path(str(value or default))
    return path if path.is_absolute() else ROOT / path


def _data_file(value: object) -> Path:
    """The input `cdk deploy` uploads to raw/: read at synth, as an asset."""
    path = _path(value, SAMPLE_DATA)
    if not path.is_file():
        raise ValueError(f"-c data={value or SAMPLE_DATA}: {path} is not a file")
    return path


def build_app(
    context: dict[str, Any] | None = None,
    *,
    outdir: str | None = None,
    env: Environment | None = None,
    security_checks: bool = True,
) -> tuple[App, ChurnPipelineStack]:
    """The app with its one stack. `env` None means: CDK_DEFAULT_ACCOUNT/REGION where set."""
    # cdk.json's context (the CDK feature flags), so `python app.py` synthesises like `cdk synth`. Context
    # the CLI passes (cdk.json, cdk.context.json, --context) takes precedence over this.
    project_context = json.loads((ROOT / "cdk.json").read_text())["context"]
    app = App(context={**project_context, **(context or {})}, outdir=outdir)
    get = app.node.try_get_context
    if env is None:  # without CDK_DEFAULT_*, the stack is environment-agnostic: one template for any account and region
        env = Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT") or None,
                          region=os.environ.get("CDK_DEFAULT_REGION") or None)
    stack = ChurnPipelineStack(
        app,
        str(get("stack_name") or DEFAULT_STACK_NAME),
        spec=FeatureSpec.load(_path(get("spec"), SAMPLE_SPEC)),
        settings=PipelineSettings.from_context(get),
        data_file=_data_file(get("data")),
        enable_s3_trigger=_flag(get("enable_s3_trigger") or False),
        alarm_email=str(get("alarm_email")) if get("alarm_email") else None,
        env=env,
    )
    if security_checks:
        add_security_checks(app)
    return app, stack


if __name__ == "__main__":
    try:
        build_app()[0].synth()
    except ValueError as exc:  # a bad -c value, spec, data file or region (SpecError, UnsupportedRegion): one line
        sys.exit(f"error: {exc}")
