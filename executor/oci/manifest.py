"""Descriptors, platforms, image manifests and indexes as typed values.

Each type parses from JSON at the edge and writes back with every field it did
not understand kept (``extra``), so a manifest read and written unchanged keeps
its digest (and callers that need the exact bytes keep those, see ``RawManifest``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from executor.errors import InvalidDigestError, ManifestError, PlatformNotFoundError
from executor.oci.digest import Digest
from executor.oci.mediatype import MediaType, is_index, is_manifest

JSON = dict[str, Any]

# Go's GOARCH names for the machines Python reports.
_ARCH_NAMES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "i686": "386",
}


def _require(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ManifestError(f"{where}: {key!r} missing or not a {kind.__name__}")
    return value


def _parse_digest(value: str, where: str) -> Digest:
    try:
        return Digest.parse(value)
    except InvalidDigestError as exc:
        raise ManifestError(f"{where}: {exc}") from exc


def _extra(obj: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in known}


def canonical_json(obj: Any) -> bytes:
    """Compact JSON with sorted keys: stable bytes for what this project writes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def load_json(data: bytes, what: str) -> JSON:
    """Parse a JSON object or raise ManifestError naming ``what``."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{what}: invalid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ManifestError(f"{what}: want a JSON object, got {type(obj).__name__}")
    return obj


@dataclass(frozen=True)
class Platform:
    """os/architecture[/variant] of an image (image-index.md "platform")."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/amd64`` or ``linux/arm64/v8``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ManifestError(f"invalid platform {text!r}: want os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def host(cls) -> Platform:
        """The platform of this machine (always linux: images run on Linux)."""
        machine = os.uname().machine.lower()
        arch = _ARCH_NAMES.get(machine, machine)
        return cls("linux", arch, "v7" if machine == "armv7l" else None)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "platform") -> Platform:
        features = obj.get("os.features") or ()
        return cls(
            os=_require(obj, "os", str, where),
            architecture=_require(obj, "architecture", str, where),
            variant=obj.get("variant") or None,
            os_version=obj.get("os.version") or None,
            os_features=tuple(features),
        )

    def to_json(self) -> JSON:
        out: JSON = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        return out

    def matches(self, wanted: Platform) -> bool:
        """True if this platform satisfies ``wanted``; a missing variant matches any."""
        if (self.os, self.architecture) != (wanted.os, wanted.architecture):
            return False
        if wanted.variant and self.variant and wanted.variant != self.variant:
            return False
        return not (wanted.os_version and self.os_version != wanted.os_version)

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


_DESCRIPTOR_KEYS = frozenset(
    {"mediaType", "digest", "size", "urls", "annotations", "platform", "artifactType"}
)


@dataclass(frozen=True)
class Descriptor:
    """A typed pointer to content (descriptor.md)."""

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, where: str = "descriptor") -> Descriptor:
        if not isinstance(obj, dict):
            raise ManifestError(f"{where}: want an object")
        size = _require(obj, "size", int, where)
        if size < 0:
            raise ManifestError(f"{where}: negative size {size}")
        platform = obj.get("platform")
        return cls(
            media_type=_require(obj, "mediaType", str, where),
            digest=_parse_digest(_require(obj, "digest", str, where), where),
            size=size,
            annotations=dict(obj.get("annotations") or {}),
            platform=Platform.from_json(platform, f"{where}.platform") if platform else None,
            urls=tuple(obj.get("urls") or ()),
            artifact_type=obj.get("artifactType"),
            extra=_extra(obj, _DESCRIPTOR_KEYS),
        )

    def to_json(self) -> JSON:
        out: JSON = dict(self.extra)
        out.update(mediaType=self.media_type, digest=str(self.digest), size=self.size)
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    @classmethod
    def of(cls, data: bytes, media_type: str) -> Descriptor:
        """A descriptor for ``data``."""
        return cls(media_type, Digest.of(data), len(data))


_MANIFEST_KEYS = frozenset(
    {"schemaVersion", "mediaType", "config", "layers", "annotations", "subject", "artifactType"}
)


