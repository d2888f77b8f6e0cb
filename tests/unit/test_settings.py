"""``Settings.load(env, **flags)``: required settings, parsing, precedence and error messages."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
from typing import Any

import pytest

from processing.spec.errors import ConfigError
from processing.spec.settings import Secret, Settings, reveal, unknown_variables

REQUIRED_ENV = {
    "PROCESSING_DATE": "2023-10-23",
    "PROCESSING_SOURCE": "data/sample_day.jsonl.gz",
    "PROCESSING_DEST": "/tmp/lake",
}

REQUIRED_ENV_NAMES = ("date", "source", "dest")


def test_defaults_from_required_env_only() -> None:
    settings = Settings.load(REQUIRED_ENV)
    assert settings.date == dt.date(2023, 10, 23)
    assert settings.source == "data/sample_day.jsonl.gz"
    assert settings.dest == "/tmp/lake"
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(Settings)
        if f.default is not dataclasses.MISSING and f.name not in REQUIRED_ENV_NAMES
    }
    for name, default in defaults.items():
        assert getattr(settings, name) == default, name
    assert settings.storage_options.reveal() == {}


@pytest.mark.parametrize(
    ("name", "flag", "variable"),
    [
        pytest.param("date", "--date", "PROCESSING_DATE", id="date"),
        pytest.param("source", "--source", "PROCESSING_SOURCE", id="source"),
        pytest.param("dest", "--dest", "PROCESSING_DEST", id="dest"),
    ],
)
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_missing_required_setting(name: str, flag: str, variable: str, how: str) -> None:
    env = dict(REQUIRED_ENV)
    if how == "absent":
        del env[variable]
    else:
        env[variable] = ""  # an empty variable counts as unset
    with pytest.raises(ConfigError) as info:
        Settings.load(env)
    message = str(info.value)
    assert flag in message
    assert variable in message
    assert name in message
    assert info.value.exit_code == 2
    assert not info.value.retryable


def test_missing_required_setting_given_as_flag_is_fine() -> None:
    env = {"PROCESSING_SOURCE": "s"}
    settings = Settings.load(env, date=dt.date(2024, 1, 2), dest="d")
    assert (settings.date, settings.source, settings.dest) == (dt.date(2024, 1, 2), "s", "d")


ENV_PARSING = [
    # (variable, text, field, expected value)
    pytest.param("PROCESSING_DATE", "2024-02-29", "date", dt.date(2024, 2, 29), id="date"),
    pytest.param("PROCESSING_WORKERS", "4", "workers", 4, id="int"),
    pytest.param("PROCESSING_PIECE_ROWS", "1000", "piece_rows", 1000, id="int-piece-rows"),
    pytest.param("PROCESSING_BATCH_ROWS", " 77 ", "batch_rows", 77, id="int-with-spaces"),
    pytest.param("PROCESSING_ZSTD_LEVEL", "22", "zstd_level", 22, id="int-zstd-max"),
    pytest.param("PROCESSING_TASK_RETRIES", "0", "task_retries", 0, id="int-zero"),
    pytest.param(
        "PROCESSING_MAX_REJECTED_FRACTION", "0.05", "max_rejected_fraction", 0.05, id="float"
    ),
    pytest.param("PROCESSING_ALLOW_EMPTY", "true", "allow_empty", True, id="bool-true"),
    pytest.param("PROCESSING_ALLOW_EMPTY", "1", "allow_empty", True, id="bool-1"),
    pytest.param("PROCESSING_ALLOW_EMPTY", "YES", "allow_empty", True, id="bool-yes-upper"),
    pytest.param("PROCESSING_ALLOW_EMPTY", " on ", "allow_empty", True, id="bool-on-spaces"),
    pytest.param("PROCESSING_ALLOW_EMPTY", "false", "allow_empty", False, id="bool-false"),
    pytest.param("PROCESSING_ALLOW_EMPTY", "0", "allow_empty", False, id="bool-0"),
    pytest.param("PROCESSING_ALLOW_EMPTY", "No", "allow_empty", False, id="bool-no"),
    pytest.param("PROCESSING_ALLOW_EMPTY", "off", "allow_empty", False, id="bool-off"),
    pytest.param(
        "PROCESSING_STORAGE_OPTIONS",
        '{"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": "http://minio:9000"}}',
        "storage_options",
        {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": "http://minio:9000"}},
        id="json-object",
    ),
    pytest.param("PROCESSING_STORAGE_OPTIONS", "{}", "storage_options", {}, id="json-empty"),
    pytest.param("PROCESSING_RUN_ID", "manual-1", "run_id", "manual-1", id="str"),
    pytest.param(
        "PROCESSING_SCHEDULER", "tcp://sched:8786", "scheduler", "tcp://sched:8786", id="str-url"
    ),
    pytest.param("PROCESSING_LOG_LEVEL", "DEBUG", "log_level", "DEBUG", id="str-log-level"),
    pytest.param("PROCESSING_MEMORY_LIMIT", "4GiB", "memory_limit", "4GiB", id="str-memory"),
    pytest.param(
        "PROCESSING_SNAPSHOT_TIME",
        "2023-10-24T08:00:00+02:00",
        "snapshot_time",
        dt.datetime(2023, 10, 24, 6, tzinfo=dt.UTC),
        id="instant-offset",
    ),
    pytest.param(
        "PROCESSING_SNAPSHOT_TIME",
        "2023-10-24T06:00:00.123456Z",
        "snapshot_time",
        dt.datetime(2023, 10, 24, 6, 0, 0, 123456, tzinfo=dt.UTC),
        id="instant-z",
    ),
    pytest.param("PROCESSING_BQ_COMPRESSION", "ZSTD", "bq_compression", "ZSTD", id="compression"),
    pytest.param("PROCESSING_BQ_MAX_STREAMS", "16", "bq_max_streams", 16, id="max-streams"),
    pytest.param(
        "PROCESSING_BQ_DEADLINE_SECONDS", "30", "bq_deadline_seconds", 30.0, id="deadline"
    ),
]


@pytest.mark.parametrize(("variable", "text", "field", "expected"), ENV_PARSING)
def test_env_values_are_parsed(variable: str, text: str, field: str, expected: Any) -> None:
    settings = Settings.load({**REQUIRED_ENV, variable: text})
    value = reveal(getattr(settings, field))  # a secret's value, as parsed
    assert value == expected
    assert type(value) is type(expected)


FLAG_WINS = [
    pytest.param("date", "PROCESSING_DATE", "2023-10-23", dt.date(2020, 1, 1), id="date"),
    pytest.param("dest", "PROCESSING_DEST", "/env", "/flag", id="dest"),
    pytest.param("workers", "PROCESSING_WORKERS", "8", 2, id="workers"),
    pytest.param("allow_empty", "PROCESSING_ALLOW_EMPTY", "false", True, id="allow-empty"),
    pytest.param(
        "storage_options", "PROCESSING_STORAGE_OPTIONS", '{"a": 1}', {"b": 2}, id="storage-options"
    ),
    pytest.param(
        "max_rejected_fraction", "PROCESSING_MAX_REJECTED_FRACTION", "0.5", 0.1, id="fraction"
    ),
    # the env value is not even parsed when a flag is given
    pytest.param("workers", "PROCESSING_WORKERS", "not-a-number", 3, id="invalid-env-ignored"),
]


@pytest.mark.parametrize(("field", "variable", "env_text", "flag"), FLAG_WINS)
def test_flags_win_over_env(field: str, variable: str, env_text: str, flag: Any) -> None:
    settings = Settings.load({**REQUIRED_ENV, variable: env_text}, **{field: flag})
    assert reveal(getattr(settings, field)) == flag


def test_none_flags_are_ignored() -> None:
    settings = Settings.load({**REQUIRED_ENV, "PROCESSING_WORKERS": "5"}, workers=None, run_id=None)
    assert settings.workers == 5
    assert settings.run_id is None


INVALID_ENV = [
    pytest.param("PROCESSING_DATE", "23/10/2023", "YYYY-MM-DD", id="date-format"),
    pytest.param("PROCESSING_DATE", "2023-02-30", "YYYY-MM-DD", id="date-impossible"),
    pytest.param("PROCESSING_WORKERS", "four", "", id="int-text"),
    pytest.param("PROCESSING_PIECE_ROWS", "1.5", "", id="int-float"),
    pytest.param("PROCESSING_MAX_REJECTED_FRACTION", "lots", "", id="float-text"),
    pytest.param("PROCESSING_ALLOW_EMPTY", "maybe", "true or false", id="bool"),
    pytest.param("PROCESSING_STORAGE_OPTIONS", "[1, 2]", "JSON object", id="json-array"),
    pytest.param("PROCESSING_STORAGE_OPTIONS", '"text"', "JSON object", id="json-string"),
    pytest.param("PROCESSING_STORAGE_OPTIONS", "{not json", "", id="json-broken"),
    pytest.param("PROCESSING_SNAPSHOT_TIME", "2023-10-24T06:00:00", "its zone", id="naive-time"),
    pytest.param("PROCESSING_SNAPSHOT_TIME", "yesterday", "ISO 8601", id="time-text"),
]


@pytest.mark.parametrize(("variable", "text", "hint"), INVALID_ENV)
def test_invalid_env_value_names_the_variable(variable: str, text: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load({**REQUIRED_ENV, variable: text})
    message = str(info.value)
    assert variable in message
    assert "not valid" in message
    assert hint in message
    assert info.value.exit_code == 2


OUT_OF_RANGE = [
    pytest.param("PROCESSING_WORKERS", "0", "workers", id="workers-zero"),
    pytest.param("PROCESSING_THREADS_PER_WORKER", "0", "threads_per_worker", id="threads-zero"),
    pytest.param("PROCESSING_PIECE_ROWS", "0", "piece_rows", id="piece-rows-zero"),
    pytest.param("PROCESSING_BATCH_ROWS", "-1", "batch_rows", id="batch-rows-negative"),
    pytest.param("PROCESSING_ROW_GROUP_ROWS", "0", "row_group_rows", id="row-group-zero"),
    pytest.param("PROCESSING_MAX_FILE_ROWS", "10", "max_file_rows", id="file-below-row-group"),
    pytest.param("PROCESSING_ZSTD_LEVEL", "23", "zstd_level", id="zstd-too-high"),
    pytest.param("PROCESSING_ZSTD_LEVEL", "0", "zstd_level", id="zstd-zero"),
    pytest.param(
        "PROCESSING_MAX_REJECTED_FRACTION", "1.5", "max_rejected_fraction", id="fraction-high"
    ),
    pytest.param("PROCESSING_TASK_RETRIES", "-1", "task_retries", id="retries-negative"),
    pytest.param("PROCESSING_BQ_COMPRESSION", "gzip", "bq_compression", id="compression"),
    pytest.param("PROCESSING_BQ_TIME_COLUMN", "ts; DROP", "bq_time_column", id="time-column"),
    pytest.param("PROCESSING_BQ_MAX_STREAMS", "0", "bq_max_streams", id="streams-zero"),
    pytest.param("PROCESSING_BQ_MAX_STREAMS", "1001", "bq_max_streams", id="streams-too-many"),
    pytest.param("PROCESSING_BQ_DEADLINE_SECONDS", "0", "bq_deadline_seconds", id="deadline"),
    pytest.param("PROCESSING_LOCK_TTL_SECONDS", "0", "lock_ttl_seconds", id="lock-ttl-zero"),
    pytest.param("PROCESSING_LOCK_TTL_SECONDS", "0.001", "lock_ttl_seconds", id="lock-ttl-tiny"),
    pytest.param("PROCESSING_LOCK_TTL_SECONDS", "inf", "lock_ttl_seconds", id="lock-ttl-inf"),
    pytest.param("PROCESSING_LOCK_TTL_SECONDS", "nan", "lock_ttl_seconds", id="lock-ttl-nan"),
    pytest.param("PROCESSING_LOCK_TTL_SECONDS", "1e9", "lock_ttl_seconds", id="lock-ttl-huge"),
    pytest.param("PROCESSING_MAX_EVENT_NAMES", "0", "max_event_names", id="event-names-zero"),
    pytest.param("PROCESSING_TARGET_FILE_SIZE", "64KiB", "target_file_size", id="target-tiny"),
    pytest.param("PROCESSING_TARGET_FILE_SIZE", "3GiB", "target_file_size", id="target-huge"),
    pytest.param("PROCESSING_TARGET_FILE_SIZE", "big", "target_file_size", id="target-not-size"),
    pytest.param("PROCESSING_S3_SSE", "aes256", "s3_sse", id="sse-unknown"),
    pytest.param("PROCESSING_S3_KMS_KEY_ID", "alias/k", "s3_kms_key_id", id="kms-without-sse"),
    pytest.param("PROCESSING_S3_MAX_ATTEMPTS", "0", "s3_max_attempts", id="attempts-zero"),
    pytest.param(
        "PROCESSING_S3_ENDPOINT_URL", "minio:9000", "s3_endpoint_url", id="endpoint-no-scheme"
    ),
]


@pytest.mark.parametrize(("variable", "text", "field"), OUT_OF_RANGE)
def test_out_of_range_value_names_the_setting(variable: str, text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        Settings.load({**REQUIRED_ENV, variable: text})


def test_unknown_flag_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown settings.*bogus"):
        Settings.load(REQUIRED_ENV, bogus=1)


def test_unrelated_env_is_ignored() -> None:
    settings = Settings.load({**REQUIRED_ENV, "PROCESSING_NOT_A_SETTING": "x", "DATE": "bad"})
    assert settings.date == dt.date(2023, 10, 23)


SECRETS = {"key": "AKIAEXAMPLEKEY", "secret": "hunter2-very-secret"}


@pytest.mark.parametrize("how", ["env", "flag"])
def test_repr_hides_storage_options(how: str) -> None:
    if how == "env":
        settings = Settings.load(
            {
                **REQUIRED_ENV,
                "PROCESSING_STORAGE_OPTIONS": '{"key": "AKIAEXAMPLEKEY", '
                '"secret": "hunter2-very-secret"}',
            }
        )
    else:
        settings = Settings.load(REQUIRED_ENV, storage_options=SECRETS)
    assert settings.storage_options.reveal() == SECRETS  # the values are there ...
    for text in (repr(settings), str(settings), f"{settings}", repr([settings])):
        for secret in SECRETS.values():
            assert secret not in text  # ... but never shown
        assert "storage_options" in text
        assert "/tmp/lake" in text  # other settings are shown
    assert "***" in repr(settings)


@pytest.mark.parametrize("how", ["env", "flag", "file", "replace"])
def test_secrets_are_secret_types_whichever_way_they_come(how: str, tmp_path) -> None:
    url = "https://pusher:hunter2-very-secret@push.example.com"
    if how == "env":
        settings = Settings.load({**REQUIRED_ENV, "PROCESSING_PUSHGATEWAY": url})
    elif how == "flag":
        settings = Settings.load(REQUIRED_ENV, pushgateway=url)
    elif how == "file":
        (tmp_path / "url").write_text(url + "\n")
        settings = Settings.load(REQUIRED_ENV, pushgateway_file=str(tmp_path / "url"))
    else:
        settings = Settings.load(REQUIRED_ENV).replace(pushgateway=url)
    assert isinstance(settings.pushgateway, Secret)
    assert isinstance(settings.storage_options, Secret)
    assert settings.pushgateway.reveal() == url
    secret = settings.pushgateway
    shown = [repr(settings), str(settings), f"{settings}", repr(vars(settings))]
    shown += [str(secret), repr(secret), f"{secret:>40}"]
    for text in shown:
        assert "hunter2" not in text
    again = pickle.loads(pickle.dumps(settings))
    assert again.pushgateway.reveal() == url and again == settings


def test_a_secret_reveals_only_on_request() -> None:
    secret = Secret({"secret": "hunter2"})
    assert str(secret) == "***" and repr(secret) == "'***'" and f"{secret}" == "***"
    assert secret == Secret({"secret": "hunter2"}) and secret != {"secret": "hunter2"}
    assert secret and not Secret("") and repr(Secret({})) == "{}"
    assert reveal(secret) == {"secret": "hunter2"} and reveal("plain") == "plain"


def test_repr_of_empty_storage_options() -> None:
    assert "'storage_options': {}" in repr(Settings.load(REQUIRED_ENV))


def test_invalid_storage_options_error_does_not_leak_secrets() -> None:
    text = '{"key": "AKIAEXAMPLEKEY", "secret": "hunter2-very-secret"'  # missing "}"
    with pytest.raises(ConfigError) as info:
        Settings.load({**REQUIRED_ENV, "PROCESSING_STORAGE_OPTIONS": text})
    assert "PROCESSING_STORAGE_OPTIONS" in str(info.value)
    for secret in SECRETS.values():
        assert secret not in str(info.value)


def test_settings_are_frozen_and_replace_validates() -> None:
    settings = Settings.load(REQUIRED_ENV)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.workers = 3  # type: ignore[misc]
    assert settings.replace(workers=3).workers == 3
    with pytest.raises(ConfigError, match="workers"):
        settings.replace(workers=0)


def test_config_error_pickles() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load({})
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is ConfigError
    assert str(again) == str(info.value)


def test_an_out_of_range_value_names_its_flag_and_variable() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load({**REQUIRED_ENV, "PROCESSING_WORKERS": "0"})
    assert str(info.value) == (
        "bad setting: workers must be at least 1 (--workers or PROCESSING_WORKERS)"
    )


def test_an_unparseable_variable_names_its_flag() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load({**REQUIRED_ENV, "PROCESSING_ZSTD_LEVEL": "high"})
    assert "PROCESSING_ZSTD_LEVEL='high' is not valid for --zstd-level" in str(info.value)


def test_a_misspelled_variable_is_a_warning_naming_the_closest_setting() -> None:
    env = {**REQUIRED_ENV, "PROCESSING_DESTT": "/tmp/x", "PROCESSING_ZZZ": "1", "HOME": "/"}
    assert unknown_variables(env) == [
        "PROCESSING_DESTT is not a setting and is ignored; did you mean PROCESSING_DEST?",
        "PROCESSING_ZZZ is not a setting and is ignored",
    ]
    assert unknown_variables({**REQUIRED_ENV, "PROCESSING_STORAGE_OPTIONS_FILE": "f"}) == []


def test_a_command_requires_only_what_it_uses() -> None:
    settings = Settings.load({"PROCESSING_DEST": "/tmp/lake"}, required=("dest",))
    assert settings.dest == "/tmp/lake"
    assert settings.source == ""
    with pytest.raises(ConfigError, match="--dest or set PROCESSING_DEST"):
        Settings.load({}, required=("dest",))


def test_a_command_reads_only_the_variables_of_its_settings() -> None:
    env = {**REQUIRED_ENV, "PROCESSING_BQ_COMPRESSION": "gzip", "PROCESSING_WORKERS": "3"}
    settings = Settings.load(env, required=("dest",), only=("dest", "workers"))
    assert settings.workers == 3
    assert settings.bq_compression == "LZ4_FRAME"  # not rollback's business: not even checked


@pytest.mark.parametrize("how", ["variable", "flag"])
def test_a_secret_can_be_given_as_a_file(how: str, tmp_path) -> None:
    path = tmp_path / "options.json"
    path.write_text('{"key": "AKIAEXAMPLEKEY", "secret": "hunter2-very-secret"}\n')
    if how == "variable":
        settings = Settings.load({**REQUIRED_ENV, "PROCESSING_STORAGE_OPTIONS_FILE": str(path)})
    else:
        settings = Settings.load(REQUIRED_ENV, storage_options_file=str(path))
    assert settings.storage_options.reveal() == SECRETS
    assert "hunter2" not in repr(settings)
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError, match=r"PROCESSING_STORAGE_OPTIONS_FILE .*: cannot read"):
        Settings.load({**REQUIRED_ENV, "PROCESSING_STORAGE_OPTIONS_FILE": str(missing)})


def test_a_per_run_cluster_needs_a_size_per_worker() -> None:
    kubernetes = {
        **REQUIRED_ENV,
        "PROCESSING_CLUSTER": "kubernetes",
        "PROCESSING_CLUSTER_SPEC": "x",
    }
    with pytest.raises(ConfigError, match="cluster_bytes_per_worker"):
        Settings.load({**kubernetes, "PROCESSING_CLUSTER_BYTES_PER_WORKER": "lots"})
    assert Settings.load(kubernetes).cluster_bytes_per_worker == "4GiB"
