"""enter.py's step start-up, through seams that need no namespaces."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest

from executor.sandbox import enter


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _fail(*_: object) -> None:
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))


def _second_pipe_fails() -> Callable[[], tuple[int, int]]:
    real, calls = os.pipe, []

    def pipe() -> tuple[int, int]:
        calls.append(1)
        if len(calls) == 2:
            _fail()
        return real()

    return pipe


@pytest.mark.parametrize("failing", ["fork", "pipe"])
def test_start_leaks_no_descriptor_when_it_fails(
    failing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry process lives as long as the builder: a step that could not start
    (out of processes or descriptors) must not leave its id-map pipes open."""
    if failing == "fork":
        monkeypatch.setattr(os, "fork", _fail)
    else:
        monkeypatch.setattr(os, "pipe", _second_pipe_fails())
    before = _open_fds()
    with pytest.raises(OSError, match="Resource temporarily unavailable"):
        enter._start({"network": "none"}, userns=True)
    assert _open_fds() == before
