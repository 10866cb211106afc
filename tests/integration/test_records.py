"""farm.records against a real redis-server: transitions, races, batches, logs, TTLs."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from executor.oci.digest import Digest
from farm.records import (
    TERMINAL,
    BuildRecord,
    BuildState,
    DuplicateBuildError,
    RecordError,
    Records,
    RecordsUnavailableError,
)
from farm.redisio import text
from farm.spec import OUTCOME_STATES, BuildOutcome, BuildRequest
from tests.support.ports import free_port
from tests.support.redis import RedisServer

TTL = 3600


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def records(redis_client: redis.Redis, clock: FakeClock) -> Records:
    return Records(redis_client, prefix="t", clock=clock, terminal_ttl=TTL)


def request(build_id: str, *, batch_id: str | None = None) -> BuildRequest:
    return BuildRequest(
        build_id=build_id, context_digest=Digest.of(b"ctx"), no_push=True, batch_id=batch_id
    )


def start(records: Records, build_id: str, worker: str = "w1") -> BuildRecord:
    record = records.transition(
        build_id, BuildState.WORKING, expect={BuildState.QUEUED}, worker=worker
    )
    assert record is not None
    return record


def test_states_match_the_outcome_schema() -> None:
    assert {state.value for state in TERMINAL} == OUTCOME_STATES


def test_create_records_a_queued_build(records: Records, clock: FakeClock) -> None:
    created = records.create(request("build-0001"))
    assert created.state is BuildState.QUEUED
    assert created.created_at == clock.now
    assert (created.started_at, created.finished_at, created.heartbeat_at) == (None, None, None)
    assert created.attempts == 0
    assert created.queue_wait is None
    assert records.get("build-0001") == created
    assert records.get("build-none") is None


def test_create_refuses_a_duplicate_id(records: Records) -> None:
    records.create(request("build-0001"))
    with pytest.raises(DuplicateBuildError, match="build-0001"):
        records.create(request("build-0001"))


def test_full_lifecycle_sets_times_attempts_and_outcome(records: Records, clock: FakeClock) -> None:
    records.create(request("build-0001"))
    clock.now = 1_005.0
    working = start(records, "build-0001", worker="pod-a")
    assert working.state is BuildState.WORKING
    assert working.started_at == working.heartbeat_at == 1_005.0
    assert working.attempts == 1
    assert working.worker == "pod-a"
    assert working.queue_wait == 5.0
    clock.now = 1_020.0
    outcome = BuildOutcome(
        build_id="build-0001",
        state="SUCCESS",
        digest=Digest.of(b"manifest"),
        timings={"build": 15.0},
        layers=2,
        worker="pod-a",
    )
    done = records.transition(
        "build-0001",
        BuildState.SUCCESS,
        expect={BuildState.WORKING},
        outcome=outcome,
        reason="built",
    )
    assert done is not None
    assert done.state is BuildState.SUCCESS
    assert done.finished_at == 1_020.0
    assert done.outcome == outcome
    assert done.reason == "built"
    assert records.get("build-0001") == done


def test_transition_from_an_unexpected_state_changes_nothing(records: Records) -> None:
    records.create(request("build-0001"))
    before = records.get("build-0001")
    assert records.transition("build-0001", BuildState.SUCCESS, expect={BuildState.WORKING}) is None
    assert records.get("build-0001") == before
    assert records.transition("build-none", BuildState.WORKING, expect={BuildState.QUEUED}) is None


def test_outcome_must_match_the_transition(records: Records) -> None:
    records.create(request("build-0001"))
    outcome = BuildOutcome(build_id="build-0001", state="FAILURE")
    with pytest.raises(RecordError, match="outcome is for build build-0001 in state FAILURE"):
        records.transition(
            "build-0001", BuildState.SUCCESS, expect={BuildState.QUEUED}, outcome=outcome
        )


def test_a_retry_counts_another_attempt(records: Records) -> None:
    records.create(request("build-0001"))
    start(records, "build-0001", worker="lost")
    requeued = records.transition(
        "build-0001", BuildState.QUEUED, expect={BuildState.WORKING}, reason="worker lost"
    )
    assert requeued is not None
    assert requeued.state is BuildState.QUEUED
    again = start(records, "build-0001", worker="pod-b")
    assert again.attempts == 2
    assert again.worker == "pod-b"


@dataclass
class Race:
    """Racers claiming one build at the same moment; collects who won."""

    build_id: str
    barrier: threading.Barrier
    winners: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, client: redis.Redis, worker: str) -> None:
        mine = Records(client, prefix="race", clock=FakeClock())
        self.barrier.wait()
        got = mine.transition(
            self.build_id, BuildState.WORKING, expect={BuildState.QUEUED}, worker=worker
        )
        if got is not None:
            with self.lock:
                self.winners.append(got.worker)


def test_exactly_one_of_many_racing_clients_wins(
    redis_server: RedisServer, clock: FakeClock
) -> None:
    racers = 8
    clients = [redis_server.client() for _ in range(racers)]
    setup = Records(clients[0], prefix="race", clock=clock)
    for index in range(20):
        setup.create(request(f"race-{index:04d}"))
    for index in range(20):
        race = Race(f"race-{index:04d}", threading.Barrier(racers))
        threads = [
            threading.Thread(target=race.run, args=(clients[n], f"w{n}")) for n in range(racers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(race.winners) == 1
        record = setup.get(race.build_id)
        assert record is not None
        assert record.state is BuildState.WORKING
        assert record.attempts == 1
        assert record.worker == race.winners[0]
    for connection in clients:
        connection.close()


def test_records_from_url(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    records = Records.from_url(redis_server.url, prefix="url")
    records.create(request("build-0001"))
    assert redis_client.exists("url:build:build-0001") == 1


def test_terminal_records_get_a_ttl_and_requeue_clears_it(
    records: Records, redis_client: redis.Redis
) -> None:
    records.create(request("build-0001"))
    records.logs.append("build-0001", b"line\n")
    records.request_cancel("build-0001")
    assert redis_client.ttl("t:build:build-0001") == -1  # live records never expire
    records.transition("build-0001", BuildState.CANCELLED, expect={BuildState.QUEUED})
    for key in ("t:build:build-0001", "t:log:build-0001", "t:cancel:build-0001"):
        assert 0 < redis_client.ttl(key) <= TTL, key
    records.transition("build-0001", BuildState.QUEUED, expect=TERMINAL)
    assert redis_client.ttl("t:build:build-0001") == -1
    requeued = records.get("build-0001")
    assert requeued is not None
    assert requeued.finished_at is not None  # kept until it starts again
    assert start(records, "build-0001").finished_at is None


def test_heartbeat_and_stale_working(records: Records, clock: FakeClock) -> None:
    for build_id in ("build-0001", "build-0002", "build-0003"):
        records.create(request(build_id))
        start(records, build_id, worker=f"pod-{build_id[-1]}")
    clock.now = 1_100.0
    records.heartbeat("build-0002", "pod-2")
    records.heartbeat("build-0003", "not-the-owner")  # ignored
    assert records.stale_working(older_than=60) == ["build-0001", "build-0003"]
    record = records.get("build-0002")
    assert record is not None
    assert record.heartbeat_at == 1_100.0
    records.transition("build-0001", BuildState.TIMEOUT, expect={BuildState.WORKING})
    assert records.stale_working(older_than=60) == ["build-0003"]
    assert records.stale_working(older_than=200) == []
    records.heartbeat("build-0001", "pod-1")  # finished builds ignore heartbeats
    assert records.stale_working(older_than=60) == ["build-0003"]


def test_batches_list_and_count(records: Records, clock: FakeClock) -> None:
    ids = [f"b1-build-{index}" for index in range(4)]
    for build_id in ids:
        clock.now += 1
        records.create(request(build_id, batch_id="batch-001"))
    records.create(request("other-build"))
    records.create_batch("batch-001", ids, fail_fast=True)
    with pytest.raises(DuplicateBuildError):
        records.create_batch("batch-001", ids, fail_fast=False)
    assert records.batch("batch-001") == (ids, True)
    assert records.batch("batch-none") is None
    start(records, ids[0])
    records.transition(ids[0], BuildState.SUCCESS, expect={BuildState.WORKING})
    start(records, ids[1])
    records.transition(ids[2], BuildState.CANCELLED, expect={BuildState.QUEUED})
    counts = records.batch_counts("batch-001")
    assert counts[BuildState.SUCCESS] == 1
    assert counts[BuildState.WORKING] == 1
    assert counts[BuildState.CANCELLED] == 1
    assert counts[BuildState.QUEUED] == 1
    assert sum(counts.values()) == 4
    assert set(counts) == set(BuildState)
    assert [r.build_id for r in records.list(batch_id="batch-001")] == ids
    assert [r.build_id for r in records.list(state=BuildState.QUEUED)] == [ids[3], "other-build"]
    assert [r.build_id for r in records.list()] == [*ids, "other-build"]


def test_expired_records_drop_out_of_listings(records: Records, redis_client: redis.Redis) -> None:
    records.create(request("build-0001"))
    records.create(request("build-0002"))
    records.transition("build-0001", BuildState.FAILURE, expect={BuildState.QUEUED})
    redis_client.delete("t:build:build-0001")  # what the TTL does, a week early
    assert [r.build_id for r in records.list()] == ["build-0002"]
    assert records.list(state=BuildState.FAILURE) == []
    assert redis_client.zscore("t:builds", "build-0001") is None
    assert not redis_client.sismember("t:state:FAILURE", "build-0001")


def test_cancel_flag(records: Records) -> None:
    records.create(request("build-0001"))
    assert records.cancel_requested("build-0001") is False
    records.request_cancel("build-0001")
    assert records.cancel_requested("build-0001") is True
    assert records.cancel_requested("build-0002") is False


def test_logs_append_and_read_from_offsets(records: Records) -> None:
    assert records.logs.read("build-0001") == (b"", 0)
    records.logs.append("build-0001", b"step 1\n")
    records.logs.append("build-0001", b"")  # nothing to add, no empty chunk
    records.logs.append("build-0001", b"step 2\n")
    data, offset = records.logs.read("build-0001")
    assert (data, offset) == (b"step 1\nstep 2\n", 2)
    assert records.logs.read("build-0001", offset) == (b"", 2)
    records.logs.append("build-0001", b"\xff\x00binary\n")
    assert records.logs.read("build-0001", offset) == (b"\xff\x00binary\n", 3)
    with pytest.raises(RecordError, match="negative offset"):
        records.logs.read("build-0001", -1)


def test_logs_are_capped_with_one_marker(redis_client: redis.Redis) -> None:
    records = Records(redis_client, prefix="cap", log_max_bytes=10, log_max_chunks=100)
    records.logs.append("build-0001", b"12345")
    records.logs.append("build-0001", b"67890")
    records.logs.append("build-0001", b"X")
    records.logs.append("build-0001", b"Y")
    data, offset = records.logs.read("build-0001")
    assert data == b"1234567890\n[farm: log truncated]\n"
    assert offset == 3


def test_corrupt_records_are_refused_when_read(records: Records, redis_client: redis.Redis) -> None:
    records.create(request("build-0001"))
    redis_client.hset("t:build:build-0001", "state", "DANCING")
    with pytest.raises(RecordError, match="reading build record build-0001"):
        records.get("build-0001")
    redis_client.hset(
        "t:build:build-0001", mapping={"state": "QUEUED", "request": '{"version": 9}'}
    )
    with pytest.raises(RecordError, match="'version'"):
        records.get("build-0001")


def test_unreachable_redis_is_a_temporary_error(tmp_path: Path) -> None:
    client = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    with pytest.raises(RecordsUnavailableError) as info:
        Records(client).get("build-0001")
    assert info.value.temporary is True


def test_dependents_are_indexed(records: Records) -> None:
    records.create(request("dep-00001"))
    child = BuildRequest(
        build_id="child-00001",
        context_digest=Digest.of(b"ctx"),
        depends_on=("dep-00001",),
    )
    records.create(child)
    assert records.dependents("dep-00001") == ["child-00001"]
    assert records.dependents("child-00001") == []


def test_only_the_holder_ends_and_only_stale_builds_are_taken(
    records: Records, clock: FakeClock
) -> None:
    records.create(request("held-00001"))
    start(records, "held-00001", worker="alive")
    other = records.transition(
        "held-00001", BuildState.SUCCESS, expect={BuildState.WORKING}, holder="someone-else"
    )
    assert other is None
    taken = records.transition(
        "held-00001",
        BuildState.WORKING,
        expect={BuildState.WORKING},
        worker="thief",
        stale_before=clock.now - 30,
    )
    assert taken is None  # its heartbeat is fresh
    clock.now += 60
    taken = records.transition(
        "held-00001",
        BuildState.WORKING,
        expect={BuildState.WORKING},
        worker="rescuer",
        stale_before=clock.now - 30,
    )
    assert taken is not None and taken.worker == "rescuer" and taken.attempts == 2


def test_the_outbox_holds_builds_until_their_message_is_published(
    records: Records, clock: FakeClock
) -> None:
    records.create(request("new-00001"))
    assert records.overdue(30) == []  # just created: its publisher has time
    clock.now += 31
    assert records.overdue(30) == ["new-00001"]
    # A reaper leases it (due now, so no other reaper takes it for a grace period)...
    leased = records.lease("new-00001", older_than=30)
    assert leased == clock.now
    assert records.lease("new-00001", older_than=30) is None  # one reaper only
    assert records.overdue(30) == []
    # ...and a reaper that died holding the lease leaves it overdue again a grace later.
    clock.now += 31
    assert records.overdue(30) == ["new-00001"]
    assert records.dispatched(["new-00001"], sent_since=clock.now) == 1
    assert records.dispatched(["new-00001"], sent_since=clock.now) == 0
    assert records.overdue(-1) == []
    # Back to QUEUED after a temporary failure: owed again, due after the backoff.
    start(records, "new-00001")
    due = clock.now + 100
    records.transition("new-00001", BuildState.QUEUED, expect={BuildState.WORKING}, due=due)
    clock.now = due + 29
    assert records.overdue(30) == []
    clock.now = due + 31
    assert records.overdue(30) == ["new-00001"]
    # A publisher that began sending before this entry was due leaves it alone: the
    # entry is newer than its message.
    assert records.dispatched(["new-00001"], sent_since=due - 1) == 0
    assert records.overdue(30) == ["new-00001"]
    # Ending takes it out.
    records.transition("new-00001", BuildState.CANCELLED, expect={BuildState.QUEUED})
    assert records.overdue(0) == []


def test_an_ending_build_owes_its_waiting_dependents_a_message(
    records: Records, clock: FakeClock
) -> None:
    records.create(request("dep-00002"))
    for child in ("child-00002", "done-00002"):
        records.create(
            BuildRequest(
                build_id=child, context_digest=Digest.of(b"ctx"), depends_on=("dep-00002",)
            )
        )
    records.dispatched(["child-00002", "done-00002", "dep-00002"], sent_since=clock.now)
    records.transition("done-00002", BuildState.CANCELLED, expect={BuildState.QUEUED})
    start(records, "dep-00002")
    clock.now += 5
    records.transition(
        "dep-00002",
        BuildState.SUCCESS,
        expect={BuildState.WORKING},
        outcome=BuildOutcome(
            build_id="dep-00002", state="SUCCESS", digest=Digest.of(b"m"), worker="w1"
        ),
    )
    clock.now += 31
    # The QUEUED dependent is owed a message; the one that already ended is not.
    assert records.overdue(30) == ["child-00002"]


def test_a_retry_takes_its_place_in_the_batch(records: Records) -> None:
    ids = ["aa-00003", "bb-00003"]
    for build_id in ids:
        records.create(request(build_id, batch_id="batch-003"))
    records.create_batch("batch-003", ids, fail_fast=False)
    records.create(request("a2-00003", batch_id="batch-003"))
    assert records.link_retry("aa-00003", "a2-00003", "batch-003") == ""
    assert records.batch("batch-003") == (["a2-00003", "bb-00003"], False)
    old = records.get("aa-00003")
    assert old is not None and old.retried_as == "a2-00003"
    # A second retry of the same build loses to the live first one, and changes nothing.
    assert records.link_retry("aa-00003", "a3-00003", "batch-003") == "a2-00003"
    assert records.batch("batch-003") == (["a2-00003", "bb-00003"], False)
    # A build in no batch is linked all the same.
    records.create(request("solo-00003"))
    # The link is taken before the retry's record is written: one whose record never
    # came (its creator died) does not hold it.
    assert records.link_retry("solo-00003", "ghost-00003", None) == ""
    assert records.link_retry("solo-00003", "solo2-00003", None) == ""
    solo = records.get("solo-00003")
    assert solo is not None and solo.retried_as == "solo2-00003"


def test_create_many_records_a_batch_in_one_go(records: Records) -> None:
    first = request("many-00001")
    second = BuildRequest(
        build_id="many-00002", context_digest=Digest.of(b"ctx"), depends_on=("many-00001",)
    )
    records.create_many([first, second])
    got = [records.get(build_id) for build_id in ("many-00001", "many-00002")]
    assert [r.state if r else None for r in got] == [BuildState.QUEUED, BuildState.QUEUED]
    assert got[1] is not None and got[1].request == second
    assert records.dependents("many-00001") == ["many-00002"]
    assert sorted(records.overdue(-1)) == ["many-00001", "many-00002"]  # both owed a message
    assert records.dispatched(["many-00001", "many-00002"], sent_since=records.now()) == 2
    assert records.overdue(-1) == []
    with pytest.raises(DuplicateBuildError, match="many-00002: build id already in use"):
        records.create_many([request("many-00003"), second])
    assert records.get("many-00003") is None


def _batch_traces(client: redis.Redis, ids: list[str]) -> dict[str, list[str]]:
    """Every place a build of ``ids`` could have left a trace, and the ids found there."""
    places = {
        "record": [i for i in ids if client.exists(f"t:build:{i}")],
        "builds": [i for i in ids if client.zscore("t:builds", i) is not None],
        "queued": [i for i in ids if client.sismember("t:state:QUEUED", i)],
        "outbox": [i for i in ids if client.zscore("t:outbox", i) is not None],
    }
    dependents = {text(m) for key in client.keys("t:dependents:*") for m in client.smembers(key)}
    places["dependents"] = [i for i in ids if i in dependents]
    return places


NO_TRACE: dict[str, list[str]] = {
    "record": [],
    "builds": [],
    "queued": [],
    "outbox": [],
    "dependents": [],
}


@pytest.mark.parametrize("taken", ["allm-00001", "allm-00002", "allm-00003"])
def test_create_many_with_an_id_in_use_records_nothing(
    records: Records, redis_client: redis.Redis, taken: str
) -> None:
    records.create(request(taken))
    batch = [
        request("allm-00001"),
        BuildRequest(
            build_id="allm-00002", context_digest=Digest.of(b"ctx"), depends_on=("allm-00001",)
        ),
        request("allm-00003"),
    ]
    with pytest.raises(DuplicateBuildError, match=f"{taken}: build id already in use"):
        records.create_many(batch)
    others = [r.build_id for r in batch if r.build_id != taken]
    assert _batch_traces(redis_client, others) == NO_TRACE
    assert records.list() == [records.get(taken)]


def test_create_many_with_an_id_named_twice_records_nothing(
    records: Records, redis_client: redis.Redis
) -> None:
    batch = [request("twice-0001"), request("twice-0002"), request("twice-0001")]
    with pytest.raises(DuplicateBuildError, match="twice-0001: build id already in use"):
        records.create_many(batch)
    assert _batch_traces(redis_client, ["twice-0001", "twice-0002"]) == NO_TRACE


def test_a_redis_error_in_the_middle_of_a_batch_records_none_of_it(
    records: Records, redis_client: redis.Redis
) -> None:
    """Redis runs out of memory part-way through a batch: 500 builds of about 1 KiB each
    against 100 KB to spare. Written as one command per build, the first few dozen
    would stay recorded (and be published by a reaper) though create_many raised."""
    batch = [
        BuildRequest(
            build_id=f"oom-{n:05d}",
            context_digest=Digest.of(b"ctx"),
            no_push=True,
            labels={"padding": "x" * 1024},
            depends_on=("oom-00000",) if n else (),
        )
        for n in range(500)
    ]
    used = int(redis_client.info("memory")["used_memory"])
    redis_client.config_set("maxmemory", used + 100_000)
    try:
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            records.create_many(batch)
    finally:
        redis_client.config_set("maxmemory", 0)
    assert _batch_traces(redis_client, [r.build_id for r in batch]) == NO_TRACE
    records.create_many(batch)  # and with memory to spare, all of it
    assert len(records.list()) == 500
