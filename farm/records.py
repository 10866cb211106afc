"""Build and batch records in Redis: the state machine, timestamps, cancel flags, logs.

Keys (all under ``prefix``)::

    {p}:build:{id}         hash: state, request (JSON), created_at, started_at,
                           finished_at, attempts, worker, outcome (JSON), reason,
                           heartbeat_at, retried_as
    {p}:builds             sorted set: every build id by created_at
    {p}:state:{STATE}      set: the ids in that state
    {p}:working            sorted set: WORKING ids by last heartbeat
    {p}:outbox             sorted set: QUEUED ids whose message is yet to be published,
                           by when it is due (see farm/dispatch.py)
    {p}:dependents:{id}    set: the builds that named {id} in depends_on
    {p}:batch:{batch_id}   string: {"build_ids": [...], "fail_fast": bool, "created_at": t}
    {p}:cancel:{id}        string: present when a cancel was asked for
    {p}:log:{id}           list: log chunks in order; {p}:logbytes:{id} their total size

State changes run as Lua scripts (farm/redis_scripts.py), so two workers racing for
one build cannot both win. Terminal records, their logs and cancel flags expire after
``terminal_ttl``. Everything read back is parsed again (BuildRequest.from_json,
BuildOutcome.from_json, BuildState): Redis is an input like any other.

Errors are those of farm/redisio.py (RecordError and its two kinds), re-exported
here; logs are farm/buildlogs.py's, reached as ``records.logs``.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import redis

from farm import redis_scripts
from farm.buildlogs import DEFAULT_LOG_MAX_BYTES, DEFAULT_LOG_MAX_CHUNKS, BuildLogs
from farm.redisio import (
    DuplicateBuildError,
    RecordError,
    RecordsUnavailableError,
    redis_errors,
    text,
)
from farm.spec import BuildOutcome, BuildRequest, SpecError

__all__ = [  # noqa: RUF022 - plain sorted(), as tests/unit/test_exported_members.py checks
    "BuildRecord",
    "BuildState",
    "DuplicateBuildError",
    "RecordError",
    "Records",
    "RecordsUnavailableError",
    "TERMINAL",
]

# Long enough to look at last week's failures, short enough that Redis stays small.
DEFAULT_TERMINAL_TTL_SECONDS = 7 * 24 * 3600
# A batch outlives its builds' records: it may wait in the queue before they finish.
DEFAULT_BATCH_TTL_SECONDS = 30 * 24 * 3600


class BuildState(StrEnum):
    QUEUED = "QUEUED"
    WORKING = "WORKING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


TERMINAL = frozenset(
    {
        BuildState.SUCCESS,
        BuildState.FAILURE,
        BuildState.INTERNAL_ERROR,
        BuildState.TIMEOUT,
        BuildState.CANCELLED,
        BuildState.EXPIRED,
    }
)


@dataclass(frozen=True)
class BuildRecord:
    """What the farm knows about one build."""

    build_id: str
    state: BuildState
    request: BuildRequest
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    worker: str
    outcome: BuildOutcome | None
    reason: str
    heartbeat_at: float | None
    # The build that retried this one (`farm retry`), if any.
    retried_as: str = ""

    @property
    def queue_wait(self) -> float | None:
        """Seconds from creation to the (latest) start, or None if never started."""
        if self.started_at is None:
            return None
        return self.started_at - self.created_at


def _time(value: str, what: str) -> float | None:
    if value == "":
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise RecordError(f"{what}: invalid time {value!r}") from exc


class Records:
    """Build and batch records kept in one Redis database under ``prefix``."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "farm",
        clock: Callable[[], float] = time.time,
        terminal_ttl: int = DEFAULT_TERMINAL_TTL_SECONDS,
        batch_ttl: int = DEFAULT_BATCH_TTL_SECONDS,
        log_max_bytes: int = DEFAULT_LOG_MAX_BYTES,
        log_max_chunks: int = DEFAULT_LOG_MAX_CHUNKS,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._clock = clock
        self.terminal_ttl = terminal_ttl
        self.batch_ttl = batch_ttl
        self.logs = BuildLogs(
            client, prefix=prefix, max_bytes=log_max_bytes, max_chunks=log_max_chunks
        )
        self._create_many = client.register_script(redis_scripts.CREATE_MANY)
        self._transition = client.register_script(redis_scripts.TRANSITION)
        self._heartbeat = client.register_script(redis_scripts.HEARTBEAT)
        self._retried = client.register_script(redis_scripts.RETRIED)
        self._settle = client.register_script(redis_scripts.SETTLE)
        self._lease = client.register_script(redis_scripts.LEASE)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Records:
        """Records over a new client of ``redis://HOST:PORT/DB``; options go to __init__."""
        # Timeouts, so a half-open connection cannot hang a worker forever.
        client = redis.Redis.from_url(
            url, socket_timeout=30, socket_connect_timeout=10, health_check_interval=30
        )
        return cls(client, **options)

    # -- keys ---------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    def _build_key(self, build_id: str) -> str:
        return self._key("build", build_id)

    def _state_key(self, state: BuildState) -> str:
        return self._key("state", state.value)

    # -- builds -------------------------------------------------------------------------

    def create(self, request: BuildRequest) -> BuildRecord:
        """Record ``request`` as QUEUED; raise DuplicateBuildError if its id is taken."""
        self.create_many([request])
        record = self.get(request.build_id)
        if record is None:
            raise RecordError(
                f"creating build record {request.build_id}: record vanished after it was written"
            )
        return record

    def create_many(self, requests: Sequence[BuildRequest]) -> None:
        """Record every request as QUEUED, all or nothing, in one script call.

        Raises DuplicateBuildError naming the first id already in use (or named twice),
        and then nothing is recorded. Nor is anything half-written when Redis fails: the
        batch is one command, so a connection lost on the way delivers none of it, and
        a Redis out of memory refuses the script before its first write. So no build of
        a submission that raised is left in the outbox for a reaper to publish. (A
        script is not rolled back: a key of the wrong type under the farm's prefix could
        still stop it half-way; nothing but the farm writes there.)
        """
        if not requests:
            return
        keys = [self._key("builds"), self._state_key(BuildState.QUEUED), self._key("outbox")]
        keys += [self._build_key(request.build_id) for request in requests]
        # An index from each dependency to its dependents: when a build ends,
        # its dependents are owed a message (see farm/dispatch.py).
        keys += [self._key("dependents", dep) for r in requests for dep in r.depends_on]
        args: list[str | int] = [repr(self._clock()), BuildState.QUEUED.value, self.batch_ttl]
        for request in requests:
            args += [request.build_id, request.dumps(), len(request.depends_on)]
        with redis_errors(f"creating {len(requests)} build records"):
            taken = int(self._create_many(keys=keys, args=args))
        if taken:
            raise DuplicateBuildError(
                f"creating build record {requests[taken - 1].build_id}: build id already in use"
            )

    def dependents(self, build_id: str) -> builtins.list[str]:
        """Builds that named ``build_id`` in depends_on."""
        with redis_errors(f"reading the dependents of {build_id}"):
            members = self._redis.smembers(self._key("dependents", build_id))
        return sorted(text(m) for m in members)

    def get(self, build_id: str) -> BuildRecord | None:
        """The record of ``build_id``, or None if there is none (or it expired)."""
        with redis_errors(f"reading build record {build_id}"):
            fields = self._redis.hgetall(self._build_key(build_id))
        return self._parse(build_id, fields) if fields else None

    def transition(
        self,
        build_id: str,
        to: BuildState,
        *,
        expect: Collection[BuildState],
        worker: str = "",
        reason: str = "",
        outcome: BuildOutcome | None = None,
        holder: str = "",
        stale_before: float | None = None,
        due: float | None = None,
    ) -> BuildRecord | None:
        """Move ``build_id`` to ``to`` if, and only if, its state is in ``expect``.

        If the build is WORKING, ``holder`` (when given) must be the worker holding it,
        and ``stale_before`` (when given) must be later than its last heartbeat: so a
        worker that lost a build cannot end it, and only a lost worker's build can be
        taken over or requeued.

        Entering WORKING sets started_at and heartbeat_at and counts an attempt;
        a terminal state sets finished_at and starts the record's TTL. Back to QUEUED,
        the build enters the outbox, due at ``due`` (default now); ending, its QUEUED
        dependents do. Returns the new record, or None when the record is missing or in
        another state.
        """
        what = f"moving build {build_id} to {to}"
        if outcome is not None and (outcome.state != to.value or outcome.build_id != build_id):
            raise RecordError(
                f"{what}: outcome is for build {outcome.build_id} in state {outcome.state}"
            )
        if not expect:
            raise RecordError(f"{what}: no expected states given")
        with redis_errors(what):
            fields = self._transition(
                keys=[
                    self._build_key(build_id),
                    self._key("working"),
                    *self.logs.keys(build_id),
                    self._key("cancel", build_id),
                    self._key("outbox"),
                ],
                args=[
                    build_id,
                    to.value,
                    repr(self._clock()),
                    worker,
                    reason,
                    outcome.dumps() if outcome is not None else "",
                    "1" if to is BuildState.WORKING else "0",
                    "1" if to in TERMINAL else "0",
                    self.terminal_ttl,
                    self._key(""),
                    holder,
                    repr(stale_before) if stale_before is not None else "",
                    repr(self._clock() if due is None else due),
                    *(BuildState(state).value for state in expect),
                ],
            )
        if not fields:
            return None
        pairs = iter(fields)
        return self._parse(build_id, dict(zip(pairs, pairs, strict=True)))

    def heartbeat(self, build_id: str, worker: str) -> None:
        """Note that ``worker`` still runs ``build_id``; ignored unless it holds the build."""
        with redis_errors(f"heartbeat for build {build_id}"):
            self._heartbeat(
                keys=[self._build_key(build_id), self._key("working")],
                args=[build_id, worker, repr(self._clock()), BuildState.WORKING.value],
            )

    def stale_working(self, older_than: float) -> builtins.list[str]:
        """WORKING builds with no heartbeat for ``older_than`` seconds: their worker is lost."""
        return self._scored_before("working", older_than, "listing stale builds")

    # -- the outbox: builds whose queue message is owed ----------------------------------

    def overdue(self, older_than: float) -> builtins.list[str]:
        """Outbox entries due more than ``older_than`` seconds ago: their publisher is late."""
        return self._scored_before("outbox", older_than, "listing undispatched builds")

    def _scored_before(self, key: str, older_than: float, what: str) -> builtins.list[str]:
        """Members of sorted set ``key`` scored more than ``older_than`` seconds ago."""
        cutoff = self._clock() - older_than
        with redis_errors(what):
            ids = cast(
                "builtins.list[bytes | str]",
                self._redis.zrangebyscore(self._key(key), "-inf", f"({cutoff!r}"),
            )
        return [text(item) for item in ids]

    def now(self) -> float:
        """The records' clock: outbox times are on it."""
        return self._clock()

    def dispatched(self, build_ids: Sequence[str], *, sent_since: float) -> int:
        """Settle the outbox entries of ``build_ids`` whose message went out: those due
        no later than ``sent_since`` (when the sending began); return how many."""
        if not build_ids:
            return 0
        with redis_errors(f"settling {len(build_ids)} outbox entries"):
            settled = self._settle(keys=[self._key("outbox")], args=[repr(sent_since), *build_ids])
        return int(settled)

    def lease(self, build_id: str, *, older_than: float) -> float | None:
        """Take an outbox entry overdue by ``older_than`` seconds, for one reaper to
        publish: its due time becomes now (returned); None if it is not overdue."""
        now = self._clock()
        with redis_errors(f"leasing outbox entry {build_id}"):
            taken = self._lease(
                keys=[self._key("outbox")], args=[build_id, repr(now - older_than), repr(now)]
            )
        return now if taken else None

    def link_retry(self, old_id: str, new_id: str, batch_id: str | None) -> str:
        """Note that ``new_id`` retries ``old_id``, and put it in the old one's batch place.

        Returns "" when linked; the id of an earlier retry whose record still exists
        when that one holds the link (nothing changes then).
        """
        what = f"linking retry {new_id} of build {old_id}"
        with redis_errors(what):
            earlier = self._retried(
                keys=[self._build_key(old_id), self._key("batch", batch_id or "-")],
                args=[old_id, new_id, self._key("")],
            )
        if earlier is None:
            raise RecordError(f"{what}: no build {old_id}")
        return text(earlier)

    def list(
        self, *, batch_id: str | None = None, state: BuildState | None = None
    ) -> builtins.list[BuildRecord]:
        """Records of a batch, in a state, or all of them; oldest first."""
        with redis_errors("listing build records"):
            if batch_id is not None:
                found = self.batch(batch_id)
                ids = found[0] if found is not None else []
            elif state is not None:
                ids = sorted(text(item) for item in self._redis.smembers(self._state_key(state)))
            else:
                everything = cast(
                    "builtins.list[bytes | str]", self._redis.zrange(self._key("builds"), 0, -1)
                )
                ids = [text(item) for item in everything]
            records = self._get_many(ids)
        if state is not None:
            records = [record for record in records if record.state is state]
        return sorted(records, key=lambda record: (record.created_at, record.build_id))

    def get_many(self, ids: Sequence[str]) -> builtins.list[BuildRecord]:
        """The records of ``ids`` that exist, in that order, in one round trip."""
        with redis_errors(f"reading {len(ids)} build records"):
            return self._get_many(ids)

    def _get_many(self, ids: Sequence[str]) -> builtins.list[BuildRecord]:
        pipe = self._redis.pipeline(transaction=False)
        for build_id in ids:
            pipe.hgetall(self._build_key(build_id))
        records = []
        expired = []
        for build_id, fields in zip(ids, pipe.execute(), strict=True):
            if fields:
                records.append(self._parse(build_id, fields))
            else:
                expired.append(build_id)
        if expired:
            # Index entries of records whose TTL ran out; tidy them as we meet them.
            cleanup = self._redis.pipeline(transaction=False)
            cleanup.zrem(self._key("builds"), *expired)
            for state in TERMINAL:
                cleanup.srem(self._state_key(state), *expired)
            cleanup.execute()
        return records

    def _parse(self, build_id: str, raw: Mapping[Any, Any]) -> BuildRecord:
        what = f"reading build record {build_id}"
        fields = {text(key): text(value) for key, value in raw.items()}
        try:
            state = BuildState(fields["state"])
            request = BuildRequest.from_json(json.loads(fields["request"]))
            outcome_text = fields.get("outcome", "")
            outcome = BuildOutcome.from_json(json.loads(outcome_text)) if outcome_text else None
            created_at = _time(fields["created_at"], what)
            attempts = int(fields.get("attempts", "0"))
        except (KeyError, ValueError, SpecError) as exc:
            raise RecordError(f"{what}: {exc}") from exc
        if request.build_id != build_id or created_at is None:
            raise RecordError(f"{what}: record does not match its key")
        return BuildRecord(
            build_id=build_id,
            state=state,
            request=request,
            created_at=created_at,
            started_at=_time(fields.get("started_at", ""), what),
            finished_at=_time(fields.get("finished_at", ""), what),
            attempts=attempts,
            worker=fields.get("worker", ""),
            outcome=outcome,
            reason=fields.get("reason", ""),
            heartbeat_at=_time(fields.get("heartbeat_at", ""), what),
            retried_as=fields.get("retried_as", ""),
        )

    # -- batches ------------------------------------------------------------------------

    def create_batch(self, batch_id: str, build_ids: Sequence[str], *, fail_fast: bool) -> None:
        """Record a batch of builds; raise DuplicateBuildError if the batch id is taken."""
        body = json.dumps(
            {"build_ids": list(build_ids), "fail_fast": fail_fast, "created_at": self._clock()}
        )
        what = f"creating batch record {batch_id}"
        with redis_errors(what):
            created = self._redis.set(
                self._key("batch", batch_id), body, nx=True, ex=self.batch_ttl
            )
        if not created:
            raise DuplicateBuildError(f"{what}: batch id already in use")

    def batch(self, batch_id: str) -> tuple[builtins.list[str], bool] | None:
        """The batch's build ids and fail_fast flag, or None if there is no such batch."""
        what = f"reading batch record {batch_id}"
        with redis_errors(what):
            raw = self._redis.get(self._key("batch", batch_id))
        if raw is None:
            return None
        try:
            obj = json.loads(text(raw))
            ids, fail_fast = obj["build_ids"], obj["fail_fast"]
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordError(f"{what}: {exc}") from exc
        if not isinstance(fail_fast, bool) or not (
            isinstance(ids, list) and all(isinstance(item, str) for item in ids)
        ):
            raise RecordError(f"{what}: malformed record")
        return ids, fail_fast

    def count(self, state: BuildState) -> int:
        """How many builds are in ``state`` now (for the exporter's gauges)."""
        with redis_errors(f"counting {state.value} builds"):
            return int(self._redis.scard(self._state_key(state)))

    def batch_counts(self, batch_id: str) -> dict[BuildState, int]:
        """How many of the batch's builds are in each state (every state is a key)."""
        counts = dict.fromkeys(BuildState, 0)
        for record in self.list(batch_id=batch_id):
            counts[record.state] += 1
        return counts

    # -- cancel flags -------------------------------------------------------------------

    def request_cancel(self, build_id: str) -> None:
        """Ask whoever runs ``build_id`` to stop; the flag outlives the run by the TTL."""
        with redis_errors(f"cancelling build {build_id}"):
            self._redis.set(self._key("cancel", build_id), "1", ex=self.terminal_ttl)

    def cancel_requested(self, build_id: str) -> bool:
        with redis_errors(f"reading cancel flag of build {build_id}"):
            return bool(self._redis.exists(self._key("cancel", build_id)))
