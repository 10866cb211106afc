"""The entry process: it enters new namespaces for each RUN step and runs it there.

The builder starts it once per sandbox, by path: ``python -I -S enter.py [--userns
[--subuid=START:COUNT --subgid=START:COUNT]]`` (see entry.py). It imports only a few
stdlib modules, so it starts in some 30 ms, and then runs steps one at a time as the
builder asks (``serve``): forking this small single-threaded process costs a step
about a millisecond where starting a fresh interpreter with the package's imports
cost a hundred. The builder, which has threads, never forks itself. For each step:

1. fork the step's leader, in a session of its own; it unshares mount, PID, UTS and
   IPC (and user, network) namespaces; with a user namespace this process writes
   the leader's uid/gid maps (identity as real root, else the caller's uid as 0
   plus the /etc/subuid range the builder read, through newuidmap);
2. the leader forks again, so its child is PID 1 of the new PID namespace;
3. PID 1 mounts /proc, a small /dev, the step's extra mounts, /etc/hosts and
   /etc/resolv.conf at the host paths the step names (resolved by the builder as
   under chroot, so no symlink of the image is followed), switches root with
   pivot_root and detaches the old one (the host's filesystem is then unreachable),
   forks the command, which drops every capability outside Docker's default set and
   takes its user, groups, env and workdir; PID 1 reaps every process and exits with
   the command's status.

Every process of a step dies with its parent (PR_SET_PDEATHSIG), so killing the
leader ends the step. Its status is answered only once its PID namespace is empty,
so nothing of it can write into the next step's output: this process is a child
subreaper, so PID 1 of a step whose leader was killed becomes its child, and the
kernel lets PID 1 end only after every other process of its namespace is gone.
This process ends, and with it any running step, when the builder closes the
request pipe or dies. Mount points the rootfs lacks are created by the builder
beforehand and removed afterwards (see namespaces.py), so they never reach a layer.

The pipes, set up by the builder: fd 0 brings requests (``R``, a 4-byte length and
the step as a marshal'ed dict, or ``K``: kill the running step), fd 1 takes each
step's exit status (4 bytes, 128+N for signal N), fd 2 is where steps write their
output. marshal is fine here: both ends are the same interpreter, the pipes private.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import marshal
import os
import select
import stat
import sys

# os.execvpe imports warnings on first use, which after pivot_root would find no
# stdlib: import it while the host's root is still there.
import warnings  # noqa: F401

# Imports for type checking only: typing alone would add a quarter to the start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Step = dict[str, Any]
    # (start, count) of the caller's subordinate uids, then gids.
    SubIds = tuple[tuple[int, int], tuple[int, int]]

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
PR_SET_CHILD_SUBREAPER = 36
# Signal numbers as on Linux (x86-64 and arm64, the machines pivot_root is known on);
# the signal module would import enum and cost a fifth of the start-up.
SIGKILL = 9
SIGPIPE = 13
SIGXFSZ = 25
SIG_DFL = None  # a NULL handler for libc's signal()
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
# Requests on fd 0.
RUN = b"R"
KILL = b"K"
# Without pidfd_open (Linux < 5.3) a running step is polled this often.
_POLL_SECONDS = 0.02

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _say(message: str) -> None:
    """A line for the step's output (fd 2), unbuffered: the caller may _exit next."""
    os.write(2, f"sandbox: {message}\n".encode(errors="replace"))


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str, target: str, fstype: str, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode()),
        f"mount {fstype or source} on {target}",
    )


def die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)


def _status(wait_status: int) -> int:
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def write_id_maps(pid: int, subids: SubIds | None) -> None:
    """Map ids for the child's new user namespace; ``subids``: the caller's ranges of
    /etc/subuid and /etc/subgid, read by the builder (see subids.py)."""
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        # Real root may map every id to itself: owners in layers stay as written.
        _write(f"/proc/{pid}/uid_map", "0 0 4294967295\n")
        _write(f"/proc/{pid}/gid_map", "0 0 4294967295\n")
        return
    if subids is not None:
        import subprocess  # only here: it would double this process's start-up

        uids, gids = subids
        for tool, outer, (start, count) in (("newuidmap", uid, uids), ("newgidmap", gid, gids)):
            argv = [tool, str(pid), "0", str(outer), "1", "1", str(start), str(count)]
            if subprocess.run(argv, check=False).returncode != 0:
                raise OSError(errno.EPERM, f"{tool} failed")
        return
    # No subordinate ids: only root (the caller) exists inside.
    _write(f"/proc/{pid}/setgroups", "deny\n")
    _write(f"/proc/{pid}/uid_map", f"0 {uid} 1\n")
    _write(f"/proc/{pid}/gid_map", f"0 {gid} 1\n")


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
    machine = os.uname().machine
    number = _SYS_PIVOT_ROOT.get(machine)
    if number is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown machine {machine}")
    dot = b"."
    _check(_libc.syscall(number, dot, dot), "pivot_root")
    # The old root is stacked under the new one at "."; detach it and everything below.
    _check(_libc.umount2(dot, MNT_DETACH), "umount the old root")
    os.chdir("/")


