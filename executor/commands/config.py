"""Instructions that only change the image config: no files, no layer."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from executor.dockerfile import (
    Arg,
    Cmd,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Label,
    Location,
    Maintainer,
    OnBuild,
    Shell,
    StopSignal,
    User,
    Volume,
    expand,
    resolve_args,
)
from executor.dockerfile.errors import DockerfileError

if TYPE_CHECKING:
    from executor.stage import StageState

# Docker's defaults for the shell form, and for a config with no SHELL.
DEFAULT_SHELL = ("/bin/sh", "-c")
_NANOSECONDS = 1_000_000_000


def _expand(state: StageState, word: str, location: Location) -> str:
    return expand(word, state.variables(), location=location, escape=state.services.escape)


def shell_command(state: StageState, command: tuple[str, ...] | str) -> tuple[str, ...]:
    """The argv of a shell- or exec-form command, with the image's SHELL."""
    if isinstance(command, str):
        return (*(state.config.shell or DEFAULT_SHELL), command)
    return command


def env(state: StageState, inst: Env) -> None:
    # Every value in one ENV sees the environment from before it (Docker's docs).
    values = state.config.env_dict()
    for pair in inst.pairs:
        values[_expand(state, pair.key, inst.location)] = _expand(state, pair.value, inst.location)
    _update(state, env=tuple(f"{k}={v}" for k, v in values.items()))


def _update(state: StageState, **changes: object) -> None:
    state.set_config(replace(state.config, **changes))  # type: ignore[arg-type]


def arg(state: StageState, inst: Arg) -> None:
    values = resolve_args(
        [inst],
        state.services.options.build_args,
        inherited=state.services.meta_args,
        env=state.config.env_dict(),
        escape=state.services.escape,
    )
    state.args.update(values)


def label(state: StageState, inst: Label) -> None:
    labels = dict(state.config.labels)
    for pair in inst.pairs:
        labels[_expand(state, pair.key, inst.location)] = _expand(state, pair.value, inst.location)
    _update(state, labels=labels)


def expose(state: StageState, inst: Expose) -> None:
    ports = list(state.config.exposed_ports)
    for word in inst.ports:
        port = _expand(state, word, inst.location)
        number, _, protocol = port.partition("/")
        if not number.replace("-", "").isdigit():
            raise DockerfileError(inst.location.file, inst.location.line, f"invalid port {port!r}")
        port = f"{number}/{(protocol or 'tcp').lower()}"
        if port not in ports:
            ports.append(port)
    _update(state, exposed_ports=tuple(sorted(ports)))


def volume(state: StageState, inst: Volume) -> None:
    volumes = set(state.config.volumes)
    volumes.update(_expand(state, p, inst.location) for p in inst.paths)
    _update(state, volumes=tuple(sorted(volumes)))


def user(state: StageState, inst: User) -> None:
    _update(state, user=_expand(state, inst.user, inst.location))


def cmd(state: StageState, inst: Cmd) -> None:
    _update(state, cmd=shell_command(state, inst.command))
    state.cmd_set = True


def entrypoint(state: StageState, inst: Entrypoint) -> None:
    # An ENTRYPOINT resets a CMD inherited from the base image, not one set in this stage.
    changes: dict[str, object] = {"entrypoint": shell_command(state, inst.command)}
    if not state.cmd_set:
        changes["cmd"] = None
    _update(state, **changes)


def shell(state: StageState, inst: Shell) -> None:
    _update(state, shell=inst.command)


def stop_signal(state: StageState, inst: StopSignal) -> None:
    _update(state, stop_signal=_expand(state, inst.signal, inst.location))


def healthcheck(state: StageState, inst: Healthcheck) -> None:
    if inst.command is None:
        _update(state, healthcheck={"Test": ["NONE"]})
        return
    test = ["CMD-SHELL", inst.command] if isinstance(inst.command, str) else ["CMD", *inst.command]
    check: dict[str, object] = {"Test": test}
    for key, seconds in (
        ("Interval", inst.interval),
        ("Timeout", inst.timeout),
        ("StartPeriod", inst.start_period),
        ("StartInterval", inst.start_interval),
    ):
        if seconds is not None:
            check[key] = int(seconds * _NANOSECONDS)
    if inst.retries is not None:
        check["Retries"] = inst.retries
    _update(state, healthcheck=check)


def maintainer(state: StageState, inst: Maintainer) -> None:
    state.set_image_config(replace(state.image.config, author=inst.name))


def onbuild(state: StageState, inst: OnBuild) -> None:
    trigger = inst.original.split(None, 1)[1] if " " in inst.original else ""
    _update(state, on_build=(*state.config.on_build, trigger))
