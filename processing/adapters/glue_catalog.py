"""The AWS Glue Data Catalog: the lake's tables, and each published date's partitions.

After a date is published (or rolled back), :meth:`GlueCatalog.register` makes the catalog
describe exactly that version: the database and the two tables created if missing (updated if
their definition differs), the date's partitions created or updated from the published
manifest, and those the version no longer has deleted. Safe to repeat: a second call changes
nothing (every partition is then "unchanged"). What to change is planned by
:mod:`processing.logic.glue_catalog`; this module only talks to Glue.

The client is botocore's (what boto3 wraps): credentials, region and endpoint from the AWS chain
(``AWS_REGION``, ``AWS_ENDPOINT_URL_GLUE`` / ``AWS_ENDPOINT_URL``, IRSA, profiles), standard
retries on throttling and 5xx. Its errors become the pipeline's here: access denied or a request
Glue refuses is a :class:`ConfigError` saying what to fix; throttling past the retries, 5xx and
connection failures are a :class:`TransientError`.

IAM: ``glue:GetDatabase``, ``glue:CreateDatabase``, ``glue:GetTable``, ``glue:CreateTable``,
``glue:UpdateTable``, ``glue:GetPartitions``, ``glue:BatchCreatePartition``,
``glue:BatchUpdatePartition``, ``glue:BatchDeletePartition`` on the catalog, the database and
its tables.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from processing.logic.glue_catalog import (
    CREATE_BATCH,
    DELETE_BATCH,
    UPDATE_BATCH,
    TableRegistration,
    TableSpec,
    batches,
    date_expression,
    lake_location,
    lake_tables,
    partition_inputs,
    plan_partitions,
    same_location,
    table_differs,
)
from processing.spec.errors import ConfigError, PipelineError, TransientError

log = logging.getLogger(__name__)

#: What the catalog's role needs (said by every refusal).
PERMISSIONS = (
    "glue:GetDatabase",
    "glue:CreateDatabase",
    "glue:GetTable",
    "glue:CreateTable",
    "glue:UpdateTable",
    "glue:GetPartitions",
    "glue:BatchCreatePartition",
    "glue:BatchUpdatePartition",
    "glue:BatchDeletePartition",
)
#: Error codes that say the credentials or their rights are wrong.
_REFUSED = {
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "MissingAuthenticationTokenException",
    "IncompleteSignature",
}
#: Error codes a retry may cure.
_TRANSIENT = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ConcurrentModificationException",
    "InternalServiceException",
    "InternalFailure",
    "OperationTimeoutException",
    "ResourceNotReadyException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
}
#: botocore's errors that say the credential chain found nothing usable.
_NO_CREDENTIALS = {
    "NoCredentialsError",
    "PartialCredentialsError",
    "CredentialRetrievalError",
    "UnauthorizedSSOTokenError",
    "ProfileNotFound",
}
#: Attempts per Glue request on throttling and 5xx (botocore's standard retries, with backoff).
MAX_ATTEMPTS = 10


def _code(error: BaseException) -> tuple[str, int]:
    response = getattr(error, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return code, status


def classify(code: str, status: int, message: str, database: str) -> PipelineError:
    """The pipeline's error for a Glue error code (and HTTP status, 0 when not known)."""
    where = f"the Glue Data Catalog (database {database})"
    if code in _REFUSED or status == 403:
        return ConfigError(
            f"{where} refuses access ({code}: {message}): check the AWS credentials and region, "
            f"and that the role may {', '.join(PERMISSIONS)} on the database and its tables"
        )
    if code in _TRANSIENT or status >= 500 or status == 429:
        return TransientError(f"{where} failed ({code or status}: {message}); retry")
    if code == "ResourceNumberLimitExceededException":
        return ConfigError(
            f"{where}: a Glue quota is reached ({message}): raise it (Service Quotas) or "
            "remove what is no longer used"
        )
    return ConfigError(
        f"{where} refuses the request ({code or status}: {message}): check --glue-database and "
        "--glue-table-prefix (a table of that name defined by something else?)"
    )


def translate(error: BaseException, database: str) -> PipelineError | None:
    """The pipeline's error for what botocore raised, or None if it is not botocore's."""
    if isinstance(error, PipelineError):
        return error
    if type(error).__name__ == "ClientError":
        code, status = _code(error)
        message = str(getattr(error, "response", {}).get("Error", {}).get("Message", error))
        return classify(code, status, message, database)
    return _configuration(error) or _connection(error)


def _configuration(error: BaseException) -> ConfigError | None:
    """What botocore refuses before sending anything: the chain found no credentials or no
    region, or a parameter is invalid."""
    name = type(error).__name__
    if name in _NO_CREDENTIALS:
        return ConfigError(
            f"the Glue Data Catalog: no usable AWS credentials ({error}): set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a web identity "
            "(IRSA, Pod Identity)"
        )
    if name == "NoRegionError":
        return ConfigError(
            "the Glue Data Catalog: no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a "
            "profile's region) to the catalog's region"
        )
    if name in {"ParamValidationError", "InvalidRegionError", "InvalidEndpointConfigurationError"}:
        return ConfigError(f"the Glue Data Catalog refuses the request before sending it: {error}")
    return None


