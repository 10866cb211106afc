"""`farm exporter`: the farm-wide gauges the autoscaler and dashboards read.

Queue depth comes from the broker itself (the Redis list kombu keeps per queue, and
its priority sub-queues), so KEDA can scale on it; builds queued and in flight come
from the farm's records. Read on every scrape; nothing is cached.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from farm.records import BuildState, Records

# kombu's Redis transport keeps priorities 1-9 in lists named QUEUE + this + digit.
_PRIORITY_SEPARATOR = "\x06\x16"


class FarmCollector(Collector):
    """Collects queue depth and builds by state at scrape time."""

    def __init__(self, client: redis.Redis, records: Records, queue: str) -> None:
        # A farm's records and its queue go together: its builds are that queue's.
        self._redis = client
        self._records = records
        self._queue = queue

    def queue_depth(self, queue: str) -> int:
        total = int(self._redis.llen(queue))
        for priority in range(1, 10):
            total += int(self._redis.llen(f"{queue}{_PRIORITY_SEPARATOR}{priority}"))
        return total

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "farm_queue_depth", "Build messages waiting in the broker, per queue", labels=["queue"]
        )
        depth.add_metric([self._queue], self.queue_depth(self._queue))
        yield depth
        builds = GaugeMetricFamily(
            "farm_builds",
            "Builds by state now (queued and in flight), per queue",
            labels=["queue", "state"],
        )
        for state in (BuildState.QUEUED, BuildState.WORKING):
            builds.add_metric([self._queue, state.value.lower()], self._records.count(state))
        yield builds
