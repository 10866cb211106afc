"""Benchmark harness: our executor against buildah on reference cases (issue 5).

Run it with ``bench/run``; see ``bench/RESULTS.md`` for the latest output.

Exceptions::

    BenchError          something the harness needs did not work (a build, a push, a tool)
"""

from __future__ import annotations

__all__ = ["BenchError"]


class BenchError(Exception):
    """A build, push or measurement of the harness failed; the message says which."""
