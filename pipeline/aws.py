"""The operator CLI's AWS side: find the deployed stack, upload raw data, start and follow executions.

Everything here takes boto3 clients as arguments, so tests pass moto's and the CLI stays a thin
layer that prints. AWS errors a user can meet become one `AwsError` with a hint (`aws_errors()`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.config import Config
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

from churn.layout import SCORES_FILE
from churn.scoring import ScoreRow, ScoringError, read_scores

FAILED_BATCH_LOG_MESSAGE = "ingest batch had failed records"  # the ingest handler's log line
DEFAULT_STACK_NAME = "ChurnPipeline"
RAW_PREFIX = "raw"
SCORES_PREFIX = "scores"
DEFAULT_DATA_KEY = f"{RAW_PREFIX}/churn.csv"
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
# The execution name is also the SageMaker training job's name (see stacks/training_pipeline.py),
# so it must satisfy the stricter of the two patterns.
EXECUTION_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")

DEPLOY_HINT = "deploy it with `make deploy`"
CREDENTIALS_HINT = (
    "configure credentials (`aws configure`, `aws sso login`, or AWS_PROFILE), or run on this machine with --local"
)
REGION_HINT = "pass --region or set AWS_REGION"
RUNS_HINT = "list recent executions with `python -m pipeline runs`"


class AwsError(Exception):
    """Something a user can fix: `message` is one line, `hint` says how; `error` is a short name for --json."""

    def __init__(self, message: str, hint: str = "", *, error: str = "AwsError", exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.error = error
        self.exit_code = exit_code


# -- errors ---------------------------------------------------------------------------------------
_ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
                  "Forbidden", "403", "AllAccessDisabled"}
_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
_BAD_CREDENTIALS = {"InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
                    "InvalidAccessKeyId", "InvalidToken"}
_THROTTLED = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
              "SlowDown"}


def explain(exc: BaseException) -> AwsError:
    """Turn a botocore exception into the one line (and hint) a user should see."""
    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return AwsError("no AWS credentials found", CREDENTIALS_HINT, error="NoCredentials")
    if isinstance(exc, NoRegionError):
        return AwsError("no AWS region set", REGION_HINT, error="NoRegion", exit_code=2)
    if isinstance(exc, ProfileNotFound):
        return AwsError(str(exc), "check AWS_PROFILE against ~/.aws/config", error="ProfileNotFound")
    if type(exc).__name__ in ("SSOTokenLoadError", "UnauthorizedSSOTokenError", "TokenRetrievalError",
                              "SSOError"):
        return AwsError("the AWS SSO session is missing or has expired", "run `aws sso login` and try again",
                        error="ExpiredCredentials")
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
        return AwsError(f"could not reach AWS: {exc}", "check your network connection and the region",
                        error="EndpointConnectionError")
    if isinstance(exc, ClientError):
        return _explain_client_error(exc)
    if isinstance(exc, BotoCoreError):
        return AwsError(str(exc), error=type(exc).__name__)
    # boto3's S3 transfer wraps the ClientError it failed on.
    context = exc.__context__ or exc.__cause__
    if type(exc).__name__ == "S3UploadFailedError" and isinstance(context, ClientError):
        return _explain_client_error(context)
    return AwsError(f"{type(exc).__name__}: {exc}", error=type(exc).__name__)


def _explain_client_error(exc: ClientError) -> AwsError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = str(error.get("Message") or "").strip()
    operation = exc.operation_name
    if code in _ACCESS_DENIED:
        return AwsError(
            f"access denied calling {operation}" + (f": {message}" if message else ""),
            "your AWS identity needs permission for this call; check AWS_PROFILE or ask your administrator",
            error="AccessDenied",
        )
    if code in _EXPIRED:
        return AwsError("your AWS credentials have expired", "refresh them (e.g. `aws sso login`) and try again",
                        error="ExpiredCredentials")
    if code in _BAD_CREDENTIALS:
        return AwsError(f"AWS rejected the credentials ({code})", "check AWS_ACCESS_KEY_ID / AWS_PROFILE",
                        error="InvalidCredentials")
    if code in _THROTTLED:
        return AwsError(f"AWS throttled {operation}", "wait a moment and try again", error="Throttled")
    if code == "ExecutionDoesNotExist":
        return AwsError(f"execution not found: {_quoted_arn(message)}", RUNS_HINT, error="ExecutionDoesNotExist")
    if code == "StateMachineDoesNotExist":
        return AwsError("the stack's state machine does not exist any more", f"re-{DEPLOY_HINT}",
                        error="StateMachineDoesNotExist")
    if code == "ExecutionAlreadyExists":
        return AwsError(f"an execution with this name already exists: {_quoted_arn(message)}",
                        "choose another --name, or leave it out to get a generated one",
                        error="ExecutionAlreadyExists", exit_code=2)
    if code in ("NoSuchBucket",):
        return AwsError(f"the stack's bucket does not exist: {message}", f"re-{DEPLOY_HINT}", error=code)
    return AwsError(f"{operation} failed: {code}" + (f": {message}" if message else ""), error=code)


def _quoted_arn(message: str) -> str:
    found = re.search(r"'(arn:[^']+)'", message)
    return found.group(1) if found else message


@contextmanager
def aws_errors() -> Iterator[None]:
    """Re-raise any botocore error as an AwsError (one line and a hint)."""
    try:
        yield
    except AwsError:
        raise
    except (BotoCoreError, ClientError) as exc:
        raise explain(exc) from None
    except Exception as exc:
        if type(exc).__name__ == "S3UploadFailedError":
            raise explain(exc) from None
        raise


# -- session and the deployed stack ----------------------------------------------------------------
_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=10,
    read_timeout=60,
    user_agent_extra="churn-pipeline-cli",
)


class AwsSession:
    """A boto3 session with the region resolved and one client per service."""

    def __init__(self, session: boto3.Session):
        if not session.region_name:
            raise explain(NoRegionError())
        self.session = session
        self.region: str = session.region_name
        self._clients: dict[str, Any] = {}

    @classmethod
    def create(cls, region: str | None = None) -> AwsSession:
        """--region, else AWS_REGION (as the AWS CLI reads it; boto3 alone does not), else the profile's."""
        with aws_errors():
            return cls(boto3.Session(region_name=region or os.environ.get("AWS_REGION") or None))

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, config=_CLIENT_CONFIG)
        return self._clients[service]

    @property
    def cloudformation(self) -> Any:
        return self.client("cloudformation")

    @property
    def s3(self) -> Any:
        return self.client("s3")

    @property
    def stepfunctions(self) -> Any:
        return self.client("stepfunctions")


