"""OCI image layout directories as an image source and sink (image-spec image-layout.md).

A layout is a directory holding ``oci-layout`` (``{"imageLayoutVersion": "1.0.0"}``),
``index.json`` (an image index whose entries are named by the
``org.opencontainers.image.ref.name`` annotation) and ``blobs/<alg>/<hex>``.
Every path this module touches is derived from a validated Digest and checked to
stay inside the layout directory, symlinks included.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, cast

from executor.errors import LayoutError, ManifestError
from executor.oci.digest import CHUNK_SIZE, Digest, VerifyingReader, copy_verified
from executor.oci.image import BlobOpener, RawManifest
from executor.oci.manifest import Descriptor, Index, canonical_json, load_json
from executor.oci.mediatype import MediaType, is_index, is_manifest

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
BLOBS_DIR = "blobs"
LAYOUT_VERSION = "1.0.0"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
# annotations.md, "org.opencontainers.image.ref.name": components joined by "/".
# A tag here is a single component: a "/" would read as a path to other tools.
_REF_COMPONENT = re.compile(r"^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*$")
# distribution refuses manifests over 4 MiB; anything larger here is not a manifest.
MAX_MANIFEST_BYTES = 4 << 20
# Blobs are readable by anyone who can read the layout, as skopeo and umoci write them.
_FILE_MODE = 0o644


def validate_ref_name(tag: str) -> str:
    """Return ``tag`` if it is one component of the OCI ref-name grammar, else raise."""
    if not _REF_COMPONENT.match(tag):
        raise LayoutError(
            f"invalid OCI layout tag {tag!r}: want letters and digits joined by "
            "one of - . _ : @ + or --, and no '/'"
        )
    return tag


def _describe(root: Path, tag: str | None) -> str:
    return f"oci:{root}:{tag}" if tag else f"oci:{root}"


def _contained(root: Path, path: Path, what: str) -> Path:
    """``path`` if it resolves (following symlinks) inside ``root``; raise otherwise."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise LayoutError(f"{what}: {path} leads outside the layout {root}")
    return path


def blob_path(root: Path, digest: Digest) -> Path:
    """``root/blobs/<alg>/<hex>``; Digest has validated both parts, so no part is a path."""
    return root / BLOBS_DIR / digest.algorithm / digest.hex


def _read_all(stream: BinaryIO) -> bytes:
    # Read until EOF: a VerifyingReader checks the digest on the empty read.
    return b"".join(iter(lambda: stream.read(CHUNK_SIZE), b""))


def _read_layout_version(root: Path, what: str) -> None:
    try:
        data = (root / LAYOUT_FILE).read_bytes()
    except FileNotFoundError as exc:
        raise LayoutError(f"{what}: not an OCI image layout: no {LAYOUT_FILE} file") from exc
    try:
        version = load_json(data, LAYOUT_FILE).get("imageLayoutVersion")
    except ManifestError as exc:
        raise LayoutError(f"{what}: {exc}") from exc
    if version != LAYOUT_VERSION:
        raise LayoutError(
            f"{what}: unsupported imageLayoutVersion {version!r}: want {LAYOUT_VERSION}"
        )


def _read_index(root: Path, what: str) -> Index:
    try:
        data = (root / INDEX_FILE).read_bytes()
    except FileNotFoundError as exc:
        raise LayoutError(f"{what}: no {INDEX_FILE}") from exc
    try:
        return Index.parse(data, MediaType.OCI_INDEX)
    except ManifestError as exc:
        raise LayoutError(f"{what}: {INDEX_FILE}: {exc}") from exc


def _tags(index: Index) -> str:
    names = [m.annotations.get(REF_NAME_ANNOTATION) for m in index.manifests]
    return ", ".join(repr(n) if n else "(untagged)" for n in names) or "none"


