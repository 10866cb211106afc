"""The farm measurements, each against a running :class:`LocalBenchFarm`.

Times come from the build records where they can (``submitted_at`` in the request,
``created_at``, ``started_at`` and ``finished_at`` in the record; one machine, one
clock), so how often this process polls does not enter the figures.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from bench import BenchError
from bench.farmbench.local import LocalBenchFarm
from bench.proc import cpu_seconds
from executor.oci.reference import ImageReference
from farm.batchfile import BatchItem
from farm.client import FarmClient, WaitTimeoutError
from farm.records import BuildRecord, BuildState

__all__ = [
    "BatchTimes",
    "OverheadRun",
    "Throughput",
    "batch_throughput",
    "duplicate_publications",
    "overhead_runs",
    "submit_and_cancel",
    "submit_to_start",
]

# A build of the small case takes seconds; minutes means it is stuck.
_BUILD_TIMEOUT_SECONDS = 300.0
# Per build of a batch, for the whole batch to end.
_BATCH_SECONDS_PER_BUILD = 30.0
_POLL_SECONDS = 0.05
_BATCH_POLL_SECONDS = 0.5
# What the reaper logs when it publishes a build whose message it thinks was never sent.
_REPUBLISHED = b"had no message on the queue; published it"


def _args(farm: LocalBenchFarm) -> dict[str, str]:
    return {"BASE": farm.base}


def _wait(client: FarmClient, build_id: str) -> BuildRecord:
    try:
        record = client.wait(build_id, timeout=_BUILD_TIMEOUT_SECONDS, poll=_POLL_SECONDS)
    except WaitTimeoutError as exc:
        raise BenchError(str(exc)) from exc
    return _succeeded(record)


def _succeeded(record: BuildRecord) -> BuildRecord:
    if record.state is not BuildState.SUCCESS:
        raise BenchError(f"farm build {record.build_id} ended {record.state}: {record.reason}")
    if record.started_at is None or record.finished_at is None:
        raise BenchError(f"farm build {record.build_id} succeeded without start and end times")
    return record


def submit_to_start(
    farm: LocalBenchFarm, context: Path, runs: int, *, settle: float
) -> tuple[list[float], list[float]]:
    """Submit one build at a time to an idle worker: (submit-to-start, submit call) seconds.

    Before each submission the previous build has ended and ``settle`` seconds have
    passed, so the worker waits on the queue as an idle one does.
    """
    client = farm.client()
    latencies, calls = [], []
    for index in range(runs):
        time.sleep(settle)
        called = time.time()
        build_id = client.submit(
            context,
            destinations=[f"{farm.registry}/bench/latency:{index}"],
            build_args=_args(farm),
        )
        calls.append(time.time() - called)
        record = _wait(client, build_id)
        assert record.started_at is not None  # _succeeded checked
        latencies.append(record.started_at - record.request.submitted_at)
    return latencies, calls


@dataclass(frozen=True)
class BatchTimes:
    submit: float  # seconds for submit_batch
    cancel: float  # seconds for cancel_batch


def _items(
    farm: LocalBenchFarm, context: Path, count: int, *, name: str, repository: str
) -> list[BatchItem]:
    """``count`` builds of ``context``, each pushing to its own tag of one repository."""
    return [
        BatchItem(
            name=f"{name}{index:04d}",
            context=str(context),
            destinations=(ImageReference.parse(f"{farm.registry}/bench/{repository}:{index}"),),
            build_args=_args(farm),
        )
        for index in range(count)
    ]


def submit_and_cancel(farm: LocalBenchFarm, context: Path, count: int) -> BatchTimes:
    """Submit ``count`` builds as one batch, then cancel them all and remove their queue.

    They go to a queue of their own that no worker reads, so no build competes with
    the submission for the CPU; queue names are a setting (FARM_QUEUE) and change
    nothing else on the way. Cancelling takes every one out of the outbox, so no
    worker's reaper publishes them to the real queue later.
    """
    queue = f"bench-parked-{secrets.token_hex(4)}"
    client = farm.client(FARM_QUEUE=queue)
    items = _items(farm, context, count, name="b", repository="parked")
    started = time.perf_counter()
    batch_id, _ = client.submit_batch(items)
    submitted = time.perf_counter() - started
    started = time.perf_counter()
    cancelled = client.cancel_batch(batch_id)
    cancel = time.perf_counter() - started
    left = [r for r in client.list(batch_id=batch_id) if r.state is not BuildState.CANCELLED]
    if len(cancelled) != count or left:
        raise BenchError(
            f"batch {batch_id}: {len(cancelled)} of {count} cancelled, {len(left)} not cancelled"
        )
    _delete_queue(client.settings.redis_url, queue)
    return BatchTimes(submit=submitted, cancel=cancel)


def _delete_queue(redis_url: str, queue: str) -> None:
    """Remove the parked queue's list and kombu's bookkeeping for it."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"*{queue}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@dataclass(frozen=True)
