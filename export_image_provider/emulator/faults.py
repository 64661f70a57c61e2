"""Call accounting and request faults, used by the WSGI wrapper in ``server.py``.

Every AWS request the emulator serves (anything but ``/_emulator/*`` and
``/moto-api/*``) is classified as a ``Call``:

* service -- from the SigV4 credential scope ``<key>/<date>/<region>/<service>/
  aws4_request`` of the ``Authorization`` header (or the ``X-Amz-Credential``
  query parameter of a presigned URL). Unsigned requests: ``ec2``/``iam``/``sts``
  by their API ``Version`` if they carry an ``Action``, otherwise ``s3``.
* action -- query protocol (EC2, IAM, STS): the ``Action`` query or form
  parameter (the form body is read and put back as a fresh ``BytesIO`` so moto
  still reads it); JSON protocol: the ``X-Amz-Target`` operation; S3 (REST,
  path-style ``/<bucket>/<key>``): a best-effort operation name from the method,
  the path shape and the sub-resource query parameters (``s3_operation``).
* access_key -- the SigV4 access key id, ``None`` if unsigned.
* expected_bucket_owner -- S3 only: was ``x-amz-expected-bucket-owner`` sent.

``CallLog`` counts calls per ``service:Action``, counts faults, and keeps the
last ``DETAIL_LIMIT`` calls in detail. ``FaultDice`` decides, per request, to
throttle (HTTP 503), fail (HTTP 500) or pass, from ``throttle_fraction`` and
``error_fraction``; it is reseeded from ``fault_seed`` whenever the config object
changes, so a given seed replays the same fault sequence for the same requests.
``fault_response`` renders the fault in the service's own error format, which
botocore's standard and legacy retry modes both treat as retryable.
"""

from __future__ import annotations

import io
import json
import random
import re
import threading
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape as xml_escape

from .config import EmulatorConfig

DETAIL_LIMIT = 10_000
THROTTLED, ERRORS, DENIED = "throttled", "errors", "denied"

_SCOPE_RE = re.compile(r"Credential=([^/,\s]+)/\d{8}/[^/]+/([^/]+)/aws4_request")
_QUERY_SCOPE_RE = re.compile(r"^([^/]+)/\d{8}/[^/]+/([^/]+)/aws4_request$")
_API_VERSIONS = {"2016-11-15": "ec2", "2010-05-08": "iam", "2011-06-15": "sts"}
_VERBS = {"GET": "Get", "PUT": "Put", "DELETE": "Delete", "HEAD": "Head", "POST": "Post"}
_BUCKET_SUBRESOURCES = {
    "acl": "BucketAcl", "policy": "BucketPolicy", "policyStatus": "BucketPolicyStatus",
    "tagging": "BucketTagging", "versioning": "BucketVersioning", "encryption": "BucketEncryption",
    "lifecycle": "BucketLifecycleConfiguration", "cors": "BucketCors", "location": "BucketLocation",
    "ownershipControls": "BucketOwnershipControls", "publicAccessBlock": "PublicAccessBlock",
    "website": "BucketWebsite", "logging": "BucketLogging", "replication": "BucketReplication",
    "notification": "BucketNotificationConfiguration", "accelerate": "BucketAccelerateConfiguration",
    "requestPayment": "BucketRequestPayment", "object-lock": "ObjectLockConfiguration",
}
_OBJECT_SUBRESOURCES = {
    "tagging": "ObjectTagging", "acl": "ObjectAcl", "retention": "ObjectRetention",
    "legal-hold": "ObjectLegalHold", "attributes": "ObjectAttributes",
}
_ERRORS = {  # (protocol, fault) -> (code, message)
    ("ec2", THROTTLED): ("RequestLimitExceeded", "Request limit exceeded."),
    ("ec2", ERRORS): ("InternalError", "An internal error has occurred."),
    ("s3", THROTTLED): ("SlowDown", "Please reduce your request rate."),
    ("s3", ERRORS): ("InternalError", "We encountered an internal error. Please try again."),
    ("query", THROTTLED): ("Throttling", "Rate exceeded"),
    ("query", ERRORS): ("InternalError", "An internal error has occurred."),
    ("json", THROTTLED): ("ThrottlingException", "Rate exceeded"),
    ("json", ERRORS): ("InternalError", "An internal error has occurred."),
    ("ec2", DENIED): ("UnauthorizedOperation", "You are not authorized to perform this operation."),
    ("s3", DENIED): ("AccessDenied", "Access Denied"),
    ("query", DENIED): ("AccessDenied", "User is not authorized to perform this action"),
    ("json", DENIED): ("AccessDeniedException", "User is not authorized to perform this action"),
}
_STATUS = {THROTTLED: "503 Service Unavailable", ERRORS: "500 Internal Server Error", DENIED: "403 Forbidden"}