@dataclass(frozen=True)
class Deployment:
    """The deployed stack, as its outputs describe it."""

    stack_name: str
    region: str
    status: str
    outputs: dict[str, str]

    REQUIRED = ("BucketName", "StateMachineArn")

    @classmethod
    def load(cls, cloudformation: Any, stack_name: str) -> Deployment:
        region = cloudformation.meta.region_name
        try:
            stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "ValidationError" and "does not exist" in str(error.get("Message", "")):
                raise AwsError(
                    f"stack '{stack_name}' not found in region {region}",
                    f"{DEPLOY_HINT}; if it is in another region, {REGION_HINT}"
                    " (--stack-name if you deployed it under another name)",
                    error="StackNotFound",
                ) from None
            raise explain(exc) from None
        if not stacks:
            raise AwsError(f"stack '{stack_name}' not found in region {region}", DEPLOY_HINT, error="StackNotFound")
        stack = stacks[0]
        status = stack.get("StackStatus", "")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", []) if "OutputValue" in o}
        missing = [key for key in cls.REQUIRED if key not in outputs]
        if missing:
            if status.endswith("_IN_PROGRESS"):
                raise AwsError(f"stack '{stack_name}' is {status}", "wait for the deployment to finish",
                               error="StackNotReady")
            raise AwsError(
                f"stack '{stack_name}' ({status}) has no output {', '.join(missing)}",
                "is it this project's stack? pass --stack-name, or redeploy with `make deploy`",
                error="StackNotReady",
            )
        return cls(stack_name=stack_name, region=region, status=status, outputs=outputs)

    @property
    def bucket(self) -> str:
        return self.outputs["BucketName"]

    @property
    def state_machine_arn(self) -> str:
        return self.outputs["StateMachineArn"]

    @property
    def feature_group(self) -> str | None:
        return self.outputs.get("FeatureGroupName")

    @property
    def model_package_group(self) -> str | None:
        return self.outputs.get("ModelPackageGroupName")

    @property
    def ingest_log_group(self) -> str | None:
        return self.outputs.get("IngestLogGroup")

    @property
    def console(self) -> ConsoleLinks:
        return ConsoleLinks.for_arn(self.state_machine_arn)

    def spec_matches(self, fingerprint: str) -> bool | None:
        """Was the stack deployed with this feature spec? (its fingerprint names the feature group)."""
        if not self.feature_group:
            return None
        return self.feature_group.endswith(f"-churn-{fingerprint}")


