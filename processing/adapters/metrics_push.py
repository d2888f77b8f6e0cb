"""Push a run's samples to a Prometheus Pushgateway: the standard pattern for batch jobs.

Monitoring never blocks a run: a Pushgateway that is down or refuses the push is a warning.

A Pushgateway behind basic auth takes the user and password from its URL
(``https://user:secret@push.example.com``, percent-encoded) or the user from the URL and the
password from a file (``https://user@push.example.com`` and ``password_file``, e.g. a mounted
Kubernetes Secret). The credentials are sent as an ``Authorization`` header, never in the URL, and
every log line shows the URL as ``https://***@push.example.com``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from processing.logic.run_metrics import JOB, Sample
from processing.spec.settings.types import Secret, reveal

log = logging.getLogger(__name__)


def _with_scheme(gateway: str) -> str:
    """``gateway`` with ``http://`` if it has no scheme, as prometheus_client reads it."""
    return gateway if "://" in gateway else f"http://{gateway}"


def _userinfo(gateway: str) -> tuple[str, str]:
    """(URL with its scheme, the credentials before its host's "@" or ""), by plain string work
    that cannot fail, so that the credentials of a URL too malformed to parse are hidden too."""
    url = _with_scheme(gateway)
    rest = url.partition("://")[2].split("?", 1)[0].split("#", 1)[0]
    return url, rest.rsplit("@", 1)[0] if "@" in rest else ""


def redact_gateway(gateway: str) -> str:
    """``https://user:secret@push.example.com`` -> ``https://***@push.example.com``."""
    url, userinfo = _userinfo(gateway)
    return url.replace(f"{userinfo}@", "***@", 1) if userinfo else url


def scrub(text: str, gateway: str, password: str | None = None) -> str:
    """``text`` (an error's message) with ``gateway`` redacted and no trace of its password,
    nor of ``password`` (one from a file), should it quote them."""
    url, userinfo = _userinfo(gateway)
    shown = redact_gateway(gateway)
    for raw in (gateway, url):
        text = text.replace(raw, shown)
    secret = userinfo.partition(":")[2]
    for hidden in (userinfo, secret, unquote(secret), password, quote(password or "", safe="")):
        if hidden:
            text = text.replace(hidden, "***")
    return text


@dataclass(frozen=True)
class Gateway:
    """Where to push, and as whom: the URL without its credentials, and the basic auth."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, gateway: str, password_file: str | None = None) -> Gateway:
        """Split the credentials off ``gateway``; the password from ``password_file`` (its
        trailing newline dropped) if given. ValueError or OSError (never naming the password) if
        they do not make sense together or the file cannot be read."""
        parts = urlsplit(_with_scheme(gateway))
        userinfo, at, host = parts.netloc.rpartition("@")
        if "@" in parts.path + parts.query + parts.fragment:
            raise ValueError(
                "the URL's user name or password holds '/', '?' or '#': percent-encode them"
            )
        user = password = None
        if at:
            name, colon, secret = userinfo.partition(":")
            user, password = unquote(name), (unquote(secret) if colon else None)
        if password_file:
            if not user:
                raise ValueError(
                    "a Pushgateway password file needs the user name in the URL: "
                    "https://USER@push.example.com"
                )
            if password is not None:
                raise ValueError("the password is both in the URL and in the password file")
            password = Path(password_file).read_text().rstrip("\r\n")
        return cls(urlunsplit(parts._replace(netloc=host)), user, password)

    def handler(self) -> Callable[..., Callable[[], None]]:
        """The prometheus_client handler that sends the basic auth (if any)."""
        from prometheus_client.exposition import basic_auth_handler, default_handler

        if self.user is None and self.password is None:
            return default_handler
        user, password = self.user or "", self.password or ""

        def handle(
            url: str, method: str, timeout: float | None, headers: list, data: bytes
        ) -> Callable[[], None]:
            return basic_auth_handler(url, method, timeout, headers, data, user, password)

        return handle


def push(
    gateway: str | Secret[str] | None,
    date: dt.date,
    samples: Sequence[Sample],
    *,
    replace: bool,
    password_file: str | None = None,
) -> bool:
    """Send ``samples`` to the group ``{job, date}``: replacing it (a success) or adding to it
    (a failure). True if the Pushgateway took them.

    Basic auth comes from the URL's user and password, or its user and ``password_file``."""
    if not gateway or not samples:
        return False
    gateway = reveal(gateway)
    from prometheus_client import CollectorRegistry, Gauge
    from prometheus_client.exposition import push_to_gateway, pushadd_to_gateway

    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for s in samples:
        gauge = gauges.get(s.name)
        if gauge is None:
            gauge = Gauge(s.name, s.help, sorted(s.labels), registry=registry)
            gauges[s.name] = gauge
        (gauge.labels(**s.labels) if s.labels else gauge).set(s.value)
    send = push_to_gateway if replace else pushadd_to_gateway
    shown = redact_gateway(gateway)
    target = None
    try:
        target = Gateway.parse(gateway, password_file)
        send(
            target.url,
            job=JOB,
            registry=registry,
            grouping_key={"date": date.isoformat()},
            timeout=10,
            handler=target.handler(),
        )
    except Exception as e:  # down, refused, misconfigured: the run itself is what matters
        log.warning(
            "could not push the run's metrics to the Pushgateway %s: %s",
            shown,
            scrub(str(e), gateway, target.password if target else None),
        )
        return False
    log.info("pushed %d metrics for %s to %s", len(samples), date, shown)
    return True
