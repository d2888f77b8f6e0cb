"""A local S3 for tests, benchmarks and demos: moto's S3 server, over real HTTP, with faults.

s3fs, boto3, pyarrow and DuckDB talk to it exactly as to Amazon S3 (signed requests, multipart
uploads, conditional writes, server-side copies, encryption headers), so nothing of ours is
mocked. Needs the ``emulator`` extra (moto, flask). Credentials are not checked: any key works.

Faults, for retry tests, all answered before the request reaches moto (so, like S3's own 503s,
the failed request changed nothing and a retry is safe), and counted by S3 operation:

- ``every``: every ``every``-th request that matches is answered with an S3 error (503 SlowDown
  and 500 InternalError, alternately). With ``after_serving`` the request is served first and its
  answer replaced by the error: the write was applied, the client cannot know (a connection lost
  on the way back), and its retry meets the new state.
- :meth:`S3Faults.slow_down_above`: S3's request rate limit. S3 serves about 3,500
  PUT/COPY/POST/DELETE and 5,500 GET/HEAD requests a second per prefix and answers the rest with
  503 SlowDown; here a token bucket (one for the whole server, as if everything were one prefix)
  serves ``rate`` requests a second, with bursts of ``burst``, and refuses the others.
- :meth:`S3Faults.slow_down_for`: a throttling storm, every matching request refused for a while
  (starting after so many requests of an operation, e.g. the 100th CopyObject), as S3 does while it
  repartitions a prefix that suddenly gets more requests than it can take.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

_ERRORS = {
    503: ("Service Unavailable", "SlowDown", "Please reduce your request rate."),
    500: ("Internal Server Error", "InternalError", "We encountered an internal error."),
}
SLOW_DOWN = 503
#: The end of the credential scope of a request signed (SigV4) for S3.
_SIGNED_FOR_S3 = "/s3/aws4_request"

ALL_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE"})
#: What S3's higher rate limit counts: PUT, COPY (a PUT), POST (DeleteObjects, multipart), DELETE.
WRITE_METHODS = frozenset({"PUT", "POST", "DELETE"})


_ON_BUCKET = {"GET": "ListObjects", "PUT": "CreateBucket", "HEAD": "HeadBucket",
              "DELETE": "DeleteBucket"}  # fmt: skip
_ON_OBJECT = {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject",
              "DELETE": "DeleteObject", "POST": "PostObject"}  # fmt: skip
_POSTS = (("delete", "DeleteObjects"), ("uploads", "CreateMultipartUpload"),
          ("uploadId", "CompleteMultipartUpload"))  # fmt: skip


def operation_of(method: str, path: str, query: str = "", copy_source: bool = False) -> str:
    """The S3 operation of a path-style request (``/bucket/key?query``), e.g. ``CopyObject``
    (the HTTP method for what it does not tell apart)."""
    params = parse_qs(query, keep_blank_values=True)
    name = (_ON_OBJECT if "/" in path.strip("/") else _ON_BUCKET).get(method, method)
    if method == "POST":
        name = next((n for key, n in _POSTS if key in params), name)
    elif name == "ListObjects" and params.get("list-type") == ["2"]:
        name = "ListObjectsV2"
    elif name == "PutObject" and "partNumber" in params:
        name = "UploadPartCopy" if copy_source else "UploadPart"
    elif name == "PutObject" and copy_source:
        name = "CopyObject"
    elif name == "DeleteObject" and "uploadId" in params:
        name = "AbortMultipartUpload"
    return name


@dataclass
class _Match:
    """Which requests a fault mode applies to: of these HTTP methods and S3 operations (any, if
    none are named), on a path that contains ``path_contains``."""

    methods: frozenset[str] = ALL_METHODS
    operations: frozenset[str] = frozenset()
    path_contains: str = ""

    def __call__(self, method: str, path: str, operation: str) -> bool:
        return (
            method in self.methods
            and (not self.operations or operation in self.operations)
            and self.path_contains in path
        )


@dataclass
class _RateLimit:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` kept; a request takes one."""

    rate: float
    burst: float
    match: _Match
    tokens: float
    stamp: float

    def admits(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class _Storm:
    """Every matching request refused for ``seconds``, once ``after`` requests of
    ``operation`` (any, if empty) were seen (:meth:`refuses` counts every request)."""

    seconds: float
    after: int
    operation: str
    match: _Match
    seen: int = 0
    began: float | None = None

    def refuses(self, operation: str, now: float) -> bool:
        if self.began is None:
            if not self.operation or operation == self.operation:
                self.seen += 1
                if self.seen > self.after:
                    self.began = now
            if self.began is None:
                return False
        return now - self.began < self.seconds


@dataclass
class S3Faults:
    """Which requests fail. ``methods`` limits ``every`` to some HTTP methods (e.g. ``{"PUT"}``).

    ``injected`` counts the errors answered, ``injected_by`` the same by S3 operation, and
    ``requests`` every request the server got (served or not), by operation."""

    every: int = 0
    statuses: tuple[int, ...] = (503, 500)
    methods: frozenset[str] = ALL_METHODS
    path_contains: str = ""
    after_serving: bool = False
    limit: int = 0  # at most this many failures of ``every`` (0: no limit)
    clock: Callable[[], float] = time.monotonic
    seen: int = field(default=0, init=False)
    injected: int = field(default=0, init=False)
    injected_by: Counter[str] = field(default_factory=Counter, init=False)
    requests: Counter[str] = field(default_factory=Counter, init=False)
    _failed_every: int = field(default=0, init=False, repr=False)
    _rate_limit: _RateLimit | None = field(default=None, init=False, repr=False)
    _storm: _Storm | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def reset(self) -> None:
        """No faults, nothing counted."""
        with self._lock:
            self.every, self.path_contains, self.after_serving, self.limit = 0, "", False, 0
            self.statuses = (503, 500)
            self.methods = ALL_METHODS
            self._rate_limit = self._storm = None
            self.seen = self.injected = self._failed_every = 0
            self.injected_by, self.requests = Counter(), Counter()

    def slow_down_above(
        self,
        rate: float,
        *,
        burst: float | None = None,
        methods: Iterable[str] = WRITE_METHODS,
        operations: Iterable[str] = (),
        path_contains: str = "",
    ) -> None:
        """Serve at most ``rate`` matching requests a second (``burst`` at once, ``rate`` by
        default) and answer the others 503 SlowDown, as S3 does above its request rate limit.
        ``rate=0``: no limit."""
        if rate < 0 or (burst is not None and burst < 1):
            raise ValueError(f"a rate limit needs rate >= 0 and burst >= 1, not {rate}, {burst}")
        with self._lock:
            if not rate:
                self._rate_limit = None
                return
            size = max(1.0, rate if burst is None else burst)
            match = _Match(frozenset(methods), frozenset(operations), path_contains)
            self._rate_limit = _RateLimit(rate, size, match, tokens=size, stamp=self.clock())

    def slow_down_for(
        self,
        seconds: float = math.inf,
        *,
        after: int = 0,
        of: str = "",
        methods: Iterable[str] = ALL_METHODS,
        operations: Iterable[str] = (),
        path_contains: str = "",
    ) -> None:
        """Answer every matching request 503 SlowDown for ``seconds`` (until :meth:`reset` or
        :meth:`lift`, by default), once ``after`` requests of the S3 operation ``of`` (of any
        kind, if empty; matching or not) were seen: ``slow_down_for(4, after=100,
        of="CopyObject")`` begins with the 101st CopyObject."""
        with self._lock:
            match = _Match(frozenset(methods), frozenset(operations), path_contains)
            self._storm = _Storm(seconds, after, of, match)

    def lift(self) -> None:
        """End the rate limit and the storm (``every`` stays)."""
        with self._lock:
            self._rate_limit = self._storm = None

    def next_failure(self, method: str, path: str = "", operation: str = "") -> int | None:
        """The status to answer this request with, or None to serve it."""
        operation = operation or method
        with self._lock:
            self.requests[operation] += 1
            status = self._throttled(method, path, operation) or self._every(method, path)
            if status is not None:
                self.injected += 1
                self.injected_by[operation] += 1
            return status

    def _throttled(self, method: str, path: str, operation: str) -> int | None:
        now = self.clock()
        storm, limit = self._storm, self._rate_limit
        if (
            storm is not None
            and storm.refuses(operation, now)
            and storm.match(method, path, operation)
        ):
            return SLOW_DOWN
        if limit is not None and limit.match(method, path, operation) and not limit.admits(now):
            return SLOW_DOWN
        return None

    def _every(self, method: str, path: str) -> int | None:
        if not self.every or method not in self.methods or self.path_contains not in path:
            return None
        if self.limit and self._failed_every >= self.limit:
            return None
        self.seen += 1
        if self.seen % self.every:
            return None
        self._failed_every += 1
        return self.statuses[(self._failed_every - 1) % len(self.statuses)]


class _FaultInjector:
    """WSGI middleware in front of moto."""

    def __init__(self, app: Callable[..., Iterable[bytes]], faults: S3Faults) -> None:
        self.app = app
        self.faults = faults

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        copy_source = bool(environ.get("HTTP_X_AMZ_COPY_SOURCE"))
        operation = operation_of(method, path, environ.get("QUERY_STRING", ""), copy_source)
        status = self.faults.next_failure(method, path, operation)
        if status is None:
            return self.app(environ, start_response)
        if self.faults.after_serving and status != SLOW_DOWN:
            served = self.app(environ, lambda *args, **kwargs: None)
            for _ in served:  # let moto apply it
                pass
        else:
            _drain(environ)
        reason, code, message = _ERRORS[status]
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>emulated</RequestId></Error>"
        ).encode()
        start_response(
            f"{status} {reason}",
            [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
        )
        return [body]


def _drain(environ: dict[str, Any]) -> None:
    """Read the request body we are refusing, so the kept-alive connection stays in step."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        while stream.read(1 << 16):
            pass
        return
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    while remaining > 0:
        chunk = stream.read(min(remaining, 1 << 16))
        if not chunk:
            break
        remaining -= len(chunk)


class S3Server:
    """moto's S3 server on ``host:port`` (0: any free port), in a thread of this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        class S3First(DomainDispatcherApplication):
            """moto's dispatcher, which finds the service of each request (a few milliseconds,
            under one lock): a request signed for S3 goes straight to S3."""

            def get_application(self, environ: dict[str, Any]) -> Any:
                if _SIGNED_FOR_S3 in environ.get("HTTP_AUTHORIZATION", ""):
                    with self.lock:
                        if "s3" not in self.app_instances:
                            self.app_instances["s3"] = self.create_app("s3")
                    return self.app_instances["s3"]
                return super().get_application(environ)

        self.faults = S3Faults()
        app = _FaultInjector(S3First(create_backend_app), self.faults)
        self._server = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def put_objects(self, bucket: str, objects: Mapping[str, bytes]) -> None:
        """Write objects straight into the store, without HTTP: for tests that need thousands of
        objects in place (each PUT through the server costs milliseconds). The bucket must exist;
        ``objects`` maps keys to bytes. (moto keeps one store per process: every server of the
        process sees them.)"""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        store = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for key, data in objects.items():
            store.put_object(bucket, key, data)

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        self._thread.start()
        return self.endpoint_url

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server.server_close()

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
