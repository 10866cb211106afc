"""The cold build + push loop: each case, each run, ours then buildah (A B A B).

Every run starts from nothing: a fresh registry (new storage directory, new process)
with only the busybox base pushed to it, a fresh workspace for our executor, fresh
``--root``/``--runroot`` directories for buildah. A fresh registry rather than
``RegistryServer.delete_repository``: deleting a repository leaves its blobs in the
registry's global blob store, and while distribution 2.8 answers a repository-scoped HEAD
with 404 once the repository's links are gone, a client that mounts across repositories
(ours mounts the base layer from the base's repository; buildah's blob-info cache
remembers earlier locations) could still skip uploads. With a new registry per run there
is nothing to skip but the base image itself, for both tools alike.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench import BenchError
from bench.cases import Case, prepare_context
from bench.measure import Measurement, RunSpec
from tests.support.images import build_busybox_layout, push_layout
from tests.support.registry import RegistryServer

__all__ = [
    "BASE_TAG",
    "OURS",
    "THEIRS",
    "TOOLS",
    "BenchSettings",
    "RunResult",
    "base_layout",
    "isolate_credentials",
    "run_benchmarks",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE_REPOSITORY = "library/busybox"
BASE_TAG = "latest"
OURS = "ours"
THEIRS = "buildah"
TOOLS = (OURS, THEIRS)
_LOG_TAIL_LINES = 40
# A run that takes longer than this is stuck, not slow.
_RUN_TIMEOUT_SECONDS = 600.0


def _progress(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class BenchSettings:
    cases: tuple[Case, ...]
    runs: int
    scratch: Path  # everything the harness writes outside bench/RESULTS.md
    farm: Path  # the `farm` executable
    progress: Callable[[str], None] = _progress


@dataclass(frozen=True)
class RunResult:
    case: str
    tool: str
    run: int
    wall: float  # seconds, build + push
    max_rss_kib: int
    pushed_bytes: int  # config + layers of the pushed manifest
    timings: Mapping[str, float] = field(default_factory=dict)  # ours only: --timings-file


@dataclass(frozen=True)
class _Target:
    """Where one run builds from and pushes to."""

    case: Case
    run: int
    context: Path
    base: str
    registry_host: str
    state: Path  # this run's local state (workspace or buildah storage), wiped first

    @property
    def tag(self) -> str:
        return f"run{self.run}"


def _remove_tree(path: Path) -> None:
    """rm -rf, after lazily unmounting anything a tool left mounted below `path`."""
    if not path.exists():
        return
    prefix = str(path.resolve()) + "/"
    mounts = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1].startswith(prefix)
    ]
    for mount in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
    shutil.rmtree(path)


def _ours(target: _Target, farm: Path) -> tuple[RunSpec, str, Path]:
    destination = f"{target.registry_host}/bench/{target.case.name}:{target.tag}"
    timings = target.state / "timings.json"
    workspace = target.state / "workspace"
    command = (
        str(farm), "build",
        "--context", str(target.context),
        "--build-arg", f"BASE={target.base}",
        "--destination", destination,
        "--workspace", str(workspace),
        "--timings-file", str(timings),
        "--quiet",
    )  # fmt: skip
    env = {"FARM_HOME": str(target.state / "farm-home")}
    return RunSpec((command,), str(target.state / "log"), env), destination, timings


def _buildah(target: _Target) -> tuple[RunSpec, str, None]:
    destination = f"{target.registry_host}/bench-buildah/{target.case.name}:{target.tag}"
    local = f"localhost/{target.case.name}:{target.tag}"
    storage = (
        "buildah",
        "--root", str(target.state / "root"),
        "--runroot", str(target.state / "runroot"),
        "--storage-driver", "overlay",
    )  # fmt: skip
    build = (
        *storage, "build",
        "--isolation", "chroot",
        "--layers",
        "--tls-verify=false",
        "--build-arg", f"BASE={target.base}",
        "-t", local,
        str(target.context),
    )  # fmt: skip
    push = (*storage, "push", "--tls-verify=false", local, f"docker://{destination}")
    env = {"REGISTRY_AUTH_FILE": str(Path(os.environ["DOCKER_CONFIG"]) / "config.json")}
    return RunSpec((build, push), str(target.state / "log"), env), destination, None


def _pushed_bytes(reference: str) -> int:
    """Sum of the config and layer sizes in the manifest at `reference`."""
    proc = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", "--no-creds", f"docker://{reference}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"reading back {reference}: {proc.stderr.strip()}")
    manifest = json.loads(proc.stdout)
    sizes = [manifest["config"]["size"], *(layer["size"] for layer in manifest["layers"])]
    return sum(int(size) for size in sizes)


def _log_tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:])
    except FileNotFoundError:
        return "(no log)"


def _measure(spec: RunSpec, workdir: Path) -> Measurement:
    spec_path, result_path = workdir / "spec.json", workdir / "result.json"
    spec.dump(spec_path)
    subprocess.run(
        [sys.executable, "-m", "bench.measure", str(spec_path), str(result_path)],
        cwd=REPO_ROOT,
        check=True,
        timeout=_RUN_TIMEOUT_SECONDS,
    )
    return Measurement.load(result_path)


def _run_once(tool: str, target: _Target, settings: BenchSettings) -> RunResult:
    _remove_tree(target.state)
    target.state.mkdir(parents=True)
    timings_path: Path | None
    if tool == OURS:
        spec, destination, timings_path = _ours(target, settings.farm)
    else:
        spec, destination, timings_path = _buildah(target)
    measured = _measure(spec, target.state)
    if measured.returncode != 0:
        raise BenchError(
            f"{tool} on {target.case.name} (run {target.run}): exit status "
            f"{measured.returncode}; log tail:\n{_log_tail(Path(spec.log))}"
        )
    timings: dict[str, float] = {}
    if timings_path is not None and timings_path.exists():
        timings = {str(k): float(v) for k, v in json.loads(timings_path.read_text()).items()}
    result = RunResult(
        case=target.case.name,
        tool=tool,
        run=target.run,
        wall=measured.wall,
        max_rss_kib=measured.max_rss_kib,
        pushed_bytes=_pushed_bytes(destination),
        timings=timings,
    )
    _remove_tree(target.state)  # big-file state is hundreds of MiB; do not keep it
    return result


def isolate_credentials(directory: Path) -> None:
    """Point both tools at an empty credentials file: no host credentials are read.

    Only DOCKER_CONFIG goes into the environment: docker-registry reads every
    REGISTRY_* variable as a configuration override, so buildah's REGISTRY_AUTH_FILE
    is set in its own run's environment only.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text('{"auths": {}}\n')
    os.environ["DOCKER_CONFIG"] = str(directory)


