"""RUN: a command in the sandbox, on the stage rootfs, with its mounts."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from executor.commands.config import shell_command
from executor.dockerfile import Run
from executor.errors import BuildInputError, StepFailedError
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


def _mounts(state: StageState, inst: Run) -> tuple[Mount, ...]:
    options = state.services.options
    mounts: list[Mount] = []
    for mount in inst.mounts:
        where = f"{inst.location.file}:{inst.location.line}"
        if mount.type == "secret":
            secret_id = mount.get("id") or Path(mount.get("target") or "").name
            target = mount.get("target") or mount.get("dst") or f"/run/secrets/{secret_id}"
            source = options.secrets.get(secret_id)
            if source is None:
                if mount.get("required") in ("true", ""):
                    raise BuildInputError(f"{where}: secret {secret_id!r} was not given (--secret)")
                continue
            mounts.append(Mount("bind", target, str(source), readonly=True))
        elif mount.type == "cache":
            target = mount.get("target") or mount.get("dst") or ""
            cache_id = mount.get("id") or target
            root = options.run_cache_dir or (options.workspace / "run-cache")
            directory = root / re.sub(r"[^A-Za-z0-9_.-]", "_", cache_id.strip("/"))
            directory.mkdir(parents=True, exist_ok=True)
            mounts.append(Mount("bind", target, str(directory)))
        elif mount.type == "tmpfs":
            mounts.append(Mount("tmpfs", mount.get("target") or mount.get("dst") or ""))
        elif mount.type == "bind":
            target = mount.get("target") or mount.get("dst") or ""
            source_name = (mount.get("source") or mount.get("src") or ".").lstrip("/")
            from_stage = mount.get("from")
            root = (
                state.services.stages.stage_rootfs(from_stage) if from_stage else None
            ) or state.services.context.root
            source = root / source_name
            if not source.exists():
                raise BuildInputError(f"{where}: bind mount source {source_name!r} not found")
            rw = mount.get("rw") in ("true", "") or mount.get("readwrite") in ("true", "")
            if rw:
                # Writes to a read-write bind are thrown away after the step (BuildKit's
                # rule), so the step gets a scratch copy, never the context itself.
                scratch = Path(tempfile.mkdtemp(prefix="bind-", dir=options.workspace))
                copied = scratch / "source"
                if source.is_dir():
                    shutil.copytree(source, copied, symlinks=True)
                else:
                    shutil.copy2(source, copied)
                source = copied
            mounts.append(Mount("bind", target, str(source), readonly=not rw))
        else:
            raise BuildInputError(f"{where}: RUN --mount type {mount.type!r} is not supported")
    return tuple(mounts)


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
        mounts=_mounts(state, inst),
    )
    services = state.services
    output = StepOutput(services.reporter)
    with services.reporter.phase("run"):
        status = services.sandbox.run(spec, output, timeout=services.options.step_timeout)
    if status != 0:
        tail = tuple(output.tail())
        shown = "\n".join(f"  | {line}" for line in tail)
        raise StepFailedError(
            f"{inst.location.file}:{inst.location.line}: {inst.original}: "
            f"exit code {status}" + (f"; last output:\n{shown}" if shown else ""),
            exit_code=status,
            tail=tail,
        )