class OciLayoutSource:
    """Reads the image (or index) that ``tag`` names in an OCI layout directory."""

    def __init__(self, path: Path, tag: str | None = None) -> None:
        self._root = path
        self._tag = None if tag is None else validate_ref_name(tag)
        self._top: Descriptor | None = None
        # Descriptors seen in index.json and in indexes read so far, by digest: a
        # child manifest's media type may only be known from its parent's entry.
        self._known: dict[Digest, Descriptor] = {}

    def describe(self) -> str:
        return _describe(self._root, self._tag)

    def _top_descriptor(self) -> Descriptor:
        if self._top is None:
            what = self.describe()
            _read_layout_version(self._root, what)
            index = _read_index(self._root, what)
            for entry in index.manifests:
                self._known.setdefault(entry.digest, entry)
            self._top = self._select(index)
        return self._top

    def _select(self, index: Index) -> Descriptor:
        what = self.describe()
        if self._tag is None:
            if len(index.manifests) != 1:
                raise LayoutError(
                    f"{what}: {INDEX_FILE} lists {len(index.manifests)} manifests; "
                    f"name one by tag (tags: {_tags(index)})"
                )
            chosen = [index.manifests[0]]
        else:
            chosen = [
                m for m in index.manifests if m.annotations.get(REF_NAME_ANNOTATION) == self._tag
            ]
            if not chosen:
                raise LayoutError(
                    f"{what}: no manifest tagged {self._tag!r} (tags: {_tags(index)})"
                )
            if len({m.digest for m in chosen}) > 1:
                raise LayoutError(f"{what}: tag {self._tag!r} names more than one manifest")
        top = chosen[0]
        if not (is_index(top.media_type) or is_manifest(top.media_type)):
            raise LayoutError(f"{what}: the tagged entry is a {top.media_type}, not an image")
        return top

    def get_manifest(self, digest: Digest | None = None) -> RawManifest:
        top = self._top_descriptor()
        size: int | None
        declared: str | None
        if digest is None:
            target, size, declared = top.digest, top.size, top.media_type
        elif (known := self._known.get(digest)) is not None:
            target, size, declared = known.digest, known.size, known.media_type
        else:
            # Listed nowhere we have read: still safe to read, the digest is verified.
            target, size, declared = digest, None, None
        what = f"{self.describe()}: manifest {target.short}"
        if size is not None and size > MAX_MANIFEST_BYTES:
            raise LayoutError(f"{what}: {size} bytes, over the {MAX_MANIFEST_BYTES} allowed")
        with self._open(target, size, "manifest") as stream:
            data = stream.read(MAX_MANIFEST_BYTES + 1)
            if len(data) > MAX_MANIFEST_BYTES:
                raise LayoutError(f"{what}: over the {MAX_MANIFEST_BYTES} bytes allowed")
            data += _read_all(stream)
        raw = RawManifest.of(data, declared)
        if raw.is_index:
            for child in raw.index().manifests:
                self._known.setdefault(child.digest, child)
        return raw

    def open_blob(self, descriptor: Descriptor) -> contextlib.AbstractContextManager[BinaryIO]:
        return self._open(descriptor.digest, descriptor.size, "blob")

    @contextlib.contextmanager
    def _open(self, digest: Digest, size: int | None, kind: str) -> Iterator[BinaryIO]:
        what = f"{self.describe()}: {kind} {digest.short}"
        path = _contained(self._root, blob_path(self._root, digest), what)
        try:
            f = path.open("rb")
        except FileNotFoundError as exc:
            raise LayoutError(f"{what}: missing from the layout ({path})") from exc
        with f:
            yield cast(BinaryIO, VerifyingReader(f, digest, size, what))


