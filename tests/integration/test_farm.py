"""The farm end to end: real redis-server, moto's S3 server over HTTP, the CNCF registry,
and two real `farm worker` processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from farm.client import FarmClient
from farm.config import Settings
from farm.records import BuildState
from tests.integration.test_build import write_context
from tests.support.farm import WorkerProcess, metric_value
from tests.support.images import PushedImage
from tests.support.redis import RedisServer
from tests.support.s3 import S3Server

BUCKET = "farm-test"


@dataclass
class Farm:
    env: dict[str, str]
    settings: Settings
    client: FarmClient
    workers: list[WorkerProcess]
    redis: RedisServer


@pytest.fixture
def farm(tmp_path: Path, busybox_image: PushedImage) -> Iterator[Farm]:
    with RedisServer(tmp_path / "redis") as redis_server, S3Server() as s3:
        s3.create_bucket(BUCKET)
        env = {
            **os.environ,
            **s3.client_env(),
            "FARM_REDIS_URL": redis_server.url,
            "FARM_STORAGE_URL": f"s3://{BUCKET}/farm",
            "FARM_S3_ENDPOINT_URL": s3.endpoint_url,
            "FARM_S3_PATH_STYLE": "true",
            "FARM_WORKSPACE_ROOT": str(tmp_path / "work"),
            "FARM_HEARTBEAT_SECONDS": "1",
            "FARM_WORKER_LOST_SECONDS": "4",
            "FARM_SECRETS_DIR": str(tmp_path / "secrets"),
        }
        (tmp_path / "secrets").mkdir()
        (tmp_path / "secrets" / "token").write_text("s3cret-value")
        settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("FARM_")})
        old = dict(os.environ)
        os.environ.update(s3.client_env())  # the client in this process talks to S3 too
        workers: list[WorkerProcess] = []
        try:
            for n in range(2):
                worker = WorkerProcess(env, tmp_path / f"worker{n}.log", f"w{n}@test")
                workers.append(worker.start())
            yield Farm(env, settings, FarmClient(settings), workers, redis_server)
        finally:
            for worker in workers:
                worker.stop()
            os.environ.clear()
            os.environ.update(old)


def _raw_manifest(reference: str) -> dict[str, Any]:
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--no-creds", "--raw", f"docker://{reference}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    manifest: dict[str, Any] = json.loads(out.stdout)
    return manifest


def _skopeo_digest(reference: str) -> str:
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--no-creds", "--format", "{{.Digest}}",
         f"docker://{reference}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def test_builds_succeed_fail_and_are_counted(
    farm: Farm, busybox_image: PushedImage, tmp_path: Path
) -> None:
    base = busybox_image.reference
    host = busybox_image.registry.host
    good = write_context(tmp_path / "good", f"FROM {base}\nARG N\nRUN echo build $N > /n\n")
    bad = write_context(tmp_path / "bad", f"FROM {base}\nRUN echo about to fail; exit 9\n")
    ids = [
        farm.client.submit(good, destinations=[f"{host}/farm/app:{n}"], build_args={"N": str(n)})
        for n in range(3)
    ]
    failing = farm.client.submit(bad, destinations=[f"{host}/farm/bad:1"])
    records = [farm.client.wait(build_id, timeout=180) for build_id in [*ids, failing]]
    for n, record in enumerate(records[:3]):
        assert record.state is BuildState.SUCCESS, record.reason
        assert record.outcome is not None and record.outcome.digest is not None
        assert _skopeo_digest(f"{host}/farm/app:{n}") == str(record.outcome.digest)
    failed = records[3]
    assert failed.state is BuildState.FAILURE
    assert "exit code 9" in failed.reason and "Dockerfile:2" in failed.reason
    log, _ = farm.client.logs(failing)
    assert b"about to fail" in log
    # Each build was run by one of the two worker processes, whose metrics add up to
    # what this test caused.
    pids = {str(w.pid) for w in farm.workers}
    assert all(r.worker.rsplit(":", 1)[-1] in pids for r in records), [r.worker for r in records]
    texts = [w.metrics() for w in farm.workers]
    succeeded = sum(
        metric_value(t, "farm_builds_finished_total", 'outcome="success"') for t in texts
    )
    failures = sum(
        metric_value(t, "farm_builds_finished_total", 'outcome="failure"') for t in texts
    )
    assert (succeeded, failures) == (3, 1)
    # Bytes: every build (the failing one too) fetched the base layer; the three pushes
    # uploaded their config and new layer, and mounted the base layer from its repo.
    base_layers = _raw_manifest(busybox_image.reference)["layers"]
    pulled = sum(metric_value(t, "farm_pulled_bytes_total") for t in texts)
    assert pulled == 4 * sum(layer["size"] for layer in base_layers)
    uploaded = 0
    for n in range(3):
        manifest = _raw_manifest(f"{host}/farm/app:{n}")
        uploaded += manifest["config"]["size"] + manifest["layers"][-1]["size"]
    assert sum(metric_value(t, "farm_pushed_bytes_total") for t in texts) == uploaded


def test_malformed_request_is_rejected_and_the_worker_keeps_serving(
    farm: Farm, busybox_image: PushedImage, tmp_path: Path
) -> None:
    from farm.dispatch import celery_app

    celery_app(farm.settings).send_task(
        "farm.build", args=[{"version": 1, "build_id": "x", "nonsense": True}], queue="builds"
    )
    ctx = write_context(tmp_path / "ctx", f"FROM {busybox_image.reference}\nRUN true\n")
    build_id = farm.client.submit(ctx, no_push=True)
    assert farm.client.wait(build_id, timeout=120).state is BuildState.SUCCESS
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rejected = sum(
            metric_value(w.metrics(), "farm_requests_rejected_total") for w in farm.workers
        )
        if rejected == 1:
            break
        time.sleep(0.2)
    assert rejected == 1
    logs = "".join(w.log_tail(200) for w in farm.workers)
    assert "rejected a malformed build request" in logs


def test_cancel_a_queued_build(farm: Farm, busybox_image: PushedImage, tmp_path: Path) -> None:
    slow = write_context(tmp_path / "slow", f"FROM {busybox_image.reference}\nRUN sleep 30\n")
    running = [farm.client.submit(slow, no_push=True) for _ in range(2)]
    queued = farm.client.submit(slow, no_push=True)
    farm.client.cancel(queued)
    assert farm.client.get(queued).state is BuildState.CANCELLED
    deadline = time.monotonic() + 60
    while (
        farm.client.get(running[0]).state is not BuildState.WORKING and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    farm.client.cancel(running[0])
    stopped = farm.client.wait(running[0], timeout=30)
    assert stopped.state is BuildState.CANCELLED
    farm.client.cancel(running[1])
    assert farm.client.wait(running[1], timeout=60).state is BuildState.CANCELLED


def test_a_batch_with_a_dependency_chain(
    farm: Farm, busybox_image: PushedImage, tmp_path: Path
) -> None:
    """20 builds, the first five a chain (each FROM the one before), all pushed."""
    from farm.batchfile import parse_batch_file

    host = busybox_image.registry.host
    builds = []
    for n in range(20):
        base = f"{host}/chain/b{n - 1}:1" if 0 < n < 5 else busybox_image.reference
        write_context(tmp_path / f"b{n}", f"FROM {base}\nRUN echo {n} >> /chain\n")
        entry = {"name": f"b{n}", "context": f"b{n}", "destinations": [f"{host}/chain/b{n}:1"]}
        if 0 < n < 5:
            entry["depends_on"] = [f"b{n - 1}"]
        builds.append(entry)
    batch_file = tmp_path / "builds.yaml"
    batch_file.write_text(json.dumps({"builds": builds}))
    items = parse_batch_file(batch_file.read_text(), base_dir=tmp_path)
    batch_id, ids = farm.client.submit_batch(items)
    records = {name: farm.client.wait(build_id, timeout=300) for name, build_id in ids.items()}
    assert all(r.state is BuildState.SUCCESS for r in records.values()), {
        n: (r.state, r.reason) for n, r in records.items() if r.state is not BuildState.SUCCESS
    }
    for name in ("b0", "b4", "b19"):
        outcome = records[name].outcome
        assert outcome is not None
        assert _skopeo_digest(f"{host}/chain/{name}:1") == str(outcome.digest)
    # The chain ran in order: each started after the one before it ended.
    for n in range(1, 5):
        before, after = records[f"b{n - 1}"], records[f"b{n}"]
        assert before.finished_at is not None and after.started_at is not None
        assert after.started_at >= before.finished_at
    counts = farm.client.records.batch_counts(batch_id)
    assert counts.get(BuildState.SUCCESS) == 20


def test_fail_fast_and_failed_dependencies_cancel(
    farm: Farm, busybox_image: PushedImage, tmp_path: Path
) -> None:
    from farm.batchfile import parse_batch_file

    base = busybox_image.reference
    write_context(tmp_path / "bad", f"FROM {base}\nRUN exit 4\n")
    write_context(tmp_path / "slow", f"FROM {base}\nRUN sleep 2\n")
    builds = [
        {"name": "bad", "context": "bad"},
        {"name": "after-bad", "context": "slow", "depends_on": ["bad"]},
        *({"name": f"slow{n}", "context": "slow"} for n in range(4)),
    ]
    items = parse_batch_file(json.dumps({"builds": builds}), base_dir=tmp_path)
    _, ids = farm.client.submit_batch(items, fail_fast=True)
    records = {name: farm.client.wait(build_id, timeout=180) for name, build_id in ids.items()}
    assert records["bad"].state is BuildState.FAILURE and "exit code 4" in records["bad"].reason
    assert records["after-bad"].state is BuildState.CANCELLED
    cancelled = [
        n for n, r in records.items() if n.startswith("slow") and r.state is BuildState.CANCELLED
    ]
    assert cancelled, {n: r.state for n, r in records.items()}
    assert any("failing fast" in records[n].reason for n in cancelled)


def test_a_killed_worker_does_not_lose_its_build(
    farm: Farm, busybox_image: PushedImage, tmp_path: Path
) -> None:
    """SIGKILL the worker mid-build: another worker's reaper requeues it after
    FARM_WORKER_LOST_SECONDS, and it ends SUCCESS once, built twice, same digest pinned."""
    host = busybox_image.registry.host
    ctx = write_context(
        tmp_path / "ctx", f"FROM {busybox_image.reference}\nRUN sleep 4 && echo done > /done\n"
    )
    build_id = farm.client.submit(ctx, destinations=[f"{host}/survivor/app:1"])
    deadline = time.monotonic() + 60
    while farm.client.get(build_id).state is not BuildState.WORKING:
        assert time.monotonic() < deadline, "the build never started"
        time.sleep(0.1)
    holder = farm.client.get(build_id).worker
    victim = next(w for w in farm.workers if holder.endswith(f":{w.pid}"))
    killed_at = time.monotonic()
    victim.kill()
    record = farm.client.wait(build_id, timeout=120)
    assert record.state is BuildState.SUCCESS, record.reason
    assert record.attempts == 2 and record.worker != holder
    # The README promises a rebuild within worker_lost + heartbeat seconds plus the build.
    assert time.monotonic() - killed_at < 60
    assert record.outcome is not None
    assert _skopeo_digest(f"{host}/survivor/app:1") == str(record.outcome.digest)


def test_a_hostile_context_fails_the_build_with_the_reason(farm: Farm, tmp_path: Path) -> None:
    """A context tarball with a member climbing out: FAILURE naming it, nothing outside."""
    import hashlib
    import io
    import tarfile

    from executor.oci.digest import Digest
    from farm.contexts import context_key
    from farm.dispatch import Dispatcher
    from farm.spec import BuildRequest

    archive = tmp_path / "hostile.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in (("Dockerfile", b"FROM scratch\n"), ("../../escaped", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    digest = Digest("sha256", hashlib.sha256(archive.read_bytes()).hexdigest())
    farm.client.store.put_file(context_key(digest), archive)
    request = BuildRequest(build_id="hostile-0001", context_digest=digest, submitted_at=time.time())
    farm.client.records.create(request)
    Dispatcher(farm.settings, farm.client.records).publish(request)
    record = farm.client.wait("hostile-0001", timeout=60)
    assert record.state is BuildState.FAILURE
    assert "fetching the context" in record.reason and "../../escaped" in record.reason
    work = Path(farm.env["FARM_WORKSPACE_ROOT"])
    assert not (work.parent / "escaped").exists() and not (work / "escaped").exists()


def test_sigterm_finishes_the_build_retry_links_logs_kept(
    farm: Farm, busybox_image: PushedImage, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx", f"FROM {busybox_image.reference}\nRUN sleep 3 && echo finished-step\n"
    )
    build_id = farm.client.submit(ctx, no_push=True)
    deadline = time.monotonic() + 60
    while farm.client.get(build_id).state is not BuildState.WORKING:
        assert time.monotonic() < deadline, "the build never started"
        time.sleep(0.1)
    holder = farm.client.get(build_id).worker
    worker = next(w for w in farm.workers if holder.endswith(f":{w.pid}"))
    worker.signal(signal.SIGTERM)  # warm shutdown after the running build
    record = farm.client.wait(build_id, timeout=60)
    assert record.state is BuildState.SUCCESS and record.attempts == 1
    assert worker.wait(timeout=30) == 0
    # The log outlives Redis: it is in object storage under logs/<id>.log.
    assert b"finished-step" in farm.client.store.get_bytes(f"logs/{build_id}.log")
    again = farm.client.retry(build_id)
    assert again != build_id
    assert farm.client.get(again).request.retry_of == build_id
    assert farm.client.wait(again, timeout=120).state is BuildState.SUCCESS


def test_a_build_whose_message_was_never_sent_is_published_by_a_reaper(
    farm: Farm, busybox_image: PushedImage, tmp_path: Path
) -> None:
    """A producer that recorded a build and died before publishing its message."""
    from farm.contexts import pack_context, upload_context
    from farm.spec import BuildRequest

    ctx = write_context(tmp_path / "ctx", f"FROM {busybox_image.reference}\nRUN echo orphan\n")
    packed = pack_context(ctx, dockerfile="Dockerfile", dest_dir=tmp_path)
    upload_context(farm.client.store, packed)
    request = BuildRequest(
        build_id="orphan-0001",
        context_digest=packed.digest,
        no_push=True,
        submitted_at=time.time(),
    )
    recorded_at = time.monotonic()
    farm.client.records.create(request)  # and no message
    record = farm.client.wait("orphan-0001", timeout=120)
    assert record.state is BuildState.SUCCESS, record.reason
    assert record.attempts == 1
    # Published once FARM_WORKER_LOST_SECONDS (4) overdue, by a reaper that looks every
    # FARM_HEARTBEAT_SECONDS (1); then the build itself.
    assert record.started_at is not None
    assert 4 <= record.started_at - record.created_at < 30
    assert time.monotonic() - recorded_at < 90


def test_retrying_a_batch_rebuilds_the_failed_chain(
    farm: Farm, busybox_image: PushedImage, tmp_path: Path
) -> None:
    """A base image missing at first: the build FROM it fails, its dependent is cancelled;
    once the image exists, `retry` of the batch rebuilds both, in order, in the batch."""
    from farm.batchfile import parse_batch_file

    host = busybox_image.registry.host
    missing = f"{host}/later/base:1"
    write_context(tmp_path / "base", f"FROM {missing}\nRUN echo base > /base\n")
    write_context(tmp_path / "app", f"FROM {host}/later/app-base:1\nRUN cat /base\n")
    write_context(tmp_path / "other", f"FROM {busybox_image.reference}\nRUN true\n")
    builds = [
        {"name": "base", "context": "base", "destinations": [f"{host}/later/app-base:1"]},
        {"name": "app", "context": "app", "depends_on": ["base"]},
        {"name": "other", "context": "other"},
    ]
    items = parse_batch_file(json.dumps({"builds": builds}), base_dir=tmp_path)
    batch_id, ids = farm.client.submit_batch(items)
    first = {name: farm.client.wait(build_id, timeout=120) for name, build_id in ids.items()}
    assert first["base"].state is BuildState.FAILURE, first["base"].reason
    assert first["app"].state is BuildState.CANCELLED
    assert first["other"].state is BuildState.SUCCESS
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
         f"docker://{busybox_image.reference}", f"docker://{missing}"],
        check=True, capture_output=True,
    )  # fmt: skip
    retried = farm.client.retry_batch(batch_id)
    assert sorted(retried) == sorted([ids["base"], ids["app"]])
    new_base, new_app = retried[ids["base"]], retried[ids["app"]]
    assert farm.client.get(new_app).request.depends_on == (new_base,)
    assert farm.client.get(ids["base"]).retried_as == new_base
    after = {build_id: farm.client.wait(build_id, timeout=120) for build_id in retried.values()}
    assert all(r.state is BuildState.SUCCESS for r in after.values()), {
        i: (r.state, r.reason) for i, r in after.items()
    }
    app_started, base_finished = after[new_app].started_at, after[new_base].finished_at
    assert app_started is not None and base_finished is not None
    assert app_started >= base_finished
    listed = farm.client.records.batch(batch_id)
    assert listed is not None and sorted(listed[0]) == sorted([new_base, new_app, ids["other"]])
    assert farm.client.records.batch_counts(batch_id)[BuildState.SUCCESS] == 3


def test_secrets_come_from_the_workers(
    farm: Farm, busybox_image: PushedImage, tmp_path: Path
) -> None:
    """`--secret ID`: the value is the worker's file (FARM_SECRETS_DIR/ID), never sent."""
    ctx = write_context(
        tmp_path / "ctx",
        f"FROM {busybox_image.reference}\nARG PASSWORD\n"
        'RUN --mount=type=secret,id=token test "$(cat /run/secrets/token)" = s3cret-value '
        '&& test "$PASSWORD" = hunter2-arg\n',
    )
    ok = farm.client.submit(
        ctx, no_push=True, secrets=["token"], build_args={"PASSWORD": "hunter2-arg"}
    )
    assert farm.client.wait(ok, timeout=60).state is BuildState.SUCCESS
    assert "s3cret-value" not in farm.client.get(ok).request.dumps()
    # A secret the workers do not have fails the build, naming it.
    missing = farm.client.submit(ctx, no_push=True, secrets=["nope"])
    record = farm.client.wait(missing, timeout=60)
    assert record.state is BuildState.FAILURE
    assert "secret 'nope': not among the farm's secrets" in record.reason


