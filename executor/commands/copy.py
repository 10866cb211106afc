"""COPY and ADD: files from the context, another stage or image, a heredoc, or a URL."""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import io
import os
import posixpath
import tarfile
import tempfile
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from executor.context import BuildContext, FileKind
from executor.dockerfile import Copy, expand
from executor.errors import BuildInputError, ExecutorError, NetworkError
from executor.fs.compression import decompressed, sniff
from executor.fs.copier import Copier
from executor.fs.extract import ExtractOptions, extract_layer
from executor.fs.modes import ModeError, apply_mode, parse_mode
from executor.fs.rootpath import makedirs, real_path
from executor.http import HttpClient, Timeouts
from executor.oci.digest import Digest
from executor.users import resolve_chown

if TYPE_CHECKING:
    from executor.stage import StageState

ModeFn = Callable[[int], int]

# ADD of a URL: give up on a server that does not answer in this long.
URL_TIMEOUT_SECONDS = 60
# Files ADD downloads get this mode (Docker's documented behaviour).
URL_FILE_MODE = 0o600


def _where(inst: Copy) -> str:
    return f"{inst.location.file}:{inst.location.line}"


def _destination(state: StageState, inst: Copy, dest: str) -> tuple[str, bool]:
    """The absolute destination and whether it names a directory."""
    workdir = state.config.working_dir or "/"
    absolute = posixpath.normpath(posixpath.join(workdir, dest))
    as_dir = dest.endswith("/") or dest in (".", "..") or len(inst.sources) > 1
    return absolute, as_dir


def _source_context(state: StageState, inst: Copy, from_: str | None) -> BuildContext:
    if from_ is None:
        context = state.services.context
        assert context is not None
        return context
    rootfs = state.services.stages.stage_rootfs(from_)
    if rootfs is None:
        rootfs = state.services.stages.image_rootfs(from_)
    # Another stage's or image's files are not filtered by the .dockerignore.
    return BuildContext(rootfs, dockerfile="/dev/null", ignore=False)


def copy(state: StageState, inst: Copy) -> None:
    variables = state.variables()
    escape = state.services.escape

    def x(word: str) -> str:
        return expand(word, variables, location=inst.location, escape=escape)

    rootfs = state.ensure_rootfs()
    dest, as_dir = _destination(state, inst, x(inst.dest))
    uid, gid = resolve_chown(rootfs, x(inst.chown)) if inst.chown else (0, 0)
    chmod = x(inst.chmod) if inst.chmod else None
    if chmod is not None:
        try:
            parse_mode(chmod)
        except ModeError as exc:
            raise BuildInputError(f"{_where(inst)}: {exc}") from exc

    def mode(current: int) -> int:
        return apply_mode(chmod, current) if chmod else current

    with Copier(rootfs, uid=uid, gid=gid) as copier:
        if copier.is_dir(dest):
            as_dir = True
        if inst.heredocs:
            _heredocs(inst, copier, dest, x, mode)
            return
        urls = [s for s in inst.sources if inst.add and s.startswith(("http://", "https://"))]
        local = [x(s) for s in inst.sources if s not in urls]
        for url in urls:
            _download(inst, copier, x(url), dest, as_dir=as_dir, mode=mode)
        if not local:
            return
        context = _source_context(state, inst, x(inst.from_) if inst.from_ else None)
        try:
            matches = context.resolve(
                local, excludes=[x(e) for e in inst.excludes], parents=inst.parents
            )
        except ExecutorError as exc:
            raise BuildInputError(f"{_where(inst)}: {inst.original}: {exc}") from exc
        if len(matches) > 1 and not as_dir:
            raise BuildInputError(
                f"{_where(inst)}: {inst.original}: {len(matches)} sources match, so the "
                "destination must be a directory ending in /"
            )
        for match in matches:
            archive = inst.add and not match.is_dir
            if archive and _unpack_archive(inst, rootfs, match.host_path, dest):
                copier.forget_dirs()  # the archive may have replaced directories
                continue
            for entry in context.walk(match):
                # A directory's contents go into dest; a file goes into dest if dest is a
                # directory, else it becomes dest.
                into = match.is_dir or as_dir
                target = posixpath.join(dest, entry.dest) if into and entry.dest else dest
                mtime = entry.stat.st_mtime_ns
                if entry.kind is FileKind.DIR:
                    copier.put_dir(target, mode=mode(entry.stat.st_mode), mtime_ns=mtime)
                elif entry.kind is FileKind.SYMLINK:
                    copier.put_symlink(target, os.readlink(entry.host_path), mtime_ns=mtime)
                else:
                    copier.copy_file(
                        target,
                        entry.host_path,
                        mode=mode(entry.stat.st_mode),
                        size=entry.stat.st_size,
                        mtime_ns=mtime,
                    )


