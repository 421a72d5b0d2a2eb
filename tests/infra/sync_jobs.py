"""`.sync` for Athena and SageMaker on moto 5.2.5: start the job in moto, run its test-side fake, poll it.

moto relays these services' calls to its own backends but accepts only `.waitForTaskToken`.
`SyncJobService` also accepts `.sync`: it runs the fake registered for the API action (the harness's
`jobs`), overlays what the fake reports on moto's describe output, and polls until the job ends. A
job that ends in a failed state fails the task with `States.TaskFailed` and the describe output as the
cause, as Step Functions does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol
from unittest import mock

from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_factory
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_unsupported import (
    StateTaskServiceUnsupported,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str


@dataclass
class JobOutcome:
    """How a job ended: the describe output's fields to overlay (its status among them)."""

    succeeded: bool
    fields: dict[str, Any] = field(default_factory=dict)


class JobHost(Protocol):
    """What a job fake gets: the harness (clients, the S3 helpers, its work directory)."""

    jobs: dict[tuple[str, str], Callable[..., JobOutcome]]

    def client(self, service: str) -> Any: ...


@dataclass(frozen=True)
class SyncApi:
    """How Step Functions waits for one job kind: the describe call and its status field."""

    describe: str  # boto3 method
    id_param: str  # the describe call's parameter, also the start request's name field (or the start output's)
    status_key: str  # dotted path of the status in the describe output
    succeeded: tuple[str, ...]
    failed: tuple[str, ...]


SYNC_APIS: dict[tuple[str, str], SyncApi] = {
    ("athena", "startQueryExecution"): SyncApi(
        "get_query_execution", "QueryExecutionId", "QueryExecution.Status.State", ("SUCCEEDED",),
        ("FAILED", "CANCELLED")),
    ("sagemaker", "createTrainingJob"): SyncApi(
        "describe_training_job", "TrainingJobName", "TrainingJobStatus", ("Completed",), ("Failed", "Stopped")),
    ("sagemaker", "createTransformJob"): SyncApi(
        "describe_transform_job", "TransformJobName", "TransformJobStatus", ("Completed",), ("Failed", "Stopped")),
}


def json_safe(value: Any) -> Any:
    """Step Functions hands timestamps on as epoch milliseconds; boto3 returns datetimes."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _dig(value: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return value


def _overlay(target: dict[str, Any], fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _overlay(target[key], value)
        else:
            target[key] = value


class SyncJobService(StateTaskServiceUnsupported):
    """moto's relay for Athena/SageMaker, plus `.sync`: start the job in moto, run its fake, poll."""

    host: JobHost  # set on the class while a harness runs (`patches`)

    def __init__(self) -> None:
        super().__init__()
        # A set of its own (the parent's is moto's module-level one). WaitForTaskToken must stay: the
        # interpreter interrupts the task's callback endpoint after any integration pattern, and
        # that endpoint only exists when WaitForTaskToken is supported.
        self._supported_integration_patterns = {ResourceCondition.WaitForTaskToken, ResourceCondition.Sync}

    def _failed(self, env: Any, described: dict[str, Any]) -> FailureEventException:
        return FailureEventException(FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
            event_type=HistoryEventType.TaskFailed,
            event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
                resource=self._get_sfn_resource(), resourceType=self._get_sfn_resource_type(),
                error=StatesErrorNameType.StatesTaskFailed.to_name(), cause=to_json_str(described),
            )),
        ))

    def _build_sync_resolver(self, env, resource_runtime_part, normalised_parameters, state_credentials):
        started: dict[str, Any] = env.stack.pop()
        key = (self._get_boto_service_name(), self.resource.api_action)
        if key not in SYNC_APIS or key not in self.host.jobs:
            raise RuntimeError(f"no test fake for {self.resource.resource_arn}")
        api = SYNC_APIS[key]
        job_id = started.get(api.id_param) or normalised_parameters[api.id_param]
        outcome = self.host.jobs[key](self.host, normalised_parameters, started)
        client = self.host.client(key[0])

        def resolve_job() -> dict[str, Any] | None:
            described = json_safe(getattr(client, api.describe)(**{api.id_param: job_id}))
            _overlay(described, outcome.fields)
            status = _dig(described, api.status_key)
            if status in api.succeeded:
                return described
            if status in api.failed:
                raise self._failed(env, described)
            return None

        return resolve_job


def _state_task_service_for(service_name: str) -> Any:
    if service_name in ("athena", "sagemaker"):
        return SyncJobService()
    return state_task_service_factory.state_task_service_for(service_name)


def patches(host: JobHost) -> list[Any]:
    return [mock.patch.object(state_task_factory, "state_task_service_for", _state_task_service_for),
            mock.patch.object(SyncJobService, "host", host, create=True)]
