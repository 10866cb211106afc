"""The exporter's gauges against a real redis-server with real queued messages."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from executor.oci.digest import Digest
from farm.config import Settings
from farm.exporter import FarmCollector
from farm.records import BuildState, Records
from farm.spec import BuildRequest
from tasks.app import create_app
from tests.support.farm import metric_value
from tests.support.redis import RedisServer


def test_queue_depth_and_builds_by_state(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        settings = Settings.from_env({"FARM_REDIS_URL": server.url})
        app = create_app(settings)
        client = server.client()
        records = Records(client)
        for n in range(3):
            request = BuildRequest(
                build_id=f"build-{n:04d}",
                context_digest=Digest.of(b"context"),
                submitted_at=time.time(),
            )
            records.create(request)
            app.send_task("farm.build", args=[request.to_json()], queue=settings.queue)
        records.transition("build-0000", BuildState.WORKING, expect={BuildState.QUEUED}, worker="w")
        registry = CollectorRegistry()
        registry.register(FarmCollector(client, records, settings.queue))
        text = generate_latest(registry).decode()
        assert metric_value(text, "farm_queue_depth", 'queue="builds"') == 3
        assert metric_value(text, "farm_builds", 'queue="builds",state="queued"') == 2
        assert metric_value(text, "farm_builds", 'queue="builds",state="working"') == 1
