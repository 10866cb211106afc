"""One command per instruction behaviour, and the one table that maps them.

``command_for`` is the only switch on instruction type in the executor. A command
that touches the filesystem runs inside a snapshot (see executor.stage).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from executor.commands import config, copy, run, workdir
from executor.dockerfile import (
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Label,
    Maintainer,
    OnBuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
)

if TYPE_CHECKING:
    from executor.dockerfile import Instruction

__all__ = ["Command", "command_for"]


@dataclass(frozen=True)
class Command:
    """How one instruction runs, and whether it can change files."""

    run: Callable[[Any, Any], None]
    touches_filesystem: bool
    # The --timings-file phase its time counts under (RUN times its own steps).
    phase: str | None = None
    # It writes only through the sandbox, so an overlay snapshot needs no tree walk.
    sandboxed: bool = False


_TABLE: dict[type, Command] = {
    Arg: Command(config.arg, touches_filesystem=False),
    Cmd: Command(config.cmd, touches_filesystem=False),
    Copy: Command(copy.copy, touches_filesystem=True, phase="copy"),
    Entrypoint: Command(config.entrypoint, touches_filesystem=False),
    Env: Command(config.env, touches_filesystem=False),
    Expose: Command(config.expose, touches_filesystem=False),
    Healthcheck: Command(config.healthcheck, touches_filesystem=False),
    Label: Command(config.label, touches_filesystem=False),
    Maintainer: Command(config.maintainer, touches_filesystem=False),
    OnBuild: Command(config.onbuild, touches_filesystem=False),
    Run: Command(run.run, touches_filesystem=True, sandboxed=True),
    Shell: Command(config.shell, touches_filesystem=False),
    StopSignal: Command(config.stop_signal, touches_filesystem=False),
    User: Command(config.user, touches_filesystem=False),
    Volume: Command(config.volume, touches_filesystem=False),
    Workdir: Command(workdir.workdir, touches_filesystem=True, phase="workdir"),
}


def command_for(instruction: Instruction) -> Command:
    return _TABLE[type(instruction)]