def base_layout(scratch: Path, progress: Callable[[str], None]) -> Path:
    """The busybox base as an OCI layout (tag BASE_TAG) in ``scratch``, built once."""
    scratch.mkdir(parents=True, exist_ok=True)
    layout = scratch / "busybox-layout"
    if not (layout / "index.json").exists():
        progress("building the busybox base layout with umoci")
        build_busybox_layout(layout, BASE_TAG)
    return layout


def run_benchmarks(settings: BenchSettings) -> list[RunResult]:
    """Every case, `settings.runs` cold runs of each tool, interleaved A B A B."""
    scratch = settings.scratch
    layout = base_layout(scratch, settings.progress)
    isolate_credentials(scratch / "docker-config")
    results: list[RunResult] = []
    for case in settings.cases:
        context = prepare_context(case, scratch / "contexts" / case.name)
        for run in range(1, settings.runs + 1):
            for tool in TOOLS:
                registry_dir = scratch / "registry"
                _remove_tree(registry_dir)
                with RegistryServer(registry_dir) as registry:
                    push_layout(layout, BASE_TAG, registry.host, BASE_REPOSITORY)
                    target = _Target(
                        case=case,
                        run=run,
                        context=context,
                        base=f"{registry.host}/{BASE_REPOSITORY}:{BASE_TAG}",
                        registry_host=registry.host,
                        state=scratch / "state" / tool,
                    )
                    result = _run_once(tool, target, settings)
                _remove_tree(registry_dir)
                settings.progress(
                    f"{case.name} run {run} {tool}: {result.wall:.2f} s, "
                    f"{result.max_rss_kib / 1024:.0f} MiB RSS, "
                    f"{result.pushed_bytes / 2**20:.1f} MiB pushed"
                )
                results.append(result)
    return results
