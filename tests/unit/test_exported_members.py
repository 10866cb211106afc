"""Each package's __all__ is sorted, complete for what it re-exports, and importable."""

import importlib
import types

import pytest

PACKAGES = [
    "executor",
    "executor.context",
    "executor.dockerfile",
    "executor.http",
    "executor.oci",
    "executor.oci.archive",
    "executor.registry",
    "executor.sandbox",
    "executor.storage",
    "farm.cli",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    for member in exported:
        assert hasattr(module, member), f"{name}.__all__ names missing {member}"


@pytest.mark.parametrize("name", PACKAGES)
def test_public_names_are_in_all(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        key
        for key, value in vars(module).items()
        if not key.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", name).startswith(name.split(".", maxsplit=1)[0])
    }
    assert public <= set(module.__all__), f"{name} exports names missing from __all__"
