"""Farm benchmarks against a real local farm (``farm up``): latency, submission,
throughput with one and two workers, and the farm's overhead over ``farm build``.

Every build is the small reference case (bench/cases/1-small-app: FROM the busybox
base in the farm's registry, two COPY steps, one RUN, pushed to the farm's registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.cases import CASES, prepare_context
from bench.farmbench.local import LocalBenchFarm
from bench.farmbench.measures import (
    OverheadRun,
    Throughput,
    batch_throughput,
    duplicate_publications,
    overhead_runs,
    submit_and_cancel,
    submit_to_start,
)
from bench.figures import Bound, Figure, Section, Target, median, percentile

__all__ = [
    "BATCH_TITLE",
    "FULL",
    "LATENCY_TITLE",
    "OVERHEAD_TITLE",
    "QUICK",
    "THROUGHPUT_TITLE",
    "FarmSizes",
    "run_farm_bench",
]

LATENCY_TITLE = "Farm: submit to start"
BATCH_TITLE = "Farm: submitting a batch"
THROUGHPUT_TITLE = "Farm: throughput"
OVERHEAD_TITLE = "Farm: overhead over farm build alone"
SMALL_CASE = CASES[0]
# Issue 5's targets.
LATENCY_P50_TARGET = Target(Bound.BELOW, 50.0)  # ms
SUBMIT_SECONDS_PER_1000 = 5.0
SCALING_TARGET = Target(Bound.AT_LEAST, 1.8)
OVERHEAD_TARGET = Target(Bound.AT_MOST, 10.0)  # percent


@dataclass(frozen=True)
class FarmSizes:
    latency_builds: int
    submitted: int
    throughput_builds: int
    overhead_runs: int
    settle_seconds: float  # idle time before each latency submission


# 50 latency builds and 10 overhead pairs take about two minutes each; 100 builds per
# throughput batch about two minutes with one worker on 2 cores.
FULL = FarmSizes(
    latency_builds=50, submitted=1000, throughput_builds=100, overhead_runs=10, settle_seconds=0.3
)
QUICK = FarmSizes(
    latency_builds=3, submitted=20, throughput_builds=4, overhead_runs=1, settle_seconds=0.1
)


def _ms(seconds: float) -> float:
    return seconds * 1000


def _latency_section(latencies: list[float], calls: list[float], settle: float) -> Section:
    figures = (
        Figure("p50", _ms(percentile(latencies, 0.5)), "ms", LATENCY_P50_TARGET),
        Figure("p99", _ms(percentile(latencies, 0.99)), "ms"),
        Figure("submit call p50 (pack, upload, record, queue)", _ms(median(calls)), "ms"),
    )
    method = (
        f"{len(latencies)} builds, one at a time, to a farm with one idle worker: each is "
        f"submitted {settle:g} s after the one before ended. Submit to start is the record's "
        "`started_at` (the worker's claim, QUEUED -> WORKING) minus the request's "
        "`submitted_at` (set by `FarmClient.submit` once the context is packed and "
        "uploaded, just before the record is written and the message sent). p99 is the "
        "nearest rank: with fewer than 100 builds, the largest. The submit call is the "
        "client's whole `submit()`."
    )
    return Section(LATENCY_TITLE, method, figures)


def _batch_section(count: int, submit: float, cancel: float) -> Section:
    limit = SUBMIT_SECONDS_PER_1000 * count / 1000
    note = "" if count == 1000 else f"target scaled from {SUBMIT_SECONDS_PER_1000:g} s per 1,000"
    figures = (
        Figure(f"submit {count:,} builds", submit, "s", Target(Bound.BELOW, limit), note),
        Figure("submit, per build", _ms(submit / count), "ms"),
        Figure(f"cancel {count:,} builds", cancel, "s"),
    )
    method = (
        f"`FarmClient.submit_batch` of {count:,} builds of the small case (one context: "
        "the client packs and uploads each distinct context once per batch), timed from "
        "the call to its return. They go to a queue of their own "
        "that no worker reads (FARM_QUEUE), so no build competes for the CPU; then "
        "`cancel_batch` cancels every one (timed too) and the queue is deleted."
    )
    return Section(BATCH_TITLE, method, figures)


def _throughput_section(one: Throughput, two: Throughput, duplicates: int) -> Section:
    figures = [
        Figure("1 worker", one.per_minute, "builds/min"),
        Figure("2 workers", two.per_minute, "builds/min"),
        Figure("2 workers / 1 worker", two.per_minute / one.per_minute, "x", SCALING_TARGET),
    ]
    for label, run in (("1 worker", one), ("2 workers", two)):
        figures += [
            Figure(f"{label}: CPU per build, workers and builds", run.worker_cpu / run.builds, "s"),
            Figure(
                f"{label}: CPU per build, redis and registry", run.service_cpu / run.builds, "s"
            ),
            Figure(
                f"{label}: cores busy with the farm",
                (run.worker_cpu + run.service_cpu) / run.window,
                "",
            ),
            Figure(f"{label}: machine load average at the end", run.load_average, ""),
        ]
    figures.append(Figure("builds published twice by a reaper", float(duplicates), ""))
    method = (
        f"One batch of {one.builds} builds of the small case on a fresh farm with one worker, "
        "then on a fresh farm with two; builds per minute over the batch: from the first "
        "record's `created_at` to the last `finished_at`. Each worker runs one build at a "
        "time as a `farm build` child. CPU is user + system time from /proc over the batch: "
        "of the worker processes with every child they reaped (the builds and their "
        "sandboxes), and of redis-server and the registry; cores busy is their sum over the "
        "window. Two workers can reach 2x only with two cores free for them: compare cores "
        "busy and the machine's load average (other processes included). The last figure "
        "counts reaper log lines 'had no message on the queue; published it' over both "
        "runs: builds that got a second queue message."
    )
    return Section(THROUGHPUT_TITLE, method, tuple(figures))


def _overhead_section(runs: list[OverheadRun]) -> Section:
    alone = median([r.alone for r in runs])
    on_farm = median([r.farm for r in runs])
    figures = (
        Figure("farm build alone", alone, "s"),
        Figure("on the farm, submit to finished", on_farm, "s"),
        Figure("overhead", (on_farm / alone - 1) * 100, "%", OVERHEAD_TARGET),
        Figure("farm: submit call", median([r.submit_call for r in runs]), "s"),
        Figure("farm: queue wait (created to started)", median([r.queue_wait for r in runs]), "s"),
        Figure("farm: worker (started to finished)", median([r.worker for r in runs]), "s"),
    )
    method = (
        f"{len(runs)} pairs, alternating: `python -m farm build` of the small case on its "
        "own (wall time of the process, pushing to the farm's registry), then the same "
        "build submitted to the farm with one idle worker: from calling `submit()` to the "
        "record's `finished_at`. Medians; overhead is farm over alone minus one. The "
        "worker's part covers fetching and unpacking the context, the `farm build` child "
        "(the same command plus --outcome-file), streaming its log to Redis, keeping the "
        "log in storage and recording the outcome."
    )
    return Section(OVERHEAD_TITLE, method, figures)


def run_farm_bench(
    sizes: FarmSizes,
    scratch: Path,
    *,
    layout: Path,
    tag: str,
    progress: Callable[[str], None],
) -> list[Section]:
    """Start a one-worker farm for latency, submission, overhead and throughput, then a
    two-worker farm for throughput; return the four sections."""
    scratch.mkdir(parents=True, exist_ok=True)
    context = prepare_context(SMALL_CASE, scratch / "context")
    with LocalBenchFarm(scratch / "farm-1", workers=1, layout=layout, tag=tag) as farm:
        progress(f"farm: {sizes.latency_builds} builds one at a time (submit to start)")
        latencies, calls = submit_to_start(
            farm, context, sizes.latency_builds, settle=sizes.settle_seconds
        )
        progress(f"farm: submitting {sizes.submitted:,} builds, then cancelling them")
        batch = submit_and_cancel(farm, context, sizes.submitted)
        progress(f"farm: {sizes.overhead_runs} builds alone and on the farm (overhead)")
        overhead = overhead_runs(farm, context, sizes.overhead_runs, scratch)
        progress(f"farm: a batch of {sizes.throughput_builds} builds, 1 worker")
        one = batch_throughput(farm, context, sizes.throughput_builds, "one-worker")
        duplicates = duplicate_publications(farm.worker_logs())
    with LocalBenchFarm(scratch / "farm-2", workers=2, layout=layout, tag=tag) as farm:
        progress(f"farm: a batch of {sizes.throughput_builds} builds, 2 workers")
        two = batch_throughput(farm, context, sizes.throughput_builds, "two-workers")
        duplicates += duplicate_publications(farm.worker_logs())
    return [
        _latency_section(latencies, calls, sizes.settle_seconds),
        _batch_section(sizes.submitted, batch.submit, batch.cancel),
        _throughput_section(one, two, duplicates),
        _overhead_section(overhead),
    ]
