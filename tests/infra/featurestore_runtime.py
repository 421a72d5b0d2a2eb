"""The Feature Store runtime for the moto harness (moto has none): real boto3 clients whose requests the
local feature store answers, and the service's faults a test can ask for.

`RoutedFeatureStoreRuntime.client` builds the client the product's own factory builds (the handlers'
`churn.handlers._runtime.client`: its retries, pool and parameter validation) and answers its requests
at the HTTP step (`before-send`), after botocore has validated (when asked) and serialised them, so
everything botocore does around a call still happens. The service validates every request against its
model whatever the client does (botocore's checks, plus the maximums botocore leaves to the service:
BatchWriteRecord's 25 entries): a request the model rejects gets a 400 ValidationError, as AWS
answers it; the others go to `target()` (the local store, or a test's wrapper of it) with boto3's
arguments, and its result or ClientError becomes the HTTP response.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ParamValidationError
from botocore.validate import ParamValidator, ValidationErrors
from moto.core.botocore_stubber import MockRawResponse

from pipeline.local_aws.feature_store import LocalFeatureStore

FEATURE_STORE_RUNTIME = "sagemaker-featurestore-runtime"
_PARAMS = "harness.featurestore_runtime.params"  # where the call's boto3 arguments wait for before-send


class _ServiceErrors(ValidationErrors):
    def _format_error(self, error: tuple) -> str:
        reason, name, additional = error
        if reason == "invalid max length":
            return (f"Invalid length for parameter {self._get_name(name)}, value: {additional['param']}, "
                    f"valid max length: {additional['max_allowed']}")
        return super()._format_error(error)


class ServiceSideValidator(ParamValidator):
    """botocore's parameter validation plus the model's `max` lengths, which botocore does not check."""

    def validate(self, params: dict[str, Any], shape: Any) -> ValidationErrors:
        errors = _ServiceErrors()
        self._validate(params, shape, errors, name="")
        return errors

    def _validate_list(self, param: Any, shape: Any, errors: Any, name: str) -> None:
        super()._validate_list(param, shape, errors, name)
        self._max(param, list, shape, errors, name)

    def _validate_string(self, param: Any, shape: Any, errors: Any, name: str) -> None:
        super()._validate_string(param, shape, errors, name)
        self._max(param, str, shape, errors, name)

    @staticmethod
    def _max(param: Any, kind: type, shape: Any, errors: Any, name: str) -> None:
        if isinstance(param, kind) and len(param) > shape.metadata.get("max", len(param)):
            errors.report(name, "invalid max length", param=len(param), max_allowed=shape.metadata["max"])


def _method(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def _response(request: Any, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> AWSResponse:
    return AWSResponse(request.url, status, {"Content-Type": "application/x-amz-json-1.1", **(headers or {})},
                       MockRawResponse(json.dumps(body)))


class RoutedFeatureStoreRuntime:
    """Clients of `sagemaker-featurestore-runtime` answered by `target()`."""

    def __init__(self, factory: Callable[..., Any], target: Callable[[], Any]) -> None:
        self._factory = factory  # the product's client factory, uncached
        self._target = target
        self.calls = 0

    def client(self, max_pool_connections: int = 10, parameter_validation: bool = True) -> Any:
        client = self._factory(FEATURE_STORE_RUNTIME, max_pool_connections, parameter_validation)
        events = client.meta.events
        events.register(f"before-parameter-build.{FEATURE_STORE_RUNTIME}", self._keep_params)
        events.register_first(f"before-send.{FEATURE_STORE_RUNTIME}", self._answer)
        return client

    @staticmethod
    def _keep_params(params: dict[str, Any], model: Any, context: dict[str, Any], **kwargs: Any) -> None:
        context[_PARAMS] = (model, dict(params))

    def _answer(self, request: Any, **kwargs: Any) -> AWSResponse:
        model, params = request.context[_PARAMS]
        self.calls += 1
        report = ServiceSideValidator().validate(params, model.input_shape)
        if report.has_errors():
            message = str(ParamValidationError(report=report.generate_report()))
            return _response(request, 400, {"message": message}, {"x-amzn-ErrorType": "ValidationError"})
        try:
            result = getattr(self._target(), _method(model.name))(**params)
        except ClientError as exc:
            error = exc.response["Error"]
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
            return _response(request, status, {"message": error["Message"]}, {"x-amzn-ErrorType": error["Code"]})
        return _response(request, 200, {k: v for k, v in (result or {}).items() if k != "ResponseMetadata"})


# -- faults --------------------------------------------------------------------------------------
def _record_id(entry: dict[str, Any], store: LocalFeatureStore) -> str:
    name = store.describe_feature_group(FeatureGroupName=entry["FeatureGroupName"])["RecordIdentifierFeatureName"]
    return next(f["ValueAsString"] for f in entry["Record"] if f["FeatureName"] == name)


class RejectingRuntime:
    """BatchWriteRecord where the service rejects the entries of `rejected` record ids: each comes back
    in `Errors` with the entry, the code and the message; the others are written."""

    def __init__(self, store: LocalFeatureStore, rejected: set[str], code: str, message: str) -> None:
        self.store, self.rejected, self.code, self.message = store, rejected, code, message

    def batch_write_record(self, *, Entries: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        refused = [e for e in Entries if _record_id(e, self.store) in self.rejected]
        kept = [e for e in Entries if e not in refused]
        response = self.store.batch_write_record(Entries=kept, **kwargs) if kept else {
            "Errors": [], "UnprocessedEntries": []}
        errors = [{"Entry": e, "ErrorCode": self.code, "ErrorMessage": self.message} for e in refused]
        return {**response, "Errors": [*response["Errors"], *errors]}


class InterruptedRuntime:
    """The Feature Store runtime refusing every call once `after` entries were written: an ingest cut off
    (AccessForbidden, which no client retries: say the writer's permission was withdrawn mid-run)."""

    def __init__(self, store: LocalFeatureStore, *, after: int) -> None:
        self.store = store
        self.after = after
        self.written = 0
        self.refused = 0
        self._lock = threading.Lock()

    def batch_write_record(self, *, Entries: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            allowed = self.written + len(Entries) <= self.after
            if allowed:
                self.written += len(Entries)
            else:
                self.refused += len(Entries)
        if not allowed:
            raise ClientError({"Error": {"Code": "AccessForbidden", "Message": "User is not authorized to perform: "
                                         "sagemaker:BatchWriteRecord"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
                              "BatchWriteRecord")
        return self.store.batch_write_record(Entries=Entries, **kwargs)
