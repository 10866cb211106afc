"""`farm up` and `farm down`: a whole farm on this machine, found by the other
commands with no settings, and gone afterwards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.integration.test_build import write_context
from tests.support import procs


def farm(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "farm", *args],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def test_up_submit_down(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env["FARM_HOME"] = str(tmp_path / "farm")
    up = farm("up", "--workers", "1", env=env)
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / "farm" / "farm.json").read_text())
    try:
        ctx = write_context(
            tmp_path / "ctx", "FROM scratch\nCOPY hello /hello\n", {"hello": "hi\n"}
        )
        registry = f"127.0.0.1:{state['registry_port']}"
        submitted = farm(
            "submit", "--context", str(ctx), "-d", f"{registry}/up/hello:1", "--wait", "--json",
            env=env,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        summary = json.loads(submitted.stdout)
        assert summary["state"] == "SUCCESS"
        assert summary["pushed"] == [f"{registry}/up/hello@{summary['digest']}"]
        inspected = farm("image", "inspect", "--json", f"{registry}/up/hello:1", env=env)
        assert json.loads(inspected.stdout)["digest"] == summary["digest"]

        write_context(tmp_path / "bad", "FROM scratch\nCOPY missing /x\n")
        batch = tmp_path / "builds.yaml"
        batch.write_text("builds:\n  - {name: good, context: ctx}\n  - {name: bad, context: bad}\n")
        submitted = farm("submit", "--batch", str(batch), env=env)
        assert submitted.returncode == 0, submitted.stderr
        batch_id = submitted.stdout.strip()
        waited = farm("wait", batch_id, "--timeout", "120", env=env)
        assert waited.returncode == 1
        assert "2/2 done, 1 not successful" in waited.stderr
        states = sorted(line.split()[1] for line in waited.stdout.splitlines())
        assert states == ["FAILURE", "SUCCESS"]
    finally:
        down = farm("down", env=env)
    assert down.returncode == 0, down.stderr
    assert "stopped 3 processes" in down.stdout
    assert not any(procs.alive(pid, zombie_alive=True) for pid in state["pids"].values())
    for port in (state["redis_port"], state["registry_port"]):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
    again = farm("down", env=env)
    assert again.returncode == 1 and "no farm is up" in again.stderr