def test_build_args_stay_off_command_lines_and_digest_files_are_written(
    farm: Farm, busybox_image: PushedImage, tmp_path: Path
) -> None:
    """`farm submit --secret ID --wait --digest-file`: the build args never appear in any
    process's command line (ps shows those to every user) while the build runs."""
    host = busybox_image.registry.host
    ctx = write_context(
        tmp_path / "ctx",
        f"FROM {busybox_image.reference}\nARG PASSWORD\n"
        'RUN --mount=type=secret,id=token test "$(cat /run/secrets/token)" = s3cret-value '
        '&& test "$PASSWORD" = hunter2-arg && sleep 2\n',
    )
    digest_file = tmp_path / "digest"
    submit = subprocess.Popen(
        [str(Path(sys.executable).parent / "farm"), "submit", "--context", str(ctx),
         "-d", f"{host}/secret/app:1", "--build-arg", "PASSWORD=hunter2-arg",
         "--secret", "token", "--wait", "--digest-file", str(digest_file)],
        env=farm.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen_in_argv = []
    while submit.poll() is None:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                argv = cmdline.read_bytes()
            except OSError:
                continue
            if b"hunter2-arg" in argv and b"submit" not in argv:
                seen_in_argv.append(argv)
        time.sleep(0.05)
    out, err = submit.communicate()
    assert submit.returncode == 0, out + err
    assert seen_in_argv == []
    assert digest_file.read_text() == _skopeo_digest(f"{host}/secret/app:1")