class Throughput:
    builds: int
    window: float  # seconds from the first created_at to the last finished_at
    worker_cpu: float  # CPU seconds of the workers and every build child they ran
    service_cpu: float  # CPU seconds of redis-server and the registry
    load_average: float  # the machine's 1-minute load average when the batch ended

    @property
    def per_minute(self) -> float:
        return self.builds / self.window * 60


def _cpu(pids: Sequence[int]) -> float:
    return sum(cpu_seconds(pid, children=True) for pid in pids)


def batch_throughput(farm: LocalBenchFarm, context: Path, count: int, tag: str) -> Throughput:
    """One batch of ``count``: from the batch being recorded to the last build's end
    (the last ``finished_at`` minus the first ``created_at``), and the CPU it took."""
    client = farm.client()
    workers, services = farm.pids(workers=True), farm.pids(workers=False)
    worker_cpu, service_cpu = _cpu(workers), _cpu(services)
    _, ids = client.submit_batch(_items(farm, context, count, name="t", repository=tag))
    try:
        records = client.wait_many(
            list(ids.values()), timeout=_BATCH_SECONDS_PER_BUILD * count, poll=_BATCH_POLL_SECONDS
        )
    except WaitTimeoutError as exc:
        raise BenchError(f"batch of {count} not done in time: {exc}") from exc
    worker_cpu, service_cpu = _cpu(workers) - worker_cpu, _cpu(services) - service_cpu
    ended = [_succeeded(r) for r in records]
    window = max(r.finished_at or 0.0 for r in ended) - min(r.created_at for r in ended)
    return Throughput(count, window, worker_cpu, service_cpu, os.getloadavg()[0])


def duplicate_publications(logs: Sequence[Path]) -> int:
    """How many builds a worker's reaper published because they were still in the outbox."""
    return sum(path.read_bytes().count(_REPUBLISHED) for path in logs if path.exists())


@dataclass(frozen=True)
class OverheadRun:
    alone: float  # wall seconds of `farm build` on its own
    farm: float  # from calling submit to the record's finished_at
    submit_call: float  # pack, upload, record, queue
    queue_wait: float  # started_at - created_at
    worker: float  # finished_at - started_at: fetch, the build child, log, record


def overhead_runs(
    farm: LocalBenchFarm, context: Path, runs: int, scratch: Path
) -> list[OverheadRun]:
    """The same build with ``farm build`` alone and on the farm, alternating."""
    client = farm.client()
    results = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    for index in range(runs):
        workspace = scratch / "alone-workspace"
        shutil.rmtree(workspace, ignore_errors=True)
        argv = [
            sys.executable, "-m", "farm", "build",
            "--context", str(context),
            "--build-arg", f"BASE={farm.base}",
            "--destination", f"{farm.registry}/bench/overhead:alone-{index}",
            "--workspace", str(workspace),
        ]  # fmt: skip
        log = scratch / "alone.log"
        started = time.perf_counter()
        with log.open("ab") as out:
            code = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env, timeout=_BUILD_TIMEOUT_SECONDS, check=False,
            ).returncode  # fmt: skip
        alone = time.perf_counter() - started
        shutil.rmtree(workspace, ignore_errors=True)
        if code != 0:
            raise BenchError(f"farm build alone exited {code}; see {log}")
        called = time.time()
        build_id = client.submit(
            context,
            destinations=[f"{farm.registry}/bench/overhead:farm-{index}"],
            build_args=_args(farm),
        )
        submit_call = time.time() - called
        record = _wait(client, build_id)
        assert record.started_at is not None and record.finished_at is not None
        results.append(
            OverheadRun(
                alone=alone,
                farm=record.finished_at - called,
                submit_call=submit_call,
                queue_wait=record.started_at - record.created_at,
                worker=record.finished_at - record.started_at,
            )
        )
    return results
