"""Serving: graft the export actions onto moto, wrap its WSGI app, run it in a thread.

moto 5.2 has no plugin hook, so ``install`` adds methods to moto's EC2Response
class -- and refuses loudly if moto has grown an implementation of its own, so
an upgrade cannot silently shadow (or be shadowed by) ours. The WSGI wrapper
settles due export tasks before every request, so an S3 HeadObject right after
the deadline finds the object without anyone having polled, and it serves the
``/_emulator/*`` control endpoint used by tests and benchmarks.

Every AWS request is counted (``faults.classify``) and may be delayed
(``latency_seconds``), throttled, failed or denied (``throttle_fraction``,
``error_fraction``, ``fault_seed``, ``deny_actions``) before moto sees it, or
applied and then left unanswered (``lose_responses``: the connection is dropped);
control requests are neither counted nor faulted. Whatever moto cannot answer
(an action it lacks, a crash) is answered as an error in the service's own
format (EC2 XML, ...), never as an HTML page. With ``caller_policy`` moto's IAM
access control is switched on. Control endpoints (JSON in, JSON out):

  GET  /_emulator/config          the config; POST merges fields into it (400 if invalid)
  POST /_emulator/reset           drop tasks and call counts; {"config": true} also restores
                                  the start-up config
  POST /_emulator/advance         {"seconds": s}: move the emulator clock forward
  GET  /_emulator/tasks           every export task with AccountId and Region
  POST /_emulator/tasks           {"record": {...}, "disk_image_format": "VHD", "image_id"?, "region"?,
                                  "account_id"?}: replay a DescribeExportImageTasks record captured
                                  on AWS verbatim (tests/data/aws/); it never advances
  GET  /_emulator/calls           {"calls": {"ec2:DescribeExportImageTasks": 3, ...},
                                   "faults": {"throttled": n, "errors": m}}
  GET  /_emulator/calls?detail=1  the same with "calls" the last 10000 calls, oldest first:
                                  [{"service", "action", "access_key", "expected_bucket_owner",
                                    "fault"}, ...] (expected_bucket_owner: bool for s3, else null;
                                  fault: "throttled", "errors" or null)
  POST /_emulator/calls           reset the counts; answers the counts from before
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from moto import settings as moto_settings
from moto.ec2.responses import EC2Response
from moto.iam.access_control import IAMRequest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from . import faults, responses
from .config import EmulatorConfig
from .models import ExportBackends

CONTROL_PREFIX = "/_emulator/"
_install_lock = threading.Lock()


class MotoConflictError(RuntimeError):
    """moto already implements an action this emulator wants to add."""


def _ours(attr: Any) -> bool:
    return bool(getattr(attr, "__export_emulator__", False))


def check_actions_free(cls: type, names: Iterable[str] = responses.NEW_ACTIONS) -> None:
    """Raise MotoConflictError if ``cls`` already defines any of ``names`` itself."""
    taken = [n for n in names if hasattr(cls, n) and not _ours(getattr(cls, n))]
    if taken:
        raise MotoConflictError(
            f"{cls.__name__} already defines {', '.join(taken)}; this moto version implements "
            "export-image actions itself -- drop or adapt export_image_provider.emulator"
        )


def check_actions_present(cls: type, names: Iterable[str] = responses.WRAPPED_ACTIONS) -> None:
    """Raise MotoConflictError if an action we wrap is missing from ``cls``."""
    missing = [n for n in names if not callable(getattr(cls, n, None))]
    if missing:
        raise MotoConflictError(f"{cls.__name__} lacks {', '.join(missing)}; cannot wrap them")


def install(cls: type = EC2Response) -> None:
    """Add the export actions to moto's EC2Response and wrap the tag and image actions; idempotent."""
    with _install_lock:
        check_actions_free(cls)
        check_actions_present(cls)
        for name in responses.WRAPPED_ACTIONS:
            current = getattr(cls, name)
            if not _ours(current):
                responses.ORIGINALS[name] = current
        for name in (*responses.NEW_ACTIONS, *responses.WRAPPED_ACTIONS):
            setattr(cls, name, getattr(responses.ExportImageResponse, name))
        if not _ours(IAMRequest._raise_access_denied):
            IAMRequest._raise_access_denied = _ec2_unauthorized(IAMRequest._raise_access_denied)


