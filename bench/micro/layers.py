"""Layer writing throughput: tar + compress + two sha256, per codec.

Two trees of the same fixed size, in files of up to 4 MiB: incompressible (seeded
random bytes) and text-like (seeded words, which gzip shrinks to about a fifth).
Each is written as a whole-tree layer, as COPY of a directory or an unpacked base
would be, by:

- ``write_layer(root, None, dest)`` with gzip at its default level: ISA-L level 1,
  chunks that do not compress stored rather than deflated; what ``farm build`` writes;
- the same with zstd at its default level 3;
- the baseline, what Docker and kaniko write: zlib level 6 gzip over everything. Our
  writer at level 6 would store incompressible chunks too, so the baseline is
  ``write_layer`` uncompressed (tar and its sha256) followed by plain
  ``zlib.compressobj(6)`` gzip of that tar and the sha256 of the result: the same
  work in two passes, timed together.

Per run, the process's CPU time (``time.process_time``: every thread, though the
writers use one) and the wall time; figures are medians of MB (10^6 bytes) of
uncompressed tar per CPU second ("per core") and per wall second. Then the default's
parts alone, to show which bounds the whole: one sha256 pass and the default
compressor over the bytes held in memory, and ``write_layer`` uncompressed.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.figures import Bound, Figure, Section, Target, median
from executor.fs.compression import DEFAULT_LEVEL, compressor
from executor.fs.layer import LayerOptions, write_layer

__all__ = [
    "BASELINE",
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
_ZLIB_LEVEL = 6  # Go's and zlib's default, which Docker and kaniko use
_GZIP_WBITS = 31  # a gzip container around the deflate stream


# Writes ``tree`` as a layer at ``dest``; returns (uncompressed, compressed) bytes.
Writer = Callable[[Path, Path], tuple[int, int]]


@dataclass(frozen=True)
class Codec:
    label: str
    write: Writer


def _write_layer(options: LayerOptions) -> Writer:
    def write(tree: Path, dest: Path) -> tuple[int, int]:
        written = write_layer(tree, None, dest, options=options)
        return written.uncompressed_size, written.size

    return write


def _zlib6_gzip(tree: Path, dest: Path) -> tuple[int, int]:
    """Docker's and kaniko's layer: our tar (hashed), then zlib 6 gzip of it, hashed."""
    tar = dest.with_name(dest.name + ".tar")
    written = write_layer(tree, None, tar, options=LayerOptions(compression="none"))
    pack = zlib.compressobj(_ZLIB_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    digest = hashlib.sha256()
    size = 0
    with tar.open("rb") as source, dest.open("wb") as out:
        while chunk := source.read(_CHUNK):
            packed = pack.compress(chunk)
            digest.update(packed)
            size += out.write(packed)
        tail = pack.flush()
        digest.update(tail)
        size += out.write(tail)
    digest.hexdigest()
    tar.unlink()
    return written.uncompressed_size, size


DEFAULT = Codec(
    f"gzip (ISA-L level {DEFAULT_LEVEL['gzip']}, default)", _write_layer(LayerOptions())
)
BASELINE = Codec("gzip level 6 (zlib, Docker's baseline)", _zlib6_gzip)
CODECS = (
    DEFAULT,
    Codec(f"zstd level {DEFAULT_LEVEL['zstd']}", _write_layer(LayerOptions(compression="zstd"))),
    BASELINE,
)
DATA_KINDS = ("incompressible", "text-like")
UNCOMPRESSED = Codec("uncompressed", _write_layer(LayerOptions(compression="none")))


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
    pack = compressor("gzip")
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
    size, packed = codec.write(tree, dest)
    cpu = time.process_time() - cpu_started
    wall = time.perf_counter() - wall_started
    dest.unlink()
    into.per_core.append(size / cpu / 1e6 if cpu > 0 else float("inf"))
    into.wall.append(size / wall / 1e6)
    into.ratio.append(packed / size)


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
    figures.append(Figure(f"part: default gzip compressor alone, {data}", rate, "MB/s"))
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
        "of the tar, compression, sha256 of the result, the write; no fsync) with the "
        "default gzip (ISA-L level 1; chunks that do not compress are stored) and with "
        "zstd 3. The baseline is Docker's and kaniko's layer: zlib level 6 gzip of "
        "everything, timed as `write_layer` uncompressed plus plain zlib 6 gzip of that "
        f"tar and its sha256 (two passes, the same work). {run.runs} runs per codec, "
        "codecs interleaved; medians. MB/s are 10^6 bytes of uncompressed tar per second "
        "of the process's CPU time (per core; the writers use one thread) or of wall time. "
        "The size ratio is compressed over uncompressed. The parts time one sha256 pass "
        "and the default compressor alone over the same bytes in memory, and `write_layer` "
        "uncompressed (tar, one sha256, the write) on the incompressible tree, per CPU "
        "second: the default writer is that plus one compression and a second sha256 of "
        "the compressed bytes, so its CPU per MB is about the sum of the parts' (1/rate "
        "each; the second sha256 over the compressed size)."
    )
    return Section(TITLE, method, (*figures, *parts))