@dataclass(frozen=True)
class Call:
    service: str
    action: str
    access_key: str | None
    expected_bucket_owner: bool | None
    protocol: str  # "ec2", "query", "json" or "s3": the error format to answer a fault in

    @property
    def key(self) -> str:
        return f"{self.service}:{self.action}"

    def detail(self, fault: str | None) -> dict[str, Any]:
        return {
            "service": self.service,
            "action": self.action,
            "access_key": self.access_key,
            "expected_bucket_owner": self.expected_bucket_owner,
            "fault": fault,
        }


def _credential(environ: dict[str, Any], query: dict[str, list[str]]) -> tuple[str | None, str | None]:
    """(access key id, service) from the SigV4 Authorization header or presigned query."""
    match = _SCOPE_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if match is None and query.get("X-Amz-Credential"):
        match = _QUERY_SCOPE_RE.match(query["X-Amz-Credential"][0])
    return (match.group(1), match.group(2)) if match else (None, None)


def _form(environ: dict[str, Any]) -> dict[str, list[str]]:
    """Parse a form-encoded body and put it back, unread, for moto."""
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return {}
    length = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    body = stream.read(int(length)) if length else stream.read() if environ.get("wsgi.input_terminated") else b""
    environ["wsgi.input"] = io.BytesIO(body)
    if length is not None:
        environ["CONTENT_LENGTH"] = str(len(body))
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def s3_operation(method: str, path: str, query: dict[str, list[str]], copy_source: bool = False) -> str:
    """Best-effort S3 operation name of a path-style request, e.g. ``HeadObject``."""
    verb = _VERBS.get(method, method.title())
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket:
        return "ListBuckets" if method == "GET" else f"{verb}Service"
    if not key:
        if "uploads" in query:
            return "ListMultipartUploads"
        if "versions" in query:
            return "ListObjectVersions"
        if "delete" in query and method == "POST":
            return "DeleteObjects"
        for name, operation in _BUCKET_SUBRESOURCES.items():
            if name in query:
                return verb + operation
        listing = "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
        plain = {"HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket", "GET": listing}
        return plain.get(method, f"{verb}Bucket")
    if "uploads" in query and method == "POST":
        return "CreateMultipartUpload"
    if "uploadId" in query:
        parts = {"PUT": "UploadPartCopy" if copy_source else "UploadPart", "POST": "CompleteMultipartUpload",
                 "DELETE": "AbortMultipartUpload", "GET": "ListParts"}
        return parts.get(method, f"{verb}Part")
    if "restore" in query and method == "POST":
        return "RestoreObject"
    for name, operation in _OBJECT_SUBRESOURCES.items():
        if name in query:
            return verb + operation
    if method == "PUT" and copy_source:
        return "CopyObject"
    plain = {"HEAD": "HeadObject", "GET": "GetObject", "PUT": "PutObject", "DELETE": "DeleteObject"}
    if "versionId" in query and method in ("HEAD", "GET", "DELETE"):
        return plain[method] + "Version"  # one API operation, but IAM wants s3:*ObjectVersion for it
    return plain.get(method, f"{verb}Object")


