"""The build task: decode the request, run the build, record the outcome.

Steps, each at one level: validate the request again (a malformed one is rejected,
never retried) -> build the request the record holds -> skip builds already ended
(a redelivery) -> wait for dependencies -> claim the build (QUEUED -> WORKING, or a
lost worker's WORKING build) -> fetch the context -> run ``farm build`` in a child
with a heartbeat -> record the outcome as the holder -> clean up.

Temporary failures go back to the queue with backoff, up to MAX_ATTEMPTS, then end
as INTERNAL_ERROR; the user's own failures end as FAILURE at once; anything
unexpected after the claim ends as INTERNAL_ERROR rather than leaving it WORKING.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from celery import Celery, Task

from executor.errors import BuildInputError, ExecutorError
from executor.storage import ObjectStore
from farm.buildlogs import stored_log_key
from farm.config import Settings
from farm.contexts import fetch_context
from farm.dispatch import Dispatcher, DispatchError
from farm.metrics import FarmMetrics
from farm.records import TERMINAL, BuildRecord, BuildState, Records
from farm.spec import BUILD_TASK, BuildOutcome, BuildRequest, SpecError
from tasks.retry import backoff_seconds
from tasks.runner import run_child

log = logging.getLogger("farm.worker")
# Temporary failures are retried this many times before the build ends for good.
MAX_ATTEMPTS = 5
# Outcomes that stop a fail_fast batch.
_FAILED = frozenset({BuildState.FAILURE, BuildState.INTERNAL_ERROR, BuildState.TIMEOUT})
# Environment the build child does not get: the farm's own settings (a Redis URL may
# carry a password). Registry credentials (DOCKER_CONFIG, the AWS chain for ECR) stay.
_PRIVATE_PREFIXES = ("FARM_",)


def _set_aside(workspace: Path) -> Path:
    """Rename a finished build's workspace out of the way; where it is now."""
    aside = workspace.with_name(f".ended-{workspace.name}-{os.urandom(4).hex()}")
    try:
        os.rename(workspace, aside)
    except OSError:
        return workspace
    return aside


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def register(app: Celery, settings: Settings) -> None:
    metrics = FarmMetrics()
    app.farm_metrics = metrics
    records = Records.from_url(settings.redis_url)
    dispatcher = Dispatcher(settings, records, app)
    # One store (an S3 client) for the worker's life, made when the first build needs it.
    store = functools.cache(settings.open_store)

    @app.task(name=BUILD_TASK, bind=True, max_retries=None, shared=False)  # type: ignore[untyped-decorator]
    def build(task: Task, payload: Any) -> dict[str, Any] | None:
        return BuildJob(settings, records, metrics, dispatcher, store).handle(task, payload)