def _ec2_unauthorized(original: Callable[[Any], None]) -> Callable[[Any], None]:
    """moto answers a denied EC2 call with AccessDenied; EC2 says UnauthorizedOperation (HTTP 403)."""

    def raise_access_denied(self: Any) -> None:
        if self._service == "ec2":
            raise responses.Ec2Forbidden("UnauthorizedOperation", "You are not authorized to perform this operation. "
                                         f"User: {self._access_key.arn} is not authorized to perform: {self._action}")
        original(self)

    raise_access_denied.__export_emulator__ = True  # type: ignore[attr-defined]
    return raise_access_denied


class EmulatorApp:
    """WSGI middleware: count and fault AWS requests, settle export tasks, serve ``/_emulator/*``, delegate to moto."""

    def __init__(self, inner: Callable[..., Any], backends: ExportBackends, initial: EmulatorConfig):
        self.inner = inner
        self.backends = backends
        self.initial = initial
        self.calls = faults.CallLog()
        self.dice = faults.FaultDice()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            return self._control(environ, start_response, path[len(CONTROL_PREFIX):].strip("/"))
        call = faults.classify(environ)
        config = self.backends.config
        if call is not None:
            fault = self.dice.roll(config)
            if fault is None and call.key in {a.strip() for a in config.deny_actions.split(",")}:
                fault = faults.DENIED
            self.calls.record(call, fault)
            if config.latency_seconds > 0:
                time.sleep(config.latency_seconds)
            if fault is not None:
                status, headers, body = faults.fault_response(call, fault, environ.get("REQUEST_METHOD", "GET"))
                start_response(status, headers)
                return [body]
        self.backends.settle_all()
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0 if config.caller_policy else float("inf")
        if call is not None and self._loses(call):
            return self._lose(environ)
        result = self._answer(call, environ, start_response)
        if path.rstrip("/") == "/moto-api/reset" and environ.get("REQUEST_METHOD") == "POST":
            self.backends.reset()
        return result

    def _loses(self, call: faults.Call) -> bool:
        """Is this request's answer to be lost? Counts ``lose_responses`` down."""
        with self.backends.lock:
            config = self.backends.config
            if config.lose_responses <= 0 or (config.lose_responses_of or call.key) != call.key:
                return False
            self.backends.set_config({"lose_responses": config.lose_responses - 1})
            return True

    def _lose(self, environ: dict[str, Any]) -> Iterable[bytes]:
        """Apply the request, then drop the connection without answering it."""
        answer = self.inner(environ, lambda *args, **kwargs: (lambda data: None))
        try:
            b"".join(answer)
        finally:
            getattr(answer, "close", lambda: None)()
        connection = environ.get("werkzeug.socket")
        if connection is not None:
            connection.shutdown(socket.SHUT_RDWR)
        raise ConnectionAbortedError("emulator: response lost on purpose (lose_responses)")

    def _answer(self, call: faults.Call | None, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """moto's answer, or an error in the service's format where moto crashed or answered HTML."""
        if call is None:
            return self.inner(environ, start_response)
        captured: list[Any] = []
        try:
            answer = self.inner(environ, lambda status, headers, exc_info=None: captured.extend([status, headers]))
            try:
                body = b"".join(answer)
            finally:
                getattr(answer, "close", lambda: None)()
        except Exception as error:  # noqa: BLE001 - any crash becomes an AWS-shaped error
            return self._crash(call, error, environ, start_response)
        status, headers = captured[0], captured[1]
        content_type = dict((k.lower(), v) for k, v in headers).get("content-type", "")
        if "html" in content_type and int(status.split()[0]) >= 500:
            return self._crash(call, None, environ, start_response)
        start_response(status, headers)
        return [body]

    @staticmethod
    def _crash(call: faults.Call, error: Exception | None, environ: dict[str, Any],
               start_response: Callable[..., Any]) -> Iterable[bytes]:
        """An action moto lacks: 400 InvalidAction; a bad parameter: 400; anything else: 500 InternalError."""
        if isinstance(error, NotImplementedError):
            status, code, message = "400 Bad Request", "InvalidAction", \
                f"The action {call.action} is not implemented by the emulator (moto)."
        elif isinstance(error, (ValueError, TypeError)):
            status, code, message = "400 Bad Request", "InvalidParameterValue", \
                f"A parameter of {call.action} is invalid: {error}"
        else:
            logging.getLogger(__name__).error("emulator: %s failed", call.key, exc_info=error)
            status, code, message = "500 Internal Server Error", "InternalError", \
                f"The emulator failed to answer {call.action}: see its log."
        request_id, content_type, body = faults.render_error(call.protocol, code, message)
        if environ.get("REQUEST_METHOD") == "HEAD":
            body = b""
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                ("x-amzn-RequestId", request_id)])
        return [body]

    def _control(self, environ: dict[str, Any], start_response: Callable[..., Any], name: str) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            body = _read_json(environ) if method == "POST" else {}
            query = parse_qs(environ.get("QUERY_STRING", ""))
            status, payload = self._handle(method, name, body, query)
        except (ValueError, TypeError, KeyError) as exc:
            status, payload = "400 Bad Request", {"error": str(exc)}
        data = json.dumps(payload).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def reset(self, config: bool = False) -> None:
        """Drop tasks, call counts and the fault dice; with ``config`` restore the start-up config."""
        self.backends.reset()
        self.calls.reset()
        self.dice.reset()
        if config:
            self.backends.config = self.initial

    def _handle(self, method: str, name: str, body: dict[str, Any], query: dict[str, list[str]]) -> tuple[str, Any]:
        ok = "200 OK"
        if name == "config" and method == "GET":
            return ok, self.backends.config.to_dict()
        if name == "config" and method == "POST":
            return ok, self.backends.set_config(body).to_dict()
        if name == "reset" and method == "POST":
            self.reset(config=bool(body.get("config")))
            return ok, {"reset": True, "config": self.backends.config.to_dict()}
        if name == "advance" and method == "POST":
            return ok, {"offset": self.backends.advance(float(body.get("seconds", 0)))}
        if name == "tasks" and method == "POST":
            record = self.backends.replay(body.get("account_id", "123456789012"), body.get("region", "us-east-1"),
                                          body["record"], body["disk_image_format"], body.get("image_id"))
            return ok, {"task": record}
        if name == "tasks" and method == "GET":
            self.backends.settle_all()
            return ok, {"tasks": self.backends.snapshot()}
        if name == "calls" and method == "GET":
            detail = (query.get("detail") or ["0"])[0].lower() not in ("", "0", "false", "no")
            return ok, self.calls.snapshot(detail=detail)
        if name == "calls" and method == "POST":
            return ok, self.calls.reset()
        return "404 Not Found", {"error": f"no control endpoint {method} {CONTROL_PREFIX}{name}"}


