"""A local S3 for tests, benchmarks and demos: moto's S3 server, over real HTTP, with faults.

s3fs, boto3, pyarrow and DuckDB talk to it exactly as to Amazon S3 (signed requests, multipart
uploads, conditional writes, server-side copies, encryption headers), so nothing of ours is
mocked. Needs the ``emulator`` extra (moto, flask). Credentials are not checked: any key works.

Faults, for retry tests: every ``every``-th request that matches is answered with an S3 error
(503 SlowDown and 500 InternalError, alternately) before it reaches moto, so, like S3's own
503s, the failed request changed nothing and a retry is safe. With ``after_serving`` the request
is served first and its answer replaced by the error: the write was applied, the client cannot
know (a connection lost on the way back), and its retry meets the new state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

_ERRORS = {
    503: ("Service Unavailable", "SlowDown", "Please reduce your request rate."),
    500: ("Internal Server Error", "InternalError", "We encountered an internal error."),
}


@dataclass
class S3Faults:
    """Which requests fail. ``methods`` limits it to some HTTP methods (e.g. ``{"PUT"}``)."""

    every: int = 0
    statuses: tuple[int, ...] = (503, 500)
    methods: frozenset[str] = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE"})
    path_contains: str = ""
    after_serving: bool = False
    limit: int = 0  # at most this many failures (0: no limit)
    seen: int = field(default=0, init=False)
    injected: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def reset(self) -> None:
        """No faults."""
        self.every, self.path_contains, self.after_serving, self.limit = 0, "", False, 0
        self.statuses = (503, 500)
        self.methods = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE"})

    def next_failure(self, method: str, path: str = "") -> int | None:
        """The status to answer this request with, or None to serve it."""
        if not self.every or method not in self.methods or self.path_contains not in path:
            return None
        with self._lock:
            if self.limit and self.injected >= self.limit:
                return None
            self.seen += 1
            if self.seen % self.every:
                return None
            self.injected += 1
            return self.statuses[(self.injected - 1) % len(self.statuses)]


class _FaultInjector:
    """WSGI middleware in front of moto."""

    def __init__(self, app: Callable[..., Iterable[bytes]], faults: S3Faults) -> None:
        self.app = app
        self.faults = faults

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        status = self.faults.next_failure(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
        if status is None:
            return self.app(environ, start_response)
        if self.faults.after_serving:
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

        self.faults = S3Faults()
        app = _FaultInjector(DomainDispatcherApplication(create_backend_app), self.faults)
        self._server = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

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
