"""What the farm's commands do (their flags are in farm/cli/queue.py, which loads this
module only when one of them runs, so `farm build` does not import Celery or boto3)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from executor.errors import BuildInputError
from farm import local
from farm.cli.build import _pairs
from farm.client import FarmClient, WaitTimeoutError
from farm.config import Settings
from farm.local import farm_home, settings_path
from farm.records import TERMINAL, BuildRecord, BuildState

# What `farm wait` exits with when a build did not succeed.
_FAILED = 1
# Characters of `farm wait BATCH`'s progress bar.
_BAR_WIDTH = 30


def load_settings() -> Settings:
    """FARM_* settings; with no FARM_CONFIG, those of a farm `farm up` started, if any."""
    environ = dict(os.environ)
    if "FARM_CONFIG" not in environ:
        local = settings_path(environ)
        if local is not None:
            environ["FARM_CONFIG"] = str(local)
    return Settings.from_env(environ)


def _client() -> FarmClient:
    return FarmClient(load_settings())


def _summary(record: BuildRecord) -> dict[str, Any]:
    outcome = record.outcome
    return {
        "id": record.build_id,
        "state": record.state.value,
        "attempts": record.attempts,
        "worker": record.worker,
        "queue_wait": record.queue_wait,
        "digest": str(outcome.digest) if outcome and outcome.digest else None,
        "pushed": list(outcome.pushed) if outcome else [],
        "reason": record.reason,
        "timings": dict(outcome.timings) if outcome else {},
        "batch": record.request.batch_id,
    }


def _show(record: BuildRecord, as_json: bool) -> None:
    summary = _summary(record)
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    for key in ("id", "state", "digest", "reason", "worker", "attempts"):
        if summary[key] not in (None, "", []):
            print(f"{key + ':':<10} {summary[key]}")
    for ref in summary["pushed"]:
        print(f"{'pushed:':<10} {ref}")


def run_worker(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from tasks.app import create_app

    settings = load_settings()
    app = create_app(settings)
    port = args.metrics_port if args.metrics_port is not None else settings.metrics_port
    start_http_server(port, addr=args.metrics_addr, registry=app.farm_metrics.registry)
    name = args.name or f"farm-{os.getpid()}@%h"
    from farm.dispatch import Dispatcher
    from farm.records import Records
    from tasks.reaper import Reaper

    Reaper(Dispatcher(settings, Records.from_url(settings.redis_url), app)).start()
    # The solo pool runs the build task in this process, so /metrics sees it; the
    # build itself runs in a child the task can kill. SIGTERM lets it finish first.
    app.worker_main(
        ["worker", "--pool=solo", "--concurrency=1", "-Q", settings.queue, "-n", name,
         "--loglevel=INFO", "--without-gossip", "--without-mingle"]
    )  # fmt: skip
    return 0


def run_submit(args: argparse.Namespace) -> int:
    client = _client()
    if args.batch is not None:
        from farm.batchfile import parse_batch_file

        items = parse_batch_file(args.batch.read_text(), base_dir=args.batch.parent)
        batch_id, ids = client.submit_batch(items, fail_fast=args.fail_fast)
        print(json.dumps({"batch": batch_id, "builds": ids}) if args.json else batch_id)
        if not args.wait:
            return 0
        records = client.wait_many(list(ids.values()))
        failed = [r for r in records if r.state is not BuildState.SUCCESS]
        for name, record in zip(ids, records, strict=True):
            print(f"{name}: {record.state.value} {record.reason}".rstrip(), file=sys.stderr)
        return _FAILED if failed else 0
    if (args.digest_file or args.image_name_with_digest_file) and not args.wait:
        raise BuildInputError("--digest-file and --image-name-with-digest-file need --wait")
    build_id = client.submit(
        args.context,
        destinations=args.destination,
        dockerfile=args.dockerfile,
        build_args=_pairs(args.build_arg, "--build-arg"),
        labels=_pairs(args.label, "--label"),
        target=args.target,
        platform=args.custom_platform,
        no_push=args.no_push,
        secrets=[_secret_id(value) for value in args.secret],
    )
    if not args.wait:
        print(build_id)
        return 0
    record = client.wait(build_id)
    _show(record, args.json)
    if record.state is not BuildState.SUCCESS:
        return _FAILED
    _write_digest_files(args, record)
    return 0


def _secret_id(value: str) -> str:
    """``ID`` or ``id=ID``; a source file is refused: secrets stay on the workers."""
    if "=" not in value:
        return value
    fields = dict(part.partition("=")[::2] for part in value.split(","))
    if set(fields) != {"id"}:
        raise BuildInputError(
            f"--secret {value!r}: give only the id; the farm's workers provide the value "
            "(FARM_SECRETS_DIR/ID), it is never sent with the build"
        )
    return fields["id"]


def _write_digest_files(args: argparse.Namespace, record: BuildRecord) -> None:
    if record.outcome is None or record.outcome.digest is None:
        return
    if args.digest_file:
        args.digest_file.write_text(str(record.outcome.digest))
    if args.image_name_with_digest_file:
        args.image_name_with_digest_file.write_text(
            "".join(f"{ref}\n" for ref in record.outcome.pushed)
        )


def run_status(args: argparse.Namespace) -> int:
    _show(_client().get(args.build_id), args.json)
    return 0


def run_wait(args: argparse.Namespace) -> int:
    client = _client()
    batch = client.records.batch(args.build_id)
    if batch is not None:
        return _wait_batch(client, args.build_id, batch[0], args)
    record = client.wait(args.build_id, timeout=args.timeout)
    _show(record, args.json)
    return 0 if record.state is BuildState.SUCCESS else _FAILED


def _wait_batch(client: FarmClient, batch_id: str, ids: list[str], args: argparse.Namespace) -> int:
    """Wait for every build of a batch, with a progress bar on stderr."""

    def show(ended: Sequence[BuildRecord]) -> None:
        failed = sum(record.state is not BuildState.SUCCESS for record in ended)
        filled = _BAR_WIDTH * len(ended) // max(len(ids), 1)
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        print(
            f"\r{batch_id} [{bar}] {len(ended)}/{len(ids)} done, {failed} not successful",
            end="", file=sys.stderr, flush=True,
        )  # fmt: skip

    try:
        records = client.wait_many(ids, timeout=args.timeout, progress=show)
    except WaitTimeoutError as exc:
        raise WaitTimeoutError(f"batch {batch_id}: {exc}") from exc
    finally:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps([_summary(r) for r in records], indent=2))
    else:
        for record in records:
            print(f"{record.build_id}  {record.state.value:<14} {record.reason}".rstrip())
    failed = [r for r in records if r.state is not BuildState.SUCCESS]
    return _FAILED if failed else 0


def run_cancel(args: argparse.Namespace) -> int:
    client = _client()
    if client.records.batch(args.build_id) is not None:
        for build_id in client.cancel_batch(args.build_id):
            print(f"{build_id}  cancelled")
        return 0
    client.cancel(args.build_id)
    _show(client.get(args.build_id), args.json)
    return 0


def run_retry(args: argparse.Namespace) -> int:
    client = _client()
    if client.records.batch(args.build_id) is not None:
        retried = client.retry_batch(args.build_id)
        if args.json:
            print(json.dumps(retried))
        for old, new in retried.items():
            if not args.json:
                print(f"{old}  retried as {new}")
        return 0
    new = client.retry(args.build_id)
    print(json.dumps({args.build_id: new}) if args.json else new)
    return 0


def run_logs(args: argparse.Namespace) -> int:
    client = _client()
    offset = 0
    while True:
        chunk, offset = client.logs(args.build_id, offset)
        if chunk:
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        if not args.follow or (not chunk and client.get(args.build_id).state in TERMINAL):
            return 0
        if not chunk:
            time.sleep(0.5)


def run_list(args: argparse.Namespace) -> int:
    state = BuildState(args.state) if args.state else None
    records = _client().list(batch_id=args.batch, state=state)
    if args.json:
        print(json.dumps([_summary(r) for r in records], indent=2))
        return 0
    for record in records:
        print(f"{record.build_id}  {record.state.value:<14} {record.reason}".rstrip())
    return 0


def run_up(args: argparse.Namespace) -> int:
    home = farm_home()
    started = local.up(home, workers=args.workers)
    print(
        f"farm up in {home}: redis 127.0.0.1:{started.redis_port}, "
        f"registry {started.registry}, {args.workers} workers"
    )
    print(f"push to {started.registry}/NAME:TAG; `farm down` stops it all")
    return 0


def run_down(args: argparse.Namespace) -> int:
    stopped = local.down(farm_home())
    print(f"farm down: stopped {stopped} processes")
    return 0


def run_exporter(args: argparse.Namespace) -> int:
    import redis as redis_lib
    from prometheus_client import CollectorRegistry, start_http_server

    from farm.exporter import FarmCollector
    from farm.records import Records

    settings = load_settings()
    client = redis_lib.Redis.from_url(settings.redis_url)
    registry = CollectorRegistry()
    registry.register(FarmCollector(client, Records(client), settings.queue))
    start_http_server(args.metrics_port, addr=args.metrics_addr, registry=registry)
    print(f"serving farm metrics on {args.metrics_addr}:{args.metrics_port}", flush=True)
    while True:
        time.sleep(3600)
