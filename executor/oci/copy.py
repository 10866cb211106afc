"""Copy an image or index from any ImageSource to any ImageSink.

Nothing is rewritten: manifests travel as the exact bytes the source holds, so a
copy keeps its digest. Blobs the sink has already are skipped; the others go in
parallel, each verified against its descriptor on the way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from executor.oci.digest import Digest
from executor.oci.image import BlobOpener, ImageSink, ImageSource, RawManifest, walk_manifests
from executor.oci.manifest import Descriptor, Platform
from executor.oci.mediatype import MediaType

# Parallel blob transfers: enough to hide per-request latency on a 2-core worker.
DEFAULT_JOBS = 4
# Foreign (non-distributable) layers are fetched by runtimes from their URLs, never copied.
_FOREIGN = frozenset({MediaType.DOCKER_FOREIGN_LAYER, MediaType.OCI_LAYER_NONDIST_GZIP})

ProgressFn = Callable[[Descriptor, int], None]


@dataclass(frozen=True)
class CopyResult:
    """What a copy did."""

    digest: Digest
    media_type: str
    blobs_copied: int
    blobs_skipped: int
    bytes_copied: int


class _CountingReader:
    def __init__(self, stream: BinaryIO, descriptor: Descriptor, on_progress: ProgressFn) -> None:
        self._stream = stream
        self._descriptor = descriptor
        self._on_progress = on_progress
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        self._on_progress(self._descriptor, self.count)
        return data

    def readable(self) -> bool:
        return True


def select_top(
    source: ImageSource, *, platform: Platform | None, accepts_index: bool
) -> RawManifest:
    """The top manifest, narrowed to one platform when asked or when the sink needs it."""
    top = source.get_manifest()
    if top.is_index and (platform is not None or not accepts_index):
        wanted = platform or Platform.host()
        chosen = top.index().select(wanted, source.describe())
        top = source.get_manifest(chosen.digest)
    return top


def blobs_of(source: ImageSource, manifests: list[RawManifest]) -> list[Descriptor]:
    """Every config and layer the image manifests reference, once each, in order."""
    seen: set[Digest] = set()
    blobs: list[Descriptor] = []
    for raw in manifests:
        if raw.is_index:
            continue
        manifest = raw.manifest()
        for desc in (manifest.config, *manifest.layers):
            if desc.digest in seen or desc.media_type in _FOREIGN:
                continue
            seen.add(desc.digest)
            blobs.append(desc)
    return blobs


def copy_image(
    source: ImageSource,
    sink: ImageSink,
    *,
    platform: Platform | None = None,
    jobs: int = DEFAULT_JOBS,
    on_progress: ProgressFn | None = None,
) -> CopyResult:
    """Copy the source's image (every platform of an index unless ``platform``) to ``sink``."""
    top = select_top(source, platform=platform, accepts_index=sink.accepts_index)
    manifests = list(walk_manifests(source, top))
    blobs = blobs_of(source, manifests)

    def opener_for(desc: Descriptor) -> BlobOpener:
        @contextmanager
        def opener() -> Iterator[BinaryIO]:
            with source.open_blob(desc) as stream:
                if on_progress is None:
                    yield stream
                else:
                    yield _CountingReader(stream, desc, on_progress)  # type: ignore[misc]

        return opener

    def transfer(desc: Descriptor) -> int:
        if sink.has_blob(desc):
            return -1
        sink.put_blob(desc, opener_for(desc))
        return desc.size

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        sizes = list(pool.map(transfer, blobs))
    for raw in manifests:
        sink.put_manifest(raw, top=raw is top)
    sink.commit()
    copied = [s for s in sizes if s >= 0]
    return CopyResult(
        digest=top.digest,
        media_type=top.media_type,
        blobs_copied=len(copied),
        blobs_skipped=len(sizes) - len(copied),
        bytes_copied=sum(copied),
    )
