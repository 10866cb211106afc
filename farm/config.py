"""Settings: every knob of the farm, read once from ``FARM_*`` variables and a file.

Each setting ``name`` is the environment variable ``FARM_NAME`` and the key ``name`` in
the optional TOML file that ``FARM_CONFIG`` points to; the environment wins over the
file. Unknown variables and keys are errors, so a typo never passes silently. The
defaults run a one-machine farm (Redis on loopback, storage on local disk).

Exceptions::

    ExecutorError
    └── SettingsError   a setting that is malformed, unknown or inconsistent (permanent)
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from executor.errors import ExecutorError
from executor.storage import ObjectStore, StorageError, open_store, parse_store_url

__all__ = ["ENV_PREFIX", "Settings", "SettingsError", "env_name"]

ENV_PREFIX = "FARM_"
# Names the settings file; it is not itself a setting.
CONFIG_VARIABLE = "FARM_CONFIG"
# Read by `farm up`/`farm down` (where a local farm lives), not a setting.
HOME_VARIABLE = "FARM_HOME"

# The executor's own limit for one build; the Celery limits sit above it.
DEFAULT_BUILD_TIMEOUT_SECONDS = 3600
# A minute for the soft limit: the executor times out first and reports cleanly.
_SOFT_MARGIN_SECONDS = 60
# Another minute for the task to record its outcome before Celery kills it.
_HARD_MARGIN_SECONDS = 120
# Redis redelivers an unacked task only after this; it must outlast the hard limit by
# a clear margin or a slow build runs twice (Celery's visibility_timeout caveat).
_VISIBILITY_MARGIN_SECONDS = 600

_TIMEOUTS_IN_ORDER = (
    "visibility_timeout_seconds",
    "hard_time_limit_seconds",
    "soft_time_limit_seconds",
    "build_timeout_seconds",
)
_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


class SettingsError(ExecutorError):
    """A setting that is malformed, unknown, or inconsistent with another."""


@dataclass(frozen=True)
class Settings:
    """Every farm setting, validated; build one with :meth:`from_env`."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    storage_url: str = "file:///var/lib/farm/storage"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_path_style: bool = False
    queue: str = "builds"
    build_timeout_seconds: int = DEFAULT_BUILD_TIMEOUT_SECONDS
    soft_time_limit_seconds: int = DEFAULT_BUILD_TIMEOUT_SECONDS + _SOFT_MARGIN_SECONDS
    hard_time_limit_seconds: int = DEFAULT_BUILD_TIMEOUT_SECONDS + _HARD_MARGIN_SECONDS
    visibility_timeout_seconds: int = DEFAULT_BUILD_TIMEOUT_SECONDS + _VISIBILITY_MARGIN_SECONDS
    # A day: a build that waited longer is EXPIRED rather than run against stale inputs.
    queue_ttl_seconds: int = 86400
    workspace_root: Path = Path("/var/lib/farm/work")
    metrics_port: int = 9808
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: tuple[str, ...] = ()
    heartbeat_seconds: int = 5
    # Six missed heartbeats: a busy pod may miss one or two without being lost.
    worker_lost_seconds: int = 30
    # Secrets the workers provide to builds by id (a file per id, e.g. a mounted
    # Kubernetes Secret); requests name ids, never values.
    secrets_dir: Path | None = None

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from `environ` (default: the process environment) and file."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config_path = env.get(CONFIG_VARIABLE)
        if config_path:
            for key, raw in _read_file(config_path).items():
                values[key] = _parse(key, raw, f"{config_path}: {key}={_shown(raw)!r}")
        unknown = sorted(
            name
            for name in env
            if name.startswith(ENV_PREFIX)
            and name not in (CONFIG_VARIABLE, HOME_VARIABLE)
            and name[len(ENV_PREFIX) :].lower() not in _FIELDS
        )
        if unknown:
            raise SettingsError(_unknown_message(unknown, [env_name(f) for f in _FIELDS]))
        for key in _FIELDS:
            name = env_name(key)
            if name in env:
                values[key] = _parse(key, env[name], f"{name}={_shown(env[name])!r}")
        return cls(**_with_derived_limits(values))

    def open_store(self) -> ObjectStore:
        """Open the object store `storage_url` names, with the S3 endpoint settings."""
        return open_store(
            self.storage_url,
            endpoint_url=self.s3_endpoint_url,
            region=self.s3_region,
            path_style=self.s3_path_style,
        )


def env_name(key: str) -> str:
    """The environment variable for setting `key`: ``FARM_`` plus its name in capitals."""
    return ENV_PREFIX + key.upper()


# -- parsing ---------------------------------------------------------------------------


def _shown(value: object) -> object:
    """A value fit for an error message: passwords in URLs masked."""
    if isinstance(value, str):
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", value)
    return value


def _parse_str(raw: object, label: str) -> str:
    if not isinstance(raw, str):
        raise SettingsError(f"{label}: want a string")
    return raw.strip()


def _parse_optional_str(raw: object, label: str) -> str | None:
    return _parse_str(raw, label) or None


def _parse_seconds(raw: object, label: str) -> int:
    return _parse_int(raw, label, "a whole number of seconds")


