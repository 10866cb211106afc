"""One stage of a build: its state, and the short loop of steps that runs it.

Each instruction goes to its command through the one dispatch table in
``executor.commands``. Commands that touch the filesystem are wrapped in a
snapshot; what they changed becomes a layer (none if nothing changed).
"""

from __future__ import annotations

import datetime
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from executor.base import unpack
from executor.context import BuildContext
from executor.fs.changes import Change
from executor.fs.layer import LayerOptions, write_layer
from executor.fs.snapshot import Snapshotter
from executor.image import BuildImage, LayerRef
from executor.oci.config import ContainerConfig, HistoryEntry, ImageConfig
from executor.oci.manifest import Descriptor
from executor.oci.mediatype import MediaType
from executor.options import BuildOptions
from executor.report import BuildReporter
from executor.sandbox.spec import Sandbox

if TYPE_CHECKING:
    from executor.dockerfile import Instruction


class StageLookup(Protocol):
    """Finds earlier stages (for FROM and COPY --from) and other images."""

    def stage_rootfs(self, name: str) -> Path | None: ...

    def image_rootfs(self, reference: str) -> Path: ...


@dataclass
class BuildServices:
    """What every stage shares: options, sandbox, output, workspace.

    Stages may run at once, so anything with per-stage state (the snapshotter's
    stat cache) is made per stage through a factory.
    """

    options: BuildOptions
    sandbox: Sandbox
    new_snapshotter: Callable[[], Snapshotter]
    reporter: BuildReporter
    context: BuildContext
    layers_dir: Path
    stages: StageLookup
    escape: str = "\\"
    meta_args: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    # Told of each layer as it is written, with its stage's index (early uploads).
    on_layer: Callable[[int, LayerRef], None] = lambda index, layer: None

    def layer_options(self) -> LayerOptions:
        return LayerOptions(
            compression=self.options.compression,
            level=self.options.compression_level,
            source_date_epoch=self.options.epoch,
        )


@dataclass
class StageState:
    """A stage while it runs. Commands change ``image`` and ``args``; nothing else."""

    index: int
    name: str | None
    image: BuildImage
    rootfs: Path
    services: BuildServices
    args: dict[str, str] = field(default_factory=dict)
    unpacked: bool = False
    cmd_set: bool = False  # a CMD in this stage survives a later ENTRYPOINT
    snapshotter: Snapshotter | None = None
    # Later stages may unpack this one at once (two COPY --from it in parallel).
    _unpack_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def config(self) -> ContainerConfig:
        return self.image.config.config

    def set_config(self, config: ContainerConfig) -> None:
        self.image = self.image.with_config(self.image.config.with_config(config))

    def set_image_config(self, config: ImageConfig) -> None:
        self.image = self.image.with_config(config)

    def variables(self) -> dict[str, str]:
        """What ``$NAME`` expands to: ARG values, overridden by ENV (Docker's rule)."""
        return {**self.args, **self.config.env_dict()}

    def ensure_rootfs(self) -> Path:
        """Unpack the base into the rootfs the first time a step needs files."""
        with self._unpack_lock:
            if not self.unpacked:
                with self.services.reporter.phase("unpack"):
                    unpack(self.image, self.rootfs, self.services.reporter)
                self.unpacked = True
        return self.rootfs

    def record(self, created_by: str, layer: LayerRef | None) -> None:
        """Add the history entry (and the layer, if any) for one step."""
        entry = HistoryEntry(
            created=self.services.created,
            created_by=created_by,
            empty_layer=layer is None,
        )
        config = self.image.config.with_layer(layer.diff_id if layer else None, entry)
        self.image = replace(self.image, config=config)
        if layer is not None:
            self.image = self.image.with_layer(layer)


def created_timestamp(options: BuildOptions) -> str:
    epoch = options.epoch
    when = (
        datetime.datetime.fromtimestamp(epoch, datetime.UTC)
        if epoch is not None
        else datetime.datetime.now(datetime.UTC)
    )
    # RFC 3339 in UTC, as Docker writes it; whole seconds when pinned for reproducibility.
    return when.strftime("%Y-%m-%dT%H:%M:%SZ" if epoch is not None else "%Y-%m-%dT%H:%M:%S.%fZ")


def run_step(state: StageState, instruction: Instruction) -> None:
    """Run one instruction through its command, snapshotting if it touches files."""
    from executor.commands import command_for

    command = command_for(instruction)
    services = state.services
    if not command.touches_filesystem:
        command.run(state, instruction)
        state.record(instruction.original, None)
        return
    rootfs = state.ensure_rootfs()
    if state.snapshotter is None:
        state.snapshotter = services.new_snapshotter()
    state.snapshotter.begin(rootfs, sandboxed=command.sandboxed)
    if command.phase is None:
        command.run(state, instruction)
    else:
        with services.reporter.phase(command.phase):
            command.run(state, instruction)
    with services.reporter.phase("snapshot"):
        changes = state.snapshotter.finish()
    layer = None
    if changes:
        with services.reporter.phase("layer"):
            layer = _write(services, rootfs, changes)
        services.on_layer(state.index, layer)
    state.record(instruction.original, layer)


def _write(services: BuildServices, rootfs: Path, changes: list[Change]) -> LayerRef:
    services.layers_dir.mkdir(parents=True, exist_ok=True)
    staging = services.layers_dir / f"writing-{secrets.token_hex(6)}.tar"
    written = write_layer(rootfs, changes, staging, options=services.layer_options())
    final = services.layers_dir / written.digest.hex
    staging.replace(final)
    descriptor = Descriptor(
        written.media_type(MediaType.OCI_MANIFEST), written.digest, written.size
    )
    return LayerRef(descriptor, written.diff_id, path=final)