def _read_json(environ: dict[str, Any]) -> dict[str, Any]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    data = json.loads(raw or b"{}")
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


class _QuietHandler(MotoRequestHandler):
    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass


@dataclass
class RunningEmulator:
    """A serving emulator: ``url`` for boto3's ``endpoint_url``; ``stop()`` when done."""

    url: str
    host: str
    port: int
    backends: ExportBackends
    _server: BaseWSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    app: EmulatorApp | None = field(default=None, repr=False)

    @property
    def config(self) -> EmulatorConfig:
        return self.backends.config

    def set_config(self, **changes: Any) -> EmulatorConfig:
        return self.backends.set_config(changes)

    def reset(self) -> None:
        """Drop export tasks and call counts (the config stays)."""
        if self.app is not None:
            self.app.reset()
        else:
            self.backends.reset()

    def calls(self, detail: bool = False) -> dict[str, Any]:
        """Like ``GET /_emulator/calls``: {"calls": counts or detail list, "faults": {...}}."""
        return self.app.calls.snapshot(detail) if self.app is not None else {"calls": {}, "faults": {}}

    def reset_calls(self) -> dict[str, Any]:
        """Like ``POST /_emulator/calls``: forget the counts, return them from before."""
        return self.app.calls.reset() if self.app is not None else {"calls": {}, "faults": {}}

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server.server_close()

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_emulator(
    host: str = "127.0.0.1",
    port: int = 0,
    export_seconds: float | None = None,
    max_active: int | None = None,
    config: EmulatorConfig | None = None,
    clock: Callable[[], float] | None = None,
    log_requests: bool = False,
) -> RunningEmulator:
    """Serve moto (EC2, S3, IAM, STS, ...) plus the export actions; port 0 picks a free port.

    moto's state is process-wide, so so is the emulator's: starting a second one
    in the same process shares tasks and config with the first.
    """
    install()
    base = config or EmulatorConfig()
    overrides = {k: v for k, v in {"export_seconds": export_seconds, "max_active": max_active}.items() if v is not None}
    base = base.updated(overrides)
    backends = responses.export_backends
    with backends.lock:
        backends.reset()
        backends.config = base
        backends.clock = clock or time.monotonic
        backends.offset = 0.0
    if not log_requests:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = EmulatorApp(DomainDispatcherApplication(create_backend_app), backends, base)
    handler = MotoRequestHandler if log_requests else _QuietHandler
    server = make_server(host, port, app, threaded=True, request_handler=handler)
    bound_port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="export-image-emulator", daemon=True)
    thread.start()
    return RunningEmulator(f"http://{host}:{bound_port}", host, bound_port, backends, server, thread, app)
