"""A whole farm on one machine (`farm up` / `farm down`): for trying the farm out.

``farm up`` starts, under ``$FARM_HOME`` (default ``~/.farm``): a redis-server and a
CNCF registry, each with a config of our own bound to 127.0.0.1 on a free port; a
``file://`` object store; and N ``farm worker`` processes. It writes
``$FARM_HOME/settings.toml``, which every other command reads when no FARM_CONFIG is
given, so ``farm submit`` finds this farm with no settings at all. ``farm down``
stops everything it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from executor.errors import ExecutorError

STATE_FILE = "farm.json"
SETTINGS_FILE = "settings.toml"
# Services that do not answer by then did not start.
_START_TIMEOUT_SECONDS = 20


class LocalFarmError(ExecutorError):
    """`farm up` or `farm down` could not do its job; the message says which part."""


def farm_home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    # Absolute: the settings file names paths workers must find from anywhere.
    return Path(env.get("FARM_HOME") or Path.home() / ".farm").resolve()


def settings_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The settings file of a running local farm, if there is one."""
    path = farm_home(environ) / SETTINGS_FILE
    return path if path.is_file() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, what: str, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
    raise LocalFarmError(f"{what} did not start on 127.0.0.1:{port}: {tail}")


def _spawn(argv: list[str], log: Path, env: Mapping[str, str] | None = None) -> int:
    binary = shutil.which(argv[0]) if not os.path.isabs(argv[0]) else argv[0]
    if binary is None:
        raise LocalFarmError(f"{argv[0]} is not installed (run .ci/install-deps)")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [binary, *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # it outlives `farm up`
        )
    return proc.pid


@dataclass(frozen=True)
class LocalFarm:
    home: Path
    redis_port: int
    registry_port: int
    pids: dict[str, int]

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.registry_port}"


def up(home: Path, *, workers: int) -> LocalFarm:
    """Start redis, a registry and ``workers`` workers; write the settings file."""
    if (home / STATE_FILE).exists():
        raise LocalFarmError(f"a farm is already up in {home} (farm down first)")
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pids: dict[str, int] = {}
    try:
        redis_port = _free_port()
        (home / "redis").mkdir(exist_ok=True)
        pids["redis"] = _spawn(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
             "--appendonly", "no", "--dir", str(home / "redis")],
            logs / "redis.log",
        )  # fmt: skip
        _wait_port(redis_port, "redis-server", logs / "redis.log")
        registry_port = _free_port()
        config = home / "registry.yml"
        config.write_text(
            json.dumps(
                {
                    "version": 0.1,
                    "log": {"level": "warn"},
                    "storage": {
                        "filesystem": {"rootdirectory": str(home / "registry")},
                        "delete": {"enabled": True},
                    },
                    "http": {"addr": f"127.0.0.1:{registry_port}", "secret": secrets.token_hex(16)},
                }
            )
        )
        pids["registry"] = _spawn(["docker-registry", "serve", str(config)], logs / "registry.log")
        _wait_port(registry_port, "docker-registry", logs / "registry.log")
        (home / SETTINGS_FILE).write_text(
            f'redis_url = "redis://127.0.0.1:{redis_port}/0"\n'
            f'storage_url = "file://{home / "storage"}"\n'
            f'workspace_root = "{home / "work"}"\n'
        )
        env = {**os.environ, "FARM_CONFIG": str(home / SETTINGS_FILE)}
        for n in range(workers):
            pids[f"worker{n}"] = _spawn(
                [sys.executable, "-m", "farm", "worker", "--metrics-addr", "127.0.0.1",
                 "--metrics-port", str(_free_port()), "--name", f"local{n}@%h"],
                logs / f"worker{n}.log",
                env,
            )  # fmt: skip
    except BaseException:
        _kill(pids)
        (home / SETTINGS_FILE).unlink(missing_ok=True)
        raise
    farm = LocalFarm(home, redis_port, registry_port, pids)
    (home / STATE_FILE).write_text(
        json.dumps({"redis_port": redis_port, "registry_port": registry_port, "pids": pids})
    )
    return farm


def _kill(pids: Mapping[str, int], timeout: float = 30) -> None:
    for pid in pids.values():
        try:
            os.killpg(pid, signal.SIGTERM)  # workers finish the build they run
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + timeout
    for pid in pids.values():
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def down(home: Path) -> int:
    """Stop what `farm up` started; return how many processes were stopped."""
    state = home / STATE_FILE
    if not state.exists():
        raise LocalFarmError(f"no farm is up in {home}")
    pids: dict[str, int] = json.loads(state.read_text())["pids"]
    # Workers first (they finish their build and record it), then the services.
    _kill({k: v for k, v in pids.items() if k.startswith("worker")})
    _kill({k: v for k, v in pids.items() if not k.startswith("worker")})
    state.unlink()
    (home / SETTINGS_FILE).unlink(missing_ok=True)
    return len(pids)
