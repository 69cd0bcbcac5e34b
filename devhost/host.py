"""The function host: indexes ``function_app.app`` and invokes its functions the way the Functions host
and the Python worker do, with trigger inputs built by the ``azure.functions`` library's own converters.

Example:
    >>> host = FunctionHost.load("function_app:app")                      # doctest: +SKIP
    >>> host.invoke_eventgrid("score_blob", {"id": "1", "eventType": ...})   # doctest: +SKIP
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
from azure.functions.blob import BlobConverter
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum
from azure.functions.queue import QueueMessageInConverter
from azure.functions.timer import TimerRequestConverter

__all__ = ["FunctionHost", "FunctionInfo", "InvocationError", "InvocationTimeout", "Out", "TriggerDecodeError"]

log = logging.getLogger("devhost.host")


class InvocationError(Exception):
    """The function raised: the host reports a failed invocation (HTTP 500 to the caller)."""

    def __init__(self, function: str, invocation_id: str, exc: BaseException) -> None:
        super().__init__(
            f"function {function} (invocation {invocation_id}) failed: {type(exc).__name__}: {exc}"
        )
        self.function, self.invocation_id, self.cause = function, invocation_id, exc


class InvocationTimeout(InvocationError):
    """The function ran past host.json ``functionTimeout``: the invocation is abandoned (HTTP 500)."""

    def __init__(self, function: str, invocation_id: str, timeout: float) -> None:
        super().__init__(function, invocation_id, TimeoutError(f"functionTimeout of {timeout:g} s exceeded"))
        self.timeout = timeout


class TriggerDecodeError(ValueError):
    """The ``azure.functions`` converter could not build the trigger input: the function never ran."""

    def __init__(self, function: str, exc: BaseException) -> None:
        super().__init__(f"function {function}: the trigger input cannot be decoded: {type(exc).__name__}: {exc}")
        self.function, self.cause = function, exc


class Out(func.Out):
    """A concrete output binding value (``func.Out`` is abstract)."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class _Context(func.Context):
    def __init__(self, invocation_id: str, function_name: str) -> None:
        self._invocation_id, self._function_name = invocation_id, function_name
        self._tls = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return ""

    @property
    def thread_local_storage(self) -> Any:
        return self._tls

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


@dataclass
class FunctionInfo:
    """One indexed function: its name, user callable, trigger binding and other bindings."""

    name: str
    user_function: Callable[..., Any]
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return [b for b in self.bindings if b.get("direction") == "OUT" and b.get("name") != "$return"]


