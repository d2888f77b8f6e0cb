"""BigQuery through the Storage Read API: one read session per run, one Dask task per stream.

``plan`` creates the session on the client (column projection, the date window as a row
restriction, Arrow with LZ4/ZSTD buffer compression, a pinned snapshot time) and checks its
schema before any worker starts. Each piece is a stream name plus plain settings; the task makes
its own client and consumes the stream message by message, ``batch_rows`` at a time, so memory
does not grow with the stream. The client resumes a stream after a transient error at the offset
the server's ``row_count`` advanced it to; the retry deadline bounds how long a dead endpoint is
retried. Errors become one line each: configuration (not found, permission, credentials),
transient (unavailable, quota, deadline) or an expired session (re-planned at the same snapshot).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import logging
import queue
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from processing.adapters.sources.arrow_files import check_input_schema, conform
from processing.adapters.sources.base import Piece, SourcePlan
from processing.logic import bigquery_plan as bq
from processing.spec import schema as s
from processing.spec.errors import (
    ConfigError,
    InputError,
    PipelineError,
    SessionExpiredError,
    TransientError,
)

log = logging.getLogger(__name__)

#: How long the watermark read (the DAG's wait_for_day) retries before its error is transient.
_WATERMARK_DEADLINE_SECONDS = 120.0


@dataclass(frozen=True)
class BigQueryOptions:
    """How to reach BigQuery and shape the read. Nothing here is secret: credentials come from
    Application Default Credentials, on the client and on every worker."""

    endpoint: str | None = None  # HOST:PORT of an emulator (plaintext gRPC); None: Google
    billing_project: str | None = None  # None: the table's project
    time_column: str = "timestamp"
    compression: str = "LZ4_FRAME"
    max_streams: int | None = None
    slots: int = 2  # task threads of the cluster: streams are sized to it
    deadline_seconds: float = 600.0
    snapshot_time: dt.datetime | None = None  # None: now, pinned at plan time
    usd_per_tib: float = 1.1

    def __post_init__(self) -> None:
        problem = bq.check_options(
            self.compression, self.time_column, self.deadline_seconds, self.max_streams
        )
        if problem:
            raise ConfigError(f"bad setting: {problem}")


@dataclass(frozen=True)
class _Connection:
    """What a task needs to make its own client (picklable, no credentials)."""

    endpoint: str | None
    deadline_seconds: float
    table: str  # for messages


# --- the client ---------------------------------------------------------------------------------
#: Unlimited message sizes (a response can exceed gRPC's 4 MiB default), and keepalive pings so a
#: half-open connection is noticed in about a minute instead of hanging the task.
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


def make_client(endpoint: str | None) -> Any:
    """A BigQueryRead client: Google's endpoint with ADC, or an emulator over plaintext gRPC.

    ``client_options.api_endpoint`` always uses TLS, so an emulator gets a transport over an
    insecure channel (the client refuses credentials and a transport together).
    """
    from google.cloud import bigquery_storage_v1
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
        BigQueryReadGrpcTransport,
    )

    if endpoint:
        import grpc

        channel = grpc.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)
        return bigquery_storage_v1.BigQueryReadClient(
            transport=BigQueryReadGrpcTransport(channel=channel)
        )
    import google.auth.exceptions

    try:
        channel = BigQueryReadGrpcTransport.create_channel(options=_CHANNEL_OPTIONS)
        return bigquery_storage_v1.BigQueryReadClient(
            transport=BigQueryReadGrpcTransport(channel=channel)
        )
    except google.auth.exceptions.DefaultCredentialsError as e:
        raise ConfigError(
            f"no usable Google credentials ({e}); set GOOGLE_APPLICATION_CREDENTIALS to a "
            "service-account key file, use workload identity, or point --bq-endpoint at an "
            "emulator"
        ) from None


def _retry(deadline_seconds: float) -> Any:
    """Retry transient errors with backoff, for at most the deadline (the default is 24 h)."""
    from google.api_core import exceptions as gx
    from google.api_core.retry import Retry, if_exception_type

    return Retry(
        predicate=if_exception_type(gx.ServiceUnavailable, gx.DeadlineExceeded),
        initial=0.2,
        maximum=10.0,
        multiplier=2.0,
        timeout=deadline_seconds,
    )


def translate(  # noqa: PLR0911 (one return per kind of error)
    error: Exception, what: str, deadline_seconds: float
) -> PipelineError:
    """A Google API error as one line with the exit code that says whether to retry."""
    from google.api_core import exceptions as gx

    message = getattr(error, "message", None) or str(error)
    if isinstance(error, gx.NotFound):
        return ConfigError(f"{what}: not found ({message}); check the project, dataset and table")
    if isinstance(error, gx.PermissionDenied | gx.Unauthenticated | gx.Forbidden):
        return ConfigError(
            f"{what}: access denied ({message}); the credentials need "
            "roles/bigquery.readSessionUser on the billing project and "
            "roles/bigquery.dataViewer on the table"
        )
    if isinstance(error, gx.InternalServerError) and (
        "metadata from plugin" in message or "RefreshError" in message
    ):  # credentials that fail when used (a revoked or malformed key) surface as INTERNAL
        return ConfigError(
            f"{what}: the credentials were refused ({message}); check "
            "GOOGLE_APPLICATION_CREDENTIALS or the workload identity"
        )
    if isinstance(error, gx.FailedPrecondition) and "expired" in message.lower():
        return SessionExpiredError(f"{what}: the read session expired ({message})")
    if isinstance(error, gx.InvalidArgument):
        return ConfigError(f"{what}: refused as invalid ({message})")
    if isinstance(error, gx.ResourceExhausted):
        return TransientError(f"{what}: quota or rate limit exceeded ({message}); retry later")
    if isinstance(error, gx.RetryError):
        return TransientError(
            f"{what}: BigQuery did not answer within {deadline_seconds:g} s "
            f"(bq_deadline_seconds): {error.cause or message}"
        )
    if isinstance(error, gx.GoogleAPICallError):
        return TransientError(f"{what}: {type(error).__name__}: {message}")
    return TransientError(f"{what}: {type(error).__name__}: {error}")


# --- plan ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BigQuerySource:
    url: str
    options: BigQueryOptions = field(default_factory=BigQueryOptions)

    def at(self, snapshot: dt.datetime) -> BigQuerySource:
        """The same source, pinned to ``snapshot`` (to plan again after a session expired)."""
        return BigQuerySource(self.url, dataclasses.replace(self.options, snapshot_time=snapshot))

    @property
    def table(self) -> bq.TableRef:
        try:
            return bq.parse_table_url(self.url)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def plan(self, date: dt.date, piece_rows: int) -> SourcePlan:
        """One read session for ``date``; its streams are the pieces (``piece_rows`` unused:
        the service sizes the streams)."""
        from google.api_core import exceptions as gx
        from google.cloud.bigquery_storage_v1 import types

        o = self.options
        table = self.table
        # pinned here and recorded, so a replay (or a plan after expiry) reads the same data; a
        # second back so that a server whose clock lags ours does not see a time in its future
        snapshot = o.snapshot_time or dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        most, least = bq.stream_counts(o.slots, o.max_streams)
        codec = types.ArrowSerializationOptions.CompressionCodec
        compression = {
            "LZ4_FRAME": codec.LZ4_FRAME,
            "ZSTD": codec.ZSTD,
            "NONE": codec.COMPRESSION_UNSPECIFIED,
        }[o.compression]
        restriction = bq.row_restriction(o.time_column, date)
        session = types.ReadSession(
            table=table.path,
            data_format=types.DataFormat.ARROW,
            read_options=types.ReadSession.TableReadOptions(
                selected_fields=list(s.SELECTED_FIELDS),
                row_restriction=restriction,
                arrow_serialization_options=types.ArrowSerializationOptions(
                    buffer_compression=compression
                ),
            ),
            table_modifiers=types.ReadSession.TableModifiers(snapshot_time=snapshot),
        )
        billing = o.billing_project or table.project
        client = make_client(o.endpoint)
        what = f"read session on {table}"
        request = types.CreateReadSessionRequest(
            parent=f"projects/{billing}",
            read_session=session,
            max_stream_count=most,
            preferred_min_stream_count=least,
        )
        try:
            created = client.create_read_session(
                request=request,
                retry=_retry(o.deadline_seconds),
                timeout=min(60.0, o.deadline_seconds),
            )
        except gx.InvalidArgument as e:
            raise _drift(e, table, o.time_column) from None
        except (gx.GoogleAPICallError, gx.RetryError) as e:
            raise translate(e, what, o.deadline_seconds) from None
        finally:
            _close(client)
        schema_bytes = bytes(created.arrow_schema.serialized_schema)
        schema = pa.ipc.read_schema(pa.py_buffer(schema_bytes))
        check_input_schema(schema, f"table {table}")
        streams = [st.name for st in created.streams]
        rows, size = int(created.estimated_row_count), int(created.estimated_total_bytes_scanned)
        state = {
            "session": created.name,
            "streams": streams,
            "schema": base64.b64encode(schema_bytes).decode(),
            "estimated_rows": rows,
            "estimated_bytes": size,
        }
        snapshot_used = created.table_modifiers.snapshot_time or snapshot
        details = {
            "table": str(table),
            "session": created.name,
            "snapshot_time": _iso(snapshot_used),
            "row_restriction": restriction,
            "compression": o.compression,
            "streams": len(streams),
            "max_stream_count": most,
            "estimated_rows": rows,
            "estimated_bytes": size,
            "estimated_cost_usd": round(bq.read_cost(size, o.usd_per_tib), 6),
            "billing_project": billing,
            "endpoint": o.endpoint or "bigquerystorage.googleapis.com",
        }
        log.info(
            "read session %s: %d streams, about %d rows, %d bytes, snapshot %s",
            created.name,
            len(streams),
            rows,
            size,
            details["snapshot_time"],
        )
        return self.resume(state, details)

    def has_rows_from(self, moment: dt.datetime) -> bool:
        """Whether the table has a row in the day after ``moment`` (a watermark: its events
        have landed that late). Reads the time column only, and stops at the first row."""
        from google.api_core import exceptions as gx
        from google.cloud.bigquery_storage_v1 import types

        o, table = self.options, self.table
        restriction = bq.rows_from(o.time_column, moment)
        session = types.ReadSession(
            table=table.path,
            data_format=types.DataFormat.ARROW,
            read_options=types.ReadSession.TableReadOptions(
                selected_fields=[o.time_column], row_restriction=restriction
            ),
        )
        request = types.CreateReadSessionRequest(
            parent=f"projects/{o.billing_project or table.project}",
            read_session=session,
            max_stream_count=1,
        )
        client = make_client(o.endpoint)
        what = f"watermark read on {table}"
        # a look is short (the sensor's task has minutes): an outage is a transient error
        # early enough to be retried, not a task timeout
        deadline = min(o.deadline_seconds, _WATERMARK_DEADLINE_SECONDS)
        try:
            created = client.create_read_session(
                request=request, retry=_retry(deadline), timeout=min(60.0, deadline)
            )
            for stream in created.streams:  # the service may cut no stream for no rows
                for response in client.read_rows(stream.name, timeout=deadline):
                    if response.row_count > 0:
                        return True
            return False
        except gx.InvalidArgument as e:
            raise _drift(e, table, o.time_column) from None
        except (gx.GoogleAPICallError, gx.RetryError) as e:
            raise translate(e, what, deadline) from None
        finally:
            _close(client)

    def resume(self, state: Mapping[str, Any], details: Mapping[str, Any]) -> SourcePlan:
        """The plan of a session created earlier (``state`` is a plan's): the same streams, so
        a retried ``process`` keeps the pieces an earlier attempt completed, without a session
        of its own. A session that has expired since fails its reads with
        :class:`SessionExpiredError` (planned again at the same snapshot)."""
        table = self.table
        try:
            streams = [str(name) for name in state["streams"]]
            schema_bytes = base64.b64decode(state["schema"])
            rows, size = int(state["estimated_rows"]), int(state["estimated_bytes"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"the kept plan of the read session is unreadable ({e})") from None
        connection = _Connection(self.options.endpoint, self.options.deadline_seconds, str(table))
        pieces = tuple(
            Piece(
                id=f"{table.table}#stream{i}",
                index=i,
                reader=read_stream,
                args={"stream": name, "schema": schema_bytes, "connection": connection},
                estimated_rows=rows // len(streams) if streams else 0,
                estimated_bytes=size // len(streams) if streams else 0,
                key=name,
            )
            for i, name in enumerate(streams)
        )
        return SourcePlan(source=self.url, pieces=pieces, details=details, state=state)


def _drift(error: Exception, table: bq.TableRef, time_column: str) -> PipelineError:
    """A selected field the table lacks, or a time column that is not a TIMESTAMP: name it
    (the plan fails before any worker starts). Any other refusal is a configuration error."""
    message = getattr(error, "message", None) or str(error)
    if "No matching signature" in message:  # the window compares the column with TIMESTAMPs
        return InputError(
            f"table {table}: column {time_column!r} cannot be filtered as a TIMESTAMP "
            f"({message}); set --bq-time-column to a TIMESTAMP column"
        )
    lowered = message.lower()
    if any(word in lowered for word in ("not found", "unrecognized", "does not exist")):
        for name in (*s.SELECTED_FIELDS, time_column):
            if re.search(rf"\b{re.escape(name)}\b", message):
                return InputError(f"table {table}: field {name!r} is missing ({message})")
    return ConfigError(f"read session on {table}: refused as invalid ({message})")


def _iso(moment: Any) -> str:
    if isinstance(moment, dt.datetime):
        return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return str(moment)


def _close(client: Any) -> None:
    try:
        client.transport.close()
    except Exception:  # closing is best effort
        log.debug("closing the BigQuery client failed", exc_info=True)


# --- read ---------------------------------------------------------------------------------------
def read_stream(
    *, stream: str, schema: bytes, connection: _Connection, batch_rows: int
) -> Iterator[pa.Table]:
    """The rows of one stream, ``batch_rows`` at a time, in the BigQuery shape."""
    from google.api_core import exceptions as gx

    client = make_client(connection.endpoint)
    what = f"stream {stream.rsplit('/', 1)[-1]} of {connection.table}"
    arrow_schema = pa.ipc.read_schema(pa.py_buffer(schema))  # the session's: streams may be empty
    deadline = connection.deadline_seconds
    pending: list[pa.RecordBatch] = []
    buffered = 0
    failure: PipelineError | None = None
    try:
        for batch in _received(client, stream, arrow_schema, deadline):
            pending.append(batch)
            buffered += batch.num_rows
            if buffered >= batch_rows:
                yield _batch(pending)
                pending, buffered = [], 0
        if pending:
            yield _batch(pending)
    except _StalledError:
        failure = TransientError(
            f"{what}: no data for {deadline:g} s (bq_deadline_seconds); the stream was abandoned"
        )
    except (gx.GoogleAPICallError, gx.RetryError) as e:
        failure = translate(e, what, deadline)
    finally:
        _close(client)  # also ends a receiving thread still waiting on the server
    if failure is not None:
        # raised outside the handler, so it carries no chained gRPC error: Dask pickles an
        # error with its chain to send it to the client, and gRPC's errors hold locks
        raise failure


class _StalledError(Exception):
    """No message within the deadline."""


_AHEAD = 8  # messages received ahead of the transform: about 8 MiB


def _received(
    client: Any, stream: str, schema: pa.Schema, deadline: float
) -> Iterator[pa.RecordBatch]:
    """The stream's record batches, received and decoded by a thread a few messages ahead.

    The client's stream reconnects after a transient error at the offset the messages'
    ``row_count`` advanced it to. Waiting here for a message longer than ``deadline`` raises
    ``_StalledError`` (a server gone quiet, a connection that died without a word), instead of
    waiting for the client's 24-hour call timeout: the call can block before its first message,
    where the client offers nothing to cancel. Time the consumer spends on a batch does not
    count.
    """
    received: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=_AHEAD)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                received.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def receive() -> None:
        try:
            for message in client.read_rows(stream, retry=_retry(deadline)):
                serialized = message.arrow_record_batch.serialized_record_batch
                if message.row_count and serialized:
                    batch = pa.ipc.read_record_batch(pa.py_buffer(serialized), schema)
                    if not put(("batch", batch)):
                        return
            put(("end", None))
        except BaseException as e:  # handed to the consumer, which raises it
            put(("error", e))

    threading.Thread(target=receive, name="bq-stream", daemon=True).start()
    try:
        while True:
            try:
                kind, value = received.get(timeout=deadline)
            except queue.Empty:
                raise _StalledError() from None
            if kind == "batch":
                yield value
            elif kind == "end":
                return
            else:
                raise value
    finally:
        stop.set()


def _batch(messages: list[pa.RecordBatch]) -> pa.Table:
    """The messages of one batch as one contiguous table: the transform then runs each kernel
    once, not once per message (a million rows come in about a hundred messages)."""
    return conform(pa.Table.from_batches(messages).combine_chunks())
