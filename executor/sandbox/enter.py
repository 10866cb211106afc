"""The process that enters the namespaces, prepares the rootfs and runs the step.

Run as ``python -m executor.sandbox.enter [--userns] SPEC_JSON PLAN_JSON`` in a process of its
own (forking the builder itself, which has threads, would not be safe). Steps:

1. fork; the child unshares mount, PID (and user, network) namespaces; with a user
   namespace the parent writes the child's uid/gid maps (identity as real root,
   else the caller's uid as 0 plus its /etc/subuid range through newuidmap);
2. the child forks again, so the grandchild is PID 1 of the new PID namespace;
3. PID 1 mounts /proc, a small /dev, the step's extra mounts, /etc/hosts and
   /etc/resolv.conf at the host paths the plan names (resolved by the caller as under
   chroot, so no symlink of the image is followed), switches root with pivot_root
   and detaches the old one (the host's filesystem is then unreachable), forks the
   command, which drops every capability outside Docker's default set and takes its
   user, groups, env and workdir; PID 1 reaps every process and exits with the
   command's status.

Every process here dies with its parent (PR_SET_PDEATHSIG), so killing the top one
ends the step. Mount points the rootfs lacks are created by the caller beforehand
and removed afterwards (see namespaces.py), so they never reach a layer.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import platform
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from executor.sandbox.spec import DEVICES, RunSpec

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
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SYS_PIVOT_ROOT = {"x86_64": 155, "amd64": 155, "aarch64": 41, "arm64": 41}
# Docker's default capabilities for a container that is not --privileged; a step
# keeps no other (CAP_SYS_ADMIN above all), whatever its user.
DEFAULT_CAPS = frozenset(
    {
        0,  # CHOWN
        1,  # DAC_OVERRIDE
        3,  # FOWNER
        4,  # FSETID
        5,  # KILL
        6,  # SETGID
        7,  # SETUID
        8,  # SETPCAP
        10,  # NET_BIND_SERVICE
        13,  # NET_RAW
        18,  # SYS_CHROOT
        27,  # MKNOD
        29,  # AUDIT_WRITE
        31,  # SETFCAP
    }
)
# /proc entries Docker hides from a container: files get /dev/null, dirs an empty tmpfs.
_MASKED_FILES = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug")
_MASKED_DIRS = ("/proc/acpi", "/proc/scsi")
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


def _open_target(root: str, target: str) -> int:
    """An O_PATH fd of a resolved mount point under ``root``; no symlink is followed.

    The caller resolved every target as under chroot, so a symlink met here means
    the path changed (or an earlier mount put one there): refuse rather than follow.
    """
    if not target.startswith(root + "/") and target != root:
        raise OSError(errno.EINVAL, f"mount target {target} is not under the rootfs")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in target[len(root) :].split("/"):
            if name in ("", "."):
                continue
            if name == "..":
                raise OSError(errno.EINVAL, f"mount target {target} climbs with '..'")
            nxt = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise OSError(errno.ELOOP, f"mount target {target} is a symlink")
    except BaseException:
        os.close(fd)
        raise
    return fd


def mount_at(
    root: str, target: str, source: str, fstype: str, flags: int, *, data: str = ""
) -> None:
    """mount(2) on the resolved ``target``, through its fd (as runc does)."""
    fd = _open_target(root, target)
    try:
        try:
            mount(source, f"/proc/self/fd/{fd}", fstype, flags, data)
        except OSError as exc:
            raise OSError(
                exc.errno, f"mount {fstype or source} on {target}: {exc.strerror}"
            ) from None
    finally:
        os.close(fd)


def pivot_root(root: str) -> None:
    """Make ``root`` (a mount point) the root and detach the old one entirely."""
    os.chdir(root)
    number = _SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown machine {platform.machine()}")
    dot = b"."
    _check(_libc.syscall(number, dot, dot), "pivot_root")
    # The old root is stacked under the new one at "."; detach it and everything below.
    _check(_libc.umount2(dot, MNT_DETACH), "umount the old root")
    os.chdir("/")


def _mask_proc() -> None:
    """Hide /proc files that show the host's kernel state, as Docker does."""
    for path in _MASKED_FILES:
        if os.path.exists(path):
            with contextlib.suppress(OSError):
                mount("/dev/null", path, "", MS_BIND)
    for path in _MASKED_DIRS:
        if os.path.isdir(path):
            with contextlib.suppress(OSError):
                mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _prepare_root(plan: dict[str, Any]) -> None:
    """Mounts inside the new mount namespace, then pivot_root into the rootfs.

    Every target in ``plan`` is the host path of a mount point the caller resolved
    (as under chroot) and created, so no symlink of the image is followed here.
    """
    root: str = plan["root"]
    mount("none", "/", "", MS_REC | MS_PRIVATE)
    overlay = plan.get("overlay")
    if overlay:
        # The step's writes go to the upper dir (the overlay snapshotter reads them);
        # the overlay is also the mount point pivot_root needs.
        upper, work = overlay
        options = f"lowerdir={root},upperdir={upper},workdir={work}"
        # In a user namespace overlayfs keeps its marks in user.* xattrs (Linux 5.11+).
        options += ",userxattr" if plan.get("userns") else ",redirect_dir=off,index=off"
        try:
            # volatile (Linux 5.10+): no syncs of the upper filesystem, at unmount above
            # all, which on a busy disk cost a step tens of milliseconds. The upper dir
            # is fresh per step and read right after it; nothing needs it after a crash.
            mount("overlay", root, "overlay", 0, options + ",volatile")
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            mount("overlay", root, "overlay", 0, options)
    else:
        # A bind of the rootfs on itself makes it a mount point, which pivot_root needs;
        # everything mounted below moves with it.
        mount(root, root, "", MS_BIND | MS_REC)
    mount_at(root, plan["proc"], "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    dev: str = plan["dev"]
    mount_at(root, dev, "tmpfs", "tmpfs", MS_NOSUID, data="mode=755,size=65536k")
    # The tmpfs just mounted is ours: plain paths below it are safe.
    for name in DEVICES:
        target = f"{dev}/{name}"
        Path(target).touch()
        mount(f"/dev/{name}", target, "", MS_BIND)
    for name, link in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ):
        os.symlink(link, f"{dev}/{name}")
    for name in ("pts", "shm", "mqueue"):
        os.mkdir(f"{dev}/{name}")
    mount("tmpfs", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k")
    # Without devpts the step has no pseudo-terminals; builds rarely need one.
    with contextlib.suppress(OSError):
        mount(
            "devpts",
            f"{dev}/pts",
            "devpts",
            MS_NOSUID | MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=620",
        )
    for m in plan["mounts"]:
        target = m["target"]
        if m["kind"] == "tmpfs":
            mount_at(root, target, "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, data="mode=1777")
        else:
            mount_at(root, target, m["source"], "", MS_BIND | MS_REC)
            if m["ro"]:
                flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC
                mount_at(root, target, m["source"], "", flags)
    pivot_root(root)
    _mask_proc()


def _capset(mask: int) -> None:
    """Limit the effective and permitted sets to ``mask``; clear the inheritable one."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    header = Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (Data * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    for i in range(2):
        part = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective &= part
        data[i].permitted &= part
        data[i].inheritable = 0
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def drop_capabilities() -> None:
    """Shrink the bounding set to Docker's default one, and the process's own sets too."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        if cap not in DEFAULT_CAPS:
            _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"dropping capability {cap}")
    # No ambient capabilities survive into the step either.
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _capset(sum(1 << cap for cap in DEFAULT_CAPS))


def _exec_step(spec: RunSpec) -> None:
    """In the forked child of PID 1: become the step's user and exec the command."""
    try:
        drop_capabilities()
    except OSError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        os._exit(SANDBOX_FAILURE)
    # Python ignores SIGPIPE and SIGXFSZ and an ignored signal stays ignored across
    # exec; the step gets the defaults it would get from a shell or Docker.
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_DFL)
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


def _pid1(spec: RunSpec, plan: dict[str, Any]) -> int:
    die_with_parent()
    try:
        _prepare_root(plan)
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


def enter(spec: RunSpec, *, userns: bool, plan: dict[str, Any]) -> int:
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
            os._exit(_pid1(spec, plan))
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
    # The step dies with the builder that started it, even one killed outright
    # (its own session keeps it out of the builder's process group otherwise).
    parent = os.getppid()
    die_with_parent()
    if os.getppid() != parent:
        return SANDBOX_FAILURE  # the builder died before the line above
    userns = "--userns" in argv
    args = [a for a in argv if a != "--userns"]
    spec = RunSpec.from_json(args[0])
    plan: dict[str, Any] = json.loads(args[1])
    plan["userns"] = userns
    for target in [m.target for m in spec.mounts] + [m["target"] for m in plan["mounts"]]:
        if not target.startswith("/"):
            print(f"sandbox: mount target {target}: not an absolute path", file=sys.stderr)
            return SANDBOX_FAILURE
    return enter(spec, userns=userns, plan=plan)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
