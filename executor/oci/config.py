"""The image configuration (config.md) as a typed value.

Fields the executor reads and changes are typed; everything else is kept in
``extra`` so a config read and written again loses nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from executor.errors import ManifestError
from executor.oci.digest import Digest
from executor.oci.manifest import JSON, Platform, _parse_digest, canonical_json, load_json

_CONTAINER_KEYS = {
    # json key: attribute
    "User": "user",
    "ExposedPorts": "exposed_ports",
    "Env": "env",
    "Entrypoint": "entrypoint",
    "Cmd": "cmd",
    "Volumes": "volumes",
    "WorkingDir": "working_dir",
    "Labels": "labels",
    "StopSignal": "stop_signal",
    "Healthcheck": "healthcheck",
    "Shell": "shell",
    "OnBuild": "on_build",
    "ArgsEscaped": "args_escaped",
}


def _strings(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{where}: want a list of strings")
    return tuple(value)


def _keys(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: want an object")
    return tuple(sorted(value))


@dataclass(frozen=True)
class ContainerConfig:
    """The ``config`` object: how a container from this image runs."""

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    healthcheck: Mapping[str, Any] | None = None
    shell: tuple[str, ...] | None = None
    on_build: tuple[str, ...] = ()
    args_escaped: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, where: str = "config.config") -> ContainerConfig:
        if obj is None:
            return cls()
        if not isinstance(obj, dict):
            raise ManifestError(f"{where}: want an object")
        labels = obj.get("Labels") or {}
        if not isinstance(labels, dict):
            raise ManifestError(f"{where}.Labels: want an object")
        health = obj.get("Healthcheck")
        return cls(
            user=str(obj.get("User") or ""),
            exposed_ports=_keys(obj.get("ExposedPorts"), f"{where}.ExposedPorts"),
            env=_strings(obj.get("Env"), f"{where}.Env") or (),
            entrypoint=_strings(obj.get("Entrypoint"), f"{where}.Entrypoint"),
            cmd=_strings(obj.get("Cmd"), f"{where}.Cmd"),
            volumes=_keys(obj.get("Volumes"), f"{where}.Volumes"),
            working_dir=str(obj.get("WorkingDir") or ""),
            labels={str(k): str(v) for k, v in labels.items()},
            stop_signal=str(obj.get("StopSignal") or ""),
            healthcheck=dict(health) if isinstance(health, dict) else None,
            shell=_strings(obj.get("Shell"), f"{where}.Shell"),
            on_build=_strings(obj.get("OnBuild"), f"{where}.OnBuild") or (),
            args_escaped=bool(obj.get("ArgsEscaped")),
            extra={k: v for k, v in obj.items() if k not in _CONTAINER_KEYS},
        )

    def to_json(self) -> JSON:
        out: JSON = dict(self.extra)
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.volumes:
            out["Volumes"] = {v: {} for v in self.volumes}
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.healthcheck is not None:
            out["Healthcheck"] = dict(self.healthcheck)
        if self.shell is not None:
            out["Shell"] = list(self.shell)
        if self.on_build:
            out["OnBuild"] = list(self.on_build)
        if self.args_escaped:
            out["ArgsEscaped"] = True
        return out

    def env_dict(self) -> dict[str, str]:
        """Env as a mapping; a later duplicate wins as in Docker."""
        out: dict[str, str] = {}
        for item in self.env:
            key, _, value = item.partition("=")
            out[key] = value
        return out


@dataclass(frozen=True)
class HistoryEntry:
    """One ``history`` item: how a layer (or an empty step) was made."""

    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False

    @classmethod
    def from_json(cls, obj: Any, where: str) -> HistoryEntry:
        if not isinstance(obj, dict):
            raise ManifestError(f"{where}: want an object")
        return cls(
            created=obj.get("created"),
            created_by=obj.get("created_by"),
            author=obj.get("author"),
            comment=obj.get("comment"),
            empty_layer=bool(obj.get("empty_layer")),
        )

    def to_json(self) -> JSON:
        out: JSON = {}
        for key in ("created", "created_by", "author", "comment"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.empty_layer:
            out["empty_layer"] = True
        return out


_CONFIG_KEYS = frozenset(
    {
        "created",
        "author",
        "architecture",
        "os",
        "variant",
        "os.version",
        "config",
        "rootfs",
        "history",
    }
)


@dataclass(frozen=True)
class ImageConfig:
    """The whole image configuration blob."""

    architecture: str
    os: str
    diff_ids: tuple[Digest, ...] = ()
    config: ContainerConfig = field(default_factory=ContainerConfig)
    history: tuple[HistoryEntry, ...] = ()
    created: str | None = None
    author: str | None = None
    variant: str | None = None
    os_version: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: JSON, where: str = "config") -> ImageConfig:
        rootfs = obj.get("rootfs") or {"type": "layers", "diff_ids": []}
        if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids", []), list):
            raise ManifestError(f"{where}.rootfs: want an object with a diff_ids list")
        history = obj.get("history") or []
        if not isinstance(history, list):
            raise ManifestError(f"{where}.history: want a list")
        architecture = obj.get("architecture")
        os_name = obj.get("os")
        if not isinstance(architecture, str) or not isinstance(os_name, str):
            raise ManifestError(f"{where}: 'architecture' and 'os' must be strings")
        return cls(
            architecture=architecture,
            os=os_name,
            diff_ids=tuple(
                _parse_digest(d, f"{where}.rootfs.diff_ids[{i}]")
                for i, d in enumerate(rootfs.get("diff_ids") or [])
            ),
            config=ContainerConfig.from_json(obj.get("config"), f"{where}.config"),
            history=tuple(
                HistoryEntry.from_json(h, f"{where}.history[{i}]") for i, h in enumerate(history)
            ),
            created=obj.get("created"),
            author=obj.get("author"),
            variant=obj.get("variant"),
            os_version=obj.get("os.version"),
            extra={k: v for k, v in obj.items() if k not in _CONFIG_KEYS},
        )

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        return cls.from_json(load_json(data, "image config"))

    def to_json(self) -> JSON:
        out: JSON = dict(self.extra)
        out.update(architecture=self.architecture, os=self.os)
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.created is not None:
            out["created"] = self.created
        if self.author is not None:
            out["author"] = self.author
        out["config"] = self.config.to_json()
        out["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in self.diff_ids]}
        if self.history:
            out["history"] = [h.to_json() for h in self.history]
        return out

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant, self.os_version)

    def with_config(self, config: ContainerConfig) -> ImageConfig:
        return replace(self, config=config)

    def with_layer(self, diff_id: Digest | None, entry: HistoryEntry) -> ImageConfig:
        """A config with one more history entry, and one more diff_id unless the step was empty."""
        diff_ids = self.diff_ids if diff_id is None else (*self.diff_ids, diff_id)
        return replace(self, diff_ids=diff_ids, history=(*self.history, entry))
