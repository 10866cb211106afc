"""Benchmark harness (issue 5): cold builds against buildah, micro-benchmarks, a farm.

``bench/run`` runs three parts and writes ``bench/RESULTS.md``: the cold build + push
reference cases, ours against buildah (``harness``, ``cases``); micro-benchmarks of
what bounds a build: snapshots, layer writing, registry pushes (``micro``); and a
local farm's latency, submission, throughput and overhead (``farmbench``). Figures
with a target are marked met or not met (``figures``, ``report``).

Exceptions::

    BenchError          something the harness needs did not work (a build, a push, a tool)
"""

from __future__ import annotations

__all__ = ["BenchError"]


class BenchError(Exception):
    """A build, push or measurement of the harness failed; the message says which."""