def _connection(error: BaseException) -> TransientError | None:
    """A connection refused, reset or timed out (after botocore's retries)."""
    try:
        from botocore.exceptions import BotoCoreError
    except ImportError:  # pragma: no cover - botocore comes with s3fs
        return None
    if isinstance(error, BotoCoreError | OSError | TimeoutError):
        return TransientError(
            f"cannot reach the Glue Data Catalog ({type(error).__name__}: {error}); retry"
        )
    return None


@contextlib.contextmanager
def glue_errors(database: str) -> Iterator[None]:
    """Raise Glue's failures inside the block as the pipeline's errors (chained)."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as e:
        translated = translate(e, database)
        if translated is None:
            raise
        raise translated from e


def new_client() -> Any:
    """A Glue client from the AWS chain (region, credentials, ``AWS_ENDPOINT_URL_GLUE``)."""
    from botocore.config import Config
    from botocore.session import get_session

    config = Config(
        retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
    )
    try:
        return get_session().create_client("glue", config=config)
    except ValueError as e:  # an endpoint that is not a URL
        raise ConfigError(
            f"the Glue Data Catalog: {e} (check AWS_ENDPOINT_URL_GLUE / AWS_ENDPOINT_URL)"
        ) from e


class GlueCatalog:
    """The lake's tables in one Glue database (names ``<table_prefix>events`` and
    ``<table_prefix>rejected``). ``client``: a Glue client (default: made on first use)."""

    def __init__(
        self,
        database: str,
        table_prefix: str = "",
        *,
        client: Any = None,
        client_factory: Callable[[], Any] = new_client,
    ) -> None:
        self.database = database
        self.table_prefix = table_prefix
        self._client = client
        self._client_factory = client_factory
        self._database_ready = False
        self._ready: dict[str, str | None] = {}  # table name -> what was done to it

    @property
    def client(self) -> Any:
        if self._client is None:
            with glue_errors(self.database):
                self._client = self._client_factory()
        return self._client

    def register(
        self, dest: str, date: dt.date, manifest: Mapping[str, Any]
    ) -> tuple[TableRegistration, ...]:
        """Make the catalog describe ``manifest``, the published version of ``date`` of the lake
        at ``dest``: one :class:`TableRegistration` per table."""
        try:
            tables = lake_tables(dest, self.table_prefix)
        except ValueError as e:
            raise ConfigError(f"--glue-database: {e}") from e
        with glue_errors(self.database):
            if not self._database_ready:
                self._ensure_database(lake_location(dest))
                self._database_ready = True
            changes = [self._ensure_table(table) for table in tables]  # both, before partitions
            done = tuple(
                self._register_date(table, date, manifest, change)
                for table, change in zip(tables, changes, strict=True)
            )
        for registration in done:
            log.info("%s", registration.line())
        return done

    # the database and the tables

    def _ensure_database(self, lake: str) -> None:
        try:
            self.client.get_database(Name=self.database)
            return
        except Exception as e:
            if _code(e)[0] != "EntityNotFoundException":
                raise
        try:
            self.client.create_database(
                DatabaseInput={
                    "Name": self.database,
                    "Description": f"events-lake: the tables of {lake}",
                }
            )
            log.info("created the Glue database %s", self.database)
        except Exception as e:
            if _code(e)[0] != "AlreadyExistsException":  # another run made it meanwhile
                raise

    def _ensure_table(self, table: TableSpec) -> str | None:
        """Create the table, or update it if its definition differs; returns what was done
        (once per catalog object: a later date of the same command does not ask again)."""
        if table.name in self._ready:
            return None
        wanted = table.table_input()
        found = self._table(table.name)
        change: str | None = None
        if found is None:
            try:
                self.client.create_table(DatabaseName=self.database, TableInput=wanted)
                change = "created"
            except Exception as e:
                if _code(e)[0] != "AlreadyExistsException":
                    raise
                found = self._table(table.name)  # another run made it meanwhile
        if found is not None:
            if not same_location(found, wanted):
                location = (found.get("StorageDescriptor") or {}).get("Location")
                raise ConfigError(
                    f"the Glue table {self.database}.{table.name} is another lake's (its "
                    f"location is {location}, this lake's {table.location}): give this lake a "
                    "--glue-table-prefix or a --glue-database of its own"
                )
            if table_differs(found, wanted):
                self.client.update_table(DatabaseName=self.database, TableInput=wanted)
                change = "updated"
        if change:
            log.info("%s the Glue table %s.%s", change, self.database, table.name)
        self._ready[table.name] = change
        return change

    def _table(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.get_table(DatabaseName=self.database, Name=name)["Table"])
        except Exception as e:
            if _code(e)[0] == "EntityNotFoundException":
                return None
            raise

    # a date's partitions

    def _register_date(
        self, table: TableSpec, date: dt.date, manifest: Mapping[str, Any], change: str | None
    ) -> TableRegistration:
        wanted = partition_inputs(table, date, manifest)
        plan = plan_partitions(date, wanted, self._partitions(table.name, date))
        added, updated = self._write(table.name, list(plan.create), list(plan.update))
        removed = self._delete(table.name, list(plan.delete))
        return TableRegistration(
            database=self.database,
            table=table.name,
            date=date.isoformat(),
            partitions=len(wanted),
            added=added,
            updated=updated,
            removed=removed,
            unchanged=plan.unchanged,
            table_change=change,
        )

    def _partitions(self, name: str, date: dt.date) -> list[dict[str, Any]]:
        """The catalog's partitions of ``date`` (filtered by Glue; should Glue refuse the
        filter, all the table's partitions, filtered by the plan)."""
        pages = self.client.get_paginator("get_partitions")
        try:
            found = pages.paginate(
                DatabaseName=self.database, TableName=name, Expression=date_expression(date)
            )
            return [p for page in found for p in page.get("Partitions", ())]
        except Exception as e:
            if _code(e)[0] != "InvalidInputException":
                raise
            log.warning("Glue refused the filter %r (%s); listing every partition of %s",
                        date_expression(date), e, name)  # fmt: skip
            found = pages.paginate(DatabaseName=self.database, TableName=name)
            return [p for page in found for p in page.get("Partitions", ())]

    def _write(
        self, name: str, create: list[dict[str, Any]], update: list[dict[str, Any]]
    ) -> tuple[int, int]:
        """Create and update partitions; one that appeared or vanished meanwhile (another
        writer of the catalog) is updated or created instead, once. Returns (added, updated)."""
        exists = self._create(name, create)
        gone = self._update(name, update + exists)
        again = self._create(name, gone)
        if again:
            raise TransientError(
                f"the Glue Data Catalog (database {self.database}): {len(again)} partition(s) "
                f"of {name} appeared and vanished while being registered (another writer of "
                "the catalog?); retry"
            )
        return len(create) - len(exists) + len(gone), len(update) + len(exists) - len(gone)

    def _create(self, name: str, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create partitions; returns those that already existed."""
        existed = []
        for batch in batches(inputs, CREATE_BATCH):
            answer = self.client.batch_create_partition(
                DatabaseName=self.database, TableName=name, PartitionInputList=list(batch)
            )
            by_values = {tuple(p["Values"]): p for p in batch}
            for error in answer.get("Errors", ()):
                values = tuple(error.get("PartitionValues", ()))
                if _entry_code(error) == "AlreadyExistsException" and values in by_values:
                    existed.append(by_values[values])
                else:
                    raise self._entry_error(name, error)
        return existed

    def _update(self, name: str, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Update partitions in place; returns those that did not exist."""
        missing = []
        for batch in batches(inputs, UPDATE_BATCH):
            answer = self.client.batch_update_partition(
                DatabaseName=self.database,
                TableName=name,
                Entries=[{"PartitionValueList": p["Values"], "PartitionInput": p} for p in batch],
            )
            by_values = {tuple(p["Values"]): p for p in batch}
            for error in answer.get("Errors", ()):
                values = tuple(error.get("PartitionValueList", ()))
                if _entry_code(error) == "EntityNotFoundException" and values in by_values:
                    missing.append(by_values[values])
                else:
                    raise self._entry_error(name, error)
        return missing

    def _delete(self, name: str, values: list[tuple[str, ...]]) -> int:
        """Delete partitions (one already gone is not an error); returns how many went."""
        removed = 0
        for batch in batches(values, DELETE_BATCH):
            answer = self.client.batch_delete_partition(
                DatabaseName=self.database,
                TableName=name,
                PartitionsToDelete=[{"Values": list(v)} for v in batch],
            )
            gone = 0
            for error in answer.get("Errors", ()):
                if _entry_code(error) != "EntityNotFoundException":
                    raise self._entry_error(name, error)
                gone += 1
            removed += len(batch) - gone
        return removed

    def _entry_error(self, name: str, error: Mapping[str, Any]) -> PipelineError:
        """The error of one partition of a batch call."""
        detail = error.get("ErrorDetail") or {}
        values = error.get("PartitionValues") or error.get("PartitionValueList") or ()
        message = f"partition {list(values)} of {name}: {detail.get('ErrorMessage', '')}"
        return classify(_entry_code(error), 0, message, self.database)


def _entry_code(error: Mapping[str, Any]) -> str:
    return str((error.get("ErrorDetail") or {}).get("ErrorCode", ""))
