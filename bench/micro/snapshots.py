"""What a step costs the snapshotters when it changed nothing, on a big rootfs.

The tree: ``files`` regular files and symbolic links (one entry in 20 is a link, as in
a Debian rootfs) in directories of 100 entries, ten such directories per parent, plus
the ``etc/hosts``, ``etc/resolv.conf``, ``proc/`` and ``dev/`` a rootfs has. It is
written once; every timing after that finds its inodes in the kernel's caches (the
state of a rootfs a build just unpacked and ran steps on).

Timed, each ``runs`` times, median reported:

- walk, baseline: ``WalkSnapshotter().begin(rootfs)``: the first full scan of a stage.
- walk, unchanged step: ``begin(rootfs)`` then ``finish()`` with the baseline held: what
  ``executor.stage.run_step`` pays per filesystem step (one scan and the diff).
- overlay, unchanged step (snapshotter only): ``begin(rootfs, sandboxed=True)`` and
  ``overlay_dirs()`` before, ``finish()`` after an empty sandbox step (``argv=()``: the
  namespaces and mounts only, the overlay mounted over the rootfs, nothing written).
- the empty sandbox step alone, and the whole unchanged step (snapshotter calls plus
  the empty sandbox step) with each snapshotter: where a RUN step's fixed cost goes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench import BenchError
from bench.figures import Bound, Figure, Section, Target, median
from executor.errors import SandboxError
from executor.fs.overlay import OverlaySnapshotter
from executor.fs.snapshot import WalkSnapshotter
from executor.sandbox.select import make_sandbox, probe_overlay
from executor.sandbox.spec import RunSpec, Sandbox

__all__ = [
    "CHANGES",
    "OVERLAY_SNAPSHOT",
    "OVERLAY_STEP",
    "SANDBOX_STEP",
    "TITLE",
    "WALK_BASELINE",
    "WALK_SNAPSHOT",
    "WALK_STEP",
    "SnapshotRun",
    "make_tree",
    "run_snapshot_bench",
]

TITLE = "Snapshot of an unchanged tree"
WALK_BASELINE = "walk: baseline scan (begin)"
WALK_SNAPSHOT = "walk: unchanged step (begin + finish)"
OVERLAY_SNAPSHOT = "overlay: unchanged RUN step, snapshotter calls only"
SANDBOX_STEP = "empty sandbox step, no snapshot"
WALK_STEP = "whole unchanged RUN step with walk"
OVERLAY_STEP = "whole unchanged RUN step with overlay"
CHANGES = "changes found in unchanged steps"

# Issue 5: a walk over a 100,000-file tree within half a second.
WALK_TARGET = Target(Bound.AT_MOST, 0.5)
_PER_DIR = 100
_DIRS_PER_PARENT = 10
_SYMLINK_EVERY = 20
_FILE_BYTES = b"#" * 63 + b"\n"
# Tried in this order; the first that can mount an overlay here is used.
_OVERLAY_SANDBOXES = ("chroot", "userns")
_STEP_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class SnapshotRun:
    files: int
    runs: int
    scratch: Path  # the tree and the overlay steps' directories go here


def make_tree(root: Path, files: int) -> int:
    """Write the tree (see the module docstring) and return how many entries it holds."""
    root.mkdir(parents=True)
    entries = 0
    for extra in ("etc", "proc", "dev"):
        (root / extra).mkdir()
        entries += 1
    for name in ("hosts", "resolv.conf"):
        (root / "etc" / name).write_bytes(b"")
        entries += 1
    for index in range(files):
        slot = index % _PER_DIR
        leaf = index // _PER_DIR
        directory = root / "usr" / f"p{leaf // _DIRS_PER_PARENT:04d}" / f"d{leaf:05d}"
        if slot == 0:
            if leaf % _DIRS_PER_PARENT == 0:
                directory.parent.mkdir(parents=True, exist_ok=True)
                entries += 1
            directory.mkdir()
            entries += 1
        path = directory / f"f{slot:03d}"
        if slot % _SYMLINK_EVERY == _SYMLINK_EVERY - 1:
            os.symlink(f"f{slot - 1:03d}", path)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, _FILE_BYTES)
            finally:
                os.close(fd)
        entries += 1
    return entries + (1 if files else 0)  # and usr/


def _seconds(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _empty_step(sandbox: Sandbox, rootfs: Path, overlay: tuple[Path, Path] | None) -> None:
    spec = RunSpec(rootfs, argv=(), overlay=(str(overlay[0]), str(overlay[1])) if overlay else None)
    output: list[bytes] = []
    status = sandbox.run(spec, output.append, timeout=_STEP_TIMEOUT_SECONDS)
    if status != 0:
        text = b"".join(output).decode(errors="replace").strip()
        raise BenchError(f"an empty {sandbox.name} step failed with status {status}: {text}")


def _overlay_sandbox() -> tuple[Sandbox | None, str]:
    """A sandbox that mounts overlays here, or None and why none does."""
    reasons = []
    for name in _OVERLAY_SANDBOXES:
        sandbox = make_sandbox(name)
        reason = sandbox.unavailable() or probe_overlay(sandbox)
        if reason is None:
            return sandbox, name
        reasons.append(f"{name}: {reason}")
    return None, "; ".join(reasons)


class _Timings:
    def __init__(self) -> None:
        self.walk_baseline: list[float] = []
        self.walk_snapshot: list[float] = []
        self.overlay_snapshot: list[float] = []
        self.sandbox_step: list[float] = []
        self.walk_step: list[float] = []
        self.overlay_step: list[float] = []
        self.changes = 0


def _walk_runs(rootfs: Path, runs: int, timings: _Timings) -> None:
    for _ in range(runs):
        walk = WalkSnapshotter()
        timings.walk_baseline.append(_seconds(partial(walk.begin, rootfs)))
        started = time.perf_counter()
        walk.begin(rootfs)
        changes = walk.finish()
        timings.walk_snapshot.append(time.perf_counter() - started)
        timings.changes += len(changes)


def _sandbox_runs(rootfs: Path, sandbox: Sandbox, run: SnapshotRun, timings: _Timings) -> None:
    walk = WalkSnapshotter()
    walk.begin(rootfs)  # the baseline a stage already holds
    overlay = OverlaySnapshotter(run.scratch / "overlay-steps")
    for _ in range(run.runs):
        timings.sandbox_step.append(_seconds(partial(_empty_step, sandbox, rootfs, None)))
        started = time.perf_counter()
        walk.begin(rootfs, sandboxed=True)
        _empty_step(sandbox, rootfs, None)
        changes = walk.finish()
        timings.walk_step.append(time.perf_counter() - started)
        timings.changes += len(changes)

        started = time.perf_counter()
        overlay.begin(rootfs, sandboxed=True)
        dirs = overlay.overlay_dirs()
        before = time.perf_counter()
        _empty_step(sandbox, rootfs, dirs)
        after = time.perf_counter()
        changes = overlay.finish()
        ended = time.perf_counter()
        timings.overlay_snapshot.append((before - started) + (ended - after))
        timings.overlay_step.append(ended - started)
        timings.changes += len(changes)


def run_snapshot_bench(run: SnapshotRun, progress: Callable[[str], None]) -> Section:
    rootfs = run.scratch / f"tree-{run.files}"
    if rootfs.exists():
        raise BenchError(f"{rootfs} exists: give the benchmark a fresh scratch directory")
    progress(f"snapshot: writing a tree of {run.files:,} files")
    entries = make_tree(rootfs, run.files)
    timings = _Timings()
    progress(f"snapshot: walk snapshotter over {entries:,} entries, {run.runs} runs")
    _walk_runs(rootfs, run.runs, timings)
    sandbox, chosen = _overlay_sandbox()
    overlay_note = ""
    if sandbox is None:
        overlay_note = f"not measured: no sandbox mounts an overlay here ({chosen})"
    else:
        progress(f"snapshot: empty RUN steps in the {chosen} sandbox, {run.runs} runs")
        try:
            _sandbox_runs(rootfs, sandbox, run, timings)
        except SandboxError as exc:
            raise BenchError(f"snapshot benchmark: {exc}") from exc
    step_note = f"{chosen} sandbox" if sandbox is not None else overlay_note
    figures = (
        Figure(WALK_BASELINE, median(timings.walk_baseline), "s"),
        Figure(WALK_SNAPSHOT, median(timings.walk_snapshot), "s", WALK_TARGET),
        Figure(OVERLAY_SNAPSHOT, median(timings.overlay_snapshot), "s", note=overlay_note),
        Figure(SANDBOX_STEP, median(timings.sandbox_step), "s", note=step_note),
        Figure(WALK_STEP, median(timings.walk_step), "s", note=step_note),
        Figure(OVERLAY_STEP, median(timings.overlay_step), "s", note=step_note),
        Figure(CHANGES, float(timings.changes), "", Target(Bound.AT_MOST, 0)),
    )
    method = (
        f"A tree of {run.files:,} files ({entries:,} entries with directories and links; one "
        f"entry in {_SYMLINK_EVERY} a symlink; {_PER_DIR} per directory), written once, then "
        f"timed {run.runs} times with warm inode caches; medians. The walk figures time "
        "`WalkSnapshotter.begin()` on a new snapshotter (the first scan of a stage) and "
        "`begin()` + `finish()` with the baseline held (what every COPY or walk-mode RUN step "
        "pays: one scan and the diff). The overlay figure times `begin(sandboxed=True)` + "
        "`overlay_dirs()` + `finish()` around an empty sandbox step (`argv=()`: namespaces "
        "and mounts, the overlay over the rootfs, nothing written), without the step itself. "
        "The whole-step figures add that empty sandbox step, for a RUN that changed nothing. "
        "Every unchanged step must find no changes."
    )
    return Section(TITLE, method, figures)
