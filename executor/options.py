"""BuildOptions: every knob of one build, in one frozen value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from executor.oci.manifest import Platform
from executor.oci.reference import ImageReference

# kaniko's --snapshot-mode names map onto our two snapshotters.
SNAPSHOT_MODES = ("auto", "walk", "overlay", "full", "redo", "time")


@dataclass(frozen=True)
class BuildOptions:
    """What to build, from where, and where the result goes."""

    context: str  # a directory, dir://DIR or tar://FILE
    workspace: Path  # everything the build writes lives below this
    dockerfile: str = "Dockerfile"  # relative to the context, or absolute
    destinations: tuple[ImageReference, ...] = ()
    no_push: bool = False
    tar_path: Path | None = None
    oci_layout_path: Path | None = None
    digest_file: Path | None = None
    image_name_with_digest_file: Path | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None  # None: the host's
    reproducible: bool = False
    source_date_epoch: int | None = None
    compression: str = "gzip"
    compression_level: int | None = None
    snapshot_mode: str = "auto"
    ignore_paths: tuple[str, ...] = ()
    secrets: Mapping[str, Path] = field(default_factory=dict)
    sandbox: str = "auto"
    timings_file: Path | None = None
    # RUN --mount=type=cache directories persist here across builds on one machine.
    run_cache_dir: Path | None = None
    # A RUN step running longer than this is killed (None: no limit).
    step_timeout: float | None = None

    @property
    def epoch(self) -> int | None:
        """The timestamp every created time and file mtime is clamped to, if any."""
        if self.source_date_epoch is not None:
            return self.source_date_epoch
        return 0 if self.reproducible else None