class FunctionHost:
    """Indexes a ``FunctionApp`` once and invokes its functions with converter-built inputs.

    Output bindings of type ``queue`` and ``blob`` are written to storage through ``output_sink``.
    ``function_timeout`` (seconds, host.json ``functionTimeout``) bounds every invocation: past it the
    caller gets :class:`InvocationTimeout` and the invocation is abandoned (its thread is left to finish,
    its outputs are dropped), as the Functions host gives up on it.
    """

    def __init__(
        self,
        app: func.FunctionApp,
        output_sink: Callable[[dict[str, Any], Any], None] | None = None,
        function_timeout: float | None = None,
    ):
        self.app = app
        self.function_timeout = function_timeout
        self.functions: dict[str, FunctionInfo] = {}
        for f in app.get_functions():  # callable once per app: keep the index
            bindings = [json.loads(raw) for raw in f.get_raw_bindings()]
            trigger = next(b for b in bindings if b.get("type", "").endswith("Trigger"))
            retry = f.get_settings_dict("retry_policy") if hasattr(f, "get_settings_dict") else None
            self.functions[f.get_function_name()] = FunctionInfo(
                f.get_function_name(),
                f.get_user_function(),
                trigger,
                bindings,
                {"retry_policy": retry} if retry else {},
            )
        self.output_sink = output_sink
        self.invocations = 0

    @classmethod
    def load(cls, spec: str = "function_app:app", **kwargs: Any) -> FunctionHost:
        """Import ``module:attribute`` and index it."""
        module_name, _, attribute = spec.partition(":")
        # numpy imported here, on one thread: the functions import it lazily, and two invocations importing it
        # at once on devhost's worker threads can fail the import for the whole process ("cannot load module
        # more than once per process", seen once in CI)
        importlib.import_module("numpy")
        return cls(getattr(importlib.import_module(module_name), attribute or "app"), **kwargs)

    def by_trigger(self, trigger_type: str) -> list[FunctionInfo]:
        return [f for f in self.functions.values() if f.trigger_type == trigger_type]

    def get(self, name: str) -> FunctionInfo:
        if name not in self.functions:
            raise KeyError(f"no function named {name!r} (functions: {', '.join(sorted(self.functions))})")
        return self.functions[name]

    # -- invocation -------------------------------------------------------------------------------
    def invoke(self, name: str, trigger_value: Any) -> Any:
        """Call the function with its trigger value, a ``context`` if it asks for one, and its outputs."""
        info = self.get(name)
        invocation_id = str(uuid.uuid4())
        parameters = inspect.signature(info.user_function).parameters
        kwargs: dict[str, Any] = {info.trigger["name"]: trigger_value}
        outs = {b["name"]: Out() for b in info.outputs}
        kwargs.update({k: v for k, v in outs.items() if k in parameters})
        for pname, parameter in parameters.items():
            if pname not in kwargs and (
                pname == "context" or parameter.annotation in (func.Context, "func.Context")
            ):
                kwargs[pname] = _Context(invocation_id, name)
        self.invocations += 1
        log.info("invoking %s (%s)", name, invocation_id)
        try:
            result = self._run(info, invocation_id, kwargs)
        except InvocationTimeout:
            raise
        except Exception as exc:
            log.warning("function %s failed: %s: %s", name, type(exc).__name__, exc)
            raise InvocationError(name, invocation_id, exc) from exc
        for binding in info.outputs:
            value = outs[binding["name"]].get()
            if value is not None and self.output_sink is not None:
                self.output_sink(binding, value)
        return result

    def _run(self, info: FunctionInfo, invocation_id: str, kwargs: dict[str, Any]) -> Any:
        if self.function_timeout is None:
            return info.user_function(**kwargs)
        context, done, box = contextvars.copy_context(), threading.Event(), {}

        def target() -> None:
            try:
                box["result"] = context.run(info.user_function, **kwargs)
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=target, name=f"invocation-{invocation_id[:8]}", daemon=True).start()
        if not done.wait(self.function_timeout):
            log.error(
                "function %s (invocation %s) exceeded functionTimeout (%g s): abandoned",
                info.name, invocation_id, self.function_timeout,
                extra={"function": info.name, "invocation_id": invocation_id, "timeout_s": self.function_timeout},
            )  # fmt: skip
            raise InvocationTimeout(info.name, invocation_id, self.function_timeout)
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def invoke_eventgrid(self, name: str, event: Mapping[str, Any]) -> Any:
        """One event (either schema) → ``func.EventGridEvent`` or ``func.CloudEvent`` via the converter.

        A converter failure (malformed or numeric ``eventTime``, ...) raises :class:`TriggerDecodeError`.
        """
        try:
            value = EventGridEventInConverter.decode(
                Datum(type="json", value=json.dumps(event)), trigger_metadata={}
            )
        except Exception as exc:  # ValueError, TypeError, AttributeError, KeyError, ...: before the function
            raise TriggerDecodeError(name, exc) from exc
        return self.invoke(name, value)

    def invoke_blob(self, name: str, path: str, uri: str, data: bytes, properties: Mapping[str, Any]) -> Any:
        """A blob trigger input (``func.InputStream``) built by ``BlobConverter``."""
        metadata = {
            "BlobTrigger": Datum(type="string", value=path),
            "Uri": Datum(type="string", value=uri),
            "Properties": Datum(type="json", value=json.dumps(dict(properties), default=str)),
            "Metadata": Datum(type="json", value=json.dumps(dict(properties.get("Metadata", {})))),
        }
        try:
            value = BlobConverter.decode(Datum(type="bytes", value=data), trigger_metadata=metadata)
        except Exception as exc:
            raise TriggerDecodeError(name, exc) from exc
        return self.invoke(name, value)

    def invoke_queue(
        self, name: str, body: str, message_id: str, dequeue_count: int, inserted: datetime | None
    ) -> Any:
        """A queue message (``func.QueueMessage``) built by ``QueueMessageInConverter``."""
        metadata = {
            "Id": Datum(type="string", value=message_id),
            "DequeueCount": Datum(type="int", value=dequeue_count),
            "InsertionTime": Datum(type="string", value=(inserted or datetime.now(UTC)).isoformat()),
            "PopReceipt": Datum(type="string", value=str(uuid.uuid4())),
        }
        return self.invoke(
            name, QueueMessageInConverter.decode(Datum(type="string", value=body), trigger_metadata=metadata)
        )

    def invoke_timer(self, name: str, past_due: bool = False) -> Any:
        """A ``func.TimerRequest`` built by ``TimerRequestConverter``."""
        value = TimerRequestConverter.decode(
            Datum(type="json", value=json.dumps({"IsPastDue": past_due})), trigger_metadata=None
        )
        return self.invoke(name, value)

    def invoke_http(self, name: str, request: func.HttpRequest) -> func.HttpResponse:
        result = self.invoke(name, request)
        if isinstance(result, func.HttpResponse):
            return result
        if result is None:
            return func.HttpResponse(status_code=204)
        return func.HttpResponse(str(result))
