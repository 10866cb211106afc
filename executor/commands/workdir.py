"""WORKDIR: set the working directory, creating it in the rootfs if it is missing."""

from __future__ import annotations

import posixpath
from dataclasses import replace
from typing import TYPE_CHECKING

from executor.dockerfile import Workdir, expand
from executor.fs.rootpath import makedirs
from executor.users import resolve_user

if TYPE_CHECKING:
    from executor.stage import StageState


def workdir(state: StageState, inst: Workdir) -> None:
    path = expand(
        inst.path, state.variables(), location=inst.location, escape=state.services.escape
    )
    # A relative WORKDIR is relative to the one before it (Docker's docs).
    current = state.config.working_dir or "/"
    resolved = posixpath.normpath(posixpath.join(current, path))
    rootfs = state.ensure_rootfs()
    # BuildKit makes a missing WORKDIR as the current USER, so later steps can write there.
    ids = resolve_user(rootfs, state.config.user)
    makedirs(rootfs, resolved, owner=(ids.uid, ids.gid))
    state.set_config(replace(state.config, working_dir=resolved))
