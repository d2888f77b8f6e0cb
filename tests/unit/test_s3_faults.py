"""The S3 emulator's faults, without a server: which requests a rate limit, a storm of 503
SlowDown and ``every`` refuse, on a clock of the test's own."""

from __future__ import annotations

import pytest

from processing.emulator.s3 import S3Faults, operation_of


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("method", "path", "query", "copy", "operation"),
    [
        ("PUT", "/b/k/x.parquet", "", False, "PutObject"),
        ("PUT", "/b/k/x.parquet", "", True, "CopyObject"),
        ("PUT", "/b/k", "partNumber=2&uploadId=u", False, "UploadPart"),
        ("PUT", "/b/k", "partNumber=2&uploadId=u", True, "UploadPartCopy"),
        ("POST", "/b", "delete", False, "DeleteObjects"),
        ("POST", "/b/k", "uploads", False, "CreateMultipartUpload"),
        ("POST", "/b/k", "uploadId=u", False, "CompleteMultipartUpload"),
        ("DELETE", "/b/k", "", False, "DeleteObject"),
        ("DELETE", "/b/k", "uploadId=u", False, "AbortMultipartUpload"),
        ("GET", "/b/k", "", False, "GetObject"),
        ("HEAD", "/b/k", "", False, "HeadObject"),
        ("GET", "/b", "list-type=2&prefix=k", False, "ListObjectsV2"),
        ("GET", "/b/", "prefix=k", False, "ListObjects"),
        ("PUT", "/b", "", False, "CreateBucket"),
        ("HEAD", "/b", "", False, "HeadBucket"),
    ],
)
def test_operation_of_a_request(
    method: str, path: str, query: str, copy: bool, operation: str
) -> None:
    assert operation_of(method, path, query, copy) == operation


def test_a_rate_limit_serves_its_rate_and_refuses_the_rest() -> None:
    clock = Clock()
    faults = S3Faults(clock=clock)
    faults.slow_down_above(10, burst=5)
    answers = [faults.next_failure("PUT", "/b/k", "CopyObject") for _ in range(8)]
    assert answers == [None] * 5 + [503] * 3  # the burst, then nothing left
    assert faults.next_failure("GET", "/b/k", "GetObject") is None  # reads are not limited
    clock.now += 0.25  # 2.5 tokens
    answers = [faults.next_failure("POST", "/b", "DeleteObjects") for _ in range(4)]
    assert answers == [None, None, 503, 503]
    clock.now += 60  # never more than the burst
    assert sum(faults.next_failure("PUT", "/b/k") is None for _ in range(20)) == 5
    assert faults.injected == 3 + 2 + 15
    assert faults.injected_by == {"CopyObject": 3, "DeleteObjects": 2, "PUT": 15}
    faults.lift()
    assert faults.next_failure("PUT", "/b/k") is None


def test_a_rate_limit_of_some_operations_only() -> None:
    faults = S3Faults(clock=Clock())
    faults.slow_down_above(1, burst=1, operations={"DeleteObjects"})
    assert [faults.next_failure("POST", "/b", "DeleteObjects") for _ in range(2)] == [None, 503]
    assert faults.next_failure("PUT", "/b/k", "CopyObject") is None


def test_a_storm_begins_after_the_nth_operation_and_ends() -> None:
    clock = Clock()
    faults = S3Faults(clock=clock)
    faults.slow_down_for(4, after=2, of="CopyObject", methods={"PUT", "POST", "DELETE"})
    assert faults.next_failure("PUT", "/b/k", "PutObject") is None  # not counted
    assert faults.next_failure("PUT", "/b/k", "CopyObject") is None
    assert faults.next_failure("PUT", "/b/k", "CopyObject") is None
    assert faults.next_failure("PUT", "/b/k", "CopyObject") == 503  # the third begins it
    assert faults.next_failure("POST", "/b", "DeleteObjects") == 503
    assert faults.next_failure("GET", "/b/k", "GetObject") is None  # reads go on
    clock.now += 3.9
    assert faults.next_failure("PUT", "/b/k", "PutObject") == 503
    clock.now += 0.1
    assert faults.next_failure("PUT", "/b/k", "CopyObject") is None  # over
    assert faults.injected == 3


def test_a_storm_for_good_until_lifted_and_reset_clears_everything() -> None:
    faults = S3Faults(clock=Clock())
    faults.slow_down_for(operations={"CopyObject"})
    assert faults.next_failure("PUT", "/b/k", "CopyObject") == 503
    assert faults.next_failure("PUT", "/b/k", "PutObject") is None
    faults.every = 2
    faults.reset()
    assert faults.next_failure("PUT", "/b/k", "CopyObject") is None
    assert (faults.injected, faults.seen, faults.injected_by) == (0, 0, {})
    assert faults.requests == {"CopyObject": 1}


def test_every_nth_request_alternates_and_stops_at_its_limit() -> None:
    faults = S3Faults(every=2, limit=3)
    answers = [faults.next_failure("GET", "/b/k") for _ in range(10)]
    assert answers == [None, 503, None, 500, None, 503, None, None, None, None]
    assert faults.injected == 3


def test_bad_rate_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        S3Faults().slow_down_above(-1)
    with pytest.raises(ValueError, match="burst"):
        S3Faults().slow_down_above(10, burst=0)
