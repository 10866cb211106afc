"""BuildJob's order of work after the build child ends (runner and context fetch faked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from executor.oci.digest import Digest
from executor.storage.file import FileStore
from farm.buildlogs import stored_log_key
from farm.config import Settings
from farm.metrics import FarmMetrics
from farm.records import BuildState
from farm.spec import BuildRequest
from tasks import build as build_module
from tasks.build import BuildJob
from tasks.runner import ChildResult

DIGEST = Digest.of(b"context")
IMAGE_DIGEST = "sha256:" + "cd" * 32


class _Logs:
    def append(self, build_id: str, chunk: bytes) -> None:
        pass

    def read(self, build_id: str, offset: int) -> tuple[bytes, int]:
        return b"the whole log\n", 14


class _Records:
    """Notes what was on disk and in storage when the build was recorded as ended."""

    def __init__(self, root: Path, store: FileStore) -> None:
        self.logs = _Logs()
        self._root = root
        self._store = store
        self.seen_at_end: dict[str, Any] = {}

    def transition(self, build_id: str, state: BuildState, **_: Any) -> object:
        self.seen_at_end = {
            "state": state,
            "workspaces": sorted(p.name for p in self._root.iterdir()),
            "log_stored": self._store.exists(stored_log_key(build_id)),
        }
        return object()

    def heartbeat(self, build_id: str, worker: str) -> None:
        pass

    def cancel_requested(self, build_id: str) -> bool:
        return False


class _Dispatcher:
    def publish_dependents(self, build_id: str) -> None:
        pass


def test_the_end_is_recorded_before_the_clean_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiters see the build end without waiting for its workspace removal or the log's
    upload; a redelivery finds the build's workspace path free (the old one set aside)."""
    root = tmp_path / "work"
    store = FileStore(tmp_path / "storage")
    records = _Records(root, store)
    settings = Settings(workspace_root=root)

    def fetch(store: object, digest: str, workspace: Path, **_: object) -> Path:
        (workspace / "context").mkdir()
        return workspace / "context"

    def child(argv: list[str], *, outcome_file: Path, **_: object) -> ChildResult:
        (outcome_file.parent / "build" / "rootfs").mkdir(parents=True)
        return ChildResult(0, outcome={"ok": True, "digest": IMAGE_DIGEST, "layers": 1})

    monkeypatch.setattr(build_module, "fetch_context", fetch)
    monkeypatch.setattr(build_module, "run_child", child)
    job = BuildJob(
        settings,
        records,  # type: ignore[arg-type]
        FarmMetrics(),
        _Dispatcher(),  # type: ignore[arg-type]
        lambda: store,
    )
    request = BuildRequest(build_id="build-0001", context_digest=DIGEST)
    # What a worker that died after setting an earlier delivery's workspace aside left.
    (root / ".ended-build-0001-0badf00d" / "rootfs").mkdir(parents=True)
    done = job._run(request, record=None)  # type: ignore[arg-type]

    assert done is not None and done["digest"] == IMAGE_DIGEST
    seen = records.seen_at_end
    assert seen["state"] is BuildState.SUCCESS
    assert not seen["log_stored"]
    # Set aside, not yet removed: only a `.ended-` twin exists when the end is recorded.
    assert len(seen["workspaces"]) == 1 and seen["workspaces"][0].startswith(".ended-build-0001-")
    # Afterwards: nothing left, and the log kept.
    assert list(root.iterdir()) == []
    assert store.get_bytes(stored_log_key("build-0001")) == b"the whole log\n"