def _mask_proc() -> None:
    """Hide /proc files that show the host's kernel state, as Docker does."""
    for path in _MASKED_FILES:
        if os.path.exists(path):
            try:
                mount("/dev/null", path, "", MS_BIND)
            except OSError:
                pass  # a kernel without it: nothing shown to hide
    for path in _MASKED_DIRS:
        if os.path.isdir(path):
            try:
                mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
            except OSError:
                pass


def _mount_overlay(root: str, upper: str, work: str, *, userns: bool) -> None:
    """The step's writes go to the upper dir (the overlay snapshotter reads them);
    the overlay is also the mount point pivot_root needs."""
    options = f"lowerdir={root},upperdir={upper},workdir={work}"
    # In a user namespace overlayfs keeps its marks in user.* xattrs (Linux 5.11+).
    options += ",userxattr" if userns else ",redirect_dir=off,index=off"
    try:
        # volatile (Linux 5.10+): no syncs of the upper filesystem, at unmount above
        # all, which on a busy disk cost a step tens of milliseconds. The upper dir
        # is fresh per step and read right after it; nothing needs it after a crash.
        mount("overlay", root, "overlay", 0, options + ",volatile")
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        mount("overlay", root, "overlay", 0, options)


def _prepare_root(step: Step, *, userns: bool) -> None:
    """Mounts inside the new mount namespace, then pivot_root into the rootfs.

    Every target in ``step`` is the host path of a mount point the builder resolved
    (as under chroot) and created, so no symlink of the image is followed here.
    """
    root: str = step["root"]
    mount("none", "/", "", MS_REC | MS_PRIVATE)
    if step["overlay"]:
        upper, work = step["overlay"]
        _mount_overlay(root, upper, work, userns=userns)
    else:
        # A bind of the rootfs on itself makes it a mount point, which pivot_root needs;
        # everything mounted below moves with it.
        mount(root, root, "", MS_BIND | MS_REC)
    mount_at(root, step["proc"], "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    dev: str = step["dev"]
    mount_at(root, dev, "tmpfs", "tmpfs", MS_NOSUID, data="mode=755,size=65536k")
    # The tmpfs just mounted is ours: plain paths below it are safe.
    for name in step["devices"]:
        target = f"{dev}/{name}"
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
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
    try:
        mount(
            "devpts",
            f"{dev}/pts",
            "devpts",
            MS_NOSUID | MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=620",
        )
    except OSError:
        pass
    for m in step["mounts"]:
        target = m["target"]
        if m["kind"] == "tmpfs":
            mount_at(root, target, "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, data="mode=1777")
        else:
            mount_at(root, target, m["source"], "", MS_BIND | MS_REC)
            if m["ro"]:
                flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC
                mount_at(root, target, m["source"], "", flags)
    pivot_root(root)
    # From here the filesystem is the image's: an import would load its code into this
    # privileged process. Nothing imports after this point; make sure nothing can.
    sys.meta_path.clear()
    sys.path_importer_cache.clear()
    _mask_proc()


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _capset(mask: int) -> None:
    """Limit the effective and permitted sets to ``mask``; clear the inheritable one."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    for i in range(2):
        part = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective &= part
        data[i].permitted &= part
        data[i].inheritable = 0
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def last_capability() -> int:
    """The highest capability number this kernel knows."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def drop_capabilities(last: int) -> None:
    """Shrink the bounding set to Docker's default one, and the process's own sets too."""
    for cap in range(last + 1):
        if cap not in DEFAULT_CAPS:
            _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"dropping capability {cap}")
    # No ambient capabilities survive into the step either.
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _capset(sum(1 << cap for cap in DEFAULT_CAPS))


def _exec_step(step: Step) -> int:
    """In the forked child of PID 1: become the step's user and exec the command."""
    try:
        drop_capabilities(step["last_cap"])
    except OSError as exc:
        _say(str(exc))
        return SANDBOX_FAILURE
    # Python ignores SIGPIPE and SIGXFSZ and an ignored signal stays ignored across
    # exec; the step gets the defaults it would get from a shell or Docker.
    for signum in (SIGPIPE, SIGXFSZ):
        _libc.signal(signum, SIG_DFL)
    groups: list[int] = step["groups"]
    gid: int = step["gid"]
    # setgroups is denied in a rootless namespace with a single id; then there are none.
    try:
        os.setgroups(groups or [gid])
    except PermissionError:
        pass
    os.setgid(gid)
    os.setuid(step["uid"])
    workdir: str = step["workdir"] or "/"
    try:
        os.chdir(workdir)
    except OSError as exc:
        _say(f"workdir {workdir}: {exc.strerror}")
        return SANDBOX_FAILURE
    argv: list[str] = step["argv"]
    env = dict(item.partition("=")[::2] for item in step["env"])
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        _say(f"{argv[0]}: {exc.strerror}")
        return 127 if exc.errno == errno.ENOENT else 126


def _pid1(step: Step, *, userns: bool) -> int:
    die_with_parent()
    try:
        _prepare_root(step, userns=userns)
        hostname: str = step["hostname"]
        _libc.sethostname(hostname.encode(), len(hostname))
    except OSError as exc:
        _say(f"preparing the rootfs: {exc}")
        return SANDBOX_FAILURE
    if not step["argv"]:
        return 0  # a probe: the namespaces and mounts work
    child = _fork(lambda: _exec_step(step))
    # PID 1 reaps every orphan until the step's own process has ended.
    while True:
        pid, wait_status = os.wait()
        if pid == child:
            return _status(wait_status)


def _fork(body: Callable[[], int]) -> int:
    """Fork a child that runs ``body`` and exits with its result; never returns in it."""
    pid = os.fork()
    if pid == 0:
        status = SANDBOX_FAILURE
        try:
            status = body()
        except BaseException as exc:  # noqa: BLE001 - a forked child must never unwind
            _say(f"{type(exc).__name__}: {exc}")
        finally:
            os._exit(status)
    return pid


def _leader(step: Step, *, flags: int, parent: int, maps: tuple[int, int] | None) -> int:
    """The step's top process: unshare, wait for the id maps, fork PID 1 and wait for it.

    ``maps`` (user namespace only): the pipes to say it unshared and to hear its id
    maps are written.
    """
    die_with_parent()
    if os.getppid() != parent:
        return SANDBOX_FAILURE  # the entry process died before the line above
    # The builder's request and reply pipes are the entry process's alone: nothing in
    # the step's namespaces keeps them (a step must not forge its own status).
    for fd in step["channel"]:
        os.close(fd)
    os.setsid()  # its own process group, so a kill reaches all of it
    try:
        unshare(flags)
    except OSError as exc:
        _say(str(exc))
        return SANDBOX_FAILURE
    if maps is not None:
        ready, go = maps
        os.write(ready, b"1")
        mapped = os.read(go, 1) == b"1"
        os.close(ready)
        os.close(go)
        if not mapped:
            return SANDBOX_FAILURE
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    init = _fork(lambda: _pid1(step, userns=maps is not None))
    _, wait_status = os.waitpid(init, 0)
    return _status(wait_status)


def _start(step: Step, *, userns: bool) -> int:
    """Fork the step's leader and, with a user namespace, map its ids; return its pid."""
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC
    if step["network"] == "none":
        flags |= CLONE_NEWNET
    parent = os.getpid()
    if not userns:
        return _fork(lambda: _leader(step, flags=flags, parent=parent, maps=None))
    flags |= CLONE_NEWUSER
    # This process lives as long as the builder: no failure may leave an end open.
    ends: list[int] = []
    try:
        ends += os.pipe()
        ends += os.pipe()
        ready_r, ready_w, go_r, go_w = ends

        def leader() -> int:
            os.close(ready_r)
            os.close(go_w)
            return _leader(step, flags=flags, parent=parent, maps=(ready_w, go_r))

        pid = _fork(leader)
    except BaseException:
        for fd in ends:
            os.close(fd)
        raise
    os.close(ready_w)
    os.close(go_r)
    try:
        ok = os.read(ready_r, 1) == b"1"  # b"" if it failed and exited
        if ok:
            try:
                write_id_maps(pid, step["subids"])
            except OSError as exc:
                _say(f"writing the user namespace's id maps: {exc}")
                ok = False
        try:
            os.write(go_w, b"1" if ok else b"0")
        except BrokenPipeError:
            pass  # it has already exited; its status says why
    finally:
        os.close(ready_r)
        os.close(go_w)
    return pid


def _kill(pid: int) -> None:
    """SIGKILL the step's process group (the leader is not reaped yet: no pid reuse)."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, SIGKILL)
        except ProcessLookupError:
            pass


def _read_exact(fd: int, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _read_request(fd: int) -> tuple[bytes, bytes] | None:
    """The next request as (kind, body), or None once the builder closed the pipe."""
    kind = _read_exact(fd, 1)
    if kind is None or kind != RUN:
        return None if kind is None else (kind, b"")
    size = _read_exact(fd, 4)
    body = _read_exact(fd, int.from_bytes(size, "big")) if size is not None else None
    return None if body is None else (kind, body)


def _wait(pid: int, requests: int) -> int | None:
    """The leader's status; kill it when asked; None if the builder went away meanwhile."""
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except OSError:
        pidfd = None
    poller = select.poll()
    poller.register(requests, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    try:
        while True:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                return _status(wait_status)
            events = poller.poll(None if pidfd is not None else _POLL_SECONDS * 1000)
            if not any(fd == requests for fd, _ in events):
                continue
            request = _read_request(requests)
            if request is None:
                _kill(pid)
                os.waitpid(pid, 0)
                return None
            if request[0] == KILL:
                _kill(pid)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _reap_all() -> None:
    """Wait for every child left: PID 1 of a step whose leader was killed, which the
    kernel lets end only after every process of its PID namespace is gone."""
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


def run_step(step: Step, *, userns: bool, requests: int) -> int | None:
    """Run one step to its end; its exit status, or None if the builder went away."""
    targets = [step["root"], step["proc"], step["dev"], *(m["target"] for m in step["mounts"])]
    for target in targets:
        if not target.startswith("/"):
            _say(f"mount target {target}: not an absolute path")
            return SANDBOX_FAILURE
    status = _wait(_start(step, userns=userns), requests)
    if status is not None:
        _reap_all()
    return status


def _reset_output(fd: int) -> None:
    """Undo what an earlier step may have set on the shared output pipe: O_NONBLOCK would
    make the next step's writes fail with EAGAIN, O_ASYNC send SIGIO to a stale owner."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if flags & (os.O_NONBLOCK | fcntl.FASYNC):
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~(os.O_NONBLOCK | fcntl.FASYNC))


def serve(*, userns: bool, subids: SubIds | None = None) -> int:
    """Run the builder's steps one at a time until it closes the request pipe."""
    # The pipes move off stdin and stdout (to fds no step inherits past its exec), so
    # steps get stdin from /dev/null and stdout as stderr, and no stray write can
    # reach the reply pipe.
    requests, replies = os.dup(0), os.dup(1)
    # Orphans of a step's leader (its PID 1, when the leader is killed) come here.
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    # Read once: in a step's fresh /proc it took each step most of a millisecond.
    last_cap = last_capability()
    while True:
        request = _read_request(requests)
        if request is None:
            return 0
        kind, body = request
        if kind != RUN:
            continue  # a kill that came after its step had ended
        try:
            step = marshal.loads(body)
            step["last_cap"] = last_cap
            step["subids"] = subids
            step["channel"] = (requests, replies)
            _reset_output(2)
            status = run_step(step, userns=userns, requests=requests)
        except OSError as exc:  # no fork, no pipe: out of processes or descriptors
            _say(f"starting the step: {exc}")
            status = SANDBOX_FAILURE
        if status is None:
            return 0
        os.write(replies, status.to_bytes(4, "big"))


def _range(argv: list[str], flag: str) -> tuple[int, int] | None:
    """``FLAG=START:COUNT`` as the builder wrote it, if it did."""
    for arg in argv:
        if arg.startswith(flag + "="):
            start, _, count = arg.partition("=")[2].partition(":")
            return int(start), int(count)
    return None


def main(argv: list[str]) -> int:
    subuid, subgid = _range(argv, "--subuid"), _range(argv, "--subgid")
    subids = (subuid, subgid) if subuid and subgid else None
    return serve(userns="--userns" in argv, subids=subids)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
