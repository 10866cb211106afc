"""Layer writing throughput: ``write_layer`` (tar + compress + two sha256) per codec.

Two trees of the same fixed size, in files of up to 4 MiB: incompressible (seeded
random bytes) and text-like (seeded words, which gzip shrinks to about a sixth).
Each is written as a whole-tree layer (``write_layer(root, None, dest)``, as COPY of a
directory or an unpacked base would be) with:

- gzip at its default level: ISA-L level 1, what ``farm build`` writes;
- zstd at its default level 3;
- gzip level 6 through zlib: the baseline, what Docker and kaniko write.

Per run, the process's CPU time (``time.process_time``: every thread, though the
writer uses one) and the wall time around the call; figures are medians of MB
(10^6 bytes) of uncompressed tar per CPU second ("per core") and per wall second.
The wall time includes the layer's fsync. Then, for the default codec, its parts
alone on the same bytes held in memory: one sha256 pass, and ISA-L level 1's
``compress`` per data kind, to show which part bounds the whole.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.figures import Bound, Figure, Section, Target, median
from executor.fs.compression import compressor
from executor.fs.layer import LayerOptions, WrittenLayer, write_layer

__all__ = [
    "CODECS",
    "DATA_KINDS",
    "DEFAULT",
    "SHA256_PART",
    "TITLE",
    "Codec",
    "LayerRun",
    "figure_name",
    "run_layer_bench",
]

TITLE = "Layer writing"
# Issue 5: the default codec writes at least 300 MB of input per CPU second.
PER_CORE_TARGET = Target(Bound.AT_LEAST, 300.0)
SHA256_PART = "part: one sha256 pass"
UNCOMPRESSED_PART = "part: write_layer uncompressed (tar, one sha256, write)"
_FILE_BYTES = 4 << 20
_CHUNK = 1 << 20  # what the layer writer hands the hashers and compressor at most
_WORDS = (b"alpha", b"beta", b"gamma", b"delta", b"build", b"layer", b"cache", b"push",
          b"farm", b"image", b"registry", b"worker", b"queue", b"snapshot", b"digest")  # fmt: skip
_SEED = 5  # issue 5, as bench/cases.py


@dataclass(frozen=True)
class Codec:
    label: str
    compression: str
    level: int | None  # None: the codec's default

    @property
    def options(self) -> LayerOptions:
        return LayerOptions(compression=self.compression, level=self.level)


DEFAULT = Codec("gzip (ISA-L level 1, default)", "gzip", None)
BASELINE = Codec("gzip level 6 (zlib, baseline)", "gzip", 6)
CODECS = (DEFAULT, Codec("zstd level 3", "zstd", None), BASELINE)
# Not compared, a part: tar, one sha256 and the write, with nothing compressed.
UNCOMPRESSED = Codec("uncompressed", "none", None)
DATA_KINDS = ("incompressible", "text-like")


@dataclass(frozen=True)
class LayerRun:
    mib: int  # size of each data tree
    runs: int
    scratch: Path


def figure_name(codec: Codec, data: str, what: str) -> str:
    """``what`` is ``MB/s per core``, ``MB/s wall``, ``size ratio`` or ``speed vs zlib 6``."""
    return f"{codec.label}, {data}: {what}"


def _text(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        line = b" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14)))
        out += line + b"\n"
    return bytes(out[:size])


def _make_data(root: Path, data: str, total: int) -> None:
    rng = random.Random(f"{_SEED}:{data}")
    root.mkdir(parents=True)
    written, index = 0, 0
    while written < total:
        size = min(_FILE_BYTES, total - written)
        body = rng.randbytes(size) if data == "incompressible" else _text(rng, size)
        (root / f"part-{index:03d}.bin").write_bytes(body)
        written += size
        index += 1


def _chunks(root: Path) -> Iterator[bytes]:
    for path in sorted(root.iterdir()):
        data = path.read_bytes()
        for start in range(0, len(data), _CHUNK):
            yield data[start : start + _CHUNK]


def _cpu_rate(size: int, action: Callable[[], object]) -> float:
    started = time.process_time()
    action()
    cpu = time.process_time() - started
    return size / cpu / 1e6 if cpu > 0 else float("inf")


def _hash_all(chunks: list[bytes]) -> None:
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
    hasher.digest()


def _compress_all(chunks: list[bytes]) -> None:
    pack = compressor(DEFAULT.compression, DEFAULT.level)
    for chunk in chunks:
        pack.compress(chunk)
    pack.flush()


class _Measured:
    def __init__(self) -> None:
        self.per_core: list[float] = []
        self.wall: list[float] = []
        self.ratio: list[float] = []


def _write_once(tree: Path, dest: Path, codec: Codec, into: _Measured) -> None:
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    written: WrittenLayer = write_layer(tree, None, dest, options=codec.options)
    cpu = time.process_time() - cpu_started
    wall = time.perf_counter() - wall_started
    dest.unlink()
    size = written.uncompressed_size
    into.per_core.append(size / cpu / 1e6 if cpu > 0 else float("inf"))
    into.wall.append(size / wall / 1e6)
    into.ratio.append(written.size / size)


def _codec_figures(tree: Path, data: str, run: LayerRun, dest: Path) -> list[Figure]:
    measured = {codec: _Measured() for codec in CODECS}
    for _ in range(run.runs):
        for codec in CODECS:  # interleaved, so drifting load hits each codec alike
            _write_once(tree, dest, codec, measured[codec])
    baseline = median(measured[BASELINE].per_core)
    figures = []
    for codec in CODECS:
        per_core = median(measured[codec].per_core)
        target = PER_CORE_TARGET if codec is DEFAULT else None
        figures += [
            Figure(figure_name(codec, data, "MB/s per core"), per_core, "MB/s", target),
            Figure(figure_name(codec, data, "MB/s wall"), median(measured[codec].wall), "MB/s"),
            Figure(figure_name(codec, data, "size ratio"), median(measured[codec].ratio), ""),
        ]
        if codec is not BASELINE:
            figures.append(
                Figure(figure_name(codec, data, "speed vs zlib 6"), per_core / baseline, "x")
            )
    return figures


def _part_figures(tree: Path, data: str, run: LayerRun, dest: Path, *, first: bool) -> list[Figure]:
    """The default codec's parts; the ones that do not depend on the data only ``first``."""
    runs = run.runs
    chunks = list(_chunks(tree))
    size = sum(len(chunk) for chunk in chunks)
    figures = []
    if first:
        rate = median([_cpu_rate(size, lambda: _hash_all(chunks)) for _ in range(runs)])
        figures.append(Figure(SHA256_PART, rate, "MB/s"))
        plain = _Measured()
        for _ in range(runs):
            _write_once(tree, dest, UNCOMPRESSED, plain)
        figures.append(Figure(UNCOMPRESSED_PART, median(plain.per_core), "MB/s"))
    rate = median([_cpu_rate(size, lambda: _compress_all(chunks)) for _ in range(runs)])
    figures.append(Figure(f"part: ISA-L level 1 compress alone, {data}", rate, "MB/s"))
    return figures


