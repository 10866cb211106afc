"""``bench/run``: parse the options, run the chosen parts, write the report.

Three parts: the cold build + push cases against buildah, the micro-benchmarks
(``--micro``) and the farm benchmarks (``--farm-bench``). With none named, all three
run at full size; naming any runs only those. ``--quick`` makes a smoke run: one run
of one cold case (unless ``--cases`` names others), and tiny micro and farm sizes for
the parts named; ``--quick`` alone runs only the cold case, as the test suite does.
"""

from __future__ import annotations

import argparse
import compileall
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench import BenchError, farmbench, micro
from bench.cases import CASES, Case, select_cases
from bench.figures import Section
from bench.harness import (
    BASE_TAG,
    BenchSettings,
    RunResult,
    base_layout,
    isolate_credentials,
    run_benchmarks,
)
from bench.machine import describe_machine
from bench.report import render
from executor.errors import ExecutorError
from tests.support.commands import SupportError

__all__ = ["Plan", "main", "parser", "plan"]

DEFAULT_RUNS = 3
DEFAULT_OUT = Path(__file__).parent / "RESULTS.md"
QUICK_CASE = CASES[0].name
WARM_NOT_YET = "warm mode: not yet: needs the shared layer cache"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmarks: cold build + push against buildah, micro-benchmarks of "
        "snapshots, layer writing and pushes, and a local farm. With no part named "
        "(--cases, --micro, --farm-bench), all of them.",
    )
    p.add_argument(
        "--cases",
        nargs="+",
        metavar="CASE",
        help="cold cases by name (1-small-app, small-app or 1): "
        + ", ".join(c.name for c in CASES),
    )
    p.add_argument(
        "--micro", action="store_true", help="snapshot, layer writing and push micro-benchmarks"
    )
    p.add_argument(
        "--farm-bench",
        action="store_true",
        help="a local farm: submit-to-start latency, batch submission, throughput, overhead",
    )
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs per cold case and tool")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: one cold case ({QUICK_CASE}) once, tiny micro and farm sizes; "
        "alone, only the cold case",
    )
    p.add_argument("--warm", action="store_true", help="warm caches between runs (not yet)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the report (Markdown)")
    p.add_argument(
        "--scratch", type=Path, help="keep contexts, state and logs here (default: a temp dir)"
    )
    p.add_argument("--farm", type=Path, help="the farm executable (default: next to python)")
    return p


@dataclass(frozen=True)
class Plan:
    """What one invocation runs."""

    cases: tuple[Case, ...]  # cold cases; empty: none
    runs: int
    micro: micro.MicroSizes | None
    farm: farmbench.FarmSizes | None


def plan(args: argparse.Namespace) -> Plan:
    """The parts and sizes the options ask for; ValueError for an unknown case."""
    named = bool(args.cases or args.micro or args.farm_bench)
    cases: tuple[Case, ...] = ()
    if args.cases:
        cases = select_cases(args.cases)
    elif not named:
        cases = select_cases([QUICK_CASE] if args.quick else None)
    everything = not named and not args.quick
    return Plan(
        cases=cases,
        runs=1 if args.quick else args.runs,
        micro=(micro.QUICK if args.quick else micro.FULL) if args.micro or everything else None,
        farm=(
            (farmbench.QUICK if args.quick else farmbench.FULL)
            if args.farm_bench or everything
            else None
        ),
    )


def _farm_executable(given: Path | None) -> Path:
    if given is not None:
        return given
    beside = Path(sys.executable).parent / "farm"
    if beside.exists():
        return beside
    found = shutil.which("farm")
    if found is None:
        raise BenchError("no `farm` executable next to python or on PATH; install the package")
    return Path(found)


def _progress(message: str) -> None:
    print(message, flush=True)


def _fresh(directory: Path) -> Path:
    """An empty ``directory``: a kept --scratch may hold an earlier run's trees."""
    shutil.rmtree(directory, ignore_errors=True)
    return directory


def _run(chosen: Plan, scratch: Path, farm: Path) -> tuple[list[RunResult], list[Section]]:
    results: list[RunResult] = []
    sections: list[Section] = []
    if chosen.cases:
        settings = BenchSettings(cases=chosen.cases, runs=chosen.runs, scratch=scratch, farm=farm)
        results = run_benchmarks(settings)
    if chosen.micro is not None:
        sections += micro.run_micro(chosen.micro, _fresh(scratch / "micro"), _progress)
    if chosen.farm is not None:
        layout = base_layout(scratch, _progress)
        isolate_credentials(scratch / "docker-config")
        sections += farmbench.run_farm_bench(
            chosen.farm, _fresh(scratch / "farm"), layout=layout, tag=BASE_TAG, progress=_progress
        )
    return results, sections


def _compile_bytecode() -> None:
    """Write the project's .pyc files, as installing a package does.

    Without them (a fresh checkout run with PYTHONDONTWRITEBYTECODE set, as some
    shells and CI images do) every `farm build` compiles ~110 modules first, which
    cost 0.2-0.3 s a run here and is no part of what a user waits for.
    """
    root = Path(__file__).resolve().parents[1]
    for package in ("executor", "farm", "tasks"):
        compileall.compile_dir(root / package, quiet=1)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.warm:
        print(WARM_NOT_YET, file=sys.stderr)
        return 2
    if args.runs < 1:
        print("--runs must be at least 1", file=sys.stderr)
        return 2
    try:
        chosen = plan(args)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="farm-bench-"))
    _compile_bytecode()
    try:
        farm = _farm_executable(args.farm)
        machine = describe_machine(farm)
        started = datetime.now().astimezone()
        results, sections = _run(chosen, scratch, farm)
        report = render(
            results,
            machine,
            when=started,
            command=shlex.join(["bench/run", *argv]),
            sections=sections,
        )
    except (BenchError, SupportError, ExecutorError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        print(f"bench: logs kept in {scratch}", file=sys.stderr)
        return 1
    args.out.write_text(report)
    print(f"wrote {args.out}")
    if args.scratch is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0
