"""Flattened filesystems and configs, for comparing our images with a peer's."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

Entry = tuple[str, int, int, int, str]  # type, mode, uid, gid, content sha256 or link target


def flatten(rootfs: Path) -> dict[str, Entry]:
    """Every path under ``rootfs`` with type, permission bits, owner and content; no times."""
    tree: dict[str, Entry] = {}
    for directory, dirs, files in os.walk(rootfs):
        for name in [*dirs, *files]:
            path = Path(directory) / name
            rel = str(path.relative_to(rootfs))
            st = path.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                kind, detail = "link", os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                kind, detail = "dir", ""
            elif stat.S_ISREG(st.st_mode):
                kind, detail = "file", hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                kind, detail = "special", f"{st.st_rdev}"
            tree[rel] = (kind, mode, st.st_uid, st.st_gid, detail)
    return tree


CONFIG_FIELDS = (
    "User",
    "Env",
    "Entrypoint",
    "Cmd",
    "WorkingDir",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
)


def config_fields(config: dict[str, Any], drop_labels: tuple[str, ...] = ()) -> dict[str, Any]:
    """The runtime config fields that must agree, with empty values normalised away."""
    inner = config.get("config") or {}
    out: dict[str, Any] = {}
    for key in CONFIG_FIELDS:
        value = inner.get(key)
        if key == "Labels" and value:
            value = {k: v for k, v in value.items() if k not in drop_labels}
        if value in (None, "", [], {}):
            continue
        out[key] = value
    return out


def differences(ours: dict[str, Entry], theirs: dict[str, Entry]) -> list[str]:
    lines = []
    for path in sorted(set(ours) | set(theirs)):
        a, b = ours.get(path), theirs.get(path)
        if a != b:
            lines.append(f"{path}: ours={a} buildah={b}")
    return lines
