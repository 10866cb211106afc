"""The per-run wrapper process: run commands in order, then report wall time and peak RSS.

``python -m bench.measure SPEC RESULT`` reads a JSON spec (``commands``: a list of argv
lists, ``env``: extra environment, ``log``: where their output goes), runs each in turn and
writes ``{"wall": seconds, "max_rss_kib": KiB, "returncode": N}`` to RESULT.

Being its own process is the point: ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` is then the
largest resident set of any process this one run waited for (directly or through its
children reaping theirs), not a maximum carried over from earlier runs of the harness.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Measurement", "RunSpec", "main"]


@dataclass(frozen=True)
class RunSpec:
    commands: tuple[tuple[str, ...], ...]
    log: str
    env: dict[str, str]

    @classmethod
    def load(cls, path: Path) -> RunSpec:
        data = json.loads(path.read_text())
        return cls(
            commands=tuple(tuple(str(a) for a in c) for c in data["commands"]),
            log=str(data["log"]),
            env={str(k): str(v) for k, v in data["env"].items()},
        )

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


@dataclass(frozen=True)
class Measurement:
    wall: float  # seconds from starting the first command to the end of the last
    max_rss_kib: int  # ru_maxrss of RUSAGE_CHILDREN (KiB on Linux)
    returncode: int  # of the first command that failed, else 0

    @classmethod
    def load(cls, path: Path) -> Measurement:
        data = json.loads(path.read_text())
        return cls(float(data["wall"]), int(data["max_rss_kib"]), int(data["returncode"]))


def run(spec: RunSpec) -> Measurement:
    env = {**os.environ, **spec.env}
    returncode = 0
    with open(spec.log, "ab") as log:
        started = time.monotonic()
        for command in spec.commands:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            returncode = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                check=False,
            ).returncode
            if returncode != 0:
                break
        wall = time.monotonic() - started
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return Measurement(wall, rss, returncode)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.measure SPEC RESULT", file=sys.stderr)
        return 2
    result = run(RunSpec.load(Path(argv[0])))
    Path(argv[1]).write_text(json.dumps(asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
