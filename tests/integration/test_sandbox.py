"""Every sandbox backend for real, in a busybox rootfs unpacked by umoci."""

from __future__ import annotations

import os
import secrets
import shutil
import site
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from executor.errors import SandboxError
from executor.sandbox import BACKENDS, Mount, RunSpec, choose_sandbox, make_sandbox, probe_all
from tests.support import procs
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


def _sleep_marker() -> str:
    """A `sleep` duration no other process on the host has, to find the step's own."""
    return str(600 + secrets.randbelow(10**6))


def _live(program: str, marker: str) -> list[int]:
    """Live processes running `PROGRAM MARKER`."""
    wanted = [program.encode(), marker.encode()]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.split(b"\0")[:2] == wanted and procs.alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _sleepers(marker: str) -> list[int]:
    return _live("sleep", marker)


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_kills_the_step(backend: str, rootfs: Path) -> None:
    marker = _sleep_marker()
    started = time.monotonic()
    status, _ = run(backend, RunSpec(rootfs, ("sleep", marker), env=(PATH,)), timeout=1)
    assert status == 124
    assert time.monotonic() - started < 20
    assert _sleepers(marker) == []


# Rounds of the test below: a step answered too early let late output through
# within a few rounds; it is a race, so the test gives it many.
STRAGGLER_ROUNDS = 30


@pytest.mark.parametrize("backend", ["chroot", "userns"])
def test_a_timed_out_steps_stragglers_are_gone_before_its_status(
    backend: str, rootfs: Path
) -> None:
    """A process in a session of its own escapes the kill of the step's process group
    and dies only with the step's PID namespace; the status comes after it is gone,
    so none of its output reaches the next step on the same entry process."""
    sandbox = make_sandbox(backend)
    marker = _sleep_marker()
    # `yes` keeps the output pipe full, so it is always mid-write when the step ends.
    straggler = RunSpec(
        rootfs, ("sh", "-c", f"setsid yes {marker} & exec sleep {marker}"), env=(PATH,)
    )
    for _ in range(STRAGGLER_ROUNDS):
        status = sandbox.run(straggler, lambda _: None, timeout=0.1)
        assert status == 124
        left = _live("yes", marker) + _sleepers(marker)
        chunks: list[bytes] = []
        status = sandbox.run(RunSpec(rootfs, ("echo", "next"), env=(PATH,)), chunks.append)
        assert (left, status, b"".join(chunks)) == ([], 0, b"next\n")


