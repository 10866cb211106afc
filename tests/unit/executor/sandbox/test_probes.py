import json
from pathlib import Path

import pytest

from executor.sandbox import probes
from executor.sandbox.probes import ProbeCache


def _counting(answer: str | None) -> tuple[list[int], object]:
    calls: list[int] = []

    def probe() -> str | None:
        calls.append(1)
        return answer

    return calls, probe


def test_a_pass_is_remembered_a_failure_is_not(tmp_path: Path) -> None:
    cache = ProbeCache(tmp_path / "probes.json")
    calls, probe = _counting(None)
    assert cache.passed("sandbox:chroot", probe) is None  # type: ignore[arg-type]
    assert cache.passed("sandbox:chroot", probe) is None  # type: ignore[arg-type]
    assert len(calls) == 1
    failed_calls, failing = _counting("needs root")
    assert cache.passed("sandbox:userns", failing) == "needs root"  # type: ignore[arg-type]
    assert cache.passed("sandbox:userns", failing) == "needs root"  # type: ignore[arg-type]
    assert len(failed_calls) == 2


def test_old_passes_are_probed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ProbeCache(tmp_path / "probes.json")
    calls, probe = _counting(None)
    cache.passed("overlay:chroot", probe)  # type: ignore[arg-type]
    entries = json.loads((tmp_path / "probes.json").read_text())
    stale = {k: v - probes.MAX_AGE_SECONDS - 1 for k, v in entries.items()}
    (tmp_path / "probes.json").write_text(json.dumps(stale))
    cache.passed("overlay:chroot", probe)  # type: ignore[arg-type]
    assert len(calls) == 2


def test_a_broken_or_unwritable_cache_only_costs_a_probe(tmp_path: Path) -> None:
    (tmp_path / "probes.json").write_text("{not json")
    calls, probe = _counting(None)
    assert ProbeCache(tmp_path / "probes.json").passed("x", probe) is None  # type: ignore[arg-type]
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    assert ProbeCache(blocked / "probes.json").passed("x", probe) is None  # type: ignore[arg-type]
    assert len(calls) == 2
