"""Fixtures shared by every test: a registry, the busybox base layout and image.

Nothing here starts a service at import time; each fixture starts what it needs and
stops it afterwards. A missing binary raises ToolMissingError: the test fails, it is not
skipped, since a skipped suite reads as a passing one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.images import PushedImage, build_busybox_layout, push_layout
from tests.support.registry import RegistryServer

BUSYBOX_TAG = "latest"
BUSYBOX_REPOSITORY = "library/busybox"

_INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration/ `integration`, for `-m "not integration"`."""
    for item in items:
        if _INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """A running registry without auth, stopped after the test."""
    with RegistryServer(tmp_path / "registry") as server:
        yield server


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout holding the busybox base image as tag `latest`, built once per session."""
    layout = tmp_path_factory.mktemp("busybox") / "layout"
    build_busybox_layout(layout, BUSYBOX_TAG)
    return layout


@pytest.fixture
def busybox_image(registry: RegistryServer, busybox_layout: Path) -> PushedImage:
    """The busybox base image pushed to `registry` as `library/busybox:latest`."""
    digest = push_layout(busybox_layout, BUSYBOX_TAG, registry.host, BUSYBOX_REPOSITORY)
    return PushedImage(registry, BUSYBOX_REPOSITORY, BUSYBOX_TAG, digest)
