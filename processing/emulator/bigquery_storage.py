"""A local BigQuery Storage Read API: ``google.cloud.bigquery.storage.v1.BigQueryRead`` over gRPC.

It serves local files as tables (see :mod:`processing.emulator.tables`) to the real
``google-cloud-bigquery-storage`` client, as the service does:

- ``CreateReadSession`` honours ``selected_fields``, the row restrictions the source writes (any
  other is refused with INVALID_ARGUMENT, as bad SQL would be), the snapshot time, the requested
  stream counts and the Arrow buffer compression (LZ4_FRAME, ZSTD), and estimates rows and bytes.
  An unknown table is NOT_FOUND. Sessions expire (6 hours, or ``session_ttl_seconds``).
- ``ReadRows`` streams Arrow record batches of about 1 MiB, the schema on the first message and
  ``row_count`` on every one, from the requested ``offset``: what the client resumes with.
- ``SplitReadStream`` answers that a stream cannot be split (allowed by the API).

Faults for tests and demos (:class:`Faults`, changeable while it runs): abort each stream once
with UNAVAILABLE after N rows, RESOURCE_EXHAUSTED on the first N session requests, a delay per
message, short-lived or already expired sessions, no access, INTERNAL on chosen streams (which the
client does not retry: the piece fails). Rows sent are counted by stream.

Run it with ``python -m processing emulator bigquery --table PROJECT.DATASET.TABLE=PATH``, or
in-process with ``with Emulator({...}) as address:``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pyarrow as pa
from google.cloud.bigquery_storage_v1 import types
from google.protobuf import timestamp_pb2

from processing.emulator.tables import (
    MatchCounter,
    Table,
    TableError,
    Unit,
    balance,
    batches,
    window_mask,
)
from processing.logic import bigquery_plan as bq

log = logging.getLogger(__name__)

SERVICE = "google.cloud.bigquery.storage.v1.BigQueryRead"
SESSION_LIFETIME = dt.timedelta(hours=6)
MESSAGE_BYTES = 1 << 20
DEFAULT_MAX_STREAMS = 1000
_CODECS = {
    types.ArrowSerializationOptions.CompressionCodec.LZ4_FRAME: "lz4",
    types.ArrowSerializationOptions.CompressionCodec.ZSTD: "zstd",
}


@dataclass
class Faults:
    unavailable_after_rows: int | None = None  # each stream aborts once, after this many rows
    resource_exhausted: int = 0  # the next N CreateReadSession calls are refused
    permission_denied: bool = False  # every CreateReadSession is refused: no access
    delay_seconds: float = 0.0  # before each ReadRows message
    session_ttl_seconds: float | None = None  # sessions expire sooner than 6 hours
    expire_sessions: int = 0  # the next N sessions expire after expire_after_seconds
    expire_after_seconds: float = 0.0
    #: stream index -> how many more reads of it fail with INTERNAL (which the client does not
    #: retry) after ``internal_after_rows`` rows; -1: every read
    internal_errors: dict[int, int] = field(default_factory=dict)
    internal_after_rows: int = 0


@dataclass
class _Session:
    name: str
    table: Table
    columns: list[str]  # selected, in the table's order
    window: bq.Window | None
    compression: str | None
    streams: list[list[Unit]]
    counts: list[list[int]]  # rows of each unit inside the window
    schema: pa.Schema
    expires: dt.datetime
    rows: int
    aborted: set[int] = field(default_factory=set)  # streams already failed once


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BigQueryReadServicer:
    """The RPC implementations; :class:`Emulator` puts them behind a gRPC server."""

    def __init__(
        self,
        tables: Mapping[str, str],
        faults: Faults | None = None,
        min_rows_per_stream: int = 100_000,
        cache_responses: bool = False,
    ) -> None:
        self.tables = {name: Table(name, path) for name, path in tables.items()}
        # unit read -> its serialized messages, when responses are cached (see Emulator)
        self.cache: dict[tuple[Any, ...], list[tuple[bytes, int, int]]] | None = (
            {} if cache_responses else None
        )
        self.faults = faults or Faults()
        self.min_rows_per_stream = max(1, min_rows_per_stream)
        self.sessions: dict[str, _Session] = {}
        self.calls: dict[str, int] = {"CreateReadSession": 0, "ReadRows": 0}
        #: rows sent, by stream name (what a test of retries and resumption counts)
        self.rows_sent: Counter[str] = Counter()
        self._lock = threading.Lock()

    # --- CreateReadSession ----------------------------------------------------------------------
    def create_read_session(
        self, request: types.CreateReadSessionRequest, context: grpc.ServicerContext
    ) -> types.ReadSession:
        self.calls["CreateReadSession"] += 1
        if self.faults.permission_denied:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "Access Denied: User does not have bigquery.readsessions.create permission "
                "(emulated)",
            )
        with self._lock:
            if self.faults.resource_exhausted > 0:
                self.faults.resource_exhausted -= 1
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "Exceeded rate limits: too many concurrent read sessions (emulated)",
                )
        try:
            return self._create(request)
        except TableError as e:
            context.abort(getattr(grpc.StatusCode, e.code), e.message)
            raise  # unreachable: abort raises

    def _create(self, request: types.CreateReadSessionRequest) -> types.ReadSession:
        wanted = request.read_session
        try:
            ref = bq.parse_table_path(wanted.table)
        except ValueError as e:
            raise TableError("INVALID_ARGUMENT", str(e)) from None
        table = self.tables.get(str(ref))
        if table is None:
            raise TableError(
                "NOT_FOUND", f"Not found: Table {ref.project}:{ref.dataset}.{ref.table}"
            )
        if wanted.data_format != types.DataFormat.ARROW:
            raise TableError("INVALID_ARGUMENT", "the emulator serves the ARROW format only")
        snapshot = self._snapshot(wanted)
        files = table.files(snapshot)
        schema = table.schema(files)
        options = wanted.read_options
        columns = self._columns(schema, list(options.selected_fields))
        try:
            window = bq.parse_row_restriction(options.row_restriction)
        except ValueError as e:
            raise TableError("INVALID_ARGUMENT", f"Syntax error: {e}") from None
        if window is not None and window.column not in schema.names:
            raise TableError("INVALID_ARGUMENT", f"Unrecognized name: {window.column}")
        units = table.units(files)
        matching = MatchCounter(table, window)
        total = sum(matching(unit) for unit in units)
        assigned = balance(units, self._stream_count(request, total), matching)
        if assigned:  # as the service, a new session cuts the table into other streams
            turn = len(self.sessions) % len(assigned)
            assigned = assigned[turn:] + assigned[:turn]
        counts = [[matching(unit) for unit in stream] for stream in assigned]
        projected = pa.schema([schema.field(c) for c in columns])
        name = f"projects/{request.parent.split('/')[-1]}/locations/us/sessions/{uuid.uuid4().hex}"
        ttl = self.faults.session_ttl_seconds
        lifetime = SESSION_LIFETIME if ttl is None else dt.timedelta(seconds=ttl)
        with self._lock:
            if self.faults.expire_sessions > 0:
                self.faults.expire_sessions -= 1
                lifetime = dt.timedelta(seconds=self.faults.expire_after_seconds)
        session = _Session(
            name=name,
            table=table,
            columns=columns,
            window=window,
            compression=_CODECS.get(options.arrow_serialization_options.buffer_compression),
            streams=assigned,
            counts=counts,
            schema=projected,
            expires=_now() + lifetime,
            rows=total,
        )
        self.sessions[name] = session
        per_row = _bytes_per_row(projected)
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(snapshot)
        return types.ReadSession(
            name=name,
            expire_time=session.expires,
            data_format=types.DataFormat.ARROW,
            arrow_schema=types.ArrowSchema(serialized_schema=projected.serialize().to_pybytes()),
            table=wanted.table,
            table_modifiers=types.ReadSession.TableModifiers(snapshot_time=snapshot),
            read_options=options,
            streams=[types.ReadStream(name=f"{name}/streams/{i}") for i in range(len(assigned))],
            estimated_total_bytes_scanned=total * per_row,
            estimated_row_count=total,
        )

    def _snapshot(self, wanted: types.ReadSession) -> dt.datetime:
        now = _now()
        requested = wanted.table_modifiers.snapshot_time
        if not requested or requested.timestamp() == 0:
            return now
        snapshot = requested.astimezone(dt.UTC)
        if snapshot > now + dt.timedelta(seconds=1):
            raise TableError(
                "INVALID_ARGUMENT",
                f"Invalid snapshot time {snapshot.isoformat()}: it is in the future",
            )
        if snapshot < now - dt.timedelta(days=7):
            raise TableError(
                "INVALID_ARGUMENT",
                f"Invalid snapshot time {snapshot.isoformat()}: before the time travel window",
            )
        return snapshot

    @staticmethod
    def _columns(schema: pa.Schema, selected: list[str]) -> list[str]:
        if not selected:
            return list(schema.names)
        tops = {field.split(".")[0] for field in selected}
        for name in tops:
            if name not in schema.names:
                raise TableError(
                    "INVALID_ARGUMENT", f"Requested field {name} not found in the table schema"
                )
        return [n for n in schema.names if n in tops]  # the table's order, as the service

    def _stream_count(self, request: types.CreateReadSessionRequest, rows: int) -> int:
        if rows == 0:
            return 0
        most = request.max_stream_count or DEFAULT_MAX_STREAMS
        least = request.preferred_min_stream_count or 1
        by_size = -(-rows // self.min_rows_per_stream)
        return max(1, min(most, max(least, by_size)))

    # --- ReadRows -------------------------------------------------------------------------------
    def read_rows(
        self, request: types.ReadRowsRequest, context: grpc.ServicerContext
    ) -> Iterator[Any]:  # raw ReadRowsResponse protobufs
        self.calls["ReadRows"] += 1
        session_name, _, index_text = request.read_stream.rpartition("/streams/")
        session = self.sessions.get(session_name)
        if session is None or not index_text.isdigit() or int(index_text) >= len(session.streams):
            context.abort(grpc.StatusCode.NOT_FOUND, f"Stream {request.read_stream} not found")
        assert session is not None
        if _now() >= session.expires:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"The read session {session_name} has expired",
            )
        index = int(index_text)
        with self._lock:
            failures = self.faults.internal_errors.get(index, 0)
            if failures > 0:
                self.faults.internal_errors[index] = failures - 1
        failing_after = self.faults.internal_after_rows if failures else None
        try:
            sent = 0
            for response in self._stream(session, index, request.offset, context):
                if failing_after is not None and sent >= failing_after:
                    context.abort(grpc.StatusCode.INTERNAL, "Internal error (emulated)")
                sent += response.row_count
                with self._lock:
                    self.rows_sent[request.read_stream] += response.row_count
                yield response
            if failing_after is not None:  # fewer rows than that: fails at the end
                context.abort(grpc.StatusCode.INTERNAL, "Internal error (emulated)")
        except TableError as e:
            context.abort(getattr(grpc.StatusCode, e.code), e.message)

    def _stream(
        self, session: _Session, index: int, offset: int, context: grpc.ServicerContext
    ) -> Iterator[Any]:  # raw ReadRowsResponse protobufs
        units = session.streams[index]
        total = sum(session.counts[index])
        if offset > total:
            raise TableError("OUT_OF_RANGE", f"offset {offset} is past the stream's end ({total})")
        options = pa.ipc.IpcWriteOptions(compression=session.compression)
        schema_bytes = session.schema.serialize().to_pybytes()
        abort_after = self.faults.unavailable_after_rows
        response_type = types.ReadRowsResponse.pb()  # raw protobuf: proto-plus costs per message
        position, sent, first = 0, 0, True
        for unit, rows in zip(units, session.counts[index], strict=True):
            if position + rows <= offset:  # wholly before the offset: not even read
                position += rows
                continue
            skip = max(0, offset - position)
            position += rows
            for message, count, size in self._unit_messages(session, unit, skip, options):
                if _now() >= session.expires:  # a session can expire while a stream is read
                    context.abort(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"The read session {session.name} has expired",
                    )
                if abort_after is not None and sent >= abort_after and index not in session.aborted:
                    session.aborted.add(index)
                    context.abort(
                        grpc.StatusCode.UNAVAILABLE, "Connection reset by peer (emulated)"
                    )
                if self.faults.delay_seconds:
                    time.sleep(self.faults.delay_seconds)
                response = response_type(row_count=count, uncompressed_byte_size=size)
                response.arrow_record_batch.serialized_record_batch = message
                response.stats.progress.at_response_start = (offset + sent) / total
                sent += count
                response.stats.progress.at_response_end = (offset + sent) / total
                if first:
                    response.arrow_schema.serialized_schema = schema_bytes
                    first = False
                yield response

    def _unit_messages(
        self, session: _Session, unit: Unit, skip: int, options: pa.ipc.IpcWriteOptions
    ) -> Iterator[tuple[bytes, int, int]]:
        if self.cache is None or skip:
            yield from self._serialize_unit(session, unit, skip, options)
            return
        key = (unit, tuple(session.columns), session.window, session.compression)
        if key not in self.cache:
            self.cache[key] = list(self._serialize_unit(session, unit, 0, options))
        yield from self.cache[key]

    def _serialize_unit(
        self, session: _Session, unit: Unit, skip: int, options: pa.ipc.IpcWriteOptions
    ) -> Iterator[tuple[bytes, int, int]]:
        """(IPC record batch message, rows, uncompressed bytes) for the unit's rows in the
        window, after the first ``skip``; the batches of a unit go through one IPC writer."""
        needed = list(session.columns)
        window = session.window
        if window is not None and window.column not in needed:
            needed.append(window.column)
        table = session.table.read(unit, needed)
        mask = window_mask(table, window)
        if mask is not None:
            table = table.filter(mask)
        table = table.select(session.columns).slice(skip)
        parts = list(batches(table, MESSAGE_BYTES))
        if not parts:
            return
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
            for part in parts:
                writer.write_batch(part)
        messages = pa.ipc.MessageReader.open_stream(sink.getvalue())
        messages.read_next_message()  # the schema
        for part in parts:
            yield messages.read_next_message().serialize().to_pybytes(), part.num_rows, part.nbytes

    # --- SplitReadStream ------------------------------------------------------------------------
    def split_read_stream(
        self, request: types.SplitReadStreamRequest, context: grpc.ServicerContext
    ) -> types.SplitReadStreamResponse:
        return types.SplitReadStreamResponse()  # "cannot be split", which the API allows


def _bytes_per_row(schema: pa.Schema) -> int:
    """A plausible uncompressed size per row for the session's estimate."""
    sizes = {"timestamp": 8, "string": 16, "date32": 4}
    total = 0
    for f in schema:
        if pa.types.is_struct(f.type):
            total += 16 * f.type.num_fields
        else:
            total += sizes.get(str(f.type).split("[")[0], 16)
    return total