@dataclass(frozen=True)
class Manifest:
    """An image manifest, OCI or Docker schema 2 (manifest.md)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(
        cls, obj: JSON, media_type: str | None = None, where: str = "manifest"
    ) -> Manifest:
        if obj.get("schemaVersion") != 2:
            raise ManifestError(f"{where}: schemaVersion must be 2")
        mt = obj.get("mediaType") or media_type or MediaType.OCI_MANIFEST
        if not is_manifest(mt):
            raise ManifestError(f"{where}: not an image manifest: {mt}")
        layers = obj.get("layers")
        if not isinstance(layers, list):
            raise ManifestError(f"{where}: 'layers' missing or not a list")
        subject = obj.get("subject")
        return cls(
            media_type=mt,
            config=Descriptor.from_json(obj.get("config"), f"{where}.config"),
            layers=tuple(
                Descriptor.from_json(layer, f"{where}.layers[{i}]")
                for i, layer in enumerate(layers)
            ),
            annotations=dict(obj.get("annotations") or {}),
            subject=Descriptor.from_json(subject, f"{where}.subject") if subject else None,
            artifact_type=obj.get("artifactType"),
            extra=_extra(obj, _MANIFEST_KEYS),
        )

    @classmethod
    def parse(cls, data: bytes, media_type: str | None = None) -> Manifest:
        return cls.from_json(load_json(data, "manifest"), media_type)

    def to_json(self) -> JSON:
        out: JSON = dict(self.extra)
        out.update(
            schemaVersion=2,
            mediaType=self.media_type,
            config=self.config.to_json(),
            layers=[layer.to_json() for layer in self.layers],
        )
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    def with_layers(self, layers: tuple[Descriptor, ...]) -> Manifest:
        return replace(self, layers=layers)


_INDEX_KEYS = frozenset({"schemaVersion", "mediaType", "manifests", "annotations", "subject"})


@dataclass(frozen=True)
class Index:
    """An image index or Docker manifest list (image-index.md)."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: JSON, media_type: str | None = None, where: str = "index") -> Index:
        if obj.get("schemaVersion") != 2:
            raise ManifestError(f"{where}: schemaVersion must be 2")
        mt = obj.get("mediaType") or media_type or MediaType.OCI_INDEX
        if not is_index(mt):
            raise ManifestError(f"{where}: not an image index: {mt}")
        manifests = obj.get("manifests")
        if not isinstance(manifests, list):
            raise ManifestError(f"{where}: 'manifests' missing or not a list")
        return cls(
            media_type=mt,
            manifests=tuple(
                Descriptor.from_json(m, f"{where}.manifests[{i}]") for i, m in enumerate(manifests)
            ),
            annotations=dict(obj.get("annotations") or {}),
            extra=_extra(obj, _INDEX_KEYS),
        )

    @classmethod
    def parse(cls, data: bytes, media_type: str | None = None) -> Index:
        return cls.from_json(load_json(data, "index"), media_type)

    def to_json(self) -> JSON:
        out: JSON = dict(self.extra)
        out.update(
            schemaVersion=2,
            mediaType=self.media_type,
            manifests=[m.to_json() for m in self.manifests],
        )
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    def select(self, wanted: Platform, where: str = "index") -> Descriptor:
        """The first image manifest for ``wanted``; an exact variant beats a missing one."""
        candidates = [
            m
            for m in self.manifests
            if m.platform is not None and m.platform.matches(wanted) and is_manifest(m.media_type)
        ]
        if wanted.variant:
            exact = [m for m in candidates if m.platform and m.platform.variant == wanted.variant]
            candidates = exact or candidates
        if not candidates:
            have = ", ".join(str(m.platform) for m in self.manifests if m.platform) or "none"
            raise PlatformNotFoundError(f"{where}: no image for platform {wanted} (has: {have})")
        return candidates[0]


def detect_media_type(data: bytes, declared: str | None = None) -> str:
    """The media type of a manifest body: its own mediaType, else the declared one, else guessed."""
    obj = load_json(data, "manifest")
    mt = obj.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    if declared and (is_index(declared) or is_manifest(declared)):
        return declared
    # OCI allows omitting mediaType; the shape tells which one it is.
    return MediaType.OCI_INDEX if "manifests" in obj else MediaType.OCI_MANIFEST