@pytest.mark.parametrize("backend", ["chroot", "userns"])
def test_step_ends_when_the_builder_is_killed(backend: str, rootfs: Path, tmp_path: Path) -> None:
    marker = _sleep_marker()
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from executor.sandbox import RunSpec, make_sandbox

        def show(chunk):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()

        spec = RunSpec(
            Path({str(rootfs)!r}), ("sh", "-c", "echo started; sleep {marker}"), env=({PATH!r},)
        )
        make_sandbox({backend!r}).run(spec, show)
        """
    )
    builder = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
        # Killed outright, it cannot remove its scratch dir: keep that out of /tmp.
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        assert builder.stdout is not None
        assert builder.stdout.readline() == b"started\n"
        deadline = time.monotonic() + 10
        while not _sleepers(marker) and time.monotonic() < deadline:
            time.sleep(0.02)  # sh forks sleep after the echo
        assert len(_sleepers(marker)) == 1
        tree = procs.descendants(builder.pid)
        # The entry process, the step's leader, its PID 1, sh and sleep at least.
        assert len(tree) >= 4, tree
    finally:
        builder.kill()
        builder.wait()
    assert procs.wait_gone(tree, within=10), tree
    assert _sleepers(marker) == []


@pytest.mark.parametrize("backend", ["chroot", "userns"])
def test_steps_of_one_sandbox_run_at_once(backend: str, rootfs: Path, tmp_path: Path) -> None:
    # Each step waits for the other to start: they finish only if they run together.
    # Each has a rootfs of its own, as stages that run at once do, and both see /shared.
    sandbox = make_sandbox(backend)
    shared = tmp_path / "shared"
    shared.mkdir()
    script = "touch /shared/{me}; until [ -e /shared/{other} ]; do sleep 0.05; done; echo {me}"
    results: dict[str, tuple[int, bytes]] = {}

    def step(me: str, other: str) -> None:
        own = tmp_path / f"rootfs-{me}"
        shutil.copytree(rootfs, own, symlinks=True)
        spec = RunSpec(
            own,
            ("sh", "-c", script.format(me=me, other=other)),
            env=(PATH,),
            mounts=(Mount("bind", "/shared", str(shared)),),
        )
        chunks: list[bytes] = []
        status = sandbox.run(spec, chunks.append, timeout=20)
        results[me] = (status, b"".join(chunks))

    threads = [threading.Thread(target=step, args=pair) for pair in (("a", "b"), ("b", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {"a": (0, b"a\n"), "b": (0, b"b\n")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_starts_with_no_signal_ignored(backend: str, rootfs: Path) -> None:
    # An ignored SIGPIPE would survive exec: `yes` would then complain of a broken pipe.
    script = "grep SigIgn /proc/self/status; yes | head -n 1"
    status, out = run(backend, RunSpec(rootfs, ("sh", "-c", script), env=(PATH,)))
    assert (status, out) == (0, "SigIgn:\t0000000000000000\ny\n")


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


@pytest.mark.parametrize("backend", ["chroot", "userns"])
def test_mount_target_through_an_absolute_symlink_stays_in_the_rootfs(
    backend: str, rootfs: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    # Resolved as under chroot: the host path the link names is taken inside the rootfs.
    (rootfs / "evil").symlink_to(outside)
    before = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*"))
    spec = RunSpec(
        rootfs,
        ("sh", "-c", "echo hi > /evil/x/f && cat /evil/x/f"),
        env=(PATH,),
        mounts=(Mount("tmpfs", "/evil/x"),),
    )
    status, out = run(backend, spec)
    assert (status, out) == (0, "hi\n")
    assert list(outside.iterdir()) == []
    # What was made inside the rootfs to hold the mount point is gone again.
    assert not (rootfs / str(outside).lstrip("/")).exists()
    assert sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*")) == before


# Docker's default capabilities: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID
# SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
DOCKER_CAPS = "00000000a80425fb"


@pytest.mark.parametrize("backend", ["chroot", "userns"])
def test_root_step_keeps_only_dockers_capabilities(backend: str, rootfs: Path) -> None:
    script = "grep -E '^Cap(Bnd|Eff|Prm|Inh)' /proc/self/status; mount -t tmpfs none /mnt"
    status, out = run(backend, RunSpec(rootfs, ("sh", "-c", script), env=(PATH,)))
    caps = dict(line.split(":\t") for line in out.splitlines() if line.startswith("Cap"))
    assert caps == {
        "CapBnd": DOCKER_CAPS,
        "CapEff": DOCKER_CAPS,
        "CapPrm": DOCKER_CAPS,
        "CapInh": "0000000000000000",
    }, out
    assert status != 0, out  # no CAP_SYS_ADMIN: no mounting


@pytest.mark.parametrize("backend", ["chroot", "userns"])
def test_root_step_cannot_reach_the_host_filesystem(
    backend: str, rootfs: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "host-marker"
    marker.write_text("host")
    script = (
        "cat /proc/self/mountinfo; echo ---; "
        f"cat /proc/1/root{marker} /proc/self/root{marker} {marker} 2>/dev/null; true"
    )
    status, out = run(backend, RunSpec(rootfs, ("sh", "-c", script), env=(PATH,)))
    assert status == 0, out
    mountinfo, _, rest = out.partition("---\n")
    assert "host" not in rest.splitlines()
    points = [line.split()[4] for line in mountinfo.splitlines()]
    # After pivot_root the old root is detached: every mount point is the rootfs's
    # own, and no mount is of the host's root directory itself.
    assert not any(p.startswith(str(tmp_path)) for p in points), mountinfo
    roots = [line.split()[3] for line in mountinfo.splitlines() if line.split()[4] == "/"]
    assert roots and all(r != "/" for r in roots), mountinfo
    assert len(points) < 20, mountinfo  # not the host's whole mount table
    # Docker's masked /proc files are empty here (timer_list is not, on the host).
    if Path("/proc/timer_list").exists():
        spec = RunSpec(rootfs, ("sh", "-c", "wc -c < /proc/timer_list"), env=(PATH,))
        assert run(backend, spec) == (0, "0\n")


@pytest.mark.parametrize("backend", BACKENDS)
def test_absolute_dangling_resolv_conf_symlink(backend: str, rootfs: Path) -> None:
    resolv = rootfs / "etc" / "resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.symlink_to("/run/resolv/stub.conf")
    before = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*"))
    etc_mtime = (rootfs / "etc").stat().st_mtime_ns
    spec = RunSpec(rootfs, ("sh", "-c", "cat /etc/resolv.conf; echo ok"), env=(PATH,))
    status, out = run(backend, spec)
    assert status == 0 and out.endswith("ok\n"), out
    expected = Path("/etc/resolv.conf").read_text() if Path("/etc/resolv.conf").exists() else ""
    assert out == expected + "ok\n"
    assert os.readlink(resolv) == "/run/resolv/stub.conf" and not resolv.exists()
    assert sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*")) == before
    assert (rootfs / "etc").stat().st_mtime_ns == etc_mtime


@pytest.mark.parametrize("backend", ["chroot", "userns"])
def test_relative_mount_target_is_refused(backend: str, rootfs: Path) -> None:
    spec = RunSpec(rootfs, ("true",), env=(PATH,), mounts=(Mount("tmpfs", "rel"),))
    with pytest.raises(SandboxError, match="mount target rel: not an absolute path"):
        make_sandbox(backend).run(spec, lambda _: None)
    assert not (rootfs / "rel").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_mount_target_under_a_file_is_refused(backend: str, rootfs: Path) -> None:
    spec = RunSpec(rootfs, ("true",), env=(PATH,), mounts=(Mount("tmpfs", "/bin/busybox/x"),))
    with pytest.raises(SandboxError, match="mount target /bin/busybox/x: .*not a directory"):
        make_sandbox(backend).run(spec, lambda _: None)
    assert (rootfs / "bin" / "busybox").is_file()


NOBODY = 65534
# Runs a userns step as NOBODY; prints the step's uid and gid maps, or the error.
AS_NOBODY = f"""
import sys
from pathlib import Path
from executor.errors import SandboxError
from executor.sandbox import RunSpec, make_sandbox

