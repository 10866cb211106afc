"""RUN: a command in the sandbox, on the stage rootfs, with its mounts."""

from __future__ import annotations

import hashlib
import posixpath
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from executor.commands.config import shell_command
from executor.dockerfile import Mount as DockerfileMount
from executor.dockerfile import Run
from executor.errors import BuildInputError, StepFailedError
from executor.fs.rootpath import real_path
from executor.report import StepOutput
from executor.sandbox.spec import Mount, RunSpec
from executor.users import resolve_user

if TYPE_CHECKING:
    from executor.stage import StageState

# What a RUN gets when the image sets no PATH (Docker's and runc's default).
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ONLY_HEREDOCS = re.compile(r"^\s*(?:\d?<<-?\s*['\"]?[A-Za-z0-9_]+['\"]?\s*)+$")


def script_of(inst: Run) -> tuple[str, ...] | str:
    """The command with its heredocs: a shell script the shell itself can read.

    ``RUN <<EOF`` alone runs the heredoc body as the script (BuildKit's rule); any
    other command gets its heredoc bodies after it, for the shell to feed in.
    """
    if not inst.heredocs or not isinstance(inst.command, str):
        return inst.command
    if _ONLY_HEREDOCS.match(inst.command) and len(inst.heredocs) == 1:
        return inst.heredocs[0].body
    text = inst.command
    for heredoc in inst.heredocs:
        text += "\n" + heredoc.body + heredoc.name
    return text + "\n"


def step_env(state: StageState) -> tuple[str, ...]:
    """The image's ENV, then build ARGs it does not override (Docker passes both)."""
    env = state.config.env_dict()
    merged = {**{k: v for k, v in state.args.items() if k not in env}, **env}
    if "PATH" not in merged:
        merged["PATH"] = DEFAULT_PATH.split("=", 1)[1]
    return tuple(f"{k}={v}" for k, v in merged.items())


def _target(state: StageState, mount: DockerfileMount, where: str) -> str:
    """The mount's target as an absolute path; a relative one is under WORKDIR (BuildKit)."""
    target = mount.get("target") or mount.get("dst") or mount.get("destination") or ""
    if not target:
        raise BuildInputError(f"{where}: RUN --mount type={mount.type} needs a target")
    return posixpath.normpath(posixpath.join(state.config.working_dir or "/", target))


def _cache_dir(root: Path, cache_id: str) -> Path:
    """A directory per cache id: readable, but never ``.``, ``..`` or a path with slashes."""
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", cache_id.strip("/")) or "_"
    if readable != cache_id.strip("/"):
        # Different ids must not share a directory just because they read alike.
        readable += "-" + hashlib.sha256(cache_id.encode()).hexdigest()[:12]
    return root / readable


def _bind_source(state: StageState, mount: DockerfileMount, where: str) -> Path:
    """The host path of a bind source, resolved inside its root as chroot would."""
    name = mount.get("source") or mount.get("src") or "."
    from_ = mount.get("from")
    stages = state.services.stages
    if from_:
        root = stages.stage_rootfs(from_) or stages.image_rootfs(from_)
    else:
        root = state.services.context.root
    try:
        return real_path(root, name)
    except FileNotFoundError as exc:
        raise BuildInputError(f"{where}: bind mount source {name!r} not found") from exc
    except OSError as exc:
        raise BuildInputError(f"{where}: bind mount source {name!r}: {exc.strerror}") from exc


def _mounts(state: StageState, inst: Run, scratch: list[Path]) -> tuple[Mount, ...]:
    """The step's mounts; read-write bind copies are listed in ``scratch`` for removal."""
    options = state.services.options
    where = f"{inst.location.file}:{inst.location.line}"
    mounts: list[Mount] = []
    for mount in inst.mounts:
        if mount.type == "secret":
            secret_id = mount.get("id") or Path(mount.get("target") or "").name
            source = options.secrets.get(secret_id)
            if source is None:
                if mount.get("required") in ("true", ""):
                    raise BuildInputError(f"{where}: secret {secret_id!r} was not given (--secret)")
                continue
            explicit = mount.get("target") or mount.get("dst")
            target = _target(state, mount, where) if explicit else f"/run/secrets/{secret_id}"
            mounts.append(Mount("bind", target, str(source), readonly=True))
        elif mount.type == "cache":
            target = _target(state, mount, where)
            root = options.run_cache_dir or (options.workspace / "run-cache")
            directory = _cache_dir(root, mount.get("id") or target)
            directory.mkdir(parents=True, exist_ok=True)
            mounts.append(Mount("bind", target, str(directory)))
        elif mount.type == "tmpfs":
            mounts.append(Mount("tmpfs", _target(state, mount, where)))
        elif mount.type == "bind":
            target = _target(state, mount, where)
            source = _bind_source(state, mount, where)
            rw = mount.get("rw") in ("true", "") or mount.get("readwrite") in ("true", "")
            if rw:
                source = _scratch_copy(source, options.workspace, scratch, where)
            mounts.append(Mount("bind", target, str(source), readonly=not rw))
        else:
            raise BuildInputError(f"{where}: RUN --mount type {mount.type!r} is not supported")
    return tuple(mounts)


def _scratch_copy(source: Path, workspace: Path, scratch: list[Path], where: str) -> Path:
    """Writes to a read-write bind are thrown away after the step (BuildKit's rule), so
    the step gets a copy; the build's own workspace is never part of it."""
    directory = Path(tempfile.mkdtemp(prefix="bind-", dir=workspace))
    scratch.append(directory)
    copied = directory / "source"
    workspace_real = workspace.resolve()

    def skip(parent: str, names: list[str]) -> list[str]:
        return [n for n in names if (Path(parent) / n).resolve() == workspace_real]

    try:
        if source.is_dir():
            shutil.copytree(source, copied, symlinks=True, ignore=skip)
        else:
            shutil.copy2(source, copied)
    except (OSError, shutil.Error) as exc:
        raise BuildInputError(f"{where}: copying the read-write bind source: {exc}") from exc
    return copied


def run(state: StageState, inst: Run) -> None:
    rootfs = state.ensure_rootfs()
    argv = shell_command(state, script_of(inst))
    ids = resolve_user(rootfs, state.config.user)
    spec = RunSpec(
        rootfs=rootfs,
        argv=argv,
        env=step_env(state),
        workdir=state.config.working_dir or "/",
        uid=ids.uid,
        gid=ids.gid,
        groups=ids.groups,
        network=inst.network or "default",
        mounts=(),
    )
    services = state.services
    output = StepOutput(services.reporter)
    scratch: list[Path] = []
    snapshotter = state.snapshotter
    dirs = snapshotter.overlay_dirs() if snapshotter is not None else None
    if dirs is not None:
        spec = replace(spec, overlay=(str(dirs[0]), str(dirs[1])))
    try:
        spec = replace(spec, mounts=_mounts(state, inst, scratch))
        with services.reporter.phase("run"):
            status = services.sandbox.run(spec, output, timeout=services.options.step_timeout)
    finally:
        for directory in scratch:
            shutil.rmtree(directory, ignore_errors=True)
    if status != 0:
        tail = tuple(output.tail())
        shown = "\n".join(f"  | {line}" for line in tail)
        raise StepFailedError(
            f"{inst.location.file}:{inst.location.line}: {inst.original}: "
            f"exit code {status}" + (f"; last output:\n{shown}" if shown else ""),
            exit_code=status,
            tail=tail,
        )
