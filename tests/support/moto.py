"""moto as the tests use it: a fake AWS environment, and moto 5.2.5's Step Functions interpreter
brought to what Step Functions does where the pipeline's definition (and the CLI tests' stand-in of it)
depends on it. The moto harness (tests/infra/sfn_harness.py) and the CLI tests share these.

Each interpreter patch is documented where it is defined; `step_functions_patches()` lists them all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import moto
import pytest
from botocore.exceptions import ClientError
from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
from moto.stepfunctions.parser.asl.component.common.string.string_expression import StringIntrinsicFunction
from moto.stepfunctions.parser.asl.component.state.fail import state_fail
from moto.stepfunctions.parser.asl.eval.states import StateData
from moto.stepfunctions.parser.asl.parse.intrinsic.intrinsic_parser import IntrinsicParser
from moto.stepfunctions.parser.asl.parse.intrinsic.preprocessor import Preprocessor as IntrinsicPreprocessor
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.asl.utils import json_path
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

from churn.handlers import _runtime

MOTO_VERSION = "5.2.5"  # requirements-dev.txt pins it; the patched internals are this release's
if moto.__version__ != MOTO_VERSION:  # pragma: no cover - fails loudly instead of misbehaving
    raise ImportError(f"tests/support/moto.py patches moto {MOTO_VERSION} internals; moto {moto.__version__} "
                      "is installed")

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
# What would let a developer's own AWS setup leak into a test.
AWS_CONFIG_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_ROLE_ARN",
                        "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ENDPOINT_URL")
# What the Lambda runtime gives a function that these tests do not deploy: no X-Ray daemon.
LAMBDA_RUNTIME_ENVIRONMENT = {"POWERTOOLS_TRACE_DISABLED": "true"}


def fake_credentials(empty_config: Path) -> dict[str, str]:
    """Fake credentials, the test region, and empty config files (nothing read from ~/.aws)."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_SHARED_CREDENTIALS_FILE": str(empty_config),
        "AWS_CONFIG_FILE": str(empty_config),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def fake_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials and region; nothing from the developer's own AWS setup."""
    empty = tmp_path / "empty-aws-config"
    empty.write_text("")
    for name in AWS_CONFIG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in fake_credentials(empty).items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials and region for one test (see fake_aws_environment)."""
    fake_aws_environment(monkeypatch, tmp_path)


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, spec: Any) -> Iterator[None]:
    """The environment the stack gives the functions (the spec under test), fake AWS, no cached clients."""
    fake_aws_environment(monkeypatch, tmp_path)
    for name, value in {**LAMBDA_RUNTIME_ENVIRONMENT, "FEATURE_SPEC": spec.to_json()}.items():
        monkeypatch.setenv(name, value)
    _runtime.client.cache_clear()
    _runtime.feature_spec.cache_clear()
    yield
    _runtime.client.cache_clear()
    _runtime.feature_spec.cache_clear()


# -- where moto 5.2.5's Step Functions interpreter differs from Step Functions ------------------------
_DEFINITE_PATH = re.compile(r"^\$(\.[A-Za-z_][\w-]*|\['[^'\]]*'\]|\[\d+\])*$")
# The interpreter's modules that imported extract_json by name.
_JSON_PATH_USERS = (
    "moto.stepfunctions.parser.asl.component.common.string.string_expression",
    "moto.stepfunctions.parser.asl.component.intrinsic.argument.argument",
    "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations.timestamp_operators",
    "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations.boolean_equals",
    "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations.numeric",
    "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations.string_operators",
    "moto.stepfunctions.parser.asl.eval.states",
)
_original_extract_json = json_path.extract_json
_original_environment = ExecutionWorker._get_evaluation_environment


def _extract_json(path: str, data: Any) -> Any:
    """A definite path (names and indexes only) selects one value, as on Step Functions: moto 5.2.5
    returns a list when the step before the last is an index (`$.Rows[1].Data[0].VarCharValue`)."""
    if _DEFINITE_PATH.match(path):
        matches = json_path.parse(path).find(data)
        if len(matches) == 1:
            return matches[0].value
    return _original_extract_json(path, data)


def _visit_intrinsic_function(preprocessor: Preprocessor, ctx: Any) -> StringIntrinsicFunction:
    """An intrinsic function is a JSON string: its escapes (`\\'` for a quote inside a string
    argument, as AWS documents) are decoded before it is parsed; moto 5.2.5 parses the raw text."""
    derivation = json.loads(ctx.STRINGINTRINSICFUNC().getText())
    function, _ = IntrinsicParser.parse(derivation)
    return StringIntrinsicFunction(intrinsic_function_derivation=derivation, function=function)


_original_unescape = IntrinsicPreprocessor._replace_escaped_characters


def _unescape_intrinsic(match: re.Match) -> str:
    """In an intrinsic function's string argument `\\'` is a quote and `\\\\` a backslash (AWS);
    moto 5.2.5 keeps both escaped. (`\\{`/`\\}` stay as moto has them: States.Format splits on {}.)"""
    if match.group(1) in ("'", "\\"):
        return match.group(1)
    return _original_unescape(match)


class ReraisedErrorName(ErrorName):
    """Step Functions lets a Fail state re-raise any error, `States.*` included (ErrorPath of a
    caught error, as "Pipeline failed" does); moto 5.2.5's CustomErrorName refuses names starting
    with `States.`."""


def _fail_state_error_name(error_name: str | None) -> ErrorName:
    return ReraisedErrorName(error_name)


def aws_timestamp(value: Any) -> str:
    """A context-object time as Step Functions writes it, 2019-03-26T20:14:13.192Z; moto writes
    Python's isoformat (microseconds, +00:00)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _aws_start_time(worker: ExecutionWorker) -> Any:
    """`$$.Execution.StartTime` in Step Functions' format."""
    env = _original_environment(worker)
    execution = env.states.context_object.context_object_data["Execution"]
    execution["StartTime"] = aws_timestamp(execution["StartTime"])
    return env


def _aws_state_data(**fields: Any) -> StateData:
    """`$$.State.EnteredTime` in Step Functions' format."""
    return StateData(**{**fields, "EnteredTime": aws_timestamp(fields["EnteredTime"])})


def step_functions_patches() -> list[Any]:
    """Every change to moto 5.2.5's Step Functions interpreter that makes it behave as Step Functions
    does for these definitions (each documented where it is defined); enter them all."""
    state = "moto.stepfunctions.parser.asl.component.state.state"
    return [
        mock.patch.object(ExecutionWorker, "_get_evaluation_environment", _aws_start_time),
        mock.patch(f"{state}.StateData", _aws_state_data),
        mock.patch.object(state_fail, "CustomErrorName", _fail_state_error_name),
        mock.patch.object(Preprocessor, "visitString_intrinsic_function", _visit_intrinsic_function),
        mock.patch.object(IntrinsicPreprocessor, "_replace_escaped_characters", staticmethod(_unescape_intrinsic)),
        *(mock.patch(f"{module}.extract_json", _extract_json) for module in _JSON_PATH_USERS),
    ]


def without_list_bucket(s3: Any) -> Any:
    """`s3` as S3 answers a caller without s3:ListBucket: GetObject of a missing key is 403 AccessDenied, not 404
    NoSuchKey (the GetObject API reference); moto always answers 404."""
    get_object = s3.get_object

    def get_existing_object(**params: Any) -> Any:
        try:
            s3.head_object(Bucket=params["Bucket"], Key=params["Key"])
        except ClientError:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                               "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject") from None
        return get_object(**params)

    s3.get_object = get_existing_object
    return s3
