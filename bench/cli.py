"""``bench/run``: parse the options, run the cases, write the report."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from bench import BenchError
from bench.cases import CASES, select_cases
from bench.harness import BenchSettings, run_benchmarks
from bench.machine import describe_machine
from bench.report import render
from tests.support.commands import SupportError

__all__ = ["main", "parser"]

DEFAULT_RUNS = 3
DEFAULT_OUT = Path(__file__).parent / "RESULTS.md"
QUICK_CASE = CASES[0].name
WARM_NOT_YET = "warm mode: not yet: needs the shared layer cache"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/run", description="Cold build + push benchmarks: ours against buildah."
    )
    p.add_argument(
        "--cases",
        nargs="+",
        metavar="CASE",
        help="cases by name (1-small-app, small-app or 1); default all: "
        + ", ".join(c.name for c in CASES),
    )
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs per case and tool")
    p.add_argument("--quick", action="store_true", help=f"one case ({QUICK_CASE}), one run")
    p.add_argument("--warm", action="store_true", help="warm caches between runs (not yet)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the report (Markdown)")
    p.add_argument(
        "--scratch", type=Path, help="keep contexts, state and logs here (default: a temp dir)"
    )
    p.add_argument("--farm", type=Path, help="the farm executable (default: next to python)")
    return p


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


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.warm:
        print(WARM_NOT_YET, file=sys.stderr)
        return 2
    if args.runs < 1:
        print("--runs must be at least 1", file=sys.stderr)
        return 2
    try:
        cases = select_cases([QUICK_CASE] if args.quick else args.cases)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    runs = 1 if args.quick else args.runs
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="farm-bench-"))
    try:
        farm = _farm_executable(args.farm)
        settings = BenchSettings(cases=cases, runs=runs, scratch=scratch, farm=farm)
        results = run_benchmarks(settings)
        report = render(
            results,
            describe_machine(farm),
            when=datetime.now().astimezone(),
            command=shlex.join(["bench/run", *argv]),
        )
    except (BenchError, SupportError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        print(f"bench: logs kept in {scratch}", file=sys.stderr)
        return 1
    args.out.write_text(report)
    print(f"wrote {args.out}")
    if args.scratch is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0