class BuildJob:
    """One delivery of one build request."""

    def __init__(
        self,
        settings: Settings,
        records: Records,
        metrics: FarmMetrics,
        dispatcher: Dispatcher,
        store: Callable[[], ObjectStore],
    ) -> None:
        self.settings = settings
        self.records = records
        self.metrics = metrics
        self.dispatcher = dispatcher
        self.store = store
        self.worker = worker_name()

    def handle(self, task: Task, payload: Any) -> dict[str, Any] | None:
        try:
            request = BuildRequest.from_json(payload)
        except SpecError as exc:
            self.metrics.rejected.inc()
            log.error("rejected a malformed build request: %s", exc)
            return {"rejected": str(exc)}
        try:
            claimed = self._claim(task, request)
        except ExecutorError as exc:
            if not exc.temporary:
                raise
            # Redis unreachable before the build was ours: deliver it again later.
            log.warning("build %s: %s; retrying the delivery", request.build_id, exc)
            raise task.retry(countdown=backoff_seconds(1), max_retries=None) from exc
        if claimed is None:
            return None
        request = claimed.request
        if claimed.queue_wait is not None:
            self.metrics.queue_wait.observe(max(0.0, claimed.queue_wait))
        self.metrics.in_progress.inc()
        started = time.monotonic()
        try:
            return self._run(request, claimed)
        except Exception as exc:
            if isinstance(exc, ExecutorError) and exc.temporary:
                self._failed(request, claimed, True, str(exc))
                return None
            log.exception("build %s failed inside the worker", request.build_id)
            self._end(request, BuildState.INTERNAL_ERROR, f"the worker failed: {exc}")
            return None
        finally:
            self.metrics.in_progress.dec()
            self.metrics.build_duration.observe(time.monotonic() - started)

    def _claim(self, task: Task, request: BuildRequest) -> BuildRecord | None:
        """The record, now WORKING and held by this worker; None if there is nothing to do."""
        record = self.records.get(request.build_id)
        if record is None:
            record = self.records.create(request)
        elif record.request != request:
            log.error(
                "build %s: the message differs from the record; using the record", request.build_id
            )
        request = record.request
        if record.state in TERMINAL:
            log.info(
                "build %s already ended as %s; not building again", request.build_id, record.state
            )
            return None
        if self.records.cancel_requested(request.build_id):
            self._end(request, BuildState.CANCELLED, "cancelled before it started")
            return None
        if (
            record.state == BuildState.QUEUED
            and time.time() - record.created_at > self.settings.queue_ttl_seconds
        ):
            self._end(request, BuildState.EXPIRED, "waited in the queue longer than its TTL")
            return None
        if self._blocked(request):
            # Pending: it stays QUEUED and the last dependency to end queues it again.
            # Failed: it was just cancelled.
            return None
        claimed = self.records.transition(
            request.build_id, BuildState.WORKING, expect={BuildState.QUEUED}, worker=self.worker
        )
        if claimed is None:
            # A lost worker's build may be taken over; a live worker's is left alone.
            claimed = self.records.transition(
                request.build_id,
                BuildState.WORKING,
                expect={BuildState.WORKING},
                worker=self.worker,
                stale_before=time.time() - self.settings.worker_lost_seconds,
            )
        if claimed is None:
            log.info("build %s is held by a live worker; not taking it", request.build_id)
        return claimed

    def _blocked(self, request: BuildRequest) -> bool:
        """Whether a dependency keeps the build from starting: one still pending, or one
        that failed (the build is cancelled then)."""
        pending = False
        for dep in request.depends_on:
            record = self.records.get(dep)
            if record is None:
                self._end(request, BuildState.CANCELLED, f"dependency {dep} does not exist")
                return True
            if record.state not in TERMINAL:
                pending = True
            elif record.state != BuildState.SUCCESS:
                self._end(
                    request, BuildState.CANCELLED, f"dependency {dep} ended as {record.state}"
                )
                return True
        return pending

    def _run(self, request: BuildRequest, record: BuildRecord) -> dict[str, Any] | None:
        """Build in a workspace of its own; record the end, then clean up.

        Whoever waits on the build (or on a build depending on it) need not wait for
        the clean-up too: the workspace is set aside (one rename) before the end is
        recorded, so a redelivery of this build can start in a fresh one at once, and
        removed after. The log is complete in Redis by then; the copy in storage, which
        outlives Redis's, is written first, before the removal (slow for big trees).
        """
        workspace = self.settings.workspace_root / request.build_id
        # What an earlier delivery of this build left, if its worker died mid-way.
        for earlier in (workspace, *workspace.parent.glob(f".ended-{request.build_id}-*")):
            shutil.rmtree(earlier, ignore_errors=True)
        workspace.mkdir(parents=True)
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(request.build_id, stop), daemon=True)
        beat.start()
        aside = workspace
        try:
            try:
                record_end = self._build(request, record, workspace)
            finally:
                stop.set()
                aside = _set_aside(workspace)
            return record_end()
        finally:
            self._keep_log(request.build_id)
            shutil.rmtree(aside, ignore_errors=True)

    def _build(
        self, request: BuildRequest, record: BuildRecord, workspace: Path
    ) -> Callable[[], dict[str, Any] | None]:
        """Fetch the context and run the build child; return what records how it ended."""
        try:
            context = fetch_context(
                self.store(), request.context_digest, workspace,
                max_bytes=8 << 30, max_files=500_000,
            )  # fmt: skip
        except ExecutorError as exc:
            temporary, reason = exc.temporary, f"fetching the context: {exc}"
            return lambda: self._failed(request, record, temporary, reason)
        try:
            argv = self._argv(request, context, workspace)
        except ExecutorError as exc:
            temporary, reason = exc.temporary, str(exc)
            return lambda: self._failed(request, record, temporary, reason)
        result = run_child(
            argv,
            outcome_file=workspace / "outcome.json",
            env=self._env(request, workspace),
            timeout=self.settings.build_timeout_seconds,
            on_output=lambda chunk: self.records.logs.append(request.build_id, chunk),
            cancelled=lambda: self.records.cancel_requested(request.build_id),
        )
        if result.cancelled:
            return lambda: self._end(request, BuildState.CANCELLED, "cancelled while running")
        if result.timed_out:
            reason = f"ran past {self.settings.build_timeout_seconds}s"
            return lambda: self._end(request, BuildState.TIMEOUT, reason)
        outcome = result.outcome
        self._count_bytes(outcome.get("bytes"))
        if result.exit_code == 0 and outcome.get("ok"):
            return lambda: self._succeeded(request, outcome)
        if outcome.get("ok") is False:
            temporary, message = bool(outcome.get("temporary")), str(outcome.get("message"))
            return lambda: self._failed(request, record, temporary, message)
        reason = f"the build process exited {result.exit_code} without an outcome"
        return lambda: self._end(request, BuildState.INTERNAL_ERROR, reason)

    def _count_bytes(self, moved: object) -> None:
        """Network bytes the child reported (it is ours, but its file is still input)."""
        if not isinstance(moved, dict):
            return
        for name, counter in (
            ("pulled", self.metrics.pulled_bytes),
            ("pushed", self.metrics.pushed_bytes),
        ):
            size = moved.get(name)
            if isinstance(size, int) and size > 0:
                counter.inc(size)

    def _succeeded(
        self, request: BuildRequest, outcome: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        digest = str(outcome["digest"])
        timings = {str(k): float(v) for k, v in dict(outcome.get("timings") or {}).items()}
        for phase, seconds in timings.items():
            if phase != "total":
                self.metrics.phase_duration.labels(phase).observe(seconds)
        pushed = [] if request.no_push else [f"{d.name}@{digest}" for d in request.destinations]
        done = BuildOutcome.from_json(
            {
                "version": 1,
                "build_id": request.build_id,
                "state": BuildState.SUCCESS.value,
                "digest": digest,
                "pushed": pushed,
                "timings": timings,
                "layers": int(outcome.get("layers") or 0),
                "worker": self.worker,
            }
        )
        self._end(request, BuildState.SUCCESS, "", outcome=done)
        return done.to_json()

    def _failed(
        self, request: BuildRequest, record: BuildRecord, temporary: bool, reason: str
    ) -> None:
        """A temporary failure goes back to the queue; a permanent one ends the build."""
        if temporary and record.attempts < MAX_ATTEMPTS:
            due = self.records.now() + backoff_seconds(record.attempts)
            requeued = self.records.transition(
                request.build_id,
                BuildState.QUEUED,
                expect={BuildState.WORKING},
                reason=reason,
                holder=self.worker,
                due=due,  # the outbox has it, should the message below not go out
            )
            if requeued is None:
                return
            self.metrics.retries.inc()
            try:
                # A new message, deliverable after the backoff; this one is acked.
                self.dispatcher.publish(requeued.request, due=due)
            except DispatchError as exc:
                log.warning("%s; a reaper will publish it once due", exc)
            return
        if temporary:
            reason = f"gave up after {record.attempts} attempts: {reason}"
        self._end(request, BuildState.INTERNAL_ERROR if temporary else BuildState.FAILURE, reason)

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
            holder=self.worker,
        )
        if ended is None:
            return  # someone else ended it, or took it over: not ours to count
        self.metrics.builds_finished.labels(state.value.lower()).inc()
        self.dispatcher.publish_dependents(request.build_id)
        if state in _FAILED and request.batch_id:
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
        try:
            data, _ = self.records.logs.read(build_id, 0)
            self.store().put_bytes(stored_log_key(build_id), data)
        except ExecutorError as exc:
            log.warning("keeping the log of %s: %s", build_id, exc)

    def _heartbeat(self, build_id: str, stop: threading.Event) -> None:
        while not stop.wait(self.settings.heartbeat_seconds):
            try:
                self.records.heartbeat(build_id, self.worker)
            except ExecutorError as exc:
                # One missed beat is not a lost worker; keep beating.
                log.warning("heartbeat for %s: %s", build_id, exc)

    def _argv(self, request: BuildRequest, context: Path, workspace: Path) -> list[str]:
        # Build args and labels go in a file, not on the command line, where every
        # user of the machine could read them in ps.
        args_file = workspace / "args.json"
        fd = os.open(args_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"build_args": dict(request.build_args), "labels": dict(request.labels)}, out)
        argv = [
            sys.executable, "-m", "farm", "build",
            "--context", str(context), "--dockerfile", request.dockerfile,
            "--workspace", str(workspace / "build"),
            "--outcome-file", str(workspace / "outcome.json"),
            "--args-file", str(args_file),
            "--die-with-parent", str(os.getpid()),
        ]  # fmt: skip
        for destination in request.destinations:
            argv += ["--destination", str(destination)]
        if request.no_push or not request.destinations:
            argv.append("--no-push")
        if request.target:
            argv += ["--target", request.target]
        if request.platform is not None:
            argv += ["--custom-platform", str(request.platform)]
        for secret_id, path in self._secrets(request).items():
            argv += ["--secret", f"id={secret_id},src={path}"]
        for host in self.settings.insecure_registries:
            argv += ["--insecure-registry", host]
        for mirror in self.settings.registry_mirrors:
            argv += ["--registry-mirror", mirror]
        return argv

    def _secrets(self, request: BuildRequest) -> dict[str, Path]:
        """The files of the secrets ``request`` names; a missing one fails the build."""
        found = {}
        for secret_id in request.secrets:
            if self.settings.secrets_dir is None:
                raise BuildInputError(
                    f"secret {secret_id!r}: this farm provides no secrets (FARM_SECRETS_DIR unset)"
                )
            path = self.settings.secrets_dir / secret_id
            if not path.is_file():
                raise BuildInputError(
                    f"secret {secret_id!r}: not among the farm's secrets "
                    f"({self.settings.secrets_dir} has no such file)"
                )
            found[secret_id] = path
        return found

    def _env(self, request: BuildRequest, workspace: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_PREFIXES)}
        # Temporary files go into the workspace, which is removed after the build even
        # when the build itself was killed and could not clean up.
        (workspace / "tmp").mkdir(exist_ok=True)
        env["TMPDIR"] = str(workspace / "tmp")
        # Every delivery of one build makes the same bytes: timestamps are pinned to
        # the submission, so a redelivered build pushes the same digest.
        env["SOURCE_DATE_EPOCH"] = str(int(request.submitted_at))
        return env
