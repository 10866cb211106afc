"""Safe unpacking of a tar or tar.gz build context into a workspace.

Every member is checked before anything is written: no absolute names, no ``..``,
no device files, FIFOs or other special members, no symlink whose target leaves
the context, no hard link to anything but a regular file already unpacked, and
never a write through a symlink. Size and member count are capped. Each refusal
is a :class:`ContextError` naming the member.
"""

from __future__ import annotations

import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from executor.context.errors import ContextError

# Contexts are source trees: 8 GiB and 500k entries are far above real ones and
# well below what would fill a worker's scratch volume or inode table.
DEFAULT_MAX_BYTES = 8 * 1024**3
DEFAULT_MAX_MEMBERS = 500_000
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class UnpackLimits:
    """Caps on what one context tarball may unpack to."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS


def _member_path(archive: Path, member: tarfile.TarInfo) -> str:
    """Return the member's cleaned relative name, or refuse it."""
    name = member.name
    if name.startswith("/"):
        raise ContextError(f"unpacking {archive}: member {name!r} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ContextError(f"unpacking {archive}: member {name!r} contains '..'")
    if "\x00" in name:
        raise ContextError(f"unpacking {archive}: member {name!r} contains a NUL byte")
    return "/".join(parts)


def symlink_escapes(rel: str, target: str) -> bool:
    """Whether a symlink at ``rel`` (relative to the context) to ``target`` could
    resolve outside the context.

    The target may only climb (``..``) before it descends, and no further than the
    link's own directory is deep: a ``..`` after a name (``t/..``) is refused
    because the kernel applies it to wherever ``t`` points, not lexically.
    """
    parts = [part for part in target.split("/") if part not in ("", ".")]
    climbs = 0
    for part in parts:
        if part != "..":
            break
        climbs += 1
    return not target or target.startswith("/") or ".." in parts[climbs:] or climbs > rel.count("/")


def _check_symlink(archive: Path, member: tarfile.TarInfo, rel: str) -> None:
    """Refuse a symlink whose target could resolve outside the context."""
    target = member.linkname
    if symlink_escapes(rel, target):
        raise ContextError(
            f"unpacking {archive}: symlink {member.name!r} -> {target!r} leaves the context"
        )


def _check_real_dirs(archive: Path, root: Path, member: tarfile.TarInfo, rel: str) -> None:
    """Refuse ``rel`` unless each of its parents is a real directory (no symlinks)."""
    current = root
    for part in rel.split("/")[:-1]:
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            info = None
        if info is None or not stat.S_ISDIR(info.st_mode):
            raise ContextError(
                f"unpacking {archive}: hard link {member.name!r} -> {member.linkname!r} "
                "does not name a regular file unpacked before it"
            )


def _safe_parent(archive: Path, root: Path, member: tarfile.TarInfo, rel: str) -> Path:
    """Create the member's parent directories, refusing to pass through a symlink."""
    current = root
    for part in rel.split("/")[:-1]:
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, 0o755)
            continue
        if not stat.S_ISDIR(info.st_mode):
            raise ContextError(
                f"unpacking {archive}: member {member.name!r} goes through "
                f"{current.relative_to(root)}, which is not a directory"
            )
    return current


def _clear(archive: Path, member: tarfile.TarInfo, target: Path) -> None:
    """Remove what an earlier member left at ``target`` (later members win)."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        raise ContextError(f"unpacking {archive}: member {member.name!r} would replace a directory")
    os.unlink(target)


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> int:
    source = tar.extractfile(member)
    assert source is not None  # regular files always have data
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    written = 0
    with source, os.fdopen(os.open(target, flags, 0o600), "wb") as sink:
        while chunk := source.read(_CHUNK):
            sink.write(chunk)
            written += len(chunk)
    return written


DEFAULT_LIMITS = UnpackLimits()


def unpack_tar(archive: Path, dest: Path, *, limits: UnpackLimits = DEFAULT_LIMITS) -> None:
    """Unpack ``archive`` (tar, tar.gz, tar.bz2 or tar.xz) into the empty ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ContextError(f"unpacking {archive}: destination {dest} is not empty")
    root = dest.resolve()
    total = 0
    count = 0
    dir_modes: list[tuple[Path, int, float]] = []
    try:
        tar = tarfile.open(archive, mode="r|*")  # noqa: SIM115 - closed by the with below
    except (OSError, tarfile.TarError) as exc:
        raise ContextError(f"opening context archive {archive}: {exc}") from exc
    with tar:
        try:
            for member in tar:
                count += 1
                if count > limits.max_members:
                    raise ContextError(
                        f"unpacking {archive}: member {member.name!r} is past the "
                        f"limit of {limits.max_members} members"
                    )
                if member.isfile():
                    total += member.size
                    if total > limits.max_bytes:
                        raise ContextError(
                            f"unpacking {archive}: member {member.name!r} takes the "
                            f"context past the limit of {limits.max_bytes} bytes"
                        )
                entry = _unpack_member(archive, root, tar, member)
                if entry is not None:
                    dir_modes.append(entry)
        except (OSError, tarfile.TarError) as exc:
            raise ContextError(f"unpacking {archive}: {exc}") from exc
    # Directory modes last and deepest first, so read-only directories can be filled.
    for path, mode, mtime in sorted(dir_modes, key=lambda item: len(item[0].parts), reverse=True):
        os.chmod(path, mode)
        os.utime(path, (mtime, mtime))


def _unpack_member(
    archive: Path, root: Path, tar: tarfile.TarFile, member: tarfile.TarInfo
) -> tuple[Path, int, float] | None:
    """Write one member; return (path, mode, mtime) for directories, applied later."""
    rel = _member_path(archive, member)
    mode = stat.S_IMODE(member.mode)
    if not rel:
        if member.isdir():
            return root, mode, float(member.mtime)
        raise ContextError(f"unpacking {archive}: member {member.name!r} is not a directory")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise ContextError(
            f"unpacking {archive}: member {member.name!r} is a device, FIFO or other "
            "special file, which a build context may not contain"
        )
    parent = _safe_parent(archive, root, member, rel)
    target = parent / rel.rsplit("/", 1)[-1]
    if member.isdir():
        try:
            existing = os.lstat(target)
        except FileNotFoundError:
            os.mkdir(target, 0o755)
        else:
            if not stat.S_ISDIR(existing.st_mode):
                _clear(archive, member, target)
                os.mkdir(target, 0o755)
        return target, mode, float(member.mtime)
    if member.issym():
        _check_symlink(archive, member, rel)
    _clear(archive, member, target)
    if member.issym():
        os.symlink(member.linkname, target)
        os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
        return None
    if member.islnk():
        link_rel = _member_path(archive, _renamed(member, member.linkname))
        _check_real_dirs(archive, root, member, link_rel)
        source = root / link_rel if link_rel else root
        try:
            info: os.stat_result | None = os.lstat(source)
        except FileNotFoundError:
            info = None
        # Parents were checked to be real directories and lstat does not follow the
        # last component, so only a regular file inside the context passes.
        if info is None or not stat.S_ISREG(info.st_mode):
            raise ContextError(
                f"unpacking {archive}: hard link {member.name!r} -> {member.linkname!r} "
                "does not name a regular file unpacked before it"
            )
        os.link(source, target, follow_symlinks=False)
        return None
    _write_file(tar, member, target)
    os.chmod(target, mode)
    os.utime(target, (member.mtime, member.mtime))
    return None


def _renamed(member: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    clone = tarfile.TarInfo(name)
    clone.type = member.type
    return clone
