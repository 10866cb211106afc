"""farm.client's waiting against a real redis-server: what one poll costs Redis, and
`farm wait BATCH` on top of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from executor.errors import ExecutorError
from executor.oci.digest import Digest
from farm.cli import main
from farm.client import FarmClient, WaitTimeoutError
from farm.config import Settings
from farm.records import TERMINAL, BuildRecord, BuildState, Records
from farm.spec import BuildRequest
from tests.support.redis import RedisServer


@pytest.fixture
def records(redis_client: redis.Redis) -> Records:
    return Records(redis_client)


@pytest.fixture
def farm_client(redis_server: RedisServer, records: Records) -> FarmClient:
    return FarmClient(Settings(redis_url=redis_server.url), records=records)


def _submit(records: Records, ids: Sequence[str], batch_id: str | None = None) -> None:
    records.create_many(
        [BuildRequest(build_id=i, context_digest=Digest.of(b"ctx"), no_push=True) for i in ids]
    )
    if batch_id is not None:
        records.create_batch(batch_id, ids, fail_fast=False)


def _end(records: Records, ids: Sequence[str], state: BuildState = BuildState.CANCELLED) -> None:
    for build_id in ids:
        assert records.transition(build_id, state, expect={BuildState.QUEUED}, reason="ended")


@dataclass(frozen=True)
class Usage:
    """What the server has done so far, by its own counters."""

    reads: int  # socket reads: one per round trip of a small request
    hgetall: int  # HGETALL commands: one per build record read

    @classmethod
    def of(cls, probe: redis.Redis) -> Usage:
        info = probe.info("stats", "commandstats")
        calls = info.get("cmdstat_hgetall", {}).get("calls", 0)
        return cls(reads=int(info["total_reads_processed"]), hgetall=int(calls))

    def since(self, earlier: Usage) -> Usage:
        # The probe's own INFO is one more read.
        return Usage(self.reads - earlier.reads - 1, self.hgetall - earlier.hgetall)


@pytest.mark.parametrize("count", [1, 10, 100])
def test_a_poll_is_one_round_trip_and_reads_only_builds_not_ended(
    redis_server: RedisServer, records: Records, farm_client: FarmClient, count: int
) -> None:
    """A poll of N builds costs one round trip for every N, and the builds that ended
    are not read again: half end after the first poll, the rest after the second."""
    ids = [f"waited-{n:05d}" for n in range(count)]
    _submit(records, ids)
    half = count // 2
    endings = [ids[:half], ids[half:]]
    polls: list[Usage] = []
    with redis_server.client() as probe:
        started = Usage.of(probe)

        def after_poll(ended: Sequence[BuildRecord]) -> None:
            nonlocal started
            polls.append(Usage.of(probe).since(started))
            if endings:
                _end(records, endings.pop(0))
            started = Usage.of(probe)

        got = farm_client.wait_many(ids, poll=0, progress=after_poll)
    assert [record.build_id for record in got] == ids
    assert all(record.state in TERMINAL for record in got)
    assert [poll.reads for poll in polls] == [1, 1, 1]
    assert [poll.hgetall for poll in polls] == [count, count, count - half]


def test_progress_reports_the_ended_builds(records: Records, farm_client: FarmClient) -> None:
    ids = ["progress-001", "progress-002", "progress-003"]
    _submit(records, ids)
    seen: list[list[str]] = []

    def after_poll(ended: Sequence[BuildRecord]) -> None:
        seen.append(sorted(record.build_id for record in ended))
        if len(seen) == 1:
            _end(records, ids[1:2])
        elif len(seen) == 2:
            _end(records, [ids[0], ids[2]], BuildState.FAILURE)

    got = farm_client.wait_many(ids, poll=0, progress=after_poll)
    assert seen == [[], ["progress-002"], ids]
    assert [r.state for r in got] == [BuildState.FAILURE, BuildState.CANCELLED, BuildState.FAILURE]


def test_waiting_runs_out_of_time_naming_what_has_not_ended(
    records: Records, farm_client: FarmClient
) -> None:
    ids = ["timeout-001", "timeout-002", "timeout-003"]
    _submit(records, ids)
    _end(records, ids[:1])
    with pytest.raises(WaitTimeoutError, match=r"build timeout-002 still QUEUED .*\(and 1 more\)"):
        farm_client.wait_many(ids, timeout=0.2, poll=0.05)


def test_waiting_on_a_build_with_no_record_fails(records: Records, farm_client: FarmClient) -> None:
    _submit(records, ["present-001"])
    with pytest.raises(ExecutorError, match="no build 'absent-0001'"):
        farm_client.wait_many(["present-001", "absent-0001"], poll=0)


@pytest.fixture
def cli_batch(
    redis_server: RedisServer, records: Records, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Batch `batch-cli` of two builds, the first FAILED and the second QUEUED, for the
    `farm` commands of this process (and no local farm) to see."""
    monkeypatch.setenv("FARM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FARM_CONFIG", raising=False)
    monkeypatch.setenv("FARM_REDIS_URL", redis_server.url)
    ids = ["cliwait-001", "cliwait-002"]
    _submit(records, ids, batch_id="batch-cli")
    _end(records, ids[:1], BuildState.FAILURE)
    return ids


def test_farm_wait_on_a_batch_lists_its_builds_and_fails_if_one_failed(
    records: Records, cli_batch: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    _end(records, cli_batch[1:])
    assert main(["wait", "batch-cli"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "cliwait-001  FAILURE        ended",
        "cliwait-002  CANCELLED      ended",
    ]
    assert "batch-cli [" + "#" * 30 + "] 2/2 done, 2 not successful" in err


@pytest.mark.usefixtures("cli_batch")
def test_farm_wait_on_a_batch_times_out_naming_the_batch(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["wait", "batch-cli", "--timeout", "0.2"]) == 1
    err = capsys.readouterr().err
    assert "1/2 done, 1 not successful\n" in err
    assert "farm: error: batch batch-cli: build cliwait-002 still QUEUED after 0.2s" in err
