"""Registry push throughput on loopback: one blob through our registry client.

A fresh CNCF registry (the same ``RegistryServer`` the cold cases push to) on
127.0.0.1; a blob of seeded random bytes in a file (in the page cache after it is
written and hashed); ``RegistryClient.upload_blob`` into a new repository per run,
which is what a push does for a layer the registry lacks: POST an upload, then one
PUT of the whole blob (up to 64 MiB) or PATCHes of 16 MiB and a closing PUT.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.figures import Figure, Section, median
from bench.proc import cpu_seconds
from executor.errors import RegistryError
from executor.oci.digest import Digest
from executor.oci.manifest import Descriptor
from executor.oci.mediatype import MediaType
from executor.registry.auth import StaticKeychain
from executor.registry.client import CHUNKED_UPLOAD_THRESHOLD, UPLOAD_CHUNK_BYTES, RegistryConnector
from executor.registry.hosts import RegistryOptions
from tests.support.registry import RegistryServer

__all__ = ["TITLE", "PushRun", "figure_name", "run_push_bench"]

TITLE = "Registry push on loopback"
_SEED = 5
_WRITE_CHUNK = 1 << 20


@dataclass(frozen=True)
class PushRun:
    sizes_mib: tuple[int, ...]
    runs: int
    scratch: Path


def figure_name(mib: int, what: str) -> str:
    """``what`` is ``MB/s``, ``client CPU`` or ``registry CPU``."""
    return f"{mib} MiB blob: {what}"


def _write_blob(path: Path, mib: int) -> Descriptor:
    rng = random.Random(f"{_SEED}:push:{mib}")
    hasher = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(mib):
            chunk = rng.randbytes(_WRITE_CHUNK)
            hasher.update(chunk)
            out.write(chunk)
    digest = Digest.parse(f"sha256:{hasher.hexdigest()}")
    return Descriptor(MediaType.OCI_LAYER, digest, mib * _WRITE_CHUNK)


def _registry_cpu(registry: RegistryServer) -> float:
    """The registry process's CPU seconds so far."""
    return cpu_seconds(registry.pid)


class _Measured:
    def __init__(self) -> None:
        self.rate: list[float] = []
        self.client_cpu: list[float] = []
        self.registry_cpu: list[float] = []


def _push_once(
    registry: RegistryServer, blob: Path, descriptor: Descriptor, repository: str, into: _Measured
) -> None:
    client = RegistryConnector(RegistryOptions(), StaticKeychain({})).push_client(registry.host)
    registry_before = _registry_cpu(registry)
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    client.upload_blob(repository, descriptor, lambda: blob.open("rb"))
    wall = time.perf_counter() - wall_started
    into.client_cpu.append(time.process_time() - cpu_started)
    into.registry_cpu.append(_registry_cpu(registry) - registry_before)
    into.rate.append(descriptor.size / wall / 1e6)


def run_push_bench(run: PushRun, progress: Callable[[str], None]) -> Section:
    base = run.scratch / "push"
    base.mkdir(parents=True)
    figures: list[Figure] = []
    with RegistryServer(base / "registry") as registry:
        for mib in run.sizes_mib:
            blob = base / f"blob-{mib}"
            descriptor = _write_blob(blob, mib)
            how = "chunked" if descriptor.size > CHUNKED_UPLOAD_THRESHOLD else "one PUT"
            progress(f"push: {mib} MiB blob ({how}), {run.runs} runs")
            measured = _Measured()
            for index in range(run.runs):
                try:
                    _push_once(registry, blob, descriptor, f"bench/push-{mib}-{index}", measured)
                except RegistryError as exc:
                    raise RegistryError(f"push benchmark, {mib} MiB: {exc}") from exc
            blob.unlink()
            figures += [
                Figure(figure_name(mib, "MB/s"), median(measured.rate), "MB/s", note=how),
                Figure(figure_name(mib, "client CPU"), median(measured.client_cpu), "s"),
                Figure(figure_name(mib, "registry CPU"), median(measured.registry_cpu), "s"),
            ]
    method = (
        "A fresh `docker-registry` on 127.0.0.1 (filesystem storage in the scratch directory); "
        "per size a blob of seeded random bytes in a file, hashed beforehand; "
        f"`RegistryClient.upload_blob` into a new repository per run ({run.runs} runs, "
        "medians). Blobs up to "
        f"{CHUNKED_UPLOAD_THRESHOLD >> 20} MiB go up in one PUT, bigger ones in PATCHes of "
        f"{UPLOAD_CHUNK_BYTES >> 20} MiB. MB/s is 10^6 bytes of blob per wall second from the "
        "upload's POST to the registry's answer to the last PUT; client CPU is this process's, "
        "registry CPU the registry process's user + system time over the same upload "
        "(it hashes the blob and writes it to disk)."
    )
    return Section(TITLE, method, tuple(figures))
