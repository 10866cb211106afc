"""The build's stage bookkeeping; images are pulled through a fake base.pull."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from executor import base
from executor.build import _Stages
from executor.oci.manifest import Platform
from executor.oci.reference import ImageReference
from executor.report import BuildReporter


class _FakePulls:
    """base.pull and base.unpack that wait for ``together`` pulls to run at once."""

    def __init__(self, together: int) -> None:
        self.started: list[str] = []
        self.unpacked: list[Path] = []
        self._barrier = threading.Barrier(together, timeout=5)

    def pull(self, _connector: object, reference: ImageReference, _platform: object) -> Any:
        self.started.append(str(reference))
        self._barrier.wait()
        return reference

    def unpack(self, _image: object, rootfs: Path, _reporter: object) -> int:
        rootfs.mkdir(parents=True)
        self.unpacked.append(rootfs)
        return 0


def _stages(tmp_path: Path, fake: _FakePulls, monkeypatch: pytest.MonkeyPatch) -> _Stages:
    monkeypatch.setattr(base, "pull", fake.pull)
    monkeypatch.setattr(base, "unpack", fake.unpack)
    connector: Any = None  # only the fake pull sees it
    return _Stages(tmp_path, connector, Platform("linux", "amd64"), BuildReporter(quiet=True))


def _at_once(stages: _Stages, references: list[str]) -> list[Path]:
    found: dict[int, Path] = {}
    errors: list[BaseException] = []

    def one(index: int, reference: str) -> None:
        try:
            found[index] = stages.image_rootfs(reference)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=item) for item in enumerate(references)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return [found[i] for i in range(len(references))]


def test_different_copy_from_images_are_pulled_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each pull waits for the other: with one lock for all images they would not meet.
    fake = _FakePulls(together=2)
    stages = _stages(tmp_path, fake, monkeypatch)
    first, second = _at_once(stages, ["alpine:3.19", "debian:12"])
    assert first != second
    assert sorted(fake.unpacked) == sorted([first, second])


def test_one_copy_from_image_is_pulled_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _FakePulls(together=1)
    stages = _stages(tmp_path, fake, monkeypatch)
    paths = _at_once(stages, ["alpine:3.19"] * 4)
    assert paths == [paths[0]] * 4
    assert fake.started == ["docker.io/library/alpine:3.19"]
    assert fake.unpacked == [paths[0]]
