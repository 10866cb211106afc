"""The build task: decode the request, run the build, record the outcome.

Steps, each at one level: validate the request again (a malformed one is rejected,
never retried) -> skip builds already ended (a redelivery) -> wait for dependencies
-> claim the build (QUEUED/WORKING -> WORKING) -> fetch the context -> run
``farm build`` in a child with a heartbeat -> record the outcome -> clean up.
Temporary failures go back to the queue with backoff; permanent ones end at once.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from celery import Celery, Task

from executor.errors import ExecutorError
from farm.config import Settings
from farm.contexts import fetch_context
from farm.metrics import FarmMetrics
from farm.records import TERMINAL, BuildRecord, BuildState, Records
from farm.spec import BuildOutcome, BuildRequest, SpecError
from tasks.retry import backoff_seconds
from tasks.runner import run_child

log = logging.getLogger("farm.worker")
# A build whose dependencies are still running looks again after this long.
DEPENDENCY_POLL_SECONDS = 2.0
# Temporary failures are retried this many times before the build fails for good.
MAX_ATTEMPTS = 5
# Outcomes that stop a fail_fast batch.
_FAILED = frozenset({BuildState.FAILURE, BuildState.INTERNAL_ERROR, BuildState.TIMEOUT})


def log_key(build_id: str) -> str:
    return f"logs/{build_id}.log"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def register(app: Celery, settings: Settings) -> None:
    metrics = FarmMetrics()
    app.farm_metrics = metrics

    @app.task(name="farm.build", bind=True, max_retries=None)  # type: ignore[untyped-decorator]
    def build(task: Task, payload: Any) -> dict[str, Any] | None:
        job = BuildJob(settings, Records.from_url(settings.redis_url), metrics)
        return job.handle(task, payload)


class BuildJob:
    """One delivery of one build request."""

    def __init__(self, settings: Settings, records: Records, metrics: FarmMetrics) -> None:
        self.settings = settings
        self.records = records
        self.metrics = metrics
        self.worker = worker_name()

    def handle(self, task: Task, payload: Any) -> dict[str, Any] | None:
        try:
            request = BuildRequest.from_json(payload)
        except SpecError as exc:
            self.metrics.rejected.inc()
            log.error("rejected a malformed build request: %s", exc)
            return {"rejected": str(exc)}
        record = self.records.get(request.build_id) or self.records.create(request)
        if record.state in TERMINAL:
            log.info(
                "build %s already ended as %s; not building again", request.build_id, record.state
            )
            return None
        if self.records.cancel_requested(request.build_id):
            self._end(request, BuildState.CANCELLED, "cancelled before it started")
            return None
        now = time.time()
        if (
            record.state == BuildState.QUEUED
            and now - request.submitted_at > self.settings.queue_ttl_seconds
        ):
            self._end(request, BuildState.EXPIRED, "waited in the queue longer than its TTL")
            return None
        if record.state == BuildState.WORKING and not self._lost(record):
            # Another worker holds it and is alive (a late redelivery): leave it be.
            log.info("build %s is running on %s; not taking it", request.build_id, record.worker)
            return None
        waiting = self._dependencies(request)
        if waiting is not None:
            if waiting:
                raise task.retry(countdown=DEPENDENCY_POLL_SECONDS, max_retries=None)
            return None
        claimed = self.records.transition(
            request.build_id,
            BuildState.WORKING,
            expect={BuildState.QUEUED, BuildState.WORKING},
            worker=self.worker,
        )
        if claimed is None:
            return None
        if claimed.started_at is not None:
            self.metrics.queue_wait.observe(max(0.0, claimed.started_at - request.submitted_at))
        self.metrics.in_progress.inc()
        started = time.monotonic()
        try:
            return self._run(task, request, claimed)
        finally:
            self.metrics.in_progress.dec()
            self.metrics.build_duration.observe(time.monotonic() - started)

    def _lost(self, record: BuildRecord) -> bool:
        beat = record.heartbeat_at or record.started_at or 0.0
        return time.time() - beat > self.settings.worker_lost_seconds

    def _dependencies(self, request: BuildRequest) -> bool | None:
        """None: all succeeded; True: some still pending; False: one failed (so cancelled)."""
        pending = False
        for dep in request.depends_on:
            record = self.records.get(dep)
            if record is None or record.state not in TERMINAL:
                pending = True
            elif record.state != BuildState.SUCCESS:
                self._end(
                    request, BuildState.CANCELLED, f"dependency {dep} ended as {record.state}"
                )
                return False
        return True if pending else None

    def _run(self, task: Task, request: BuildRequest, record: BuildRecord) -> dict[str, Any] | None:
        workspace = self.settings.workspace_root / request.build_id
        shutil.rmtree(workspace, ignore_errors=True)
        workspace.mkdir(parents=True)
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(request.build_id, stop), daemon=True)
        beat.start()
        try:
            try:
                context = fetch_context(
                    self.settings.open_store(), request.context_digest, workspace,
                    max_bytes=8 << 30, max_files=500_000,
                )  # fmt: skip
            except ExecutorError as exc:
                self._failed(task, request, record, exc.temporary, f"fetching the context: {exc}")
                return None
            result = run_child(
                self._argv(request, context, workspace),
                outcome_file=workspace / "outcome.json",
                env=self._env(request),
                timeout=self.settings.build_timeout_seconds,
                on_output=lambda chunk: self.records.append_log(request.build_id, chunk),
                cancelled=lambda: self.records.cancel_requested(request.build_id),
            )
        finally:
            stop.set()
            shutil.rmtree(workspace, ignore_errors=True)
            self._keep_log(request.build_id)
        if result.cancelled:
            self._end(request, BuildState.CANCELLED, "cancelled while running")
            return None
        if result.timed_out:
            self._end(
                request, BuildState.TIMEOUT, f"ran past {self.settings.build_timeout_seconds}s"
            )
            return None
        outcome = result.outcome
        if result.exit_code == 0 and outcome.get("ok"):
            digest = str(outcome["digest"])
            timings = {str(k): float(v) for k, v in dict(outcome.get("timings") or {}).items()}
            for phase, seconds in timings.items():
                if phase != "total":
                    self.metrics.phase_duration.labels(phase).observe(seconds)
            done = BuildOutcome.from_json(
                {
                    "version": 1,
                    "build_id": request.build_id,
                    "state": BuildState.SUCCESS.value,
                    "digest": digest,
                    "pushed": []
                    if request.no_push
                    else [f"{d.name}@{digest}" for d in request.destinations],
                    "timings": timings,
                    "layers": int(outcome.get("layers") or 0),
                    "worker": self.worker,
                }
            )
            self._end(request, BuildState.SUCCESS, "", outcome=done)
            return done.to_json()
        if outcome.get("ok") is False:
            self._failed(
                task, request, record, bool(outcome.get("temporary")), str(outcome.get("message"))
            )
        self._end(
            request,
            BuildState.INTERNAL_ERROR,
            f"the build process exited {result.exit_code} without an outcome",
        )
        return None

    def _failed(
        self, task: Task, request: BuildRequest, record: BuildRecord, temporary: bool, reason: str
    ) -> None:
        if temporary and record.attempts < MAX_ATTEMPTS:
            self.metrics.retries.inc()
            self.records.transition(
                request.build_id, BuildState.QUEUED, expect={BuildState.WORKING}, reason=reason
            )
            raise task.retry(countdown=backoff_seconds(record.attempts), max_retries=None)
        self._end(request, BuildState.FAILURE, reason)

    def _end(
        self,
        request: BuildRequest,
        state: BuildState,
        reason: str,
        outcome: BuildOutcome | None = None,
    ) -> None:
        ended = self.records.transition(
            request.build_id,
            state,
            expect={BuildState.QUEUED, BuildState.WORKING},
            worker=self.worker,
            reason=reason,
            outcome=outcome,
        )
        self.metrics.builds_finished.labels(state.value.lower()).inc()
        if ended is not None and state in _FAILED and request.batch_id:
            self._fail_fast(request, state)

    def _fail_fast(self, request: BuildRequest, state: BuildState) -> None:
        """In a fail_fast batch, the first failure cancels every build not yet ended."""
        batch = self.records.batch(request.batch_id or "")
        if batch is None or not batch[1]:
            return
        reason = f"batch failing fast: {request.build_id} ended {state.value}"
        for other in batch[0]:
            if other == request.build_id:
                continue
            self.records.request_cancel(other)
            self.records.transition(
                other, BuildState.CANCELLED, expect={BuildState.QUEUED}, reason=reason
            )

    def _keep_log(self, build_id: str) -> None:
        """The log outlives Redis's copy in object storage (logs/<id>.log)."""
        data, _ = self.records.read_log(build_id, 0)
        try:
            self.settings.open_store().put_bytes(log_key(build_id), data)
        except ExecutorError as exc:
            log.warning("keeping the log of %s: %s", build_id, exc)

    def _heartbeat(self, build_id: str, stop: threading.Event) -> None:
        while not stop.wait(self.settings.heartbeat_seconds):
            self.records.heartbeat(build_id, self.worker)

    def _argv(self, request: BuildRequest, context: Path, workspace: Path) -> list[str]:
        argv = [
            sys.executable, "-m", "farm", "build",
            "--context", str(context), "--dockerfile", request.dockerfile,
            "--workspace", str(workspace / "build"),
            "--outcome-file", str(workspace / "outcome.json"),
        ]  # fmt: skip
        for destination in request.destinations:
            argv += ["--destination", str(destination)]
        if request.no_push or not request.destinations:
            argv.append("--no-push")
        for key, value in request.build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        for key, value in request.labels.items():
            argv += ["--label", f"{key}={value}"]
        if request.target:
            argv += ["--target", request.target]
        if request.platform is not None:
            argv += ["--custom-platform", str(request.platform)]
        for host in self.settings.insecure_registries:
            argv += ["--insecure-registry", host]
        for mirror in self.settings.registry_mirrors:
            argv += ["--registry-mirror", mirror]
        return argv

    def _env(self, request: BuildRequest) -> dict[str, str]:
        env = dict(os.environ)
        # Every delivery of one build makes the same bytes: timestamps are pinned to
        # the submission, so a redelivered build pushes the same digest.
        env["SOURCE_DATE_EPOCH"] = str(int(request.submitted_at))
        return env
