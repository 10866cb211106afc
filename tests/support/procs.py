"""Whether processes still run, read from /proc/PID/stat (Linux only).

A zombie (killed, waiting to be reaped) counts as gone unless asked otherwise: what a
test usually wants to know is that a process no longer runs, not that its parent
has reaped it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["alive", "descendants", "wait_gone"]

_POLL_SECONDS = 0.05


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name: state, ppid, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def alive(pid: int, *, zombie_alive: bool = False) -> bool:
    """Whether `pid` exists and runs; a zombie counts as alive only with `zombie_alive`."""
    try:
        state = _stat(pid)[0]
    except OSError:
        return False
    return zombie_alive or state != "Z"


def wait_gone(pids: Iterable[int], *, within: float, poll: float = _POLL_SECONDS) -> bool:
    """Whether none of `pids` is `alive` within `within` seconds, looking every `poll`."""
    pids = set(pids)
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


def descendants(root: int) -> set[int]:
    """The processes below `root`: its children, theirs, and so on (not `root` itself)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(entry.name)[1])
            except (OSError, IndexError):
                continue
    found: set[int] = set()
    todo = [root]
    while todo:
        parent = todo.pop()
        children = {pid for pid, ppid in parents.items() if ppid == parent}
        todo += children - found
        found |= children
    return found