@dataclass(frozen=True)
class ConsoleLinks:
    region: str
    partition: str = "aws"

    @classmethod
    def for_arn(cls, arn: str) -> ConsoleLinks:
        parts = arn.split(":")
        return cls(region=parts[3], partition=parts[1]) if len(parts) > 4 else cls(region="us-east-1")

    @property
    def base(self) -> str:
        if self.partition == "aws-cn":
            return f"https://{self.region}.console.amazonaws.cn"
        if self.partition == "aws-us-gov":
            return "https://console.amazonaws-us-gov.com"
        return f"https://{self.region}.console.aws.amazon.com"

    def execution(self, execution_arn: str) -> str:
        return f"{self.base}/states/home?region={self.region}#/v2/executions/details/{execution_arn}"

    def training_job(self, name: str) -> str:
        return f"{self.base}/sagemaker/home?region={self.region}#/jobs/{name}"

    def model_package_group(self, name: str) -> str:
        return f"{self.base}/sagemaker/home?region={self.region}#/model-registry/{name}"


# -- upload ---------------------------------------------------------------------------------------
def raw_key(path: Path, name: str | None = None) -> str:
    """`raw/<name>`: the file's own name by default; a leading `raw/` in `name` is accepted."""
    name = (name or path.name).strip().lstrip("/")
    name = name.removeprefix(f"{RAW_PREFIX}/")
    if not name or name.endswith("/"):
        raise AwsError(f"--key {name!r} is not a file name", "e.g. --key customers-2024.csv", error="InvalidKey",
                       exit_code=2)
    if not name.lower().endswith(".csv"):
        raise AwsError(f"--key {name!r} must end in .csv", "the pipeline reads raw/*.csv", error="InvalidKey",
                       exit_code=2)
    return f"{RAW_PREFIX}/{name}"


def object_exists(s3: Any, bucket: str, key: str) -> bool | None:
    """True/False, or None when we may not look (HeadObject denied)."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        if code in ("404", "NoSuchKey", "NotFound"):
            return False
        if code in _ACCESS_DENIED:
            return None
        raise
    return True


def upload_csv(s3: Any, bucket: str, path: Path, key: str) -> str:
    """Put the file at s3://bucket/key (multipart when large; the bucket's default key encrypts it)."""
    with aws_errors():
        s3.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": "text/csv"})
    return f"s3://{bucket}/{key}"


def raw_trigger_enabled(s3: Any, bucket: str) -> bool | None:
    """Whether the bucket sends events to EventBridge (the stack's opt-in "new raw CSV" trigger)."""
    try:
        config = s3.get_bucket_notification_configuration(Bucket=bucket)
    except (ClientError, BotoCoreError):
        return None
    return "EventBridgeConfiguration" in config