def _handlers(servicer: BigQueryReadServicer) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "CreateReadSession": grpc.unary_unary_rpc_method_handler(
                servicer.create_read_session,
                request_deserializer=types.CreateReadSessionRequest.deserialize,
                response_serializer=types.ReadSession.serialize,
            ),
            "ReadRows": grpc.unary_stream_rpc_method_handler(
                servicer.read_rows,
                request_deserializer=types.ReadRowsRequest.deserialize,
                response_serializer=lambda message: message.SerializeToString(),
            ),
            "SplitReadStream": grpc.unary_unary_rpc_method_handler(
                servicer.split_read_stream,
                request_deserializer=types.SplitReadStreamRequest.deserialize,
                response_serializer=types.SplitReadStreamResponse.serialize,
            ),
        },
    )


class Emulator:
    """The servicer behind a gRPC server on ``host:port`` (0: any free port)."""

    def __init__(
        self,
        tables: Mapping[str, str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        min_rows_per_stream: int = 100_000,
        threads: int = 16,
        cache_responses: bool = False,
    ) -> None:
        """``cache_responses`` keeps the serialized messages of every stream read in memory
        and serves later reads of the same data from them: the emulator's own CPU (reading,
        filtering, compressing) then stops competing with the client for the machine's cores,
        as BigQuery's servers do not run on the client's machine. For benchmarks."""
        self.servicer = BigQueryReadServicer(
            tables, faults, min_rows_per_stream, cache_responses=cache_responses
        )
        self.host = host
        self._server: Any = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bq-emulator"),
            options=[("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)],
        )
        self._server.add_generic_rpc_handlers((_handlers(self.servicer),))
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if not self.port:
            raise OSError(f"cannot listen on {host}:{port}")

    @property
    def faults(self) -> Faults:
        return self.servicer.faults

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> str:
        self._server.start()
        log.info("BigQuery Storage emulator listening on %s", self.address)
        return self.address

    def stop(self, grace: float | None = 0.5) -> None:
        self._server.stop(grace).wait()

    def wait(self) -> None:
        self._server.wait_for_termination()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
