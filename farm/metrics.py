"""Every Prometheus metric of the farm, defined once; no per-build labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Build durations run from seconds to an hour.
_DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)


class FarmMetrics:
    """The metrics a worker (or the exporter) serves, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.builds_finished = Counter(
            "farm_builds_finished_total", "Builds that ended, by outcome", ["outcome"], registry=r
        )
        self.build_duration = Histogram(
            "farm_build_duration_seconds",
            "Wall time of a build on a worker, from start to outcome",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "farm_build_queue_wait_seconds",
            "Time from submission to a worker starting the build",
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.phase_duration = Histogram(
            "farm_build_phase_duration_seconds",
            "Time spent per build phase (context, pull, unpack, run, snapshot, layer, push)",
            ["phase"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.pulled_bytes = Counter(
            "farm_pulled_bytes_total",
            "Image layer bytes builds fetched from registries (base and --from images)",
            registry=r,
        )
        self.pushed_bytes = Counter(
            "farm_pushed_bytes_total",
            "Blob bytes builds uploaded to registries (not counting mounted or present blobs)",
            registry=r,
        )
        self.in_progress = Gauge(
            "farm_builds_in_progress", "Builds this worker is running now", registry=r
        )
        self.retries = Counter(
            "farm_build_retries_total",
            "Builds given back to the queue after a temporary failure",
            registry=r,
        )
        self.rejected = Counter(
            "farm_requests_rejected_total",
            "Queue messages that were not valid build requests",
            registry=r,
        )
