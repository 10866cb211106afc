"""The process that enters the namespaces, prepares the rootfs and runs the step.

Run as ``python -m executor.sandbox.enter [--userns] SPEC_JSON`` in a process of its
own (forking the builder itself, which has threads, would not be safe). Steps:

1. fork; the child unshares mount, PID (and user, network) namespaces; with a user
   namespace the parent writes the child's uid/gid maps (identity as real root,
   else the caller's uid as 0 plus its /etc/subuid range through newuidmap);
2. the child forks again, so the grandchild is PID 1 of the new PID namespace;
3. PID 1 mounts /proc, a small /dev, the step's extra mounts, /etc/hosts and
   /etc/resolv.conf, chroots into the rootfs, forks the command with its user,
   groups, env and workdir, reaps every process and exits with the command's status.

Every process here dies with its parent (PR_SET_PDEATHSIG), so killing the top one
ends the step. Mount points the rootfs lacks are created by the caller beforehand
and removed afterwards (see namespaces.py), so they never reach a layer.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

from executor.sandbox.spec import RunSpec

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
# The device nodes a build step may use; nothing else of the host's /dev is shown.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
# Exit status used when the sandbox itself (not the step) failed.
SANDBOX_FAILURE = 125

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str, target: str, fstype: str, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode()),
        f"mount {fstype or source} on {target}",
    )


def die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _status(wait_status: int) -> int:
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def _subid_range(name: str, uid: int, path: str) -> tuple[int, int] | None:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (name, str(uid)):
            return int(parts[1]), int(parts[2])
    return None


def write_id_maps(pid: int) -> None:
    """Map ids for the child's new user namespace."""
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        # Real root may map every id to itself: owners in layers stay as written.
        Path(f"/proc/{pid}/uid_map").write_text("0 0 4294967295\n")
        Path(f"/proc/{pid}/gid_map").write_text("0 0 4294967295\n")
        return
    import pwd

    name = pwd.getpwuid(uid).pw_name
    subuid = _subid_range(name, uid, "/etc/subuid")
    subgid = _subid_range(name, uid, "/etc/subgid")
    if subuid and subgid:
        subprocess.run(
            ["newuidmap", str(pid), "0", str(uid), "1", "1", str(subuid[0]), str(subuid[1])],
            check=True,
        )
        subprocess.run(
            ["newgidmap", str(pid), "0", str(gid), "1", "1", str(subgid[0]), str(subgid[1])],
            check=True,
        )
        return
    # No subordinate ids: only root (the caller) exists inside.
    Path(f"/proc/{pid}/setgroups").write_text("deny\n")
    Path(f"/proc/{pid}/uid_map").write_text(f"0 {uid} 1\n")
    Path(f"/proc/{pid}/gid_map").write_text(f"0 {gid} 1\n")


def _prepare_root(spec: RunSpec, etc_files: dict[str, str]) -> None:
    """Mounts inside the new mount namespace; the rootfs's mount points exist already."""
    root = str(spec.rootfs)
    mount("none", "/", "", MS_REC | MS_PRIVATE)
    # A bind of the rootfs on itself makes it a mount point, so nothing mounted below
    # it can leak back to the host's view (and pivot-like tools inside behave).
    mount(root, root, "", MS_BIND | MS_REC)
    mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("tmpfs", f"{root}/dev", "tmpfs", MS_NOSUID, "mode=755,size=65536k")
    for name in DEVICES:
        target = f"{root}/dev/{name}"
        Path(target).touch()
        mount(f"/dev/{name}", target, "", MS_BIND)
    for name, link in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ):
        os.symlink(link, f"{root}/dev/{name}")
    for name in ("pts", "shm", "mqueue"):
        os.mkdir(f"{root}/dev/{name}")
    mount("tmpfs", f"{root}/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k")
    # Without devpts the step has no pseudo-terminals; builds rarely need one.
    with contextlib.suppress(OSError):
        mount(
            "devpts",
            f"{root}/dev/pts",
            "devpts",
            MS_NOSUID | MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=620",
        )
    for target, source in etc_files.items():
        mount(source, f"{root}{target}", "", MS_BIND)
    for m in spec.mounts:
        target = f"{root}{m.target}"
        if m.kind == "tmpfs":
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
        else:
            mount(m.source, target, "", MS_BIND | MS_REC)
            if m.readonly:
                mount(m.source, target, "", MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)


def _exec_step(spec: RunSpec) -> None:
    """In the forked child of PID 1: become the step's user and exec the command."""
    # setgroups is denied in a rootless namespace with a single id; then there are none.
    with contextlib.suppress(PermissionError):
        os.setgroups(list(spec.groups) or [spec.gid])
    os.setgid(spec.gid)
    os.setuid(spec.uid)
    try:
        os.chdir(spec.workdir or "/")
    except OSError as exc:
        print(f"sandbox: workdir {spec.workdir}: {exc.strerror}", file=sys.stderr)
        os._exit(SANDBOX_FAILURE)
    env = dict(item.partition("=")[::2] for item in spec.env)
    try:
        os.execvpe(spec.argv[0], list(spec.argv), env)
    except OSError as exc:
        code = 127 if exc.errno == errno.ENOENT else 126
        print(f"sandbox: {spec.argv[0]}: {exc.strerror}", file=sys.stderr)
        os._exit(code)


def _pid1(spec: RunSpec, etc_files: dict[str, str]) -> int:
    die_with_parent()
    try:
        _prepare_root(spec, etc_files)
        os.chroot(str(spec.rootfs))
        os.chdir("/")
        _libc.sethostname(spec.hostname.encode(), len(spec.hostname))
    except OSError as exc:
        print(f"sandbox: preparing the rootfs: {exc}", file=sys.stderr)
        return SANDBOX_FAILURE
    if not spec.argv:
        return 0  # a probe: the namespaces and mounts work
    child = os.fork()
    if child == 0:
        _exec_step(spec)
    # PID 1 reaps every orphan until the step's own process has ended.
    while True:
        pid, wait_status = os.wait()
        if pid == child:
            return _status(wait_status)


def enter(spec: RunSpec, *, userns: bool, etc_files: dict[str, str]) -> int:
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC
    if userns:
        flags |= CLONE_NEWUSER
    if spec.network == "none":
        flags |= CLONE_NEWNET
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        die_with_parent()
        os.close(ready_r)
        os.close(go_w)
        try:
            unshare(flags)
        except OSError as exc:
            print(f"sandbox: {exc}", file=sys.stderr)
            os._exit(SANDBOX_FAILURE)
        os.write(ready_w, b"1")
        if os.read(go_r, 1) != b"1":
            os._exit(SANDBOX_FAILURE)
        if userns:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        init = os.fork()
        if init == 0:
            os._exit(_pid1(spec, etc_files))
        _, wait_status = os.waitpid(init, 0)
        os._exit(_status(wait_status))
    os.close(ready_w)
    os.close(go_r)
    ok = os.read(ready_r, 1) == b"1"
    if ok and userns:
        try:
            write_id_maps(pid)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"sandbox: writing the user namespace's id maps: {exc}", file=sys.stderr)
            ok = False
    os.write(go_w, b"1" if ok else b"0")
    _, wait_status = os.waitpid(pid, 0)
    return _status(wait_status)


def main(argv: list[str]) -> int:
    userns = "--userns" in argv
    args = [a for a in argv if a != "--userns"]
    spec = RunSpec.from_json(args[0])
    etc_files = dict(item.split("=", 1) for item in args[1:])
    return enter(spec, userns=userns, etc_files=etc_files)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
