"""The builder's side of the entry process (enter.py): start it, hand it steps, stream output.

One entry process runs one step at a time; the namespace sandbox keeps a few (see
``EntryPool``) so stages that run at once each have one. Three pipes connect it:

- requests, its fd 0: ``R`` + 4-byte length + the step (marshal), or ``K`` (kill it);
- replies, its fd 1: the step's exit status, 4 bytes, once every process of it ended;
- output, its fd 2: what the steps print, read here as it comes.

Closing the requests pipe ends the entry process and any step it runs; the kernel
does that for us when the builder dies, however it dies.
"""

from __future__ import annotations

import marshal
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from executor.errors import SandboxError
from executor.sandbox.process import READ_BYTES, TIMEOUT_STATUS
from executor.sandbox.spec import OutputSink
from executor.sandbox.subids import caller_subids

# enter.py runs by path with -I -S: no site, no package imports, a fast start.
ENTER = Path(__file__).with_name("enter.py")
# The framing enter.py reads (its RUN and KILL). Kept as copies, like _read_exact below:
# importing enter.py would load ctypes and libc into every build for 8 lines.
_RUN = b"R"
_KILL = b"K"
# An entry process told to stop ends at once; this only bounds a wedged one.
_STOP_SECONDS = 5.0


def _read_exact(fd: int, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _userns_flags() -> list[str]:
    """enter.py's flags for a user namespace; SandboxError for a malformed /etc/subuid."""
    subids = caller_subids()
    if subids is None:
        return ["--userns"]
    uids, gids = subids.uids, subids.gids
    return [
        "--userns",
        f"--subuid={uids.start}:{uids.count}",
        f"--subgid={gids.start}:{gids.count}",
    ]


class EntryProcess:
    """One running enter.py; ``run`` is not to be called from two threads at once."""

    def __init__(self, *, userns: bool) -> None:
        argv = [sys.executable, "-I", "-S", str(ENTER), *(_userns_flags() if userns else [])]
        requests_r, self._requests = os.pipe()
        self._replies, replies_w = os.pipe()
        self._output, output_w = os.pipe()
        os.set_blocking(self._output, False)
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=requests_r,
                stdout=replies_w,
                stderr=output_w,
                cwd="/",
                # A clean environment: nothing of the builder's (credentials included)
                # reaches a step, which gets only what its spec names.
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                # Its own session: a terminal's ^C goes to the builder, which ends it.
                start_new_session=True,
            )
        except OSError as exc:
            for fd in (self._requests, self._replies, self._output):
                os.close(fd)
            raise SandboxError(f"starting {argv[0]}: {exc.strerror}") from exc
        finally:
            for fd in (requests_r, replies_w, output_w):
                os.close(fd)
        self.closed = False

    def alive(self) -> bool:
        return not self.closed and self._proc.poll() is None

    def run(self, step: dict[str, Any], output: OutputSink, *, timeout: float | None) -> int:
        """Run ``step``, stream its output and return its status (124 on timeout).

        Raises SandboxError if the entry process is gone; it is then closed.
        """
        body = marshal.dumps(step)
        self._send(_RUN + len(body).to_bytes(4, "big") + body)
        poller = select.poll()
        poller.register(self._output, select.POLLIN)
        poller.register(self._replies, select.POLLIN)
        deadline = time.monotonic() + timeout if timeout else None
        timed_out = False
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
            events = {fd for fd, _ in poller.poll(wait)}
            if deadline is not None and time.monotonic() >= deadline:
                self._send(_KILL)
                timed_out, deadline = True, None
            if self._output in events:
                self._read_output(output, everything=False)
            if self._replies in events:
                break
        reply = _read_exact(self._replies, 4)
        # Every process of the step has ended: what it wrote is all in the pipe now.
        self._read_output(output, everything=True)
        if reply is None:
            self.close()
            raise SandboxError("the sandbox's entry process died")
        return TIMEOUT_STATUS if timed_out else int.from_bytes(reply, "big")

    def _send(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._requests, view) :]
        except BrokenPipeError as exc:
            self.close()
            raise SandboxError("the sandbox's entry process died") from exc

    def _read_output(self, output: OutputSink, *, everything: bool) -> None:
        while True:
            try:
                chunk = os.read(self._output, READ_BYTES)
            except BlockingIOError:
                return
            if not chunk:
                return
            output(chunk)
            if not everything:
                return

    def close(self) -> None:
        """End the entry process (and a step it still runs) and wait for it."""
        if self.closed:
            return
        self.closed = True
        os.close(self._requests)
        try:
            self._proc.wait(_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self._proc.kill()  # its steps die with it (PR_SET_PDEATHSIG)
            self._proc.wait()
        finally:
            os.close(self._replies)
            os.close(self._output)


class EntryPool:
    """Idle entry processes, one taken per running step; all closed with the pool."""

    def __init__(self, *, userns: bool) -> None:
        self._userns = userns
        self._idle: list[EntryProcess] = []
        self._lock = threading.Lock()
        # Idle entry processes end when the sandbox is dropped, or at exit.
        weakref.finalize(self, _close_all, self._idle)

    def start(self) -> None:
        """Start an entry process now, so it is up by the first step (it takes ~50 ms)."""
        try:
            entry = EntryProcess(userns=self._userns)
        except SandboxError:
            return  # the first step tries again, and says why
        with self._lock:
            self._idle.append(entry)

    def run(self, step: dict[str, Any], output: OutputSink, *, timeout: float | None) -> int:
        with self._lock:
            entry = self._idle.pop() if self._idle else None
        if entry is not None and not entry.alive():
            entry.close()  # it died while idle (killed from outside): start another
            entry = None
        if entry is None:
            entry = EntryProcess(userns=self._userns)
        try:
            status = entry.run(step, output, timeout=timeout)
        except BaseException:
            entry.close()  # mid-step (an output sink that raised): the step ends with it
            raise
        with self._lock:
            self._idle.append(entry)
        return status


def _close_all(entries: list[EntryProcess]) -> None:
    while entries:
        entries.pop().close()
