"""The CLI's errors: each is one line, a hint and an exit code (OperatorError); whatever botocore raises
that a user can meet becomes one, naming what failed and how to fix it. And why an AWS execution failed,
in words (a raw Step Functions cause is JSON): a Lambda's error message, a SageMaker job's own reason."""

from __future__ import annotations

import json
import re
from typing import Any

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    SSOError,
    TokenRetrievalError,
)

DEPLOY_HINT = "deploy it with `make deploy`"
REGION_HINT = "pass --region or set AWS_REGION"
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
                 "Forbidden", "403", "AllAccessDisabled", "AccessForbidden"}  # the last: Feature Store runtime's 403
# The ClientError codes a user can meet, as (message, hint, error); a message may name the {operation}, the
# {code}, AWS's {message}, the {arn} it quotes, and {detail}: ": " and AWS's message, when it has one.
_CLIENT_ERRORS: dict[str, tuple[str, str, str]] = {
    **dict.fromkeys(ACCESS_DENIED, (
        "access denied calling {operation}{detail}",
        "your AWS identity needs permission for this call; check AWS_PROFILE or ask your administrator",
        "AccessDenied")),
    **dict.fromkeys(("ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"), (
        "your AWS credentials have expired", "refresh them (e.g. `aws sso login`) and try again",
        "ExpiredCredentials")),
    **dict.fromkeys(("InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
                     "InvalidAccessKeyId", "InvalidToken"), (
        "AWS rejected the credentials ({code})", "check AWS_ACCESS_KEY_ID / AWS_PROFILE", "InvalidCredentials")),
    **dict.fromkeys(("Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
                     "SlowDown"), ("AWS throttled {operation}", "wait a moment and try again", "Throttled")),
    # Step Functions keeps an execution 90 days after it ends (its quota "Maximum execution history retention").
    "ExecutionDoesNotExist": ("execution not found: {arn}", "list recent executions with `python -m pipeline runs`; "
                              "Step Functions forgets an execution 90 days after it ends (its scores stay in the "
                              "bucket: `python -m pipeline scores --run NAME`)", "ExecutionDoesNotExist"),
    "StateMachineDoesNotExist": ("the stack's state machine does not exist any more", f"re-{DEPLOY_HINT}",
                                 "StateMachineDoesNotExist"),
    "NoSuchBucket": ("the stack's bucket does not exist: {message}", f"re-{DEPLOY_HINT}", "NoSuchBucket"),
}


class OperatorError(Exception):
    """Something a user can fix: `message` is one line, `hint` says how; `error` is a short name for --json,
    `status` the run's status the JSON line reports when it is not FAILED."""

    def __init__(self, message: str, hint: str = "", *, error: str = "Error", exit_code: int = EXIT_FAILED,
                 status: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.error = error
        self.exit_code = exit_code
        self.status = status


class BadInput(OperatorError):
    """Input the command cannot use (an option's value, a file, a name): exit 2."""

    def __init__(self, message: str, hint: str = "", *, error: str = "InvalidOption"):
        super().__init__(message, hint, error=error, exit_code=EXIT_BAD_INPUT)


class Interrupted(OperatorError):
    """Ctrl-C: exit 130, as a shell reports SIGINT; `status` is the run's as recorded (ABORTED locally, RUNNING on
    AWS, where only the following stopped)."""

    def __init__(self, message: str, hint: str = "", *, status: str):
        super().__init__(message, hint, error="Interrupted", exit_code=EXIT_INTERRUPTED, status=status)


def explain(exc: BaseException) -> OperatorError:
    """Turn a botocore exception into the one line (and hint) a user should see; any other (an OSError) is
    named by its type and message."""
    if isinstance(exc, OperatorError):
        return exc
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return OperatorError("no AWS credentials found", "configure credentials (`aws configure`, `aws sso login`, or "
                             "AWS_PROFILE), or work on this machine: `python -m pipeline run --local`",
                             error="NoCredentials")
    if isinstance(exc, NoRegionError):
        return BadInput("no AWS region set", REGION_HINT, error="NoRegion")
    if isinstance(exc, ProfileNotFound):
        return OperatorError(str(exc), "check AWS_PROFILE against ~/.aws/config", error="ProfileNotFound")
    if isinstance(exc, (SSOError, TokenRetrievalError)):
        return OperatorError("the AWS SSO session is missing or has expired", "run `aws sso login` and try again",
                             error="ExpiredCredentials")
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
        return OperatorError(f"could not reach AWS: {exc}", "check your network connection and the region",
                             error="EndpointConnectionError")
    if isinstance(exc, ClientError):
        return _explain_client_error(exc)
    if isinstance(exc, BotoCoreError):
        return OperatorError(str(exc), error=type(exc).__name__)
    # boto3's S3 transfer wraps the ClientError it failed on.
    context = exc.__context__ or exc.__cause__
    if isinstance(exc, S3UploadFailedError) and isinstance(context, ClientError):
        return _explain_client_error(context)
    return OperatorError(f"{type(exc).__name__}: {exc}", error=type(exc).__name__)


def _explain_client_error(exc: ClientError) -> OperatorError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = str(error.get("Message") or "").strip()
    quoted = re.search(r"'(arn:[^']+)'", message)
    arn = quoted.group(1) if quoted else message
    if code == "ExecutionAlreadyExists":  # the user's --name
        return BadInput(f"an execution with this name already exists: {arn}",
                        "choose another --name, or leave it out to get a generated one", error=code)
    text, hint, name = _CLIENT_ERRORS.get(code, ("{operation} failed: {code}{detail}", "", code))
    return OperatorError(text.format(operation=exc.operation_name, code=code, message=message, arn=arn,
                                     detail=f": {message}" if message else ""), hint, error=name)


def parse_json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def readable_cause(cause: str) -> str:
    """A Lambda's error arrives as JSON (errorMessage, errorType, stackTrace): keep the message. A failed
    SageMaker job's arrives as its whole description: keep its name and FailureReason."""
    parsed = parse_json(cause)
    if parsed.get("errorMessage"):
        return str(parsed["errorMessage"])
    for kind, key in (("training job", "TrainingJobName"), ("transform job", "TransformJobName")):
        if parsed.get(key):
            return f"{kind} {parsed[key]} failed: {' '.join(str(parsed.get('FailureReason') or '-').split())}"
    return cause


def error_text(error: str, cause: str) -> str:
    cause = readable_cause(cause)
    return f"{error}: {cause}" if cause else (error or "failed")