class OciLayoutSink:
    """Writes one image or index into an OCI layout and names it ``tag`` in index.json.

    The layout is created if ``path`` is missing or empty. Blobs land atomically
    (verified in a temp file, then renamed); index.json is rewritten at ``commit``
    under a lock, replacing any entry with the same tag and keeping the others.
    """

    accepts_index = True

    def __init__(self, path: Path, tag: str | None = None) -> None:
        self._root = path
        self._tag = None if tag is None else validate_ref_name(tag)
        self._top: Descriptor | None = None
        self._ready = False
        # copy_image writes blobs from several threads; the first one creates the layout.
        self._ready_lock = threading.Lock()

    def describe(self) -> str:
        return _describe(self._root, self._tag)

    def _ensure_layout(self) -> None:
        with self._ready_lock:
            self._create_layout()

    def _create_layout(self) -> None:
        if self._ready:
            return
        what = self.describe()
        try:
            self._root.mkdir(parents=True, exist_ok=True)
            if (self._root / LAYOUT_FILE).exists():
                _read_layout_version(self._root, what)
            elif any(self._root.iterdir()):
                # Never turn a directory that holds something else into a layout.
                raise LayoutError(f"{what}: {self._root} is not empty and not an OCI layout")
            else:
                empty = Index(MediaType.OCI_INDEX, ())
                _write_file(self._root, INDEX_FILE, empty.to_bytes())
                layout = canonical_json({"imageLayoutVersion": LAYOUT_VERSION})
                _write_file(self._root, LAYOUT_FILE, layout)
            blobs = _contained(self._root, self._root / BLOBS_DIR, what)
            blobs.mkdir(exist_ok=True)
        except OSError as exc:
            raise LayoutError(f"{what}: preparing the layout: {exc}") from exc
        self._ready = True

    def _blob_dir(self, digest: Digest) -> Path:
        directory = blob_path(self._root, digest).parent
        _contained(self._root, directory, f"{self.describe()}: blob {digest.short}")
        directory.mkdir(exist_ok=True)
        return directory

    def has_blob(self, descriptor: Descriptor) -> bool:
        path = blob_path(self._root, descriptor.digest)
        try:
            _contained(self._root, path, self.describe())
            return path.is_file() and path.stat().st_size == descriptor.size
        except (OSError, LayoutError):
            return False

    def put_blob(self, descriptor: Descriptor, opener: BlobOpener) -> None:
        self._ensure_layout()
        what = f"{self.describe()}: blob {descriptor.digest.short}"
        directory = self._blob_dir(descriptor.digest)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out, opener() as source:
                copy_verified(
                    source, out, descriptor.digest, expected_size=descriptor.size, what=what
                )
            os.chmod(tmp, _FILE_MODE)
            os.replace(tmp, directory / descriptor.digest.hex)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put_manifest(self, raw: RawManifest, *, top: bool) -> None:
        self.put_blob(raw.descriptor, lambda: io.BytesIO(raw.data))
        if top:
            self._top = raw.descriptor

    def commit(self) -> None:
        what = self.describe()
        if self._top is None:
            raise LayoutError(f"{what}: nothing to commit: no top manifest was written")
        self._ensure_layout()
        entry = self._top
        if self._tag is not None:
            entry = replace(entry, annotations={REF_NAME_ANNOTATION: self._tag})
        with _locked(self._root, what):
            index = _read_index(self._root, what)
            manifests = _place(index.manifests, entry, self._tag)
            _write_file(self._root, INDEX_FILE, replace(index, manifests=manifests).to_bytes())


def _place(
    entries: tuple[Descriptor, ...], entry: Descriptor, tag: str | None
) -> tuple[Descriptor, ...]:
    """``entries`` with ``entry`` in place of the first one of the same name (or appended).

    Other entries with that name go; an untagged entry replaces an untagged one of
    the same digest, so writing the same image twice does not list it twice.
    """

    def same_name(m: Descriptor) -> bool:
        name = m.annotations.get(REF_NAME_ANNOTATION)
        if tag is None:
            return name is None and m.digest == entry.digest
        return name == tag

    out: list[Descriptor] = []
    placed = False
    for m in entries:
        if not same_name(m):
            out.append(m)
        elif not placed:
            out.append(entry)
            placed = True
    if not placed:
        out.append(entry)
    return tuple(out)


@contextlib.contextmanager
def _locked(root: Path, what: str) -> Iterator[None]:
    """Hold an exclusive flock on the layout directory: index.json is read-modify-write."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise LayoutError(f"{what}: locking the layout: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _write_file(root: Path, name: str, data: bytes) -> None:
    """Replace ``root/name`` atomically with ``data``."""
    fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{name}.tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, root / name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
