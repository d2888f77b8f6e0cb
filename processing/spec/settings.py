"""One frozen settings object, built once at the entry point from ``PROCESSING_*`` variables and
command-line flags (flags win). Library code receives it; it never reads the environment itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from processing.spec.bigquery import check_options
from processing.spec.errors import ConfigError

ENV_PREFIX = "PROCESSING_"
#: Server-side encryption modes S3 applies to an object on write.
S3_SSE = ("AES256", "aws:kms")
#: Where a run made of separate tasks gets its Dask cluster.
CLUSTERS = ("local", "kubernetes")
#: Bounds of a lock's time to live: refreshed every quarter of it, so a second is the least a
#: store's round trips leave room for; a day the most a dead run may keep a date.
MIN_LOCK_TTL_SECONDS, MAX_LOCK_TTL_SECONDS = 1.0, 86_400.0
#: Bounds of the output files' target size: below a MiB a file holds less than a useful row group
#: (readers then pay a request per few rows); above 2 GiB one task's merge holds too much at once
#: and readers split files anyway.
MIN_TARGET_FILE_BYTES, MAX_TARGET_FILE_BYTES = 2**20, 2 * 2**30
#: The list prices of the capacity and cost estimate (processing.logic.capacity.Prices).
PRICES = (
    "bq_usd_per_tib",
    "egress_usd_per_gib",
    "s3_usd_per_1000_put",
    "s3_usd_per_1000_get",
    "worker_usd_per_core_hour",
)


def parse_size(name: str, text: str) -> int:
    from dask.utils import parse_bytes

    try:
        size = parse_bytes(text)
    except ValueError:
        size = 0
    if size <= 0:
        raise ConfigError(f"bad setting: {name} {text!r} is not a size like 4GiB")
    return size


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError("expected a date as YYYY-MM-DD") from None


def parse_instant(text: str) -> dt.datetime:
    """An ISO 8601 time with its zone (``2023-10-24T06:00:00Z``), as UTC."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("expected an ISO 8601 time such as 2023-10-24T06:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError("the time needs its zone, e.g. 2023-10-24T06:00:00Z")
    return moment.astimezone(dt.UTC)


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true or false")


def parse_json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


def _opt(
    parse: Any = str, required: bool = False, help: str = "", secret: bool = False
) -> dict[str, Any]:
    return {"parse": parse, "required": required, "help": help, "secret": secret}


