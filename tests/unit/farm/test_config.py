"""Settings: defaults, parsing FARM_* variables and the TOML file, and every error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from executor.errors import ExecutorError
from executor.storage import FileStore, S3Store
from farm.config import Settings, SettingsError, env_name


def test_defaults_work_for_one_machine() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.storage_url == "file:///var/lib/farm/storage"
    assert settings.s3_endpoint_url is None
    assert settings.s3_region is None
    assert settings.s3_path_style is False
    assert settings.queue == "builds"
    assert settings.build_timeout_seconds == 3600
    assert settings.soft_time_limit_seconds == 3660
    assert settings.hard_time_limit_seconds == 3720
    assert settings.visibility_timeout_seconds == 4200
    assert settings.queue_ttl_seconds == 86400
    assert settings.workspace_root == Path("/var/lib/farm/work")
    assert settings.metrics_port == 9808
    assert settings.insecure_registries == ()
    assert settings.registry_mirrors == ()
    assert settings.heartbeat_seconds == 5
    assert settings.worker_lost_seconds == 30


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().queue = "other"  # type: ignore[misc]


def test_env_parses_every_type() -> None:
    settings = Settings.from_env(
        {
            "FARM_REDIS_URL": "redis://redis.farm:6379/2",
            "FARM_STORAGE_URL": "s3://farm-bucket/cache",
            "FARM_S3_ENDPOINT_URL": "http://minio:9000",
            "FARM_S3_REGION": "eu-west-1",
            "FARM_S3_PATH_STYLE": "yes",
            "FARM_QUEUE": "builds-arm64",
            "FARM_BUILD_TIMEOUT_SECONDS": " 600 ",
            "FARM_QUEUE_TTL_SECONDS": "60",
            "FARM_WORKSPACE_ROOT": "/scratch/work",
            "FARM_METRICS_PORT": "9100",
            "FARM_INSECURE_REGISTRIES": "127.0.0.1:5000, registry.local ,",
            "FARM_REGISTRY_MIRRORS": "mirror.local:5000",
            "FARM_HEARTBEAT_SECONDS": "2",
            "FARM_WORKER_LOST_SECONDS": "10",
            "PATH": "/usr/bin",  # not ours: ignored
        }
    )
    assert settings.redis_url == "redis://redis.farm:6379/2"
    assert settings.storage_url == "s3://farm-bucket/cache"
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.s3_region == "eu-west-1"
    assert settings.s3_path_style is True
    assert settings.queue == "builds-arm64"
    assert settings.build_timeout_seconds == 600
    assert settings.queue_ttl_seconds == 60
    assert settings.workspace_root == Path("/scratch/work")
    assert settings.metrics_port == 9100
    assert settings.insecure_registries == ("127.0.0.1:5000", "registry.local")
    assert settings.registry_mirrors == ("mirror.local:5000",)
    assert settings.heartbeat_seconds == 2
    assert settings.worker_lost_seconds == 10


def test_celery_limits_follow_the_build_timeout() -> None:
    settings = Settings.from_env({"FARM_BUILD_TIMEOUT_SECONDS": "600"})
    assert settings.soft_time_limit_seconds == 660
    assert settings.hard_time_limit_seconds == 720
    assert settings.visibility_timeout_seconds == 1200


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("false", False),
        ("0", False),
        ("No", False),
    ],
)
def test_bools(raw: str, expected: bool) -> None:
    assert Settings.from_env({"FARM_S3_PATH_STYLE": raw}).s3_path_style is expected


def test_empty_optional_strings_are_none() -> None:
    settings = Settings.from_env({"FARM_S3_ENDPOINT_URL": "", "FARM_S3_REGION": " "})
    assert settings.s3_endpoint_url is None
    assert settings.s3_region is None


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return path


def test_file_and_env_precedence(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'queue = "from-file"\n'
        'redis_url = "redis://file:6379/0"\n'
        "build_timeout_seconds = 100\n"
        "s3_path_style = true\n"
        'insecure_registries = ["a:5000", "b:5000"]\n'
        'workspace_root = "/file/work"\n',
    )
    settings = Settings.from_env(
        {"FARM_CONFIG": str(path), "FARM_QUEUE": "from-env", "FARM_BUILD_TIMEOUT_SECONDS": "200"}
    )
    assert settings.queue == "from-env"  # the environment wins
    assert settings.build_timeout_seconds == 200
    assert settings.soft_time_limit_seconds == 260
    assert settings.redis_url == "redis://file:6379/0"  # the file fills the rest
    assert settings.s3_path_style is True
    assert settings.insecure_registries == ("a:5000", "b:5000")
    assert settings.workspace_root == Path("/file/work")


def test_file_alone(tmp_path: Path) -> None:
    path = _write(tmp_path, 'metrics_port = 9000\nregistry_mirrors = "m1, m2"\n')
    settings = Settings.from_env({"FARM_CONFIG": str(path)})
    assert settings.metrics_port == 9000
    assert settings.registry_mirrors == ("m1", "m2")


ENV_ERRORS = [
    (
        "FARM_BUILD_TIMEOUT_SECONDS",
        "ten",
        "FARM_BUILD_TIMEOUT_SECONDS='ten': want a whole number of seconds",
    ),
    ("FARM_BUILD_TIMEOUT_SECONDS", "-5", "FARM_BUILD_TIMEOUT_SECONDS='-5': want a whole number"),
    ("FARM_BUILD_TIMEOUT_SECONDS", "0", "FARM_BUILD_TIMEOUT_SECONDS=0: want more than 0"),
    ("FARM_QUEUE_TTL_SECONDS", "1.5", "FARM_QUEUE_TTL_SECONDS='1.5': want a whole number"),
    ("FARM_HEARTBEAT_SECONDS", "0", "FARM_HEARTBEAT_SECONDS=0: want more than 0"),
    (
        "FARM_STORAGE_URL",
        "ftp://x",
        "FARM_STORAGE_URL='ftp://x': want s3://BUCKET[/PREFIX] or file:///DIR",
    ),
    ("FARM_STORAGE_URL", "s3://", "FARM_STORAGE_URL='s3://': want s3://"),
    ("FARM_STORAGE_URL", "file://relative", "FARM_STORAGE_URL='file://relative': want s3://"),
    ("FARM_REDIS_URL", "http://redis", "FARM_REDIS_URL='http://redis': want redis://"),
    ("FARM_S3_ENDPOINT_URL", "minio:9000", "FARM_S3_ENDPOINT_URL='minio:9000': want an http"),
    ("FARM_S3_PATH_STYLE", "maybe", "FARM_S3_PATH_STYLE='maybe': want true/false"),
    ("FARM_METRICS_PORT", "70000", "FARM_METRICS_PORT='70000': want a TCP port number from 1"),
    ("FARM_METRICS_PORT", "http", "FARM_METRICS_PORT='http': want a TCP port number"),
    ("FARM_WORKSPACE_ROOT", "work", "FARM_WORKSPACE_ROOT='work': want an absolute path"),
    ("FARM_QUEUE", " ", "FARM_QUEUE='': want a queue name"),
    ("FARM_WORKER_LOST_SECONDS", "5", "FARM_WORKER_LOST_SECONDS=5 must be greater than"),
    (
        "FARM_BUILD_TIMOUT_SECONDS",
        "10",
        "unknown setting FARM_BUILD_TIMOUT_SECONDS (did you mean FARM_BUILD_TIMEOUT_SECONDS?)",
    ),
    ("FARM_COLOUR", "blue", "unknown setting FARM_COLOUR"),
]


@pytest.mark.parametrize(("name", "raw", "message"), ENV_ERRORS)
def test_env_errors_name_the_variable(name: str, raw: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: raw})
    assert str(caught.value).startswith(message)
    assert name in str(caught.value)
    assert isinstance(caught.value, ExecutorError)
    assert not caught.value.temporary


@pytest.mark.parametrize(
    ("env", "longer", "shorter"),
    [
        (
            {"FARM_SOFT_TIME_LIMIT_SECONDS": "3600"},
            "FARM_SOFT_TIME_LIMIT_SECONDS=3600",
            "FARM_BUILD_TIMEOUT_SECONDS=3600",
        ),
        (
            {"FARM_HARD_TIME_LIMIT_SECONDS": "3650"},
            "FARM_HARD_TIME_LIMIT_SECONDS=3650",
            "FARM_SOFT_TIME_LIMIT_SECONDS=3660",
        ),
        (
            {"FARM_VISIBILITY_TIMEOUT_SECONDS": "3720"},
            "FARM_VISIBILITY_TIMEOUT_SECONDS=3720",
            "FARM_HARD_TIME_LIMIT_SECONDS=3720",
        ),
        (
            # Raising only the build timeout past explicit limits breaks the order too.
            {
                "FARM_BUILD_TIMEOUT_SECONDS": "5000",
                "FARM_SOFT_TIME_LIMIT_SECONDS": "4000",
                "FARM_HARD_TIME_LIMIT_SECONDS": "4100",
                "FARM_VISIBILITY_TIMEOUT_SECONDS": "4200",
            },
            "FARM_SOFT_TIME_LIMIT_SECONDS=4000",
            "FARM_BUILD_TIMEOUT_SECONDS=5000",
        ),
    ],
)
def test_timeout_order_is_enforced(env: dict[str, str], longer: str, shorter: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert message.startswith(f"{longer} must be greater than {shorter}")
    assert "visibility_timeout > hard_time_limit > soft_time_limit > build_timeout" in message


def test_explicit_timeouts_in_order_are_kept() -> None:
    settings = Settings.from_env(
        {
            "FARM_BUILD_TIMEOUT_SECONDS": "100",
            "FARM_SOFT_TIME_LIMIT_SECONDS": "101",
            "FARM_HARD_TIME_LIMIT_SECONDS": "102",
            "FARM_VISIBILITY_TIMEOUT_SECONDS": "103",
        }
    )
    assert (
        settings.build_timeout_seconds,
        settings.soft_time_limit_seconds,
        settings.hard_time_limit_seconds,
        settings.visibility_timeout_seconds,
    ) == (100, 101, 102, 103)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(SettingsError, match="FARM_SOFT_TIME_LIMIT_SECONDS=10 must be greater"):
        Settings(soft_time_limit_seconds=10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('build_timeout_seconds = "ten"\n', "build_timeout_seconds='ten': want a whole number"),
        ("build_timeout_seconds = true\n", "build_timeout_seconds=True: want a whole number"),
        ("s3_path_style = 3\n", "s3_path_style=3: want true/false"),
        ("queue = 5\n", "queue=5: want a string"),
        ("insecure_registries = [1, 2]\n", "insecure_registries=[1, 2]: want a list of strings"),
        ("buld_timeout_seconds = 5\n", "unknown setting buld_timeout_seconds (did you mean"),
        ("queue = \n", "not valid TOML"),
    ],
)
def test_file_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"FARM_CONFIG": str(path)})
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_missing_file_names_farm_config(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(SettingsError, match=f"FARM_CONFIG='{path}': cannot read"):
        Settings.from_env({"FARM_CONFIG": str(path)})


def test_env_name() -> None:
    assert env_name("build_timeout_seconds") == "FARM_BUILD_TIMEOUT_SECONDS"


def test_reads_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_QUEUE", "from-process")
    assert Settings.from_env().queue == "from-process"


def test_open_store_file(tmp_path: Path) -> None:
    settings = Settings.from_env({"FARM_STORAGE_URL": (tmp_path / "s").as_uri()})
    store = settings.open_store()
    assert isinstance(store, FileStore)
    store.put_bytes("k", b"v")
    assert (tmp_path / "s" / "k").read_bytes() == b"v"


def test_open_store_s3_passes_endpoint_settings() -> None:
    settings = Settings.from_env(
        {
            "FARM_STORAGE_URL": "s3://bucket/prefix",
            "FARM_S3_ENDPOINT_URL": "http://127.0.0.1:1",
            "FARM_S3_REGION": "eu-central-1",
            "FARM_S3_PATH_STYLE": "true",
        }
    )
    store = settings.open_store()
    assert isinstance(store, S3Store)
    assert store.describe() == "s3://bucket/prefix"
    assert store.client.meta.endpoint_url == "http://127.0.0.1:1"
    assert store.client.meta.region_name == "eu-central-1"
    assert store.client.meta.config.s3 == {"addressing_style": "path"}
