"""The report's rendering of cold runs and of figure sections (bench/report.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from bench.figures import Bound, Figure, Section, Target
from bench.harness import OURS, THEIRS, RunResult
from bench.machine import Machine
from bench.report import MET, NOT_MET, number, render

MACHINE = Machine(
    cpu="Test CPU",
    cores=2,
    memory_gib=4.0,
    kernel="Linux 6.1",
    python="3.11.7",
    tools=(("farm", "farm 0.1.0"),),
    load_average=(1.5, 1.0, 0.5),
)
WHEN = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)
SECTIONS = (
    Section(
        "Snapshots",
        "What was timed, exactly.",
        (
            Figure("walk", 0.42, "s", Target(Bound.AT_MOST, 0.5)),
            Figure("overlay", 0.0012, "s", note="chroot sandbox"),
        ),
    ),
    Section("Farm", "Farm method.", (Figure("p50", 61.4, "ms", Target(Bound.BELOW, 50)),)),
)


def _rows(report: str, heading: str) -> list[list[str]]:
    """The table rows (cells) under ``## heading``, up to the next heading."""
    lines = report.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [line for line in lines if line.startswith("|") and not line.startswith("|---")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


def test_sections_render_with_targets_and_verdicts() -> None:
    report = render([], MACHINE, when=WHEN, command="bench/run --micro", sections=SECTIONS)
    assert "Load average (1, 5, 15 min) when the run began: 1.50, 1.00, 0.50" in report
    assert "1 of 2 met" in report
    assert _rows(report, "Targets") == [
        ["Snapshots", "walk", "0.420 s", "≤ 0.500 s", MET],
        ["Farm", "p50", "61.4 ms", "< 50 ms", NOT_MET],
    ]
    assert "What was timed, exactly." in report
    assert _rows(report, "Snapshots") == [
        ["walk", "0.420 s", "≤ 0.500 s", MET, ""],
        ["overlay", "0.0012 s", "", "", "chroot sandbox"],
    ]
    assert "Cold build" not in report and "Every cold run" not in report


def test_cold_runs_alone_have_no_targets_section() -> None:
    results = [
        RunResult("1-small-app", OURS, 1, 0.8, 40_000, 1_000_000),
        RunResult("1-small-app", THEIRS, 1, 1.6, 41_000, 1_000_000),
    ]
    report = render(results, MACHINE, when=WHEN, command="bench/run --quick")
    assert "## Targets" not in report
    assert _rows(report, "Cold build + push (medians)")[0][:4] == [
        "1-small-app", "0.80", "1.60", "0.50",
    ]  # fmt: skip
    assert len(_rows(report, "Every cold run")) == 2


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.0, "0"),
        (1000.0, "1,000"),
        (1234.5, "1,234"),
        (56.78, "56.8"),
        (1.234, "1.23"),
        (0.4567, "0.457"),
        (0.000931, "0.000931"),
        (math.nan, "n/a"),
        (math.inf, "inf"),
    ],
)
def test_numbers_keep_about_three_significant_digits(value: float, shown: str) -> None:
    assert number(value) == shown
