"""Versioned wire schemas: what travels on the queue, and the batch file producers read.

JSON dicts exist only at the edge: ``from_json`` checks every key and type and
returns a frozen dataclass, ``to_json`` turns one back into a dict. Readers are
strict (unknown keys, wrong types and a newer ``version`` are refused) because the
worker validates again everything it takes from the queue (DESIGN.md, "Every input
is hostile until checked").

::

    ExecutorError
    └── SpecError   a request, outcome or batch file that does not follow the schema
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from executor.errors import ExecutorError
from executor.oci.digest import Digest
from executor.oci.manifest import Platform
from executor.oci.reference import ImageReference

__all__ = [  # noqa: RUF022 - plain sorted(), as tests/unit/test_exported_members.py checks
    "BuildOutcome",
    "BuildRequest",
    "OUTCOME_STATES",
    "SCHEMA_VERSION",
    "SpecError",
]

SCHEMA_VERSION = 1
# The Celery task name build requests travel under: part of the wire protocol.
BUILD_TASK = "farm.build"
# The terminal states an outcome may report; farm.records.BuildState uses the same names.
OUTCOME_STATES = frozenset(
    {"SUCCESS", "FAILURE", "INTERNAL_ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"}
)

_BUILD_ID = re.compile(r"^[a-z0-9-]{8,64}$")
# Batch item names and secret ids: short, plain, safe as file names.
ITEM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Build args and labels are small strings; a cap keeps one request from bloating Redis.
_MAX_MAP_ENTRIES = 1000

_T = TypeVar("_T")


class SpecError(ExecutorError):
    """A request, outcome or batch file that does not follow the schema (permanent)."""

    temporary = False


# -- validators shared by the dataclasses and the readers -------------------------------


def _check_build_id(text: str, where: str) -> None:
    if not _BUILD_ID.match(text):
        raise SpecError(f"{where}: invalid build id {text!r}: want 8-64 of [a-z0-9-]")


def check_dockerfile(text: str, where: str) -> None:
    parts = text.split("/")
    if not text or text.startswith("/") or ".." in parts or "\x00" in text:
        raise SpecError(f"{where}: invalid Dockerfile path {text!r}: want a relative path, no '..'")


def check_secret_id(text: str, where: str) -> None:
    if not ITEM_NAME.match(text):
        raise SpecError(f"{where}: invalid secret id {text!r}: want 1-64 of [A-Za-z0-9._-]")


def _check_string_map(value: Mapping[str, str], where: str) -> Mapping[str, str]:
    if len(value) > _MAX_MAP_ENTRIES:
        raise SpecError(f"{where}: more than {_MAX_MAP_ENTRIES} entries")
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise SpecError(f"{where}: invalid key {key!r}: want a non-empty string")
        if not isinstance(item, str):
            raise SpecError(f"{where}[{key!r}]: want a string, got {type(item).__name__}")
    return MappingProxyType(dict(value))


def _platform_text(platform: Platform) -> str:
    text = f"{platform.os}/{platform.architecture}"
    return f"{text}/{platform.variant}" if platform.variant else text


# -- reading JSON objects key by key -----------------------------------------------------


class Reader:
    """Reads one JSON object, naming ``what`` and the key in every error."""

    def __init__(self, obj: Any, what: str, allowed: frozenset[str]) -> None:
        if not isinstance(obj, dict):
            raise SpecError(f"{what}: want a JSON object, got {type(obj).__name__}")
        self.what = what
        self.obj: dict[str, Any] = obj
        unknown = sorted(str(key) for key in obj if key not in allowed)
        if unknown:
            raise SpecError(f"{what}: unknown key {unknown[0]!r}")

    def where(self, key: str) -> str:
        return f"{self.what}: {key!r}"

    def fail(self, key: str, why: str) -> SpecError:
        return SpecError(f"{self.where(key)}: {why}")

    def get(
        self, key: str, kind: type[_T], default: _T | None = None, *, required: bool = False
    ) -> _T:
        if key not in self.obj:
            if required:
                raise self.fail(key, "missing")
            return default  # type: ignore[return-value]
        value = self.obj[key]
        # bool is an int in Python, and JSON true is not a number.
        if isinstance(value, bool) and kind is not bool:
            raise self.fail(key, f"want {kind.__name__}, got bool")
        if kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kind):
            raise self.fail(key, f"want {kind.__name__}, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(key, "want a finite number")
        return value

    def optional_str(self, key: str) -> str | None:
        if self.obj.get(key) is None:
            return None
        return self.get(key, str)

    def str_list(self, key: str) -> list[str]:
        items = self.get(key, list, [])
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise SpecError(
                    f"{self.where(key)}[{index}]: want a string, got {type(item).__name__}"
                )
        return items

    def parsed_list(self, key: str, parse: Callable[[str], _T]) -> tuple[_T, ...]:
        out = []
        for index, item in enumerate(self.str_list(key)):
            try:
                out.append(parse(item))
            except ExecutorError as exc:
                raise SpecError(f"{self.where(key)}[{index}]: {exc}") from exc
        return tuple(out)

    def str_map(self, key: str) -> Mapping[str, str]:
        return _check_string_map(self.get(key, dict, {}), self.where(key))

    def parsed(self, key: str, parse: Callable[[str], _T], *, required: bool = False) -> _T | None:
        text = self.get(key, str, required=required) if required else self.optional_str(key)
        if text is None:
            return None
        try:
            return parse(text)
        except ExecutorError as exc:
            raise self.fail(key, str(exc)) from exc

    def version(self) -> None:
        version = self.get("version", int, required=True)
        if version > SCHEMA_VERSION:
            raise self.fail(
                "version", f"schema version {version} is newer than this reader's {SCHEMA_VERSION}"
            )
        if version < 1:
            raise self.fail("version", f"invalid schema version {version}")


# -- the build request -------------------------------------------------------------------

_REQUEST = "build request"
_REQUEST_KEYS = frozenset(
    {
        "version",
        "build_id",
        "context_digest",
        "dockerfile",
        "destinations",
        "build_args",
        "labels",
        "target",
        "platform",
        "no_push",
        "batch_id",
        "depends_on",
        "retry_of",
        "submitted_at",
        "secrets",
    }
)


@dataclass(frozen=True)
class BuildRequest:
    """One build to run: a packed context by digest, a Dockerfile in it, where to push."""

    build_id: str
    context_digest: Digest
    dockerfile: str = "Dockerfile"
    destinations: tuple[ImageReference, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    platform: Platform | None = None
    no_push: bool = False
    batch_id: str | None = None
    depends_on: tuple[str, ...] = ()
    retry_of: str | None = None
    submitted_at: float = 0.0  # unix seconds
    # Ids of secrets the workers provide (FARM_SECRETS_DIR/<id>), for RUN --mount=type=secret;
    # the values never travel on the queue.
    secrets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_build_id(self.build_id, f"{_REQUEST}: 'build_id'")
        check_dockerfile(self.dockerfile, f"{_REQUEST}: 'dockerfile'")
        # Frozen means frozen: callers cannot change the maps after validation.
        object.__setattr__(
            self, "build_args", _check_string_map(self.build_args, f"{_REQUEST}: 'build_args'")
        )
        object.__setattr__(self, "labels", _check_string_map(self.labels, f"{_REQUEST}: 'labels'"))
        if self.target is not None and not self.target:
            raise SpecError(f"{_REQUEST}: 'target': empty stage name")
        if self.batch_id is not None:
            _check_build_id(self.batch_id, f"{_REQUEST}: 'batch_id'")
        for index, dep in enumerate(self.depends_on):
            _check_build_id(dep, f"{_REQUEST}: 'depends_on'[{index}]")
        if self.build_id in self.depends_on:
            raise SpecError(f"{_REQUEST}: 'depends_on': build {self.build_id} depends on itself")
        if self.retry_of is not None:
            _check_build_id(self.retry_of, f"{_REQUEST}: 'retry_of'")
        if self.submitted_at < 0 or not math.isfinite(self.submitted_at):
            raise SpecError(f"{_REQUEST}: 'submitted_at': want a non-negative unix time")
        for index, secret_id in enumerate(self.secrets):
            check_secret_id(secret_id, f"{_REQUEST}: 'secrets'[{index}]")

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "build_id": self.build_id,
            "context_digest": str(self.context_digest),
            "dockerfile": self.dockerfile,
            "destinations": [str(ref) for ref in self.destinations],
            "build_args": dict(self.build_args),
            "labels": dict(self.labels),
            "target": self.target,
            "platform": _platform_text(self.platform) if self.platform else None,
            "no_push": self.no_push,
            "batch_id": self.batch_id,
            "depends_on": list(self.depends_on),
            "retry_of": self.retry_of,
            "submitted_at": self.submitted_at,
            # Only when used: a worker from before secrets existed refuses the key.
            **({"secrets": list(self.secrets)} if self.secrets else {}),
        }

    def dumps(self) -> str:
        """The request as compact JSON text, keys sorted."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, obj: Any) -> BuildRequest:
        """Parse and check a request; raise SpecError naming the first bad key."""
        read = Reader(obj, _REQUEST, _REQUEST_KEYS)
        read.version()
        digest = read.parsed("context_digest", Digest.parse, required=True)
        assert digest is not None
        if digest.algorithm != "sha256":
            raise read.fail("context_digest", f"want a sha256 digest, got {digest}")
        return cls(
            build_id=read.get("build_id", str, required=True),
            context_digest=digest,
            dockerfile=read.get("dockerfile", str, "Dockerfile"),
            destinations=read.parsed_list("destinations", ImageReference.parse),
            build_args=read.str_map("build_args"),
            labels=read.str_map("labels"),
            target=read.optional_str("target"),
            platform=read.parsed("platform", Platform.parse),
            no_push=read.get("no_push", bool, False),
            batch_id=read.optional_str("batch_id"),
            depends_on=tuple(read.str_list("depends_on")),
            retry_of=read.optional_str("retry_of"),
            submitted_at=read.get("submitted_at", float, 0.0),
            secrets=tuple(read.str_list("secrets")),
        )


