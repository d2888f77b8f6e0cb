"""What a storage failure means for the run, decided in one place: configuration (exit 2, no
retry), transient (exit 75, retry), or the destination changed (exit 4); anything else stays a
bug. And the Airflow tasks spend no retry on what a retry cannot cure."""

from __future__ import annotations

import errno

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from processing.adapters.storage_errors import storage_errors, translate
from processing.spec.errors import AuditError, ConfigError, TransientError


def _client_error(code: str) -> OSError:
    cause = ClientError({"Error": {"Code": code, "Message": code}}, "PutObject")
    error = OSError(code)
    error.__cause__ = cause
    return error


def _chained(cause: BaseException) -> OSError:
    error = OSError("s3fs says something went wrong")
    error.__cause__ = cause
    return error


CASES = [
    pytest.param(NoCredentialsError(), ConfigError, "no usable AWS credentials", id="no-creds"),
    pytest.param(
        _chained(NoCredentialsError()), ConfigError, "no usable AWS credentials", id="chained"
    ),
    pytest.param(
        PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
        ConfigError,
        "credentials",
        id="partial-creds",
    ),
    pytest.param(_client_error("NoSuchBucket"), ConfigError, "bucket does not exist", id="bucket"),
    pytest.param(_client_error("AccessDenied"), ConfigError, "refuses access", id="denied"),
    pytest.param(PermissionError(errno.EACCES, "denied"), ConfigError, "refuses access", id="perm"),
    pytest.param(
        OSError(errno.EROFS, "Read-only file system"), ConfigError, "cannot be written", id="rofs"
    ),
    pytest.param(
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        TransientError,
        "failed",
        id="endpoint-down",
    ),
    pytest.param(ConnectionResetError("reset"), TransientError, "failed", id="reset"),
    pytest.param(TimeoutError("slow"), TransientError, "failed", id="timeout"),
    pytest.param(_client_error("SlowDown"), TransientError, "failed", id="throttled"),
    pytest.param(FileNotFoundError("gone"), AuditError, "changed under the run", id="gone"),
]


@pytest.mark.parametrize(("error", "kind", "says"), CASES)
def test_storage_failures_mean_one_thing_each(error: BaseException, kind: type, says: str) -> None:
    translated = translate(error)
    assert type(translated) is kind
    assert says in str(translated)
    with pytest.raises(kind) as raised, storage_errors():
        raise error
    assert raised.value.__cause__ is error  # chained: the original stays in the traceback


def test_what_is_not_a_storage_failure_stays_itself() -> None:
    assert translate(ValueError("a bug")) is None
    with pytest.raises(KeyError), storage_errors():
        raise KeyError("a bug")


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        pytest.param(ConfigError("no usable AWS credentials"), False, id="config"),
        pytest.param(TransientError("the store went away"), True, id="transient"),
    ],
)
def test_the_airflow_tasks_fail_at_once_on_what_a_retry_cannot_cure(
    error: Exception, retried: bool
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from processing.app.airflow_tasks import _outcome

    with pytest.raises(Exception) as raised, _outcome():
        raise error
    assert isinstance(raised.value, AirflowFailException) is not retried
