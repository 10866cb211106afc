"""Every sandbox backend for real, in a busybox rootfs unpacked by umoci."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from executor.errors import SandboxError
from executor.sandbox import BACKENDS, Mount, RunSpec, choose_sandbox, make_sandbox, probe_all
from tests.support.images import APP_GID, APP_UID

PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture
def rootfs(busybox_layout: Path, tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{busybox_layout}:latest", str(bundle)],
        check=True,
        capture_output=True,
    )
    return bundle / "rootfs"


def run(backend: str, spec: RunSpec, timeout: float = 30) -> tuple[int, str]:
    chunks: list[bytes] = []
    status = make_sandbox(backend).run(spec, chunks.append, timeout=timeout)
    return status, b"".join(chunks).decode()


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_sees_its_env_user_workdir_and_hosts(backend: str, rootfs: Path) -> None:
    script = (
        'echo "foo=$FOO"; id -u; id -g; pwd; hostname; grep -c localhost /etc/hosts; env | sort'
    )
    spec = RunSpec(
        rootfs,
        ("sh", "-c", script),
        env=(PATH, "FOO=bar baz"),
        workdir="/home/app",
        uid=APP_UID,
        gid=APP_GID,
    )
    os.environ["AWS_SECRET_ACCESS_KEY"] = "builder-secret"  # must never reach a step
    try:
        status, out = run(backend, spec)
    finally:
        del os.environ["AWS_SECRET_ACCESS_KEY"]
    lines = out.splitlines()
    assert status == 0, out
    # proot has no UTS namespace, so only the namespace backends can set the hostname.
    hostname = "buildkitsandbox" if backend != "proot" else lines[4]
    assert lines[:6] == [
        "foo=bar baz",
        str(APP_UID),
        str(APP_GID),
        "/home/app",
        hostname,
        "2",
    ]
    env_names = {line.split("=", 1)[0] for line in lines[6:]}
    assert "AWS_SECRET_ACCESS_KEY" not in env_names and "FOO" in env_names


@pytest.mark.parametrize("backend", BACKENDS)
def test_exit_status_and_missing_program(backend: str, rootfs: Path) -> None:
    assert run(backend, RunSpec(rootfs, ("sh", "-c", "exit 3"), env=(PATH,)))[0] == 3
    status, out = run(backend, RunSpec(rootfs, ("no-such-program",), env=(PATH,)))
    assert status in (127, 1) and "no-such-program" in out


@pytest.mark.parametrize("backend", BACKENDS)
def test_writes_stay_in_the_rootfs(backend: str, rootfs: Path, tmp_path: Path) -> None:
    marker = tmp_path / "host-marker"
    spec = RunSpec(
        rootfs, ("sh", "-c", f"echo escaped > {marker}; echo inside > /made"), env=(PATH,)
    )
    status, out = run(backend, spec)
    assert status != 0 or not marker.exists(), out
    assert not marker.exists()
    assert (rootfs / "made").read_text() == "inside\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_kills_the_step(backend: str, rootfs: Path) -> None:
    started = time.monotonic()
    status, _ = run(backend, RunSpec(rootfs, ("sleep", "60"), env=(PATH,)), timeout=1)
    assert status == 124
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("backend", ["chroot", "userns"])
def test_namespace_backends_isolate_pids_and_network(backend: str, rootfs: Path) -> None:
    status, out = run(
        backend, RunSpec(rootfs, ("sh", "-c", "ls /proc | grep -c '^[0-9]'"), env=(PATH,))
    )
    assert status == 0 and int(out.strip()) <= 4  # our PID 1, sh, ls, grep
    status, out = run(
        backend,
        RunSpec(
            rootfs,
            ("sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1"),
            env=(PATH,),
            network="none",
        ),
    )
    assert status == 0 and out.split() == ["lo"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_mounts_are_visible_then_gone(backend: str, rootfs: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t")
    etc_mtime = (rootfs / "etc").stat().st_mtime_ns
    spec = RunSpec(
        rootfs,
        ("sh", "-c", "cat /run/secrets/token; ls /cache; echo x > /cache/file"),
        env=(PATH,),
        mounts=(
            Mount("bind", "/run/secrets/token", str(secret), readonly=True),
            Mount("tmpfs", "/cache"),
        ),
    )
    status, out = run(backend, spec)
    assert status == 0, out
    assert out.startswith("s3cr3t")
    # Mount points the rootfs lacked were removed, and parents' times restored.
    assert not (rootfs / "run").exists() and not (rootfs / "cache").exists()
    assert (rootfs / "etc").stat().st_mtime_ns == etc_mtime


def test_mount_target_through_a_symlink_out_of_the_rootfs_is_refused(
    rootfs: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (rootfs / "evil").symlink_to(outside)
    spec = RunSpec(rootfs, ("true",), env=(PATH,), mounts=(Mount("tmpfs", "/evil/x"),))
    with pytest.raises(SandboxError, match="outside the rootfs"):
        make_sandbox("chroot").run(spec, lambda _: None)
    assert list(outside.iterdir()) == []


def test_auto_picks_the_strongest_working_backend() -> None:
    reports = probe_all()
    assert [r.name for r in reports] == list(BACKENDS)
    assert all(r.works for r in reports), reports  # CI runs as root with every backend installed
    assert choose_sandbox("auto").name == "chroot"
    with pytest.raises(SandboxError, match="unknown sandbox 'jail'"):
        choose_sandbox("jail")
