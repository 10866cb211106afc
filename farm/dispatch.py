"""Publishing build messages: the producer's Celery app and the outbox that makes sure
every QUEUED build has a message on the queue.

Every way a build becomes QUEUED (submitted, retried after a temporary failure,
requeued after its worker was lost, or waiting for dependencies that just ended) puts
it in the records' outbox in the same Redis step that changes its state. The
publisher takes it out once the message is on the queue. A publisher that dies or
fails between the two leaves the build in the outbox, and a worker's reaper
publishes it once it is ``grace`` seconds overdue. A message published twice is
harmless: a worker claims a build atomically, and a second delivery finds it taken.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from celery import Celery

from executor.errors import ExecutorError
from farm.config import Settings
from farm.records import BuildState, Records
from farm.spec import BUILD_TASK, BuildRequest

log = logging.getLogger("farm.dispatch")


def celery_app(settings: Settings) -> Celery:
    """A Celery app with the farm's delivery settings and no tasks registered.

    Delivery guarantees: a build is acknowledged only after it ends (acks_late), and
    given back to the queue if its worker dies (reject_on_worker_lost); a worker takes
    one build at a time and reserves no others (prefetch 1). Redis redelivers an
    unacknowledged build after ``visibility_timeout``, which is longer than the hard
    limit, which is longer than the soft limit, which is longer than the executor's
    own timeout (Settings checks the order), so a slow build is never delivered twice.
    """
    app = Celery("farm", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,  # outcomes live in the farm's own records
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        task_default_queue=settings.queue,
        task_create_missing_queues=True,
        task_soft_time_limit=settings.soft_time_limit_seconds,
        task_time_limit=settings.hard_time_limit_seconds,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_seconds},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


class DispatchError(ExecutorError):
    """The broker did not take a build's message (the outbox keeps the build)."""

    temporary = True


class Dispatcher:
    """Publishes build messages and settles the outbox."""

    def __init__(self, settings: Settings, records: Records, app: Celery | None = None) -> None:
        self.settings = settings
        self.records = records
        self.app = app if app is not None else celery_app(settings)

    def publish(self, request: BuildRequest, *, due: float | None = None) -> None:
        """Put ``request`` on the queue, then settle its outbox entry.

        ``due``: when the message becomes deliverable, if later than now (a retry's
        countdown); the outbox entry due then is the one this message answers.
        """
        began = self.records.now()
        self._send(request, countdown=None if due is None else max(0.0, due - began))
        self.records.dispatched([request.build_id], sent_since=max(began, due or began))

    def publish_many(self, requests: Sequence[BuildRequest]) -> None:
        """Publish every request through one broker connection, then settle the outbox."""
        began = self.records.now()
        with self.app.producer_or_acquire() as producer:
            for request in requests:
                self._send(request, producer=producer)
        self.records.dispatched([request.build_id for request in requests], sent_since=began)

    def _send(
        self, request: BuildRequest, *, producer: Any = None, countdown: float | None = None
    ) -> None:
        try:
            self.app.send_task(
                BUILD_TASK,
                args=[request.to_json()],
                queue=self.settings.queue,
                task_id=f"{request.build_id}-{time.time_ns():x}",
                producer=producer,
                countdown=countdown,
            )
        except Exception as exc:  # kombu raises many types; the outbox has the build
            raise DispatchError(f"publishing build {request.build_id}: {exc}") from exc

    def publish_dependents(self, build_id: str) -> list[str]:
        """``build_id`` ended: publish the dependents still waiting for it.

        A dependent whose message cannot be sent now stays in the outbox (the step
        that ended ``build_id`` put it there), and a reaper sends it later.
        """
        published = []
        for dependent in self.records.dependents(build_id):
            record = self.records.get(dependent)
            if record is None or record.state != BuildState.QUEUED:
                continue
            try:
                self.publish(record.request)
            except DispatchError as exc:
                log.warning("%s; a reaper will publish it", exc)
                continue
            published.append(dependent)
        return published

    def publish_overdue(self) -> list[str]:
        """Publish every outbox entry overdue by ``worker_lost_seconds``; return their ids.

        A reaper leases an entry before it publishes it (the lease makes it due now, so
        no other reaper takes it for a grace period) and settles it after; one that
        dies in between leaves it to be taken again once overdue.
        """
        grace = self.settings.worker_lost_seconds
        published = []
        for build_id in self.records.overdue(grace):
            leased = self.records.lease(build_id, older_than=grace)
            if leased is None:
                continue  # another reaper or the publisher got there first
            record = self.records.get(build_id)
            if record is not None and record.state == BuildState.QUEUED:
                self._send(record.request)
                log.warning("build %s had no message on the queue; published it", build_id)
                published.append(build_id)
            self.records.dispatched([build_id], sent_since=leased)
        return published