@dataclass(frozen=True)
class Settings:
    """Everything a run needs. Field ``x`` comes from ``--x`` or ``PROCESSING_X``."""

    date: dt.date = field(metadata=_opt(parse_date, True, "the UTC day to process (YYYY-MM-DD)"))
    source: str = field(metadata=_opt(str, True, "where events come from (path or URL)"))
    dest: str = field(metadata=_opt(str, True, "the data lake root (path or fsspec URL)"))
    run_id: str | None = field(
        default=None,
        metadata=_opt(help="names the run's staging and manifest (default: generated)"),
    )
    workers: int | None = field(
        default=None,
        metadata=_opt(
            int, help="LocalCluster workers (default: 1, or one per core with processes)"
        ),
    )
    threads_per_worker: int | None = field(
        default=None,
        metadata=_opt(int, help="threads per worker (default: cores, or 1 with processes)"),
    )
    processes: bool = field(
        default=False, metadata=_opt(parse_bool, help="LocalCluster workers as processes")
    )
    scheduler: str | None = field(
        default=None, metadata=_opt(help="address of an existing Dask scheduler")
    )
    memory_limit: str = field(
        default="auto", metadata=_opt(help="memory limit per LocalCluster worker, e.g. 4GiB")
    )
    piece_rows: int = field(default=1_000_000, metadata=_opt(int, help="rows per Dask task"))
    batch_rows: int = field(
        default=1_000_000, metadata=_opt(int, help="rows per source batch (validated at once)")
    )
    row_group_rows: int = field(
        default=1_048_576, metadata=_opt(int, help="rows per Parquet row group (at most)")
    )
    max_file_rows: int = field(
        default=8_388_608, metadata=_opt(int, help="rows per Parquet file before the next one")
    )
    max_buffered_rows: int = field(
        default=1_500_000, metadata=_opt(int, help="per task, across partitions")
    )
    target_file_size: str = field(
        default="256MiB",
        metadata=_opt(
            help="size of each output file (zstd, as written), whatever the number of pieces: "
            "the pieces' small files of a partition are merged up to it (1MiB to 2GiB)"
        ),
    )
    min_copied_row_group_rows: int = field(
        default=16_384,
        metadata=_opt(
            int,
            help="merging small files copies their row groups as they are (no decoding) when "
            "none has fewer rows than this; else it rewrites them (0: always rewrite)",
        ),
    )
    zstd_level: int = field(default=1, metadata=_opt(int, help="zstd compression level, 1-22"))
    max_rejected_fraction: float = field(
        default=0.2, metadata=_opt(float, help="above it the run fails its audit")
    )
    max_event_names: int = field(
        default=1000,
        metadata=_opt(
            int, help="distinct valid event names a day may have; more refuses the run (exit 3)"
        ),
    )
    allow_empty: bool = field(
        default=False, metadata=_opt(parse_bool, help="publish a day of 0 rows")
    )
    task_retries: int = field(
        default=2,
        metadata=_opt(
            int, help="retries of a task whose worker died, and of a piece after a transient error"
        ),
    )
    storage_options: Mapping[str, Any] = field(
        default_factory=dict,
        metadata=_opt(parse_json_object, help="fsspec options, as JSON", secret=True),
    )
    log_level: str = field(default="INFO", metadata=_opt(help="DEBUG, INFO, WARNING or ERROR"))
    pushgateway: str | None = field(
        default=None,
        metadata=_opt(
            help="Prometheus Pushgateway URL for the run's metrics (none: no push); "
            "basic auth as https://USER:PASSWORD@host",
            secret=True,
        ),
    )
    pushgateway_password_file: str | None = field(
        default=None,
        metadata=_opt(
            help="file holding the Pushgateway's basic-auth password (the user goes in the URL: "
            "https://USER@host)"
        ),
    )
    performance_report: bool = field(
        default=True,
        metadata=_opt(parse_bool, help="keep the Dask performance report beside the manifest"),
    )
    # --- notices to people from the Airflow DAG (failure, and success after a failure) ---
    notify_slack_webhook: str | None = field(
        default=None,
        metadata=_opt(help="Slack incoming-webhook URL for the DAG's notices", secret=True),
    )
    notify_email_to: str | None = field(
        default=None, metadata=_opt(help="comma-separated addresses for the DAG's notices")
    )
    smtp_host: str | None = field(default=None, metadata=_opt(help="SMTP server for e-mails"))
    smtp_port: int = field(default=587, metadata=_opt(int, help="SMTP port"))
    smtp_from: str = field(
        default="events-lake@localhost", metadata=_opt(help="sender of the e-mails")
    )
    smtp_user: str | None = field(default=None, metadata=_opt(help="SMTP login, if any"))
    smtp_password: str | None = field(
        default=None, metadata=_opt(help="SMTP password, if any", secret=True)
    )
    smtp_starttls: bool = field(
        default=True, metadata=_opt(parse_bool, help="upgrade the SMTP connection to TLS")
    )
    lock_ttl_seconds: float = field(
        default=600.0,
        metadata=_opt(float, help="a run's lock on its date expires this long after its refresh"),
    )
    # --- the Dask cluster of a run made of separate tasks (Airflow) ---
    cluster: str = field(
        default="local",
        metadata=_opt(help="local (a LocalCluster per run) or kubernetes (a DaskCluster per run)"),
    )
    cluster_spec: str | None = field(
        default=None, metadata=_opt(help="DaskCluster YAML a per-run cluster is made from")
    )
    cluster_namespace: str | None = field(
        default=None, metadata=_opt(help="namespace of the per-run DaskCluster (default: own)")
    )
    cluster_image: str | None = field(
        default=None, metadata=_opt(help="image of the per-run cluster (default: the spec's)")
    )
    cluster_min_workers: int = field(
        default=1, metadata=_opt(int, help="fewest workers of the per-run cluster (adaptive)")
    )
    cluster_max_workers: int = field(
        default=20, metadata=_opt(int, help="most workers of the per-run cluster (adaptive)")
    )
    cluster_bytes_per_worker: str = field(
        default="4GiB", metadata=_opt(help="estimated input per worker, to size the cluster")
    )
    # --- S3 and S3-compatible stores (credentials: the standard AWS chain, never settings) ---
    s3_endpoint_url: str | None = field(
        default=None,
        metadata=_opt(help="S3-compatible endpoint (default: AWS, or AWS_ENDPOINT_URL_S3)"),
    )
    s3_region: str | None = field(
        default=None, metadata=_opt(help="the bucket's region (default: the AWS chain's)")
    )
    s3_sse: str | None = field(
        default=None, metadata=_opt(help="server-side encryption of every object: AES256, aws:kms")
    )
    s3_kms_key_id: str | None = field(
        default=None, metadata=_opt(help="KMS key id or ARN for aws:kms (default: the S3 key)")
    )
    s3_max_attempts: int = field(
        default=10,
        metadata=_opt(
            int, help="attempts per S3 request on 503 SlowDown and 5xx (botocore, then s3fs)"
        ),
    )
    # --- BigQuery sources (bigquery://PROJECT.DATASET.TABLE) ---
    bq_endpoint: str | None = field(
        default=None,
        metadata=_opt(help="HOST:PORT of a BigQuery Storage emulator (plaintext gRPC)"),
    )
    billing_project: str | None = field(
        default=None, metadata=_opt(help="project billed for the read (default: the table's)")
    )
    snapshot_time: dt.datetime | None = field(
        default=None,
        metadata=_opt(parse_instant, help="read the table as of this time (replays a run)"),
    )
    bq_time_column: str = field(
        default="timestamp",
        metadata=_opt(help="column the date window filters on, e.g. _PARTITIONTIME"),
    )
    bq_compression: str = field(
        default="LZ4_FRAME", metadata=_opt(help="Arrow buffer compression: LZ4_FRAME, ZSTD, NONE")
    )
    bq_max_streams: int | None = field(
        default=None, metadata=_opt(int, help="streams at most (default: 4 per task thread)")
    )
    bq_deadline_seconds: float = field(
        default=600.0, metadata=_opt(float, help="give up on an unreachable BigQuery after this")
    )
    # --- list prices for the capacity and cost estimate (plan, capacity), checked 2026-12 ---
    bq_usd_per_tib: float = field(
        default=1.1,
        metadata=_opt(
            float,
            help="BigQuery Storage Read API, on demand, USD per TiB read "
            "(cloud.google.com/bigquery/pricing#data_extraction_pricing)",
        ),
    )
    egress_usd_per_gib: float = field(
        default=0.12,
        metadata=_opt(
            float,
            help="Google Cloud internet egress, Premium Tier from North America, first TiB of "
            "the month, USD per GiB on the wire (cloud.google.com/vpc/network-pricing)",
        ),
    )
    s3_usd_per_1000_put: float = field(
        default=0.005,
        metadata=_opt(
            float,
            help="S3 Standard PUT, COPY, POST, LIST requests, USD per 1,000 "
            "(aws.amazon.com/s3/pricing)",
        ),
    )
    s3_usd_per_1000_get: float = field(
        default=0.0004,
        metadata=_opt(
            float,
            help="S3 Standard GET and other requests, USD per 1,000 (aws.amazon.com/s3/pricing)",
        ),
    )
    worker_usd_per_core_hour: float = field(
        default=0.048,
        metadata=_opt(
            float,
            help="a worker core for an hour, USD: EC2 m6i.large on demand, us-east-1, 2 vCPUs "
            "(aws.amazon.com/ec2/pricing/on-demand)",
        ),
    )

    def __post_init__(self) -> None:
        checks = [
            (bool(self.source.strip()), "source must not be empty"),
            (bool(self.dest.strip()), "dest must not be empty"),
            (self.workers is None or self.workers >= 1, "workers must be at least 1"),
            (
                self.threads_per_worker is None or self.threads_per_worker >= 1,
                "threads_per_worker must be at least 1",
            ),
            (self.piece_rows >= 1, "piece_rows must be at least 1"),
            (self.batch_rows >= 1, "batch_rows must be at least 1"),
            (self.row_group_rows >= 1, "row_group_rows must be at least 1"),
            (self.min_copied_row_group_rows >= 0, "min_copied_row_group_rows must be >= 0"),
            (self.max_buffered_rows >= 1, "max_buffered_rows must be at least 1"),
            (self.max_file_rows >= self.row_group_rows, "max_file_rows must be >= row_group_rows"),
            (1 <= self.zstd_level <= 22, "zstd_level must be between 1 and 22"),
            (0.0 <= self.max_rejected_fraction <= 1.0, "max_rejected_fraction must be in [0, 1]"),
            (self.task_retries >= 0, "task_retries must be >= 0"),
            (self.max_event_names >= 1, "max_event_names must be at least 1"),
            (
                math.isfinite(self.lock_ttl_seconds)
                and MIN_LOCK_TTL_SECONDS <= self.lock_ttl_seconds <= MAX_LOCK_TTL_SECONDS,
                f"lock_ttl_seconds must be between {MIN_LOCK_TTL_SECONDS:g} and "
                f"{MAX_LOCK_TTL_SECONDS:g} (seconds; got {self.lock_ttl_seconds!r})",
            ),
            (
                self.s3_endpoint_url is None
                or self.s3_endpoint_url.startswith(("http://", "https://")),
                "s3_endpoint_url must be a URL such as https://s3.example.com:9000",
            ),
            (
                self.s3_sse in (None, *S3_SSE),
                f"s3_sse must be one of {', '.join(S3_SSE)} (got {self.s3_sse!r})",
            ),
            (
                self.s3_kms_key_id is None or self.s3_sse == "aws:kms",
                "s3_kms_key_id needs --s3-sse aws:kms",
            ),
            (self.s3_max_attempts >= 1, "s3_max_attempts must be at least 1"),
            (self.cluster in CLUSTERS, f"cluster must be one of {', '.join(CLUSTERS)}"),
            (
                self.cluster != "kubernetes" or bool(self.cluster_spec),
                "cluster kubernetes needs --cluster-spec (a DaskCluster YAML file)",
            ),
            (self.cluster_min_workers >= 0, "cluster_min_workers must be >= 0"),
            (
                self.cluster_max_workers >= max(self.cluster_min_workers, 1),
                "cluster_max_workers must be at least 1 and >= cluster_min_workers",
            ),
        ]
        for name in PRICES:
            price = getattr(self, name)
            checks.append(
                (
                    math.isfinite(price) and price >= 0,
                    f"{name} must be a price >= 0 in USD (got {price!r}): "
                    f"--{name.replace('_', '-')} or {ENV_PREFIX}{name.upper()}",
                )
            )
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"bad setting: {message}")
        problem = check_options(
            self.bq_compression, self.bq_time_column, self.bq_deadline_seconds, self.bq_max_streams
        )
        if problem:
            raise ConfigError(f"bad setting: {problem}")
        target = parse_size("target_file_size", self.target_file_size)
        if not MIN_TARGET_FILE_BYTES <= target <= MAX_TARGET_FILE_BYTES:
            raise ConfigError(
                f"bad setting: target_file_size {self.target_file_size!r} must be between 1MiB "
                "(about one row group) and 2GiB: 128MiB to 512MiB suits Athena, Trino and Spark"
            )
        if self.cluster == "kubernetes":  # only a per-run cluster is sized (and dask is heavy)
            parse_size("cluster_bytes_per_worker", self.cluster_bytes_per_worker)
        if self.memory_limit != "auto":
            from dask.utils import parse_bytes

            try:
                if parse_bytes(self.memory_limit) <= 0:
                    raise ValueError("not positive")
            except ValueError:
                raise ConfigError(
                    f"bad setting: memory_limit {self.memory_limit!r} is not a size like 4GiB"
                ) from None

    @property
    def target_file_bytes(self) -> int:
        return parse_size("target_file_size", self.target_file_size)

    def __repr__(self) -> str:
        shown = {
            f.name: ("***" if f.metadata.get("secret") and value else value)
            for f in fields(self)
            for value in [getattr(self, f.name)]
        }
        return f"Settings({shown})"

    @classmethod
    def load(cls, env: Mapping[str, str], **flags: Any) -> Settings:
        """Build from an environment mapping and flags (``None`` flags are ignored).

        Raises ConfigError naming the flag and the variable of a missing or unparseable value.
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            variable = ENV_PREFIX + f.name.upper()
            parse = f.metadata["parse"]
            flag = flags.get(f.name)
            if flag is not None:
                values[f.name] = flag
            elif env.get(variable) not in (None, ""):
                try:
                    values[f.name] = parse(env[variable])
                except ValueError as e:
                    shown = "(value hidden)" if f.metadata.get("secret") else repr(env[variable])
                    raise ConfigError(f"{variable}={shown} is not valid: {e}") from None
            elif f.metadata["required"]:
                raise ConfigError(
                    f"missing required setting {f.name!r}: pass --{f.name.replace('_', '-')} "
                    f"or set {variable}"
                )
        unknown = set(flags) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown settings: {sorted(unknown)}")
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def setting_help() -> list[tuple[str, str, str]]:
    """(flag, variable, help) for every setting, for the README and ``--help``."""
    return [
        (
            "--" + f.name.replace("_", "-"),
            ENV_PREFIX + f.name.upper(),
            f.metadata["help"],
        )
        for f in fields(Settings)
    ]