def _heredocs(inst: Copy, copier: Copier, dest: str, x: Callable[[str], str], mode: ModeFn) -> None:
    """``COPY <<EOF /path``: each heredoc becomes a file (named after it in a directory)."""
    many = len(inst.heredocs) > 1 or dest.endswith("/")
    for heredoc in inst.heredocs:
        target = posixpath.join(dest, heredoc.name) if many else dest
        # An unquoted delimiter expands variables in the body; a quoted one does not.
        body = x(heredoc.body) if heredoc.expand else heredoc.body
        copier.put_file(target, io.BytesIO(body.encode()), mode=mode(0o100644))


def _tar_compression(f: io.BufferedReader) -> str | None:
    """How the tarball in ``f`` is compressed ("none" for a plain tar), or None if it is
    no tarball; either way ``f`` is back at its start."""
    try:
        compression = sniff(f.read(8))
        f.seek(0)
        block = decompressed(f, compression).read(tarfile.BLOCKSIZE)
        f.seek(0)
    except (OSError, ExecutorError):  # a corrupt stream is a LayerError
        return None
    if len(block) < tarfile.BLOCKSIZE:
        return None
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return None
    return compression


def _unpack_archive(inst: Copy, rootfs: Path, source: Path, dest: str) -> bool:
    """ADD of a local tarball (maybe gzip or zstd compressed): unpacked into the
    destination directory, as tar -x would. False for anything else, which is copied."""
    try:
        f = source.open("rb")
    except OSError:
        return False  # copying it says what is wrong
    with f:
        compression = _tar_compression(f)
        if compression is None:
            return False
        makedirs(rootfs, dest)
        # The destination as chroot would resolve it: no symlink of the image leads out.
        target = real_path(rootfs, dest)
        try:
            extract_layer(f, compression, target, options=ExtractOptions(apply_whiteouts=False))
        except ExecutorError as exc:
            raise BuildInputError(f"{_where(inst)}: unpacking {source.name}: {exc}") from exc
    return True


def _download(
    inst: Copy, copier: Copier, url: str, dest: str, *, as_dir: bool, mode: ModeFn
) -> None:
    name = posixpath.basename(urllib.parse.urlparse(url).path) or "index.html"
    target = posixpath.join(dest, name) if as_dir else dest
    client = HttpClient(Timeouts(URL_TIMEOUT_SECONDS, URL_TIMEOUT_SECONDS))
    hasher = hashlib.sha256()
    with contextlib.closing(client), tempfile.TemporaryFile() as spool:
        try:
            with client.request("GET", url) as response:
                if response.status != 200:
                    raise ExecutorError(
                        f"{_where(inst)}: downloading {url}: HTTP {response.status}",
                        temporary=response.status >= 500 or response.status == 429,
                    )
                while chunk := response.read(1 << 20):
                    hasher.update(chunk)
                    spool.write(chunk)
        except NetworkError as exc:
            raise ExecutorError(
                f"{_where(inst)}: downloading {url}: {exc}", temporary=exc.temporary
            ) from exc
        if inst.checksum:
            want = Digest.parse(inst.checksum)
            got = Digest("sha256", hasher.hexdigest())
            if want != got:
                raise BuildInputError(
                    f"{_where(inst)}: {url}: checksum mismatch: want {want}, got {got}"
                )
        mtime = None
        modified = response.headers.get("Last-Modified")
        if modified:
            try:
                mtime = int(email.utils.parsedate_to_datetime(modified).timestamp()) * 1_000_000_000
            except (TypeError, ValueError):
                mtime = None
        spool.seek(0)
        copier.put_file(target, spool, mode=mode(0o100000 | URL_FILE_MODE), mtime_ns=mtime)
