"""The micro and farm benchmarks at tiny sizes (``bench/run --quick --micro --farm-bench``),
so they cannot rot.

No timing is held to a target here: the report must have every section and figure,
each measured (a number, not n/a), with the counts the tiny sizes give and values
that make sense (an unchanged tree has no changes, random bytes do not compress).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench import farmbench
from bench.farmbench import (
    BATCH_TITLE,
    LATENCY_TITLE,
    OVERHEAD_TITLE,
    THROUGHPUT_TITLE,
)
from bench.micro import QUICK
from bench.micro import layers as layer_bench
from bench.micro import push as push_bench
from bench.micro import snapshots as snapshot_bench

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
_TIMEOUT_SECONDS = 300

Row = tuple[float, str, str]  # value, target, verdict


def _section(report: str, title: str) -> dict[str, Row]:
    """Figure name -> (value, target, verdict) from the section's table."""
    assert f"## {title}\n" in report, f"no section {title!r} in:\n{report}"
    body = report.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, Row] = {}
    for line in body.splitlines():
        if not line.startswith("| ") or line.startswith("| figure |"):
            continue
        name, value, target, verdict, _ = (cell.strip() for cell in line.strip("|").split("|"))
        shown = value.split()[0].replace(",", "")
        rows[name] = (math.nan if shown == "n/a" else float(shown), target, verdict)
    return rows


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("bench-parts")
    out = tmp / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "run"), "--quick", "--micro", "--farm-bench",
         "--out", str(out), "--scratch", str(tmp / "scratch")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=_TIMEOUT_SECONDS, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out.read_text()


def test_only_the_parts_asked_for_ran(report: str) -> None:
    assert "## Cold build" not in report
    assert "## Targets" in report


def test_snapshot_figures(report: str) -> None:
    rows = _section(report, snapshot_bench.TITLE)
    assert f"A tree of {QUICK.snapshot_files:,} files" in report
    for name in (
        snapshot_bench.WALK_BASELINE,
        snapshot_bench.WALK_SNAPSHOT,
        snapshot_bench.OVERLAY_SNAPSHOT,
        snapshot_bench.SANDBOX_STEP,
        snapshot_bench.WALK_STEP,
        snapshot_bench.OVERLAY_STEP,
    ):
        assert 0 < rows[name][0] < 60, (name, rows[name])
    # A whole step includes the empty sandbox step it wraps.
    assert rows[snapshot_bench.OVERLAY_STEP][0] > rows[snapshot_bench.OVERLAY_SNAPSHOT][0]
    assert rows[snapshot_bench.WALK_SNAPSHOT][1] == "≤ 0.500 s"
    walk = rows[snapshot_bench.WALK_SNAPSHOT]
    assert walk[2] == ("met" if walk[0] <= 0.5 else "**not met**")
    assert rows[snapshot_bench.CHANGES] == (0.0, "≤ 0", "met")


def test_layer_figures(report: str) -> None:
    rows = _section(report, layer_bench.TITLE)
    for codec in layer_bench.CODECS:
        for data in layer_bench.DATA_KINDS:
            per_core = rows[layer_bench.figure_name(codec, data, "MB/s per core")][0]
            assert 0 < per_core < math.inf
            assert rows[layer_bench.figure_name(codec, data, "MB/s wall")][0] > 0
    default = layer_bench.DEFAULT
    assert rows[layer_bench.figure_name(default, "incompressible", "size ratio")][0] >= 0.99
    assert rows[layer_bench.figure_name(default, "text-like", "size ratio")][0] < 0.5
    assert rows[layer_bench.figure_name(default, "text-like", "MB/s per core")][1] == "≥ 300 MB/s"
    assert rows[layer_bench.SHA256_PART][0] > 0


def test_push_figures(report: str) -> None:
    rows = _section(report, push_bench.TITLE)
    for mib in QUICK.push_mib:
        assert rows[push_bench.figure_name(mib, "MB/s")][0] > 0
        assert rows[push_bench.figure_name(mib, "client CPU")][0] >= 0
        assert rows[push_bench.figure_name(mib, "registry CPU")][0] >= 0


def test_farm_figures(report: str) -> None:
    sizes = farmbench.QUICK
    latency = _section(report, LATENCY_TITLE)
    assert f"{sizes.latency_builds} builds, one at a time" in report
    assert 0 < latency["p50"][0] <= latency["p99"][0]
    assert latency["p50"][1] == "< 50 ms"
    batch = _section(report, BATCH_TITLE)
    assert batch[f"submit {sizes.submitted} builds"][0] > 0
    assert batch[f"cancel {sizes.submitted} builds"][0] > 0
    throughput = _section(report, THROUGHPUT_TITLE)
    one, two = throughput["1 worker"][0], throughput["2 workers"][0]
    assert one > 0 and two > 0
    assert throughput["2 workers / 1 worker"][0] == pytest.approx(two / one, rel=0.02)
    for workers in ("1 worker", "2 workers"):
        assert throughput[f"{workers}: CPU per build, workers and builds"][0] > 0
        assert throughput[f"{workers}: CPU per build, redis and registry"][0] >= 0
        assert 0 < throughput[f"{workers}: cores busy with the farm"][0] < 64
    # Every message went out with its submission: no reaper had one to send.
    assert throughput["builds published twice by a reaper"][0] == 0
    overhead = _section(report, OVERHEAD_TITLE)
    alone, on_farm = overhead["farm build alone"][0], overhead["on the farm, submit to finished"][0]
    assert alone > 0 and on_farm > 0
    assert overhead["overhead"][0] == pytest.approx((on_farm / alone - 1) * 100, abs=1.5)
    assert overhead["farm: worker (started to finished)"][0] < on_farm