def _parse_port(raw: object, label: str) -> int:
    port = _parse_int(raw, label, "a TCP port number")
    if not 1 <= port <= 65535:
        raise SettingsError(f"{label}: want a TCP port number from 1 to 65535")
    return port


def _parse_int(raw: object, label: str, want: str) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw.strip())
    raise SettingsError(f"{label}: want {want}")


def _parse_bool(raw: object, label: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise SettingsError(f"{label}: want true/false, yes/no or 1/0")


def _parse_tuple(raw: object, label: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        items: list[object] = list(raw.split(","))
    elif isinstance(raw, list):
        items = raw
    else:
        raise SettingsError(f"{label}: want a comma-separated list")
    if not all(isinstance(item, str) for item in items):
        raise SettingsError(f"{label}: want a list of strings")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _parse_path(raw: object, label: str) -> Path:
    path = Path(_parse_str(raw, label))
    if not path.is_absolute():
        raise SettingsError(f"{label}: want an absolute path")
    return path


def _parse_optional_path(raw: object, label: str) -> Path | None:
    return None if raw in ("", None) else _parse_path(raw, label)


_Parser = Callable[[object, str], object]
_PARSERS_BY_TYPE: dict[str, _Parser] = {
    "str": _parse_str,
    "str | None": _parse_optional_str,
    "bool": _parse_bool,
    "int": _parse_seconds,
    "Path": _parse_path,
    "Path | None": _parse_optional_path,
    "tuple[str, ...]": _parse_tuple,
}
# Every field's parser, chosen by its annotation (a string under `from __future__`).
_FIELDS: dict[str, _Parser] = {
    field.name: _PARSERS_BY_TYPE[str(field.type)] for field in dataclasses.fields(Settings)
}
_FIELDS["metrics_port"] = _parse_port


def _parse(key: str, raw: object, label: str) -> object:
    return _FIELDS[key](raw, label)


def _read_file(path: str) -> dict[str, object]:
    label = f"{CONFIG_VARIABLE}={path!r}"
    try:
        with open(path, "rb") as stream:
            data = tomllib.load(stream)
    except OSError as error:
        raise SettingsError(f"{label}: cannot read: {error.strerror or error}") from error
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{label}: not valid TOML: {error}") from error
    unknown = sorted(key for key in data if key not in _FIELDS)
    if unknown:
        raise SettingsError(f"{label}: {_unknown_message(unknown, list(_FIELDS))}")
    return data


def _unknown_message(unknown: list[str], known: list[str]) -> str:
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return f"unknown setting {', '.join(hints)}"


def _with_derived_limits(values: dict[str, Any]) -> dict[str, Any]:
    """Fill unset Celery limits from the build timeout, so setting only it is enough."""
    build = values.get("build_timeout_seconds", DEFAULT_BUILD_TIMEOUT_SECONDS)
    derived = {
        "soft_time_limit_seconds": build + _SOFT_MARGIN_SECONDS,
        "hard_time_limit_seconds": build + _HARD_MARGIN_SECONDS,
        "visibility_timeout_seconds": build + _VISIBILITY_MARGIN_SECONDS,
    }
    return derived | values


# -- validation ------------------------------------------------------------------------


def _validate(settings: Settings) -> None:
    for key in (*_TIMEOUTS_IN_ORDER, "queue_ttl_seconds", "heartbeat_seconds"):
        if getattr(settings, key) <= 0:
            raise SettingsError(f"{env_name(key)}={getattr(settings, key)}: want more than 0")
    for longer, shorter in itertools.pairwise(_TIMEOUTS_IN_ORDER):
        if getattr(settings, longer) <= getattr(settings, shorter):
            raise SettingsError(
                f"{env_name(longer)}={getattr(settings, longer)} must be greater than "
                f"{env_name(shorter)}={getattr(settings, shorter)}: want visibility_timeout"
                " > hard_time_limit > soft_time_limit > build_timeout, so the executor"
                " stops first and the broker redelivers only builds that are truly lost"
            )
    if settings.worker_lost_seconds <= settings.heartbeat_seconds:
        raise SettingsError(
            f"{env_name('worker_lost_seconds')}={settings.worker_lost_seconds} must be "
            f"greater than {env_name('heartbeat_seconds')}={settings.heartbeat_seconds}"
        )
    redis_scheme = urlsplit(settings.redis_url).scheme
    if redis_scheme not in _REDIS_SCHEMES:
        raise SettingsError(
            f"{env_name('redis_url')}={_shown(settings.redis_url)!r}: "
            "want redis://, rediss:// or unix:// URL"
        )
    if not settings.queue:
        raise SettingsError(f"{env_name('queue')}={settings.queue!r}: want a queue name")
    endpoint = settings.s3_endpoint_url
    if endpoint is not None and (
        urlsplit(endpoint).scheme not in ("http", "https") or not urlsplit(endpoint).netloc
    ):
        raise SettingsError(
            f"{env_name('s3_endpoint_url')}={endpoint!r}: want an http:// or https:// URL"
        )
    _check_storage_url(settings.storage_url)


def _check_storage_url(url: str) -> None:
    try:
        parse_store_url(url)
    except StorageError as error:
        raise SettingsError(
            f"{env_name('storage_url')}={url!r}: want s3://BUCKET[/PREFIX] or file:///DIR"
        ) from error