argv = ("cat", "/proc/self/uid_map", "/proc/self/gid_map")
spec = RunSpec(Path(sys.argv[1]), argv, env=({PATH!r},))
chunks = []
try:
    status = make_sandbox("userns").run(spec, chunks.append, timeout=30)
except SandboxError as exc:
    print(f"SandboxError: {{exc}}")
else:
    print(b"".join(chunks).decode(), f"status {{status}}")
"""
# In a mount namespace of its own: this Python where NOBODY can reach it (a home
# directory may hide it), the given /etc/subuid and /etc/subgid, then AS_NOBODY.
AS_NOBODY_SH = f"""
mount --bind "$PYTHON_HOME" "$1/python"
mount --bind "$1/subuid" /etc/subuid
mount --bind "$1/subgid" /etc/subgid
exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups "$1/python/$2" -c "$3" "$1/rootfs"
"""


def _userns_step_as_nobody(rootfs: Path, subuid: str, subgid: str) -> str:
    """AS_NOBODY's output, with ``subuid`` and ``subgid`` as /etc/subuid and /etc/subgid."""
    if not (Path("/etc/subuid").exists() and Path("/etc/subgid").exists()):
        pytest.skip("no /etc/subuid or /etc/subgid to mount over")
    # Somewhere NOBODY may reach: pytest's own tmp dirs are root's alone.
    shared = Path(tempfile.mkdtemp(prefix="farm-nobody-"))
    try:
        shared.chmod(0o755)
        (shared / "python").mkdir()
        own = shared / "rootfs"
        shutil.copytree(rootfs, own, symlinks=True)
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(own)], check=True)
        (shared / "subuid").write_text(subuid)
        (shared / "subgid").write_text(subgid)
        (shared / "tmp").mkdir()
        (shared / "tmp").chmod(0o1777)
        python = Path(sys.executable).resolve().relative_to(sys.base_prefix)
        argv = [
            "unshare", "--mount", "--propagation", "private",
            "sh", "-ec", AS_NOBODY_SH, "sh", str(shared), str(python), AS_NOBODY,
        ]  # fmt: skip
        result = subprocess.run(
            argv,
            check=False,
            capture_output=True,
            text=True,
            cwd=Path(__file__).parents[2],
            env={
                **os.environ,
                "PYTHON_HOME": sys.base_prefix,
                "PYTHONPATH": os.pathsep.join(site.getsitepackages()),
                "TMPDIR": str(shared / "tmp"),
            },
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout
    finally:
        shutil.rmtree(shared)


def test_rootless_step_maps_the_callers_subordinate_ids(rootfs: Path) -> None:
    out = _userns_step_as_nobody(rootfs, "root:10:5\nnobody:100000:65536\n", "nobody:200000:1000\n")
    maps = [line.split() for line in out.splitlines()]
    assert maps == [
        ["0", str(NOBODY), "1"],
        ["1", "100000", "65536"],
        ["0", str(NOBODY), "1"],
        ["1", "200000", "1000"],
        ["status", "0"],
    ], out


@pytest.mark.parametrize(
    ("subuid", "subgid", "error"),
    [
        ("root:10:5\nnobody:abc:65536\n", "nobody:200000:1000\n", "/etc/subuid:2: start 'abc'"),
        ("nobody:100000:65536\n", "nobody200000:1000\n", "/etc/subgid:1: 'nobody200000:1000'"),
    ],
)
def test_a_malformed_subid_file_is_named_with_its_line(
    rootfs: Path, subuid: str, subgid: str, error: str
) -> None:
    """Found by the builder, which says where, not by the entry process (it died)."""
    out = _userns_step_as_nobody(rootfs, subuid, subgid)
    assert out.startswith(f"SandboxError: {error}"), out


def test_auto_picks_the_strongest_working_backend() -> None:
    reports = probe_all()
    assert [r.name for r in reports] == list(BACKENDS)
    assert all(r.works for r in reports), reports  # CI runs as root with every backend installed
    assert choose_sandbox("auto").name == "chroot"
    with pytest.raises(SandboxError, match="unknown sandbox 'jail'"):
        choose_sandbox("jail")


@pytest.mark.parametrize("backend", ["chroot", "userns"])
def test_overlay_step_writes_only_to_the_upper_dir(
    backend: str, rootfs: Path, tmp_path: Path
) -> None:
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    script = "echo new > /made; rm /etc/group; grep ' / / ' /proc/self/mountinfo"
    spec = RunSpec(rootfs, ("sh", "-c", script), env=(PATH,), overlay=(str(upper), str(work)))
    status, out = run(backend, spec)
    assert status == 0, out
    assert (upper / "made").read_text() == "new\n" and not (rootfs / "made").exists()
    assert (rootfs / "etc" / "group").exists() and (upper / "etc" / "group").is_char_device()
    # volatile: unmounting the overlay does not sync the whole upper filesystem.
    assert "overlay" in out and "volatile" in out, out


@pytest.mark.parametrize("backend", ["chroot", "userns"])
def test_a_step_holds_no_channel_of_the_builder(backend: str, rootfs: Path) -> None:
    """PID 1 of a step keeps only stdin, stdout and stderr: not the entry process's
    request and reply pipes, through which a step could forge its status."""
    status, out = run(backend, RunSpec(rootfs, ("sh", "-c", "ls /proc/1/fd"), env=(PATH,)))
    assert status == 0, out
    assert out.split() == ["0", "1", "2"]


def test_reset_output_undoes_the_flags_a_step_can_set() -> None:
    """Steps share the entry process's output pipe; serve() resets it before each step
    with _reset_output, which must clear what one step may have set."""
    import fcntl

    from executor.sandbox.enter import _reset_output

    read_end, write_end = os.pipe()
    try:
        flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
        fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK | fcntl.FASYNC)
        _reset_output(write_end)
        after = fcntl.fcntl(write_end, fcntl.F_GETFL)
        assert after & (os.O_NONBLOCK | fcntl.FASYNC) == 0
        assert after == flags
    finally:
        os.close(read_end)
        os.close(write_end)
