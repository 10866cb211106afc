"""Remembering which sandbox probes passed, so each build does not pay for them again.

A probe starts namespaces (and mounts an overlay) to see that a backend works: some
40 ms for a sandbox's first (its entry process starts), 15 ms for the next, on a
loaded 2-core machine; twice per `farm build` with auto settings. A pass is
remembered for a day per kernel, user and Python in ``$XDG_CACHE_HOME/farm/probes.json``
(or ``~/.cache``); a failure never is, so a host that gains a feature uses it at once.
`farm doctor` always probes afresh.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# A remembered pass is trusted this long.
MAX_AGE_SECONDS = 24 * 3600


class ProbeCache:
    """Passed probes by name, in a small JSON file; any trouble with the file means no cache."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    @classmethod
    def default(cls) -> ProbeCache:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
        return cls(Path(base) / "farm" / "probes.json")

    def _key(self, name: str) -> str:
        return f"{name}|{os.uname().release}|{os.geteuid()}|{sys.executable}"

    def _load(self) -> dict[str, float]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def passed(self, name: str, probe: Callable[[], str | None]) -> str | None:
        """``probe()``'s answer (None: it works), from the cache when it passed lately."""
        key = self._key(name)
        when = self._load().get(key)
        if when is not None and time.time() - when < MAX_AGE_SECONDS:
            return None
        reason = probe()
        if reason is None:
            self._remember(key)
        return reason

    def _remember(self, key: str) -> None:
        if self.path is None:
            return
        entries = self._load()
        entries[key] = time.time()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".probes-")
            with os.fdopen(fd, "w") as out:
                json.dump(entries, out)
            os.replace(tmp, self.path)
        except OSError:
            pass  # an unwritable cache only costs the next build a probe
