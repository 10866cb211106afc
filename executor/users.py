"""USER values to numeric ids, through the image's own /etc/passwd and /etc/group."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from executor.errors import ExecutorError


class UserError(ExecutorError):
    """A USER or --chown naming a user or group the image does not have."""


@dataclass(frozen=True)
class Ids:
    uid: int
    gid: int
    groups: tuple[int, ...] = ()


def _read_db(rootfs: Path, name: str) -> list[list[str]]:
    path = rootfs / "etc" / name
    try:
        # The file lives in the image; never follow a link out of the rootfs.
        if path.is_symlink():
            return []
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _number(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"the image's {what} has a malformed id {text!r}") from None


def _lookup_group(rootfs: Path, group: str) -> int:
    if group.isdigit():
        return int(group)
    for fields in _read_db(rootfs, "group"):
        if len(fields) >= 3 and fields[0] == group:
            return _number(fields[2], "/etc/group")
    raise UserError(f"group {group!r} not found in the image's /etc/group")


def _lookup_user(rootfs: Path, user: str) -> tuple[int, int, str | None]:
    """(uid, primary gid, name) of a user name or number; a number the image does
    not know has no name and gid 0, as runc gives it."""
    passwd = _read_db(rootfs, "passwd")
    if user.isdigit():
        for fields in passwd:
            if len(fields) >= 4 and fields[2] == user:
                return int(user), _number(fields[3], "/etc/passwd"), fields[0]
        return int(user), 0, None
    for fields in passwd:
        if len(fields) >= 4 and fields[0] == user:
            return _number(fields[2], "/etc/passwd"), _number(fields[3], "/etc/passwd"), user
    raise UserError(f"user {user!r} not found in the image's /etc/passwd")


def resolve_user(rootfs: Path, spec: str) -> Ids:
    """``user[:group]`` (names or numbers) to ids; an empty spec is root."""
    user, _, group = (spec or "0").partition(":")
    uid, primary, name = _lookup_user(rootfs, user)
    if group:
        return Ids(uid, _lookup_group(rootfs, group))
    groups = [primary]
    if name is not None:
        for fields in _read_db(rootfs, "group"):
            if len(fields) >= 4 and name in fields[3].split(",") and fields[2].isdigit():
                gid = int(fields[2])
                if gid not in groups:
                    groups.append(gid)
    return Ids(uid, primary, tuple(groups))


def resolve_chown(rootfs: Path, spec: str) -> tuple[int, int]:
    """``--chown=user[:group]``. With no group, a name takes its primary group from
    /etc/passwd and a bare number is used as the gid too (BuildKit's rule)."""
    user, _, group = spec.partition(":")
    uid, primary, _ = _lookup_user(rootfs, user or "0")
    if group:
        return uid, _lookup_group(rootfs, group)
    return uid, (uid if user.isdigit() else primary)