def classify(environ: dict[str, Any]) -> Call | None:
    """The Call a request makes, or None for the emulator's and moto's own endpoints."""
    path = environ.get("PATH_INFO", "")
    if path.startswith(("/_emulator/", "/moto-api")):
        return None
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    access_key, service = _credential(environ, query)
    method = environ.get("REQUEST_METHOD", "GET").upper()
    if service != "s3":
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:
            return Call(service or "unknown", target.rsplit(".", 1)[-1], access_key, None, "json")
        params = {**_form(environ), **query} if method == "POST" else query
        action = (params.get("Action") or [""])[0]
        if service is None and action:
            service = _API_VERSIONS.get((params.get("Version") or [""])[0], "unknown")
        if service is not None:
            return Call(service, action or "Unknown", access_key, None, "ec2" if service == "ec2" else "query")
    copy_source = "HTTP_X_AMZ_COPY_SOURCE" in environ
    owner = "HTTP_X_AMZ_EXPECTED_BUCKET_OWNER" in environ
    return Call("s3", s3_operation(method, path, query, copy_source), access_key, owner, "s3")


class CallLog:
    """Counts per ``service:Action``, fault counts, and the last ``limit`` calls in detail."""

    def __init__(self, limit: int = DETAIL_LIMIT):
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._detail: deque[dict[str, Any]] = deque(maxlen=limit)

    def record(self, call: Call, fault: str | None) -> None:
        with self._lock:
            self._counts[call.key] += 1
            if fault is not None:
                self._faults[fault] += 1
            self._detail.append(call.detail(fault))

    def snapshot(self, detail: bool = False) -> dict[str, Any]:
        """``{"calls": {key: n} or [detail, ...], "faults": {"throttled": n, "errors": m}}``."""
        with self._lock:
            calls: Any = [dict(d) for d in self._detail] if detail else dict(sorted(self._counts.items()))
            return {"calls": calls, "faults": {THROTTLED: self._faults[THROTTLED], ERRORS: self._faults[ERRORS]}}

    def reset(self) -> dict[str, Any]:
        """Forget everything; returns the counts from before."""
        with self._lock:
            before = {
                "calls": dict(sorted(self._counts.items())),
                "faults": {THROTTLED: self._faults[THROTTLED], ERRORS: self._faults[ERRORS]},
            }
            self._counts.clear()
            self._faults.clear()
            self._detail.clear()
            return before


class FaultDice:
    """Per-request fault decisions; reseeded from ``fault_seed`` when the config changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._config: EmulatorConfig | None = None
        self._rng = random.Random()

    def roll(self, config: EmulatorConfig) -> str | None:
        """THROTTLED, ERRORS or None; draws nothing while both fractions are 0."""
        if not (config.throttle_fraction or config.error_fraction):
            return None
        with self._lock:
            if config is not self._config:
                self._rng, self._config = random.Random(config.fault_seed), config
            draw = self._rng.random()
        if draw < config.throttle_fraction:
            return THROTTLED
        if draw < config.throttle_fraction + config.error_fraction:
            return ERRORS
        return None

    def reset(self) -> None:
        with self._lock:
            self._config = None


def render_error(protocol: str, code: str, message: str, kind: str = "Sender") -> tuple[str, str, bytes]:
    """(request id, content type, body) of an error in a protocol's own format: json, s3, ec2 or query."""
    request_id = str(uuid.uuid4())
    if protocol == "json":
        return request_id, "application/x-amz-json-1.1", json.dumps({"__type": code, "message": message}).encode()
    message = xml_escape(message)
    if protocol == "s3":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<RequestId>{request_id}</RequestId><HostId>emulator</HostId></Error>")
        return request_id, "application/xml", body.encode()
    if protocol == "ec2":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
                f"<Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>")
        return request_id, "text/xml;charset=UTF-8", body.encode()
    body = (f"<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>")
    return request_id, "text/xml", body.encode()


def fault_response(call: Call, fault: str, method: str, message: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
    """(status, headers, body) of a faulted call, in the error format of its service."""
    code, default_message = _ERRORS[(call.protocol, fault)]
    kind = "Receiver" if fault == ERRORS else "Sender"
    request_id, content_type, body = render_error(call.protocol, code, message or default_message, kind)
    headers = [("x-amzn-RequestId", request_id)]
    if call.protocol == "s3":
        headers.append(("x-amz-request-id", request_id))
    if method == "HEAD":
        body = b""
    headers += [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    return _STATUS[fault], headers, body
