"""Finding builds that nobody will run, and giving them back to the queue.

A worker killed outright (SIGKILL, a lost node) leaves its build WORKING and its
queue message unacknowledged; Redis would redeliver the message only after the
visibility timeout, which must outlast the longest build. Every worker therefore
also runs a reaper: a build with no heartbeat for ``worker_lost_seconds`` is put
back to QUEUED and enqueued again, so it is rebuilt within about
``worker_lost_seconds + heartbeat_seconds`` plus the time to get a free worker.

The reaper also publishes QUEUED builds whose message was never sent (a producer
that died between recording and publishing, a broker that refused the message):
the outbox (farm/dispatch.py) holds them, and they are published once
``worker_lost_seconds`` overdue.
"""

from __future__ import annotations

import logging
import threading
import time

from executor.errors import ExecutorError
from farm.dispatch import Dispatcher
from farm.records import BuildState
from tasks.build import MAX_ATTEMPTS

log = logging.getLogger("farm.reaper")


def reap_lost_builds(dispatcher: Dispatcher) -> list[str]:
    """Requeue every WORKING build whose worker stopped beating; return their ids."""
    records, settings = dispatcher.records, dispatcher.settings
    requeued = []
    for build_id in records.stale_working(settings.worker_lost_seconds):
        stale_before = time.time() - settings.worker_lost_seconds
        current = records.get(build_id)
        if current is not None and current.attempts >= MAX_ATTEMPTS:
            # A build that kills its worker every time must not loop forever.
            records.transition(
                build_id,
                BuildState.INTERNAL_ERROR,
                expect={BuildState.WORKING},
                reason=f"its worker was lost {current.attempts} times; giving up",
                stale_before=stale_before,
            )
            continue
        record = records.transition(
            build_id,
            BuildState.QUEUED,
            expect={BuildState.WORKING},
            reason="its worker was lost; queued again",
            stale_before=stale_before,  # checked in Redis: a live worker's build stays
        )
        if record is None:
            continue  # it ended, beat again, or another reaper was first
        dispatcher.publish(record.request)
        log.warning("build %s lost its worker %s; queued again", build_id, record.worker)
        requeued.append(build_id)
    return requeued


class Reaper(threading.Thread):
    """A daemon thread that reaps every ``heartbeat_seconds``."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__(name="farm-reaper", daemon=True)
        self._dispatcher = dispatcher
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self._dispatcher.settings.heartbeat_seconds):
            try:
                reap_lost_builds(self._dispatcher)
                self._dispatcher.publish_overdue()
            except ExecutorError as exc:
                log.warning("reaping lost builds: %s", exc)

    def stop(self) -> None:
        self._stop.set()
