"""The benchmark harness in quick mode (one case, one run, both tools), so it cannot rot.

Timing is never asserted against a target here: only that the report has the case's
row with positive times for both tools and a ratio between them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
QUICK_CASE = "1-small-app"
# Columns of the summary table in bench/RESULTS.md.
OURS_WALL, THEIRS_WALL, RATIO = 1, 2, 3
_TIMEOUT_SECONDS = 120


def _summary_row(report: str, case: str) -> list[str]:
    for line in report.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == case and len(cells) >= 10:
            return cells
    raise AssertionError(f"no summary row for {case} in:\n{report}")


def test_quick_run_reports_both_tools(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "run"), "--quick", "--out", str(out),
         "--scratch", str(tmp_path / "scratch")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_SECONDS,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = out.read_text()
    row = _summary_row(report, QUICK_CASE)
    ours, theirs, ratio = float(row[OURS_WALL]), float(row[THEIRS_WALL]), float(row[RATIO])
    assert ours > 0
    assert theirs > 0
    assert ratio == round(ours / theirs, 2) or abs(ratio - ours / theirs) < 0.01
    assert "## Machine" in report


def test_warm_mode_is_refused_until_the_layer_cache_exists() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "run"), "--warm"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_SECONDS,
        check=False,
    )
    assert proc.returncode == 2
    assert "not yet: needs the shared layer cache" in proc.stderr
