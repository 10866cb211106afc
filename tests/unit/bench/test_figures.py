"""Targets, figures and the statistics behind them (bench/figures.py)."""

from __future__ import annotations

import math

import pytest

from bench.figures import Bound, Figure, Section, Target, median, percentile


@pytest.mark.parametrize(
    ("bound", "limit", "value", "met"),
    [
        (Bound.BELOW, 50.0, 49.9, True),
        (Bound.BELOW, 50.0, 50.0, False),
        (Bound.AT_MOST, 0.5, 0.5, True),
        (Bound.AT_MOST, 0.5, 0.51, False),
        (Bound.AT_LEAST, 300.0, 300.0, True),
        (Bound.AT_LEAST, 300.0, 299.0, False),
        (Bound.AT_LEAST, 1.8, math.nan, False),
        (Bound.AT_MOST, 10.0, math.nan, False),
    ],
)
def test_target_met(bound: Bound, limit: float, value: float, met: bool) -> None:
    assert Target(bound, limit).met(value) is met


def test_a_figure_without_a_target_is_neither_met_nor_missed() -> None:
    assert Figure("p99", 12.0, "ms").met is None
    assert Figure("p50", 12.0, "ms", Target(Bound.BELOW, 50)).met is True


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([4.0, 1.0, 3.0, 2.0], 0.5, 2.0),  # nearest rank: a value that occurred
        ([float(n) for n in range(1, 51)], 0.99, 50.0),  # under 100 values: the largest
        ([float(n) for n in range(1, 201)], 0.99, 198.0),
        ([7.0], 0.99, 7.0),
        ([3.0, 1.0, 2.0], 1.0, 3.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], fraction: float, expected: float) -> None:
    assert percentile(values, fraction) == expected


def test_no_values_give_nan_not_zero() -> None:
    assert math.isnan(percentile([], 0.5))
    assert math.isnan(median([]))
    assert median([3.0, 1.0, 2.0]) == 2.0


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_percentile_refuses_fractions_outside_0_1(fraction: float) -> None:
    with pytest.raises(ValueError, match="not in"):
        percentile([1.0], fraction)


def test_section_finds_figures_by_name() -> None:
    section = Section("S", "how", (Figure("a", 1.0, "s"), Figure("b", 2.0, "s")))
    assert section.figure("b").value == 2.0
    with pytest.raises(KeyError, match="no figure 'c' in section 'S'"):
        section.figure("c")
