"""Lambda for the moto harness: moto's `LambdaSimpleBackend.invoke` (without Docker it only echoes the
payload) replaced by running the created function's handler in this process.

The handler string and environment are those the function was created with (from the template), the
code is checked to be the function's asset byte for byte. A raised exception becomes what the Lambda
runtime reports: an `Unhandled` function error whose payload has `errorType` (the exception's class
name), `errorMessage`, `requestId` and `stackTrace`.
"""

from __future__ import annotations

import json
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from moto.awslambda_simple.models import LambdaSimpleBackend

from churn.handlers import _runtime

REAL_CLIENT = _runtime.client  # what the handlers' `client` is outside a harness


@dataclass
class LambdaContext:
    """The attributes Powertools and handlers read from a Lambda context."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/test"
    log_stream_name: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@dataclass
class Invocation:
    function: str
    handler: str
    event: Any
    error: str | None = None


class InProcessLambda:
    """`LambdaSimpleBackend.invoke`, replaced: run the created function's handler in this process.

    `host` is the harness: `function_environment(variables)` (a context manager), `route_client` (what
    the handlers' `client` becomes) and `check_deployed_code(module name, module)`."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.invocations: list[Invocation] = []
        self._lock = threading.Lock()  # one handler at a time: each runs with its own os.environ
        self._patched_modules: dict[str, Any] = {}

    def of(self, handler: str) -> list[Invocation]:
        return [i for i in self.invocations if i.handler == handler]

    def invoke(self, backend: LambdaSimpleBackend, function_name, qualifier, body, headers, response_headers):
        function = backend.get_function(function_name, qualifier)
        name = function.function_name
        event = json.loads(body) if body else {}
        invocation = Invocation(name, function.handler, event)
        self.invocations.append(invocation)
        with self._lock, self.host.function_environment(function.environment_vars):
            _runtime.feature_spec.cache_clear()
            handler = self._handler(function.handler)
            context = LambdaContext(function_name=name, invoked_function_arn=function.function_arn)
            try:
                result = handler(event, context)
            except Exception as exc:  # noqa: BLE001 - the Lambda runtime reports any exception
                invocation.error = type(exc).__name__
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps({
                    "errorMessage": str(exc),
                    "errorType": type(exc).__name__,
                    "requestId": context.aws_request_id,
                    "stackTrace": traceback.format_tb(exc.__traceback__),
                }).encode()
        return json.dumps(result).encode()

    def _handler(self, handler: str) -> Callable[[Any, Any], Any]:
        module_name, _, attribute = handler.rpartition(".")
        module = import_module(module_name)
        self.host.check_deployed_code(module_name, module)
        # Handlers bind `client` from _runtime at import (the real one, or a harness's router if
        # imported while one ran): route their clients through this harness.
        bound = getattr(module, "client", None)
        if bound is REAL_CLIENT or getattr(bound, "__self__", None) is not None:
            self._patched_modules[module_name] = module
            module.client = self.host.route_client
        return getattr(module, attribute)

    def restore(self) -> None:
        for module in self._patched_modules.values():
            module.client = REAL_CLIENT
        self._patched_modules.clear()
