"""Batch files: the YAML (or JSON) list of builds release tooling submits at once.

::

    builds:
      - name: base
        context: base/            # relative to the batch file
        destinations: [registry.example/base:1]
      - name: app
        context: app/
        dockerfile: Dockerfile.prod
        build_args: {VERSION: "1.2"}
        labels: {team: payments}
        secrets: [npmrc]          # provided by the workers (FARM_SECRETS_DIR)
        target: runtime
        depends_on: [base]        # built after base; cancelled if base fails
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from executor.oci.reference import ImageReference
from farm.spec import ITEM_NAME, Reader, SpecError, check_dockerfile, check_secret_id

__all__ = ["BatchItem", "parse_batch_file"]

_BATCH = "batch file"
_BATCH_KEYS = frozenset({"version", "builds"})
_ITEM_KEYS = frozenset(
    {
        "name",
        "context",
        "dockerfile",
        "destinations",
        "build_args",
        "labels",
        "secrets",
        "target",
        "depends_on",
    }
)


@dataclass(frozen=True)
class BatchItem:
    """One build of a batch file, before its context is packed (for the producer)."""

    name: str
    context: str  # a directory path, made absolute against the batch file's directory
    dockerfile: str = "Dockerfile"
    destinations: tuple[ImageReference, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()  # ids of secrets the workers provide
    target: str | None = None
    depends_on: tuple[str, ...] = ()  # names of other items in the same file


def _parse_item(obj: Any, index: int, base_dir: Path) -> BatchItem:
    what = f"{_BATCH}: 'builds'[{index}]"
    if isinstance(obj, dict) and isinstance(obj.get("name"), str):
        what = f"{_BATCH}: build {obj['name']!r}"
    read = Reader(obj, what, _ITEM_KEYS)
    name = read.get("name", str, required=True)
    if not ITEM_NAME.match(name):
        raise read.fail("name", f"invalid name {name!r}: want 1-64 of [A-Za-z0-9._-]")
    context = read.get("context", str, required=True)
    if not context:
        raise read.fail("context", "empty path")
    dockerfile = read.get("dockerfile", str, "Dockerfile")
    check_dockerfile(dockerfile, read.where("dockerfile"))
    target = read.optional_str("target")
    if target == "":
        raise read.fail("target", "empty stage name")
    secrets = tuple(read.str_list("secrets"))
    for position, secret_id in enumerate(secrets):
        check_secret_id(secret_id, f"{read.where('secrets')}[{position}]")
    return BatchItem(
        name=name,
        context=os.path.normpath(base_dir / context),
        dockerfile=posixpath.normpath(dockerfile),
        destinations=read.parsed_list("destinations", ImageReference.parse),
        build_args=read.str_map("build_args"),
        labels=read.str_map("labels"),
        secrets=secrets,
        target=target,
        depends_on=tuple(read.str_list("depends_on")),
    )


def _check_graph(items: tuple[BatchItem, ...]) -> None:
    """Refuse duplicate names, unknown dependencies and cycles."""
    by_name: dict[str, BatchItem] = {}
    for item in items:
        if item.name in by_name:
            raise SpecError(f"{_BATCH}: build {item.name!r}: 'name': defined twice")
        by_name[item.name] = item
    for item in items:
        for dep in item.depends_on:
            if dep not in by_name:
                raise SpecError(
                    f"{_BATCH}: build {item.name!r}: 'depends_on': no build named {dep!r}"
                )
    # Depth-first search with colours; the path in the message shows the cycle.
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in path:
            cycle = [*path[path.index(name) :], name]
            raise SpecError(f"{_BATCH}: build {name!r}: 'depends_on': cycle {' -> '.join(cycle)}")
        path.append(name)
        for dep in by_name[name].depends_on:
            visit(dep)
        path.pop()
        done.add(name)

    for item in items:
        visit(item.name)


def parse_batch_file(text: str, *, base_dir: Path) -> tuple[BatchItem, ...]:
    """Parse a YAML (or JSON) batch file into its items, in file order.

    Context paths are taken relative to ``base_dir`` (the file's directory).
    """
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{_BATCH}: not valid YAML: {exc}") from exc
    read = Reader(obj, _BATCH, _BATCH_KEYS)
    if "version" in read.obj:
        read.version()
    builds = read.get("builds", list, required=True)
    if not builds:
        raise read.fail("builds", "no builds")
    items = tuple(_parse_item(item, index, base_dir) for index, item in enumerate(builds))
    _check_graph(items)
    return items
