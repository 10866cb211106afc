"""FarmClient: what release tooling calls to submit builds and follow them.

client = FarmClient(Settings.from_env())
build_id = client.submit(Path("app"), destinations=["registry.example/app:1"])
record = client.wait(build_id, timeout=600)
assert record.state is BuildState.SUCCESS, record.reason
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory

from celery import Celery

from executor.errors import ExecutorError
from executor.oci.digest import Digest
from executor.oci.manifest import Platform
from executor.oci.reference import ImageReference
from executor.storage import ObjectStore
from farm.batchfile import BatchItem
from farm.buildlogs import stored_log_key
from farm.config import Settings
from farm.contexts import pack_context, upload_context
from farm.dispatch import Dispatcher, DispatchError
from farm.records import TERMINAL, BuildRecord, BuildState, Records
from farm.spec import BuildRequest

__all__ = ["FarmClient", "WaitTimeoutError"]

log = logging.getLogger("farm.client")


class WaitTimeoutError(ExecutorError):
    """``wait`` ran out of time before the build ended."""

    temporary = True


def new_build_id() -> str:
    return uuid.uuid4().hex[:16]


class FarmClient:
    """Submits builds to the farm and reads their records. Thread-safe for reads."""

    def __init__(
        self,
        settings: Settings,
        *,
        records: Records | None = None,
        store: ObjectStore | None = None,
        app: Celery | None = None,
    ) -> None:
        self.settings = settings
        self.records = records or Records.from_url(settings.redis_url)
        self._store = store
        self._dispatcher = Dispatcher(settings, self.records, app)

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = self.settings.open_store()
        return self._store

    def submit(
        self,
        context: Path,
        *,
        destinations: Sequence[str] = (),
        dockerfile: str = "Dockerfile",
        build_args: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        target: str | None = None,
        platform: str | None = None,
        no_push: bool = False,
        batch_id: str | None = None,
        depends_on: Sequence[str] = (),
        build_id: str | None = None,
        retry_of: str | None = None,
        secrets: Sequence[str] = (),
    ) -> str:
        """Pack and upload ``context`` (if the store lacks it), record and enqueue one build.

        ``secrets`` are ids of secrets the workers provide (FARM_SECRETS_DIR/<id>) for
        ``RUN --mount=type=secret,id=<id>``; their values never leave the workers.
        """
        with TemporaryDirectory(prefix="farm-pack-") as tmp:
            digest = self._upload(context, dockerfile, Path(tmp), {})
        request = _request(
            digest,
            build_id=build_id or new_build_id(),
            destinations=destinations,
            dockerfile=dockerfile,
            build_args=build_args,
            labels=labels,
            target=target,
            platform=platform,
            no_push=no_push,
            batch_id=batch_id,
            depends_on=depends_on,
            retry_of=retry_of,
            secrets=secrets,
        )
        self.records.create(request)
        self._publish([request])
        return request.build_id

    def _publish(self, requests: Sequence[BuildRequest]) -> None:
        """Publish recorded builds. They are in the outbox until their message is on the
        queue, so a publish that fails here is no failure of the submission: a worker's
        reaper sends them once FARM_WORKER_LOST_SECONDS overdue. (Submitting again
        would build them twice.)"""
        try:
            self._dispatcher.publish_many(requests)
        except DispatchError as exc:
            log.warning("%s; recorded, so a worker's reaper will publish it", exc)

    def _upload(
        self, context: Path, dockerfile: str, tmp: Path, packed: dict[tuple[str, str], Digest]
    ) -> Digest:
        """Pack and upload ``context`` unless ``packed`` has it; its digest."""
        key = (str(context.resolve()), dockerfile)
        if key not in packed:
            archive = pack_context(context, dockerfile=dockerfile, dest_dir=tmp / str(len(packed)))
            upload_context(self.store, archive)
            packed[key] = archive.digest
        return packed[key]

    def submit_batch(
        self, items: Sequence[BatchItem], *, fail_fast: bool = False
    ) -> tuple[str, dict[str, str]]:
        """Submit builds together (depends_on names become ids); return (batch id, name: id).

        Every context is packed and uploaded (once, however many builds use it) before
        anything is recorded or queued, so a bad item fails the whole batch and leaves
        no half of it running. Records are written in one round trip, and messages go
        out through one connection.
        """
        batch_id = "batch-" + new_build_id()
        ids = {item.name: new_build_id() for item in items}
        packed: dict[tuple[str, str], Digest] = {}
        with TemporaryDirectory(prefix="farm-pack-") as tmp:
            digests = [
                self._upload(Path(item.context), item.dockerfile, Path(tmp), packed)
                for item in items
            ]
        requests = [
            _request(
                digest,
                build_id=ids[item.name],
                destinations=[str(r) for r in item.destinations],
                dockerfile=item.dockerfile,
                build_args=item.build_args,
                labels=item.labels,
                target=item.target,
                batch_id=batch_id,
                depends_on=[ids[name] for name in item.depends_on],
                secrets=item.secrets,
            )
            for item, digest in zip(items, digests, strict=True)
        ]
        self.records.create_batch(batch_id, list(ids.values()), fail_fast=fail_fast)
        self.records.create_many(requests)
        self._publish(requests)
        return batch_id, ids

    def get(self, build_id: str) -> BuildRecord:
        record = self.records.get(build_id)
        if record is None:
            raise ExecutorError(f"no build {build_id!r}")
        return record

    def wait(
        self, build_id: str, *, timeout: float | None = None, poll: float = 0.5
    ) -> BuildRecord:
        """Block until the build ends; raise WaitTimeoutError after ``timeout`` seconds."""
        return self.wait_many([build_id], timeout=timeout, poll=poll)[0]

    def wait_many(
        self,
        build_ids: Sequence[str],
        *,
        timeout: float | None = None,
        poll: float = 0.5,
        progress: Callable[[Sequence[BuildRecord]], None] | None = None,
    ) -> list[BuildRecord]:
        """Block until every build ends; their records, in the order of ``build_ids``.

        A poll reads the builds yet to end in one round trip, so following a batch
        costs one round trip every ``poll`` seconds however large it is, and less
        Redis work as its builds end. ``progress`` is called after each poll with the
        records of the builds ended so far. Raises WaitTimeoutError after ``timeout``
        seconds, ExecutorError when a build has no record.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        running = list(dict.fromkeys(build_ids))
        ended: dict[str, BuildRecord] = {}
        while True:
            polled = {record.build_id: record for record in self.records.get_many(running)}
            missing = [build_id for build_id in running if build_id not in polled]
            if missing:
                raise ExecutorError(f"no build {missing[0]!r}")
            ended |= {i: record for i, record in polled.items() if record.state in TERMINAL}
            running = [build_id for build_id in running if build_id not in ended]
            if progress is not None:
                progress(list(ended.values()))
            if not running:
                return [ended[build_id] for build_id in build_ids]
            if deadline is not None and time.monotonic() > deadline:
                first = polled[running[0]]
                more = f" (and {len(running) - 1} more)" if len(running) > 1 else ""
                raise WaitTimeoutError(
                    f"build {first.build_id} still {first.state} after {timeout}s{more}"
                )
            time.sleep(poll)

    def logs(self, build_id: str, offset: int = 0) -> tuple[bytes, int]:
        """Log bytes from chunk ``offset`` on, and the next offset. Once Redis's copy has
        expired, an ended build's log comes from object storage."""
        data, next_offset = self.records.logs.read(build_id, offset)
        if data or offset:
            return data, next_offset
        record = self.records.get(build_id)
        if record is not None and record.state not in TERMINAL:
            return data, next_offset
        try:
            return self.store.get_bytes(stored_log_key(build_id)), 0
        except ExecutorError:
            return b"", 0

    def cancel(self, build_id: str) -> None:
        """A queued build never starts; a running one is stopped within a second or so."""
        self.get(build_id)
        self._cancel(build_id)

    def _cancel(self, build_id: str) -> None:
        self.records.request_cancel(build_id)
        cancelled = self.records.transition(
            build_id, BuildState.CANCELLED, expect={BuildState.QUEUED}, reason="cancelled"
        )
        if cancelled is not None:
            # Its dependents were waiting for it to end; now they can be cancelled too.
            self._dispatcher.publish_dependents(build_id)

    def cancel_batch(self, batch_id: str) -> list[str]:
        """Cancel every build of a batch that has not ended; return their ids."""
        batch = self.records.batch(batch_id)
        if batch is None:
            raise ExecutorError(f"no batch {batch_id!r}")
        cancelled = []
        for record in self.records.get_many(batch[0]):
            if record.state not in TERMINAL:
                self._cancel(record.build_id)
                cancelled.append(record.build_id)
        return cancelled

    def retry(self, build_id: str) -> str:
        """Submit an ended build again as a new build linked to the old one; return its id.

        The new build takes the old one's place in its batch, and depends on the latest
        retry of each of the old one's dependencies, so retrying a failed dependency and
        then its cancelled dependents rebuilds the chain.
        """
        old = self.get(build_id)
        if old.state not in TERMINAL:
            raise ExecutorError(f"build {build_id} is {old.state}: wait for it or cancel it first")
        request = replace(
            old.request,
            build_id=new_build_id(),
            retry_of=build_id,
            submitted_at=time.time(),
            depends_on=tuple(self._latest(dep) for dep in old.request.depends_on),
        )
        # The link is set first, and only if no live retry holds it: two `farm retry`
        # of one build cannot both start one.
        taken = self.records.link_retry(build_id, request.build_id, request.batch_id)
        if taken:
            raise ExecutorError(f"build {build_id} was already retried as {taken}; retry that one")
        self.records.create(request)
        self._publish([request])
        return request.build_id

    def retry_batch(self, batch_id: str) -> dict[str, str]:
        """Retry every build of an ended batch that did not succeed; return {old id: new id}.

        Dependencies are retried before their dependents, so each retry depends on the
        new builds.
        """
        batch = self.records.batch(batch_id)
        if batch is None:
            raise ExecutorError(f"no batch {batch_id!r}")
        records = {record.build_id: record for record in self.records.get_many(batch[0])}
        running = sorted(i for i, r in records.items() if r.state not in TERMINAL)
        if running:
            raise ExecutorError(
                f"batch {batch_id} still has builds running ({', '.join(running)}): "
                "wait for it or cancel it first"
            )
        todo = [i for i in batch[0] if i in records and records[i].state != BuildState.SUCCESS]
        # What each depends on now: the latest retry of each named dependency.
        needs = {i: {self._latest(d) for d in records[i].request.depends_on} for i in todo}
        retried: dict[str, str] = {}
        while todo:
            ready = [i for i in todo if not needs[i] & (set(todo) - {i})]
            for build_id in ready or todo[:1]:  # a cycle cannot be submitted; never loop
                retried[build_id] = self.retry(build_id)
                todo.remove(build_id)
        return retried

    def _latest(self, build_id: str) -> str:
        """``build_id``, or the retry of it that was submitted last."""
        seen = {build_id}
        while (record := self.records.get(build_id)) is not None and record.retried_as:
            build_id = record.retried_as
            if build_id in seen:
                break
            seen.add(build_id)
        return build_id

    def list(
        self, *, batch_id: str | None = None, state: BuildState | None = None
    ) -> list[BuildRecord]:
        return self.records.list(batch_id=batch_id, state=state)


def _request(
    context_digest: Digest,
    *,
    build_id: str,
    destinations: Sequence[str],
    dockerfile: str,
    build_args: Mapping[str, str] | None,
    labels: Mapping[str, str] | None,
    target: str | None,
    batch_id: str | None,
    depends_on: Sequence[str],
    secrets: Sequence[str],
    platform: str | None = None,
    no_push: bool = False,
    retry_of: str | None = None,
) -> BuildRequest:
    return BuildRequest(
        build_id=build_id,
        context_digest=context_digest,
        dockerfile=dockerfile,
        destinations=tuple(ImageReference.parse(d) for d in destinations),
        build_args=dict(build_args or {}),
        labels=dict(labels or {}),
        target=target,
        platform=Platform.parse(platform) if platform else None,
        no_push=no_push,
        batch_id=batch_id,
        depends_on=tuple(depends_on),
        retry_of=retry_of,
        submitted_at=time.time(),
        secrets=tuple(secrets),
    )
