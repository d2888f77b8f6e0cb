"""What a failure of the destination (or of a file source) means for the run: one place that
turns the storage libraries' errors (OSError, botocore's, aiohttp's, s3fs's) into the pipeline's
errors, so every stage, the lock and the CLI classify them alike (STYLE: errors translated at the
boundary, chained).

- configuration (exit 2, no retry): no usable credentials, access denied, a missing bucket, a
  request the configuration made invalid, a read-only destination;
- transient (exit 75, retry): the network, throttling past the retries, a store that went away;
- the destination changed under the run (exit 4): a file the run wrote or read is gone.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

from processing.adapters.cas import error_code
from processing.adapters.storage import is_bad_request, transient_storage_errors
from processing.spec.errors import AuditError, ConfigError, PipelineError, TransientError

#: botocore's errors that no retry cures: the credential chain found nothing usable.
_NO_CREDENTIALS = {
    "NoCredentialsError",
    "PartialCredentialsError",
    "NoRegionError",
    "CredentialRetrievalError",
    "UnauthorizedSSOTokenError",
    "ProfileNotFound",
}
#: S3 error codes that say the configuration (credentials, rights, names) is wrong.
_REFUSED = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccountProblem",
    "InvalidBucketName",
    "403",
}
#: OS errors that say the destination cannot be written as configured.
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _configuration(error: BaseException, where: str) -> PipelineError | None:
    for cause in _chain(error):
        if type(cause).__name__ in _NO_CREDENTIALS:
            return ConfigError(
                f"{where}: no usable AWS credentials ({cause}): set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a web identity (IRSA, Pod Identity)"
            )
        if is_bad_request(cause):
            return ConfigError(f"{where} refuses the request ({cause}): check --s3-* and --dest")
    code = error_code(error)
    if code == "NoSuchBucket":
        return ConfigError(f"{where}: the bucket does not exist ({error}): check --dest")
    if code in _REFUSED or isinstance(error, PermissionError):
        return ConfigError(
            f"{where} refuses access ({error}): check --dest, the credentials and their rights"
        )
    if isinstance(error, OSError) and error.errno in _READ_ONLY:
        return ConfigError(f"{where} cannot be written ({error}): check --dest and its rights")
    return None


def translate(error: BaseException, where: str = "the destination") -> PipelineError | None:
    """The pipeline error that ``error`` (raised by storage) means, or None if it is not a
    storage failure (then it is a bug, and stays itself)."""
    if isinstance(error, PipelineError):
        return error
    translated = _configuration(error, where)
    if translated is not None:
        return translated
    if isinstance(error, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return AuditError(f"{where} changed under the run: {error}")
    if isinstance(error, transient_storage_errors()):
        return TransientError(f"{where} failed: {type(error).__name__}: {error}")
    return None


@contextlib.contextmanager
def storage_errors(where: str = "the destination") -> Iterator[None]:
    """Raise storage failures inside the block as the pipeline errors they mean."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as e:
        translated = translate(e, where)
        if translated is None:
            raise
        raise translated from e
