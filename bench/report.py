"""Summaries of the runs and their rendering as bench/RESULTS.md."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bench.figures import Figure, Section, Target
from bench.harness import OURS, THEIRS, RunResult
from bench.machine import Machine

__all__ = [
    "MET",
    "NOT_MET",
    "Summary",
    "number",
    "render",
    "section_table",
    "summarise",
    "targets_table",
]

MET = "met"
NOT_MET = "**not met**"

_MIB = 2**20
_TOP_PHASES = 6  # phases of our --timings-file shown per case


@dataclass(frozen=True)
class Summary:
    case: str
    tool: str
    runs: int
    wall: float  # median seconds
    max_rss_kib: int  # peak over the runs
    pushed_bytes: int  # median
    timings: tuple[tuple[str, float], ...]  # median seconds per phase, largest first


def summarise(results: Sequence[RunResult]) -> list[Summary]:
    """Medians per (case, tool), in the order the runs were made."""
    keys: list[tuple[str, str]] = []
    for result in results:
        if (result.case, result.tool) not in keys:
            keys.append((result.case, result.tool))
    summaries = []
    for case, tool in keys:
        runs = [r for r in results if r.case == case and r.tool == tool]
        phases = sorted({name for r in runs for name in r.timings})
        timings = sorted(
            ((p, statistics.median(r.timings.get(p, 0.0) for r in runs)) for p in phases),
            key=lambda item: -item[1],
        )
        summaries.append(
            Summary(
                case=case,
                tool=tool,
                runs=len(runs),
                wall=statistics.median(r.wall for r in runs),
                max_rss_kib=max(r.max_rss_kib for r in runs),
                pushed_bytes=int(statistics.median(r.pushed_bytes for r in runs)),
                timings=tuple(timings),
            )
        )
    return summaries


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs > 0 else "n/a"


def _summary_table(summaries: Sequence[Summary]) -> list[str]:
    by_key = {(s.case, s.tool): s for s in summaries}
    lines = [
        "| case | ours wall (s) | buildah wall (s) | wall ours/buildah "
        "| ours peak RSS (MiB) | buildah peak RSS (MiB) | RSS ours/buildah "
        "| ours pushed (MiB) | buildah pushed (MiB) | runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in dict.fromkeys(s.case for s in summaries):
        ours, theirs = by_key.get((case, OURS)), by_key.get((case, THEIRS))
        if ours is None or theirs is None:
            continue
        lines.append(
            f"| {case} | {ours.wall:.2f} | {theirs.wall:.2f} | {_ratio(ours.wall, theirs.wall)} "
            f"| {ours.max_rss_kib / 1024:.0f} | {theirs.max_rss_kib / 1024:.0f} "
            f"| {_ratio(ours.max_rss_kib, theirs.max_rss_kib)} "
            f"| {ours.pushed_bytes / _MIB:.2f} | {theirs.pushed_bytes / _MIB:.2f} "
            f"| {min(ours.runs, theirs.runs)} |"
        )
    return lines


def _timings_section(summaries: Sequence[Summary]) -> list[str]:
    lines = [
        "## Where our time goes",
        "",
        "Median seconds per phase from `farm build --timings-file` (largest first; "
        "`total` is the whole build as the executor sees it).",
        "",
    ]
    for summary in summaries:
        if summary.tool != OURS or not summary.timings:
            continue
        shown = ", ".join(f"{name} {secs:.2f}" for name, secs in summary.timings[:_TOP_PHASES])
        lines.append(f"- {summary.case}: {shown}")
    return lines


def _runs_table(results: Sequence[RunResult]) -> list[str]:
    lines = [
        "| case | run | tool | wall (s) | peak RSS (MiB) | pushed (bytes) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.case} | {r.run} | {r.tool} | {r.wall:.3f} | {r.max_rss_kib / 1024:.1f} "
            f"| {r.pushed_bytes} |"
        )
    return lines


def _cold_sections(results: Sequence[RunResult]) -> list[str]:
    if not results:
        return []
    summaries = summarise(results)
    return [
        "## Cold build + push (medians)",
        "",
        "Each run is cold: a new registry holding only the busybox base, a new workspace "
        "for ours, new `--root`/`--runroot` for buildah (overlay, `--isolation chroot "
        "--layers`, then `buildah push`). Ours and buildah alternate run by run. Wall time "
        "covers build and push; peak RSS is `ru_maxrss` of `RUSAGE_CHILDREN` in a wrapper "
        "process per run (the largest single process of that run's tree); pushed bytes sum "
        "the config and layers of the pushed manifest (the base layer included, though a "
        "client may mount it rather than upload it).",
        "",
        *_summary_table(summaries),
        "",
        *_timings_section(summaries),
        "",
    ]


def render(
    results: Sequence[RunResult],
    machine: Machine,
    *,
    when: datetime,
    command: str,
    sections: Sequence[Section] = (),
) -> str:
    """The whole RESULTS.md: the cold runs (if any), then each section of figures."""
    tools = "\n".join(f"- {name}: {version}" for name, version in machine.tools)
    load = ", ".join(f"{value:.2f}" for value in machine.load_average)
    lines = [
        "# Benchmark results",
        "",
        f"Measured {when.strftime('%Y-%m-%d %H:%M %Z').strip()} with `{command}`.",
        "",
        "## Machine",
        "",
        f"- CPU: {machine.cpu}, {machine.cores} cores",
        f"- Memory: {machine.memory_gib:.1f} GiB",
        f"- Kernel: {machine.kernel}; Python {machine.python}",
        f"- Load average (1, 5, 15 min) when the run began: {load}",
        tools,
        "",
        *targets_table(sections),
        *_cold_sections(results),
    ]
    for section in sections:
        lines += [*section_table(section), ""]
    if results:
        lines += ["## Every cold run", "", *_runs_table(results), ""]
    return "\n".join(lines)


def number(value: float) -> str:
    """A figure's value: about three significant digits, ``n/a`` if it was not measured."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf"
    size = abs(value)
    if value == int(value) or size >= 100:
        return f"{value:,.0f}"  # counts, and large values whose decimals are noise
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    if size >= 0.01:
        return f"{value:.3f}"
    return f"{value:.3g}"


