"""The CLI's errors: each is one line, a hint and an exit code (OperatorError); whatever botocore raises
that a user can meet becomes one, naming what failed and how to fix it."""

from __future__ import annotations

import re

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
)

DEPLOY_HINT = "deploy it with `make deploy`"
CREDENTIALS_HINT = (
    "configure credentials (`aws configure`, `aws sso login`, or AWS_PROFILE), or work on this machine: "
    "`python -m pipeline run --local`"
)
REGION_HINT = "pass --region or set AWS_REGION"
RUNS_HINT = "list recent executions with `python -m pipeline runs`"
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
                  "Forbidden", "403", "AllAccessDisabled"}
_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
_BAD_CREDENTIALS = {"InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
                    "InvalidAccessKeyId", "InvalidToken"}
_THROTTLED = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
              "SlowDown"}


class OperatorError(Exception):
    """Something a user can fix: `message` is one line, `hint` says how; `error` is a short name for --json."""

    def __init__(self, message: str, hint: str = "", *, error: str = "Error", exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.error = error
        self.exit_code = exit_code


class BadInput(OperatorError):
    """Input the command cannot use (an option's value, a file, a name): exit 2."""

    def __init__(self, message: str, hint: str = "", *, error: str = "InvalidOption"):
        super().__init__(message, hint, error=error, exit_code=EXIT_BAD_INPUT)


class Interrupted(OperatorError):
    """Ctrl-C: exit 130, as a shell reports SIGINT."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message, hint, error="Interrupted", exit_code=EXIT_INTERRUPTED)


def explain(exc: BaseException) -> OperatorError:
    """Turn a botocore exception into the one line (and hint) a user should see; any other (an OSError) is
    named by its type and message."""
    if isinstance(exc, OperatorError):
        return exc
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return OperatorError("no AWS credentials found", CREDENTIALS_HINT, error="NoCredentials")
    if isinstance(exc, NoRegionError):
        return BadInput("no AWS region set", REGION_HINT, error="NoRegion")
    if isinstance(exc, ProfileNotFound):
        return OperatorError(str(exc), "check AWS_PROFILE against ~/.aws/config", error="ProfileNotFound")
    if type(exc).__name__ in ("SSOTokenLoadError", "UnauthorizedSSOTokenError", "TokenRetrievalError",
                              "SSOError"):
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
    if type(exc).__name__ == "S3UploadFailedError" and isinstance(context, ClientError):
        return _explain_client_error(context)
    return OperatorError(f"{type(exc).__name__}: {exc}", error=type(exc).__name__)


def _explain_client_error(exc: ClientError) -> OperatorError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = str(error.get("Message") or "").strip()
    operation = exc.operation_name
    if code in ACCESS_DENIED:
        return OperatorError(
            f"access denied calling {operation}" + (f": {message}" if message else ""),
            "your AWS identity needs permission for this call; check AWS_PROFILE or ask your administrator",
            error="AccessDenied",
        )
    if code in _EXPIRED:
        return OperatorError("your AWS credentials have expired", "refresh them (e.g. `aws sso login`) and try again",
                        error="ExpiredCredentials")
    if code in _BAD_CREDENTIALS:
        return OperatorError(f"AWS rejected the credentials ({code})", "check AWS_ACCESS_KEY_ID / AWS_PROFILE",
                        error="InvalidCredentials")
    if code in _THROTTLED:
        return OperatorError(f"AWS throttled {operation}", "wait a moment and try again", error="Throttled")
    if code == "ExecutionDoesNotExist":
        return OperatorError(f"execution not found: {_quoted_arn(message)}", RUNS_HINT, error="ExecutionDoesNotExist")
    if code == "StateMachineDoesNotExist":
        return OperatorError("the stack's state machine does not exist any more", f"re-{DEPLOY_HINT}",
                        error="StateMachineDoesNotExist")
    if code == "ExecutionAlreadyExists":
        return BadInput(f"an execution with this name already exists: {_quoted_arn(message)}",
                        "choose another --name, or leave it out to get a generated one", error="ExecutionAlreadyExists")
    if code in ("NoSuchBucket",):
        return OperatorError(f"the stack's bucket does not exist: {message}", f"re-{DEPLOY_HINT}", error=code)
    return OperatorError(f"{operation} failed: {code}" + (f": {message}" if message else ""), error=code)


def _quoted_arn(message: str) -> str:
    found = re.search(r"'(arn:[^']+)'", message)
    return found.group(1) if found else message
