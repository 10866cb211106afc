"""Figures for the report: one measured value each, its unit, and the target it is held to.

The micro and farm benchmarks each give a :class:`Section`: a title, a paragraph saying
exactly what was timed, and its figures. The report renders every section the same
way, with the target next to each figure and whether it was met.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

__all__ = ["Bound", "Figure", "Section", "Target", "median", "percentile"]


class Bound(Enum):
    """How a value is compared with its target's limit; the value is the sign shown."""

    BELOW = "<"
    AT_MOST = "≤"
    AT_LEAST = "≥"


@dataclass(frozen=True)
class Target:
    """A limit a figure should stay within, such as ``≤ 0.5 s`` or ``≥ 300 MB/s``."""

    bound: Bound
    limit: float

    def met(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.bound is Bound.BELOW:
            return value < self.limit
        if self.bound is Bound.AT_MOST:
            return value <= self.limit
        return value >= self.limit


@dataclass(frozen=True)
class Figure:
    """One measured value; ``name`` is unique within its section."""

    name: str
    value: float
    unit: str  # "s", "ms", "MB/s", "x", "%", "" for a count
    target: Target | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        """Whether the target was met; None when the figure has no target."""
        return None if self.target is None else self.target.met(self.value)


@dataclass(frozen=True)
class Section:
    """A group of figures with the paragraph that says how they were measured."""

    title: str
    method: str
    figures: tuple[Figure, ...]

    def figure(self, name: str) -> Figure:
        for figure in self.figures:
            if figure.name == name:
                return figure
        raise KeyError(f"no figure {name!r} in section {self.title!r}")


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values (a figure that could not be measured)."""
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.99 for p99): a value that occurred.

    With fewer than 100 values p99 is the largest, which is what a reader expects of
    "99 in 100 were at most this". NaN for no values.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"percentile fraction {fraction} is not in (0, 1]")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = math.ceil(fraction * len(ordered))
    return ordered[rank - 1]
