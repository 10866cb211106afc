"""Instruction flags (``--from=``, ``--mount=``, ``--interval=`` ...) and their values."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from executor.dockerfile.errors import DockerfileError
from executor.dockerfile.instructions import Location, Mount


class FlagKind(Enum):
    """How a flag takes its value."""

    STRING = "string"  # --name=value, the last one wins
    BOOL = "bool"  # --name, --name=true or --name=false
    LIST = "list"  # --name=value, repeatable


@dataclass(frozen=True)
class Flags:
    """The flags given to one instruction, checked against what it accepts."""

    strings: Mapping[str, str] = field(default_factory=dict)
    bools: Mapping[str, bool] = field(default_factory=dict)
    lists: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def string(self, name: str) -> str | None:
        """The value of a string flag, or ``None`` if it was not given."""
        return self.strings.get(name)

    def flag(self, name: str) -> bool:
        """Whether a boolean flag is on."""
        return self.bools.get(name, False)

    def list(self, name: str) -> tuple[str, ...]:
        """Every value of a repeatable flag, in order."""
        return self.lists.get(name, ())


def take_flags(
    arguments: str, accepted: Mapping[str, FlagKind], *, instruction: str, location: Location
) -> tuple[Flags, str]:
    """Parse the leading ``--flag`` words of ``arguments``; return them and the rest."""
    strings: dict[str, str] = {}
    bools: dict[str, bool] = {}
    lists: dict[str, list[str]] = {}
    rest = arguments.lstrip()
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        rest = rest.lstrip()
        name, has_value, value = word[2:].partition("=")
        kind = accepted.get(name)
        if kind is None:
            raise _error(location, f"unknown flag for {instruction}: --{name}")
        if kind is FlagKind.BOOL:
            if has_value and value.lower() not in ("true", "false"):
                raise _error(location, f"--{name} takes true or false, not {value!r}")
            bools[name] = not has_value or value.lower() == "true"
        elif not has_value or not value:
            raise _error(location, f"{instruction} --{name} needs a value: --{name}=VALUE")
        elif kind is FlagKind.STRING:
            strings[name] = value
        else:
            lists.setdefault(name, []).append(value)
    frozen_lists = {name: tuple(values) for name, values in lists.items()}
    return Flags(strings=strings, bools=bools, lists=frozen_lists), rest


MOUNT_TYPES = frozenset({"bind", "cache", "tmpfs", "secret", "ssh"})
# Mount types with no default target: the step must say where the mount goes.
_NEEDS_TARGET = frozenset({"bind", "cache", "tmpfs"})
_TARGET_KEYS = ("target", "dst", "destination")
# Options that may be written without "=value".
_BARE_OPTIONS = frozenset({"ro", "readonly", "rw", "readwrite", "required"})


def parse_mount(spec: str, *, location: Location) -> Mount:
    """Parse the CSV of one ``--mount=`` (``type`` defaults to ``bind``, as in Docker)."""
    options: list[tuple[str, str]] = []
    mount_type = "bind"
    for part in spec.split(","):
        key, has_value, value = part.partition("=")
        key = key.strip().lower()
        if not key:
            raise _error(location, f"empty option in --mount={spec}")
        if not has_value:
            if key not in _BARE_OPTIONS:
                raise _error(location, f"--mount option {key!r} needs a value: {key}=VALUE")
            value = "true"
        if key == "type":
            mount_type = value
        else:
            options.append((key, value))
    if mount_type not in MOUNT_TYPES:
        raise _error(
            location,
            f"unknown mount type {mount_type!r}: use one of {', '.join(sorted(MOUNT_TYPES))}",
        )
    if mount_type in _NEEDS_TARGET and not any(key in _TARGET_KEYS for key, _ in options):
        raise _error(location, f"--mount type={mount_type} needs a target")
    return Mount(type=mount_type, options=tuple(options))


NETWORK_MODES = frozenset({"default", "none", "host"})

# Go's time.ParseDuration units, which Docker uses for HEALTHCHECK options.
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
# Docker refuses HEALTHCHECK durations under a millisecond (other than 0).
_MIN_DURATION = 1e-3


def parse_duration(name: str, text: str, *, location: Location) -> float:
    """Parse a Go duration such as ``1m30s`` into seconds."""
    position = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if text == "0":
        return 0.0
    if position != len(text) or not text:
        raise _error(location, f"HEALTHCHECK --{name}: bad duration {text!r} (use e.g. 30s, 1m30s)")
    if 0 < total < _MIN_DURATION:
        raise _error(location, f"HEALTHCHECK --{name} cannot be less than 1ms")
    return total


def _error(location: Location, problem: str) -> DockerfileError:
    return DockerfileError(location.file, location.line, problem)
