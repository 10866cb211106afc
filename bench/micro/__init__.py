"""Micro-benchmarks of the parts that bound a build: snapshots, layer writing, pushes.

Each returns a :class:`bench.figures.Section`; ``run_micro`` runs the three at the
sizes given (``FULL`` for the report, ``QUICK`` for a smoke run in seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.figures import Section
from bench.micro.layers import LayerRun, run_layer_bench
from bench.micro.push import PushRun, run_push_bench
from bench.micro.snapshots import SnapshotRun, run_snapshot_bench

__all__ = ["FULL", "QUICK", "MicroSizes", "run_micro"]


@dataclass(frozen=True)
class MicroSizes:
    snapshot_files: int
    layer_mib: int
    push_mib: tuple[int, ...]
    runs: int


# Issue 5's sizes: a 100,000-file tree; 64 MiB per data kind (a few seconds per run
# even for zlib 6); a blob that goes up in one PUT and one above the 64 MiB chunking
# threshold.
FULL = MicroSizes(snapshot_files=100_000, layer_mib=64, push_mib=(32, 256), runs=3)
QUICK = MicroSizes(snapshot_files=2_000, layer_mib=2, push_mib=(4,), runs=1)


def run_micro(sizes: MicroSizes, scratch: Path, progress: Callable[[str], None]) -> list[Section]:
    """The three micro-benchmarks in order; ``scratch`` must not hold an earlier run."""
    scratch.mkdir(parents=True, exist_ok=True)
    return [
        run_snapshot_bench(SnapshotRun(sizes.snapshot_files, sizes.runs, scratch), progress),
        run_layer_bench(LayerRun(sizes.layer_mib, sizes.runs, scratch), progress),
        run_push_bench(PushRun(sizes.push_mib, sizes.runs, scratch), progress),
    ]
