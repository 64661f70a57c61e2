"""The dynamic-provider process and the engine: Cancel, the engine's Log, one-line errors, no orphans.

Pulumi runs Python dynamic providers in ``python -m pulumi.dynamic``, started by
the engine with the engine's gRPC address as its only argument. That server
leaves four things undone that an export, which runs for hours, needs:

- it answers the engine's ``Cancel`` (sent on the first Ctrl-C) and does
  nothing, so queued creates went on to start exports after a Ctrl-C. Here a
  ``grpc.ServerInterceptor`` sets :data:`CANCELLED`, which the slot queue and the
  waiter observe (lifecycle passes it to them), and wakes the slot queues;
- it never calls the engine's ``Log``, so anything a provider prints on stderr
  reaches the user as stack-level lines, cut and glued where the engine's reads
  of the pipe fall. :func:`log` calls ``Log`` with the URN of the resource whose
  request the calling thread serves (the interceptor records it), ephemeral for
  progress, as pulumi-kubernetes shows its await status;
- it answers every failure with ``traceback.format_exc()`` (3.260.0; some
  builds leave it to grpc, which logs the traceback); the module's ``traceback``
  is replaced by one that gives a :class:`OneLineError` as its message alone,
  and the interceptor answers one that reaches it with its message (other
  exceptions keep their traceback: they are bugs);
- it keeps serving when the engine is gone (a ``kill -9`` of the CLI); here a
  thread checks the engine's port every second and, once it is gone, sets
  :data:`CANCELLED` (no new export starts) and exits the process.

The provider plugin (plugin/server.py) answers Cancel and failures in its own
servicer and uses the rest (Log with URNs, partial state, the engine watch)
through :func:`serve_plugin`, reaching into nothing. For the dynamic provider,
all of it reaches into private names of ``pulumi.dynamic.__main__`` and grpc's
server, as workers.py does for the pool: :func:`install` checks each one and
says what it could not do; provider.py shows that on the resource as a warning,
and tests/test_interrupt.py fails when a Pulumi or grpc upgrade moves them.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import traceback as _traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class _Cancellation(threading.Event):
    """Set on Cancel or once the engine is gone; asked, it also looks at the engine itself.

    The watch below notices a vanished engine within a second; looking again
    whenever a create is about to start an export or poll closes that second.
    """

    def is_set(self) -> bool:
        if super().is_set():
            return True
        if _engine_gone():
            self.set()  # the watch thread wakes the slot queues
            return True
        return False


CANCELLED = _Cancellation()
ENGINE_CHECK_SECONDS = 1.0
ENGINE_GONE_EXIT_SECONDS = 2.0  # after setting CANCELLED, before the process exits
RESOURCE_METHODS = ("Check", "Diff", "Create", "Read", "Update", "Delete")

_local = threading.local()
_lock = threading.Lock()
_installed: list[str] | None = None
_engine: Any = None


class Cancelled(Exception):
    """The engine cancelled the operation (the user's first Ctrl-C, or the engine is gone)."""


class OneLineError(Exception):
    """A failure whose message is all the user needs: answered to the engine without a traceback."""


class PartialCreate(OneLineError):
    """A create that started its export and did not see it finish (a timeout, the user's Ctrl-C).

    Answered with the engine's ``ErrorResourceInitFailed`` detail, the engine keeps
    the resource in the state with its id and outputs, marked as not initialised:
    the next ``up`` sends Update (which waits for the export again), and removing
    the resource from the program makes the engine Delete it (which cancels the
    export). Without that detail the task would be owned by nothing.
    """

    def __init__(self, message: str, id_: str, outputs: dict[str, Any]) -> None:
        super().__init__(message)
        self.id = id_
        self.outputs = outputs


def partial_state_supported() -> bool:
    """Whether a create's failure can carry partial state: the interceptor answers, and the engine is there.

    Once the engine is gone (kill -9) nothing would record the partial state, so
    the task must stay unclaimed for the next create of its resource to resume.
    """
    return _installed is not None and not _installed and not _engine_gone()


def in_provider_process() -> bool:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name == "pulumi.dynamic.__main__"


_plugin_engine: str | None = None  # set by serve_plugin: the provider plugin's engine


def engine_address() -> str | None:
    """The engine's address the engine started this process with, if this is a provider process."""
    if _plugin_engine is not None:
        return _plugin_engine
    if not in_provider_process() or len(sys.argv) < 2 or ":" not in sys.argv[1]:
        return None
    return sys.argv[1]


def cancel() -> None:
    """Stop waiting: creates queued for a slot start nothing, creates waiting for AWS return."""
    CANCELLED.set()
    from . import slots

    with slots._QUEUES_LOCK:  # wake every queue's waiters, so that they see CANCELLED now
        queues = list(slots._QUEUES.values())
    for queue in queues:
        queue.release()


# -- the resource a thread serves, and the engine's Log ---------------------------


def current_urn() -> str:
    """The URN of the resource whose request this thread serves ("" when unknown)."""
    urn = getattr(_local, "urn", "")
    if urn:
        return urn
    frame = sys._getframe(1)  # the first request is served before the interceptor is installed
    while frame is not None:
        if frame.f_code.co_name in RESOURCE_METHODS and frame.f_globals.get("__name__") == "__main__":
            return str(getattr(frame.f_locals.get("request"), "urn", "") or "")
        frame = frame.f_back
    return ""


@contextmanager
def serving(urn: str) -> Iterator[None]:
    """Bind this thread to the resource ``urn`` while it serves that resource's request (:func:`log` uses it)."""
    _local.urn = urn
    try:
        yield
    finally:
        _local.urn = ""


def resource_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if urn else ""


def _engine_stub() -> Any:
    global _engine
    address = engine_address()
    if address is None:
        return None
    with _lock:
        if _engine is None:
            import grpc
            from pulumi.runtime.proto import engine_pb2_grpc

            _engine = engine_pb2_grpc.EngineStub(grpc.insecure_channel(address))
        return _engine


def log(message: str, *, ephemeral: bool = False, severity: str = "INFO", urn: str | None = None) -> None:
    """``message`` on the resource's row (engine Log with its URN); stderr outside the provider process."""
    stub = _engine_stub()
    if stub is not None:
        from pulumi.runtime.proto import engine_pb2

        request = engine_pb2.LogRequest(
            severity=engine_pb2.LogSeverity.Value(severity),
            message=message,
            urn=current_urn() if urn is None else urn,
            ephemeral=ephemeral,
        )
        try:
            stub.Log(request, timeout=10)
            return
        except Exception:  # noqa: BLE001 - the engine is gone or busy: the line still goes somewhere
            pass
    _stderr(message)


def _stderr(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:  # the engine that read our stderr is gone
        pass


# -- installing into pulumi.dynamic's server ---------------------------------------


def _bind(behaviour: Callable[[Any, Any], Any], method: str) -> Callable[[Any, Any], Any]:
    def served(request: Any, context: Any) -> Any:
        if method == "Cancel":
            cancel()
            return behaviour(request, context)
        _local.urn = getattr(request, "urn", "") or ""
        context = _AnsweringContext(context)
        try:
            return behaviour(request, context)
        except OneLineError as error:  # SDKs without _abort_with_traceback let it reach grpc, which logs it
            import grpc

            context.abort(grpc.StatusCode.UNKNOWN, str(error))
        finally:
            _local.urn = ""

    return served


class _AnsweringContext:
    """The gRPC context pulumi.dynamic aborts a failed call on; a PartialCreate also gets its detail."""

    def __init__(self, context: Any) -> None:
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def abort(self, code: Any, details: str) -> Any:
        error = sys.exc_info()[1]
        if isinstance(error, PartialCreate):
            status = _init_failed_status(error, code, details)
            self._context.set_trailing_metadata((("grpc-status-details-bin", status),))
        return self._context.abort(code, details)


def _init_failed_status(error: PartialCreate, code: Any, details: str) -> bytes:
    """A google.rpc.Status carrying ``ErrorResourceInitFailed``, as Pulumi's own providers answer a partial create."""
    import asyncio

    from pulumi.runtime import rpc

    loop = asyncio.new_event_loop()
    try:
        properties = loop.run_until_complete(rpc.serialize_properties(error.outputs, {}))
    finally:
        loop.close()
    return init_failed_status(error.id, properties, str(error), code.value[0], details)


def init_failed_status(id_: str, properties: Any, reason: str, code: int, details: str) -> bytes:
    """The serialized google.rpc.Status of a partial create: ``properties`` already a protobuf Struct."""
    from google.protobuf import any_pb2
    from pulumi.runtime.proto import provider_pb2

    try:
        from pulumi.runtime.proto import status_pb2
    except TypeError:  # google.rpc.Status already registered by googleapis-common-protos
        from google.rpc import status_pb2  # type: ignore[no-redef]

    detail = any_pb2.Any()
    detail.Pack(provider_pb2.ErrorResourceInitFailed(id=id_, properties=properties, reasons=[reason]))
    return status_pb2.Status(code=code, message=details, details=[detail]).SerializeToString()


def _interceptor() -> Any:
    import grpc

    class Interceptor(grpc.ServerInterceptor):
        def intercept_service(self, continuation: Any, details: Any) -> Any:
            handler = continuation(details)
            method = details.method.rsplit("/", 1)[-1]
            if handler is None or handler.unary_unary is None or method not in (*RESOURCE_METHODS, "Cancel"):
                return handler
            return grpc.unary_unary_rpc_method_handler(
                _bind(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

    return Interceptor()


def _install_interceptor(server: Any) -> str | None:
    """Put the interceptor in front of the server's handlers; what is missing otherwise."""
    from grpc import _interceptor as pipelines

    state = getattr(server, "_state", None)
    if state is None or not hasattr(state, "interceptor_pipeline") or not hasattr(pipelines, "service_pipeline"):
        return "grpc's server has no interceptor pipeline to extend"
    existing = getattr(state.interceptor_pipeline, "interceptors", None) or ()
    state.interceptor_pipeline = pipelines.service_pipeline([_interceptor(), *existing])
    return None


class _OneLineTraceback:
    """``traceback`` for pulumi.dynamic's ``_abort_with_traceback``: a OneLineError is its message alone."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_traceback, name)

    @staticmethod
    def format_exc(*args: Any, **kwargs: Any) -> str:
        error = sys.exc_info()[1]
        if isinstance(error, OneLineError):
            return str(error)
        return _traceback.format_exc(*args, **kwargs)


def _install_one_line(main: Any) -> None:
    """Where pulumi.dynamic answers failures with ``traceback.format_exc()``; elsewhere the interceptor does it."""
    if getattr(main, "traceback", None) is _traceback and hasattr(main, "_abort_with_traceback"):
        main.traceback = _OneLineTraceback()


def _engine_gone() -> bool:
    """Whether the engine that started this process no longer accepts connections."""
    address = engine_address() if _installed is not None else None
    if address is None:
        return False
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=5).close()
        return False
    except OSError:
        return True


def _watch_engine(address: str) -> None:
    while not _engine_gone():
        time.sleep(ENGINE_CHECK_SECONDS)
    try:
        cancel()
        _stderr(f"export-image-provider: the Pulumi engine at {address} is gone; exiting")
        time.sleep(ENGINE_GONE_EXIT_SECONDS)
    finally:
        os._exit(1)


def serve_plugin(address: str) -> None:
    """The provider plugin (plugin/server.py) serves the engine at ``address``: what :func:`install` gives
    pulumi.dynamic's server, without reaching into it: Log with URNs, partial state, and the engine watch.
    Cancel and one-line errors the plugin's own servicer answers."""
    global _installed, _plugin_engine
    with _lock:
        if _installed is not None:
            return
        _plugin_engine = address
        _installed = []
    threading.Thread(target=_watch_engine, args=(address,), name="engine-watch", daemon=True).start()


def install(server: Any) -> list[str]:
    """Cancel, Log URNs, one-line errors and the engine watch, once; returns what could not be installed."""
    global _installed
    with _lock:
        if _installed is not None:
            return _installed
        problems: list[str] = []
        main = sys.modules.get("__main__")
        if server is None:
            problems.append("the pulumi.dynamic server was not found")
        elif (problem := _install_interceptor(server)) is not None:
            problems.append(problem)
        _install_one_line(main)
        address = engine_address()
        if address is not None:
            threading.Thread(target=_watch_engine, args=(address,), name="engine-watch", daemon=True).start()
        _installed = problems
        return problems