def data_key(value: str, bucket: str) -> str:
    """Accept `raw/x.csv` or `s3://<the stack's bucket>/raw/x.csv`."""
    if value.startswith("s3://"):
        other, _, key = value[len("s3://"):].partition("/")
        if other != bucket:
            raise AwsError(f"{value} is not in the stack's bucket {bucket}",
                           "upload it first with `python -m pipeline upload --data PATH`",
                           error="InvalidKey", exit_code=2)
        value = key
    value = value.lstrip("/")
    if not value:
        raise AwsError("--data-key is empty", f"e.g. --data-key {DEFAULT_DATA_KEY}", error="InvalidKey",
                       exit_code=2)
    return value


# -- executions -----------------------------------------------------------------------------------
def new_execution_name(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"run-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def check_execution_name(name: str) -> str:
    if not EXECUTION_NAME.match(name):
        raise AwsError(
            f"--name {name!r} is not a valid run name",
            "use 1-63 letters, digits and hyphens (it also names the SageMaker training job)",
            error="InvalidName", exit_code=2,
        )
    return name


def execution_arn(state_machine_arn: str, name_or_arn: str) -> str:
    """An execution ARN from its name (executions live under their state machine's ARN)."""
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    prefix, _, machine = state_machine_arn.rpartition(":stateMachine:")
    return f"{prefix}:execution:{machine}:{name_or_arn}"


@dataclass
class Execution:
    """What describe_execution tells about one run."""

    name: str
    arn: str
    status: str
    started: datetime | None = None
    stopped: datetime | None = None
    input_key: str = ""
    output: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    cause: str = ""

    @classmethod
    def from_description(cls, d: dict[str, Any]) -> Execution:
        return cls(
            name=d.get("name", ""),
            arn=d["executionArn"],
            status=d.get("status", ""),
            started=d.get("startDate"),
            stopped=d.get("stopDate"),
            input_key=str(_json(d.get("input")).get("input_key", "")),
            output=_json(d.get("output")),
            error=d.get("error") or "",
            cause=readable_cause(d.get("cause") or ""),
        )

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def auc(self) -> float | None:
        value = self.output.get("validation_auc")
        try:
            return float(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    @property
    def duration_seconds(self) -> float | None:
        if not self.started:
            return None
        end = self.stopped or datetime.now(self.started.tzinfo or UTC)
        return max(0.0, (end - self.started).total_seconds())


def _json(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def start_execution(sfn: Any, state_machine_arn: str, input_key: str, name: str) -> str:
    response = sfn.start_execution(stateMachineArn=state_machine_arn, name=name,
                                   input=json.dumps({"input_key": input_key}))
    return response["executionArn"]


def describe_execution(sfn: Any, arn: str) -> Execution:
    return Execution.from_description(sfn.describe_execution(executionArn=arn))


def recent_executions(sfn: Any, state_machine_arn: str, limit: int = 10) -> list[Execution]:
    """The newest `limit` executions; finished ones are described for their AUC or error."""
    found: list[Execution] = []
    kwargs: dict[str, Any] = {"stateMachineArn": state_machine_arn, "maxResults": max(1, min(limit, 1000))}
    while len(found) < limit:
        page = sfn.list_executions(**kwargs)
        for item in page.get("executions", []):
            found.append(Execution(name=item["name"], arn=item["executionArn"], status=item["status"],
                                   started=item.get("startDate"), stopped=item.get("stopDate")))
        token = page.get("nextToken")
        if not token:
            break
        kwargs["nextToken"] = token
    found = found[:limit]
    for i, execution in enumerate(found):
        if execution.status in ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"):
            found[i] = describe_execution(sfn, execution.arn)
    return found


class HistoryReader:
    """New history events since the last call, oldest first, each exactly once.

    Reads newest-first (reverseOrder) and stops at the first event already seen, so a poll costs one
    page however long the history grows; a burst of more than a page is paged through.
    """

    def __init__(self, sfn: Any, arn: str, page_size: int = 100):
        self.sfn = sfn
        self.arn = arn
        self.page_size = page_size
        self.last_id = 0

    def new_events(self) -> list[dict[str, Any]]:
        fresh: dict[int, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {"executionArn": self.arn, "reverseOrder": True, "maxResults": self.page_size}
        while True:
            page = self.sfn.get_execution_history(**kwargs)
            events = page.get("events", [])
            reached_seen = False
            for event in events:
                if event["id"] <= self.last_id:
                    reached_seen = True
                else:
                    fresh[event["id"]] = event
            token = page.get("nextToken")
            if reached_seen or not token or not events:
                break
            kwargs["nextToken"] = token
        ordered = [fresh[i] for i in sorted(fresh)]
        if ordered:
            self.last_id = ordered[-1]["id"]
        return ordered


class StepReporter(Protocol):
    """What the CLI's ConsoleReporter implements (same look as the local mode)."""

    def step_started(self, step: str, since_start: float | None = None) -> None: ...

    def step_finished(self, step: str, seconds: float, detail: str) -> None: ...

    def step_failed(self, step: str, seconds: float, error: str) -> None: ...


@dataclass
class _OpenState:
    name: str
    label: str
    kind: str
    entered: datetime
    announced: bool = False
    failure: tuple[str, str] | None = None


def _details(event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            return value
    return {}


# What a Distributed Map reports when child batches failed ("Ingest features" tolerates none).
MAP_FAILURE_ERROR = "States.ExceededToleratedFailureThreshold"
LOG_SLACK_MS = 60_000  # log events are stamped by the Lambda, a little apart from the execution's times


def failed_ingest_records(logs: Any, log_group: str, execution: Execution, event_time: str | None = None,
                          limit: int = 5) -> tuple[list[dict[str, Any]], int]:
    """(the first `limit` failed records, how many failed) that the ingest Lambda logged for this run.

    Each failed batch logs one JSON line (FAILED_BATCH_LOG_MESSAGE) with its failed records and the
    run's event time; lines are looked for while the execution ran, and, when `event_time` is known,
    only this run's are counted (two runs may ingest at once)."""
    start = execution.started or datetime.now(UTC)
    stop = execution.stopped or datetime.now(UTC)
    paginator = logs.get_paginator("filter_log_events")
    pages = paginator.paginate(
        logGroupName=log_group,
        startTime=int(start.timestamp() * 1000) - LOG_SLACK_MS,
        endTime=int(stop.timestamp() * 1000) + LOG_SLACK_MS,
        filterPattern=f'"{FAILED_BATCH_LOG_MESSAGE}"',
    )
    shown: list[dict[str, Any]] = []
    total = 0
    for page in pages:
        for event in page.get("events", []):
            try:
                entry = json.loads(event.get("message", ""))
            except ValueError:
                continue
            if not isinstance(entry, dict) or entry.get("message") != FAILED_BATCH_LOG_MESSAGE:
                continue
            if event_time is not None and entry.get("event_time") not in (None, event_time):
                continue
            records = [r for r in entry.get("failed_records") or [] if isinstance(r, dict)]
            count = entry.get("failed_count")
            total += count if isinstance(count, int) else len(records)
            shown += records[: max(0, limit - len(shown))]
    return shown, total


def ingest_failure_hint(logs: Any, log_group: str, execution: Execution, event_time: str | None = None,
                        limit: int = 5) -> tuple[str, list[dict[str, Any]]]:
    """One line naming the records that failed "Ingest features", and those records (for --json)."""
    where = f"CloudWatch log group {log_group}, message '{FAILED_BATCH_LOG_MESSAGE}'"
    try:
        records, total = failed_ingest_records(logs, log_group, execution, event_time, limit)
    except (ClientError, BotoCoreError) as exc:
        return f"the failed records are logged in {where} (could not read it: {explain(exc).message})", []
    if not records:
        return (f"the failed records are logged in {where} (none found for this run: logs can lag a minute, "
                "and a batch that timed out or crashed logs none)"), []
    listed = "; ".join(f"{r.get('record_id')} ({r.get('error')})" for r in records)
    more = f" and {total - len(records)} more" if total > len(records) else ""
    rerun = "re-running the file rewrites the same records"
    return f"{total} records failed: {listed}{more} (all in {where}; {rerun})", records


def readable_cause(cause: str) -> str:
    """A Lambda's error arrives as JSON (errorMessage, errorType, stackTrace): keep the message."""
    parsed = _json(cause) if cause.lstrip().startswith("{") else {}
    return str(parsed["errorMessage"]) if parsed.get("errorMessage") else cause


def error_text(error: str, cause: str) -> str:
    cause = readable_cause(cause)
    return f"{error}: {cause}" if cause else (error or "failed")


def _dig(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data


class ProgressTracker:
    """Turns history events into step lines: entered, exited (with its time), failed.

    A state that is entered and exited within one batch of events gets one line (its exit); one
    still running at the end of a batch is announced as started. Facts the summary needs (the
    gate's reason, record counts) are picked from the states' outputs.
    """

    def __init__(self, reporter: StepReporter):
        self.reporter = reporter
        self.started: datetime | None = None
        self.open: list[_OpenState] = []
        self.visits: Counter[str] = Counter()
        self.status: str | None = None
        self.error = ""
        self.cause = ""
        self.facts: dict[str, Any] = {}
        self._choice: tuple[str, float] | None = None  # a Choice's line waits to name the branch taken

    @property
    def current(self) -> _OpenState | None:
        return self.open[-1] if self.open else None

    def feed(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            self._event(event)
        for state in self.open:
            if not state.announced:
                state.announced = True
                since = (state.entered - self.started).total_seconds() if self.started else None
                self.reporter.step_started(state.label, since)

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type", "")
        at: datetime = event.get("timestamp") or datetime.now(UTC)
        details = _details(event)
        if kind == "ExecutionStarted":
            self.started = at
        elif kind.endswith("StateEntered"):
            self._close_caught(at)
            name = details.get("name", "?")
            self._flush_choice(f"→ {name}")
            self.visits[name] += 1
            label = name if self.visits[name] == 1 else f"{name} (#{self.visits[name]})"
            self.open.append(_OpenState(name, label, kind.removesuffix("StateEntered"), at))
        elif kind.endswith("StateExited"):
            self._exit(details.get("name", "?"), at, _json(details.get("output")))
        elif kind in ("ExecutionSucceeded", "ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"):
            self.status = {"ExecutionSucceeded": "SUCCEEDED", "ExecutionFailed": "FAILED",
                           "ExecutionTimedOut": "TIMED_OUT", "ExecutionAborted": "ABORTED"}[kind]
            self.error = details.get("error") or ("" if self.status == "SUCCEEDED" else kind.removeprefix("Execution"))
            self.cause = readable_cause(details.get("cause") or "")
            self._flush_choice("")
            for state in reversed(self.open):
                seconds = (at - state.entered).total_seconds()
                if self.status == "SUCCEEDED":
                    self.reporter.step_finished(state.label, seconds, "")
                else:
                    error, cause = state.failure or (self.error, self.cause)
                    self.reporter.step_failed(state.label, seconds, error_text(error, cause))
            self.open.clear()
        elif kind.endswith(("Failed", "TimedOut", "Aborted")) and self.open:
            self.open[-1].failure = (details.get("error", kind), details.get("cause", ""))
        elif kind.endswith("Succeeded") and self.open:
            self.open[-1].failure = None  # a retry after a transient error went through

    def _close_caught(self, at: datetime) -> None:
        """A state that failed and was left for a Catch handler without an exit event."""
        for state in [s for s in self.open if s.failure]:
            self.open.remove(state)
            self.reporter.step_failed(state.label, (at - state.entered).total_seconds(), error_text(*state.failure))

    def _flush_choice(self, detail: str) -> None:
        if self._choice:
            label, seconds = self._choice
            self._choice = None
            self.reporter.step_finished(label, seconds, detail)

    def _exit(self, name: str, at: datetime, output: dict[str, Any]) -> None:
        state = next((s for s in reversed(self.open) if s.name == name), None)
        if state is None:
            return
        self.open.remove(state)
        seconds = (at - state.entered).total_seconds()
        if state.failure:
            self.reporter.step_failed(state.label, seconds, error_text(*state.failure))
            return
        if state.kind == "Choice":
            self._choice = (state.label, seconds)
            return
        self.reporter.step_finished(state.label, seconds, self._detail(name, output))

    def _detail(self, name: str, output: dict[str, Any]) -> str:
        """What a person wants to see after each step; best effort (outputs may be withheld)."""
        records = _dig(output, "validation", "records")
        if records is not None:
            self.facts["records"] = records
        event_time = _dig(output, "validation", "event_time")
        if isinstance(event_time, str):
            self.facts["event_time"] = event_time
        if name == "Validate input" and records is not None:
            return f"{records} rows"
        if name == "Read offline count":
            visible = _dig(output, "offline_count", "records")
            if visible is not None:
                self.facts["offline_records"] = visible
                return f"{visible} of {records if records is not None else '?'} records in the offline store"
        if name == "Build training set":
            uri = _dig(output, "training_set", "output_uri")
            return str(uri) if uri else ""
        if name == "Train model":
            job = _dig(output, "training", "training_job_name")
            if job:
                self.facts["training_job_name"] = job
                return f"training job {job}"
        if name == "Evaluate model":
            evaluation = _dig(output, "evaluation")
            if isinstance(evaluation, dict):
                self.facts["evaluation"] = evaluation
                return str(evaluation.get("reason", ""))
        if name == "Register model":
            arn = _dig(output, "registration", "model_package_arn")
            return str(arn) if arn else ""
        if name == "Score customers":
            job = _dig(output, "scoring", "transform_job_name")
            return f"transform job {job}" if job else ""
        if name == "Rank scores":
            customers = _dig(output, "scores", "customers")
            return f"{customers} customers ranked" if customers is not None else ""
        return ""


def follow(
    sfn: Any,
    arn: str,
    tracker: ProgressTracker,
    *,
    reader: HistoryReader | None = None,
    poll_seconds: float = 3.0,
    sleep: Callable[[float], None] = time.sleep,
    on_tick: Callable[[ProgressTracker], None] | None = None,
) -> Execution:
    """Poll the execution's history until it ends; return its description."""
    reader = reader or HistoryReader(sfn, arn)
    polls = 0
    while True:
        tracker.feed(reader.new_events())
        polls += 1
        if tracker.status is None and polls % 10 == 0:
            # History is the source of progress; describe is the safety net that it ended.
            if describe_execution(sfn, arn).finished:
                tracker.feed(reader.new_events())
                return describe_execution(sfn, arn)
        if tracker.status is not None:
            return describe_execution(sfn, arn)
        if on_tick:
            on_tick(tracker)
        sleep(poll_seconds)


def gate_decision(execution: Execution, facts: dict[str, Any]) -> str:
    evaluation = facts.get("evaluation")
    if isinstance(evaluation, dict) and evaluation.get("reason"):
        return str(evaluation["reason"])
    if execution.status == "SUCCEEDED":
        return "passed: the model was registered"
    if execution.error == "ModelQualityBelowThreshold":
        return execution.cause or "below the threshold"
    return "-"


def execution_result(execution: Execution, *, links: ConsoleLinks, model_package_group: str | None = None,
                     facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The --json summary: the local mode's keys where they mean the same thing, plus AWS ones."""
    facts = facts or {}
    out = execution.output
    job = out.get("training_job_name") or facts.get("training_job_name") or ""
    result: dict[str, Any] = {
        "status": execution.status,
        "execution_name": execution.name,
        "execution_arn": execution.arn,
        "input_key": execution.input_key,
        "records_ingested": facts.get("records"),
        "auc": execution.auc,
        "gate": gate_decision(execution, facts),
        "model_artifact": out.get("model_artifact", ""),
        "model_package_arn": out.get("model_package_arn", ""),
        "training_job_name": job,
        "scores_uri": out.get("scores_uri", ""),
        "customers_scored": out.get("customers_scored"),
        "top_customers": out.get("top_customers") or [],
        "error": execution.error,
        "cause": execution.cause,
        "started": execution.started.isoformat() if execution.started else None,
        "stopped": execution.stopped.isoformat() if execution.stopped else None,
        "duration_seconds": round(execution.duration_seconds, 1) if execution.duration_seconds is not None else None,
        "region": links.region,
        "console_url": links.execution(execution.arn),
    }
    if job:
        result["training_job_url"] = links.training_job(job)
    if model_package_group:
        result["model_package_group_url"] = links.model_package_group(model_package_group)
    return result


# -- batch scores and one-customer predictions ----------------------------------------------------
def scores_key(execution_name: str) -> str:
    """Where the pipeline's "Rank scores" state writes an execution's ranking."""
    return f"{SCORES_PREFIX}/{execution_name}/{SCORES_FILE}"


def latest_succeeded_execution(sfn: Any, state_machine_arn: str) -> str | None:
    """The name of the newest succeeded execution (list_executions returns newest first)."""
    page = sfn.list_executions(stateMachineArn=state_machine_arn, statusFilter="SUCCEEDED", maxResults=1)
    executions = page.get("executions", [])
    return executions[0]["name"] if executions else None


def read_scores_object(s3: Any, bucket: str, key: str, limit: int) -> tuple[str, list[ScoreRow]]:
    """(id column, the top `limit` rows) of a scores.csv in S3, reading no further than needed."""
    uri = f"s3://{bucket}/{key}"
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404", "NotFound"):
            raise AwsError(f"no scores at {uri}", "scores are written by a run that passed the quality gate; "
                           "list runs with `python -m pipeline runs`", error="ScoresNotFound") from None
        raise
    try:
        return read_scores((line.decode("utf-8") for line in body.iter_lines()), uri, limit)
    except ScoringError as exc:
        raise AwsError(str(exc), error="InvalidScores") from None
    finally:
        body.close()


@dataclass(frozen=True)
class ApprovedModel:
    arn: str
    version: int
    model_data_url: str


def latest_approved_model(sagemaker: Any, group: str) -> ApprovedModel | None:
    """The highest-versioned Approved package of the group, with its model artifact."""
    newest: dict[str, Any] | None = None
    paginator = sagemaker.get_paginator("list_model_packages")
    for page in paginator.paginate(ModelPackageGroupName=group, ModelApprovalStatus="Approved"):
        for summary in page.get("ModelPackageSummaryList", []):
            if newest is None or summary.get("ModelPackageVersion", 0) > newest.get("ModelPackageVersion", 0):
                newest = summary
    if newest is None:
        return None
    described = sagemaker.describe_model_package(ModelPackageName=newest["ModelPackageArn"])
    containers = described.get("InferenceSpecification", {}).get("Containers", [])
    if not containers or not containers[0].get("ModelDataUrl"):
        raise AwsError(f"model package {newest['ModelPackageArn']} names no model artifact", error="NoModelData")
    return ApprovedModel(arn=newest["ModelPackageArn"], version=int(newest.get("ModelPackageVersion", 0)),
                         model_data_url=containers[0]["ModelDataUrl"])


def download(s3: Any, uri: str) -> bytes:
    if not uri.startswith("s3://") or "/" not in uri[len("s3://"):]:
        raise AwsError(f"not an s3:// object URI: {uri}", error="InvalidUri")
    bucket, _, key = uri[len("s3://"):].partition("/")
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def online_record(featurestore_runtime: Any, group: str, record_id: str) -> list[dict[str, str]] | None:
    """GetRecord from the online store: the record, or None when the id is unknown (or deleted)."""
    response = featurestore_runtime.get_record(FeatureGroupName=group, RecordIdentifierValueAsString=record_id)
    return response.get("Record") or None