def run_layer_bench(run: LayerRun, progress: Callable[[str], None]) -> Section:
    base = run.scratch / "layers"
    base.mkdir(parents=True)
    figures: list[Figure] = []
    parts: list[Figure] = []
    for data in DATA_KINDS:
        tree = base / data
        progress(f"layers: {run.mib} MiB of {data} data, {run.runs} runs per codec")
        _make_data(tree, data, run.mib << 20)
        figures += _codec_figures(tree, data, run, base / "layer")
        parts += _part_figures(tree, data, run, base / "layer", first=data == DATA_KINDS[0])
        shutil.rmtree(tree)
    shutil.rmtree(base)
    method = (
        f"Each data kind is {run.mib} MiB in files of up to {_FILE_BYTES >> 20} MiB "
        "(incompressible: seeded random bytes; text-like: seeded lines of words). "
        "`write_layer(root, None, dest)` writes the whole tree as one layer (tar, sha256 "
        "of the tar, compression, sha256 of the result, write and fsync), "
        f"{run.runs} runs per codec, codecs interleaved; medians. MB/s are 10^6 bytes of "
        "uncompressed tar per second of the process's CPU time (per core; the writer uses "
        "one thread) or of wall time. The size ratio is compressed over uncompressed. The "
        "parts time one sha256 pass and ISA-L's `compress` alone over the same bytes in "
        "memory, and `write_layer` with compression `none` (tar, one sha256, the write) "
        "on the incompressible tree, per CPU second: the default writer is that plus one "
        "compression and a second sha256 of the compressed bytes, so on incompressible "
        "data its CPU per MB is about the sum of the three parts' (1/rate each)."
    )
    return Section(TITLE, method, (*figures, *parts))