def _with_unit(text: str, unit: str) -> str:
    return f"{text} {unit}" if unit else text


def _target(target: Target | None, unit: str) -> str:
    if target is None:
        return ""
    return _with_unit(f"{target.bound.value} {number(target.limit)}", unit)


def _verdict(figure: Figure) -> str:
    met = figure.met
    return "" if met is None else MET if met else NOT_MET


def section_table(section: Section) -> list[str]:
    """``## title``, how it was measured, and a row per figure."""
    lines = [
        f"## {section.title}",
        "",
        section.method,
        "",
        "| figure | value | target | | note |",
        "|---|---:|---|---|---|",
    ]
    for figure in section.figures:
        value = _with_unit(number(figure.value), figure.unit)
        target = _target(figure.target, figure.unit)
        lines.append(f"| {figure.name} | {value} | {target} | {_verdict(figure)} | {figure.note} |")
    return lines


def targets_table(sections: Sequence[Section]) -> list[str]:
    """Every figure that has a target, in one table; nothing when none has."""
    rows = [
        f"| {section.title} | {figure.name} | {_with_unit(number(figure.value), figure.unit)} "
        f"| {_target(figure.target, figure.unit)} | {_verdict(figure)} |"
        for section in sections
        for figure in section.figures
        if figure.target is not None
    ]
    if not rows:
        return []
    met = sum(1 for section in sections for figure in section.figures if figure.met is True)
    return [
        "## Targets",
        "",
        f"{met} of {len(rows)} met (figures and methods in the sections below).",
        "",
        "| section | figure | value | target | |",
        "|---|---|---:|---|---|",
        *rows,
        "",
    ]