# -- the build outcome -------------------------------------------------------------------

_OUTCOME = "build outcome"
_OUTCOME_KEYS = frozenset(
    {"version", "build_id", "state", "digest", "pushed", "reason", "timings", "layers", "worker"}
)


def _pushed_reference(text: str) -> str:
    ref = ImageReference.parse(text)
    if ref.digest is None:
        raise SpecError(f"pushed reference {text!r} has no digest")
    return text


@dataclass(frozen=True)
class BuildOutcome:
    """What a finished build reports: its state, image digest, pushes and phase timings."""

    build_id: str
    state: str
    digest: Digest | None = None
    pushed: tuple[str, ...] = ()  # "REF@sha256:..", one per destination pushed
    reason: str = ""
    timings: Mapping[str, float] = field(default_factory=dict)  # phase -> seconds
    layers: int = 0
    worker: str = ""

    def __post_init__(self) -> None:
        _check_build_id(self.build_id, f"{_OUTCOME}: 'build_id'")
        if self.state not in OUTCOME_STATES:
            raise SpecError(
                f"{_OUTCOME}: 'state': {self.state!r} is not one of {sorted(OUTCOME_STATES)}"
            )
        for index, text in enumerate(self.pushed):
            try:
                _pushed_reference(text)
            except ExecutorError as exc:
                raise SpecError(f"{_OUTCOME}: 'pushed'[{index}]: {exc}") from exc
        timings = dict(self.timings)
        for phase, seconds in timings.items():
            if not isinstance(phase, str) or not phase:
                raise SpecError(f"{_OUTCOME}: 'timings': invalid phase {phase!r}")
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                raise SpecError(f"{_OUTCOME}: 'timings'[{phase!r}]: want a number")
            if seconds < 0 or not math.isfinite(seconds):
                raise SpecError(f"{_OUTCOME}: 'timings'[{phase!r}]: want non-negative seconds")
            timings[phase] = float(seconds)
        object.__setattr__(self, "timings", MappingProxyType(timings))
        if self.layers < 0:
            raise SpecError(f"{_OUTCOME}: 'layers': want a non-negative count")

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "build_id": self.build_id,
            "state": self.state,
            "digest": str(self.digest) if self.digest else None,
            "pushed": list(self.pushed),
            "reason": self.reason,
            "timings": dict(self.timings),
            "layers": self.layers,
            "worker": self.worker,
        }

    def dumps(self) -> str:
        """The outcome as compact JSON text, keys sorted."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, obj: Any) -> BuildOutcome:
        """Parse and check an outcome; raise SpecError naming the first bad key."""
        read = Reader(obj, _OUTCOME, _OUTCOME_KEYS)
        read.version()
        timings = read.get("timings", dict, {})
        for phase, seconds in timings.items():
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                raise SpecError(f"{read.where('timings')}[{phase!r}]: want a number")
        return cls(
            build_id=read.get("build_id", str, required=True),
            state=read.get("state", str, required=True),
            digest=read.parsed("digest", Digest.parse),
            pushed=read.parsed_list("pushed", _pushed_reference),
            reason=read.get("reason", str, ""),
            timings=timings,
            layers=read.get("layers", int, 0),
            worker=read.get("worker", str, ""),
        )
