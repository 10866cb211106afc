"""Which parts and sizes ``bench/run``'s options choose (bench/cli.py)."""

from __future__ import annotations

import pytest

from bench import farmbench, micro
from bench.cli import Plan, parser, plan


def _plan(*argv: str) -> Plan:
    return plan(parser().parse_args(list(argv)))


@pytest.mark.parametrize(
    ("argv", "cases", "runs", "micro_sizes", "farm_sizes"),
    [
        # Nothing named: everything, full size.
        ((), ("1", "2", "3", "4", "5"), 3, micro.FULL, farmbench.FULL),
        # --quick alone is the suite's smoke run: one cold case, once, nothing else.
        (("--quick",), ("1",), 1, None, None),
        (("--micro",), (), 3, micro.FULL, None),
        (("--farm-bench",), (), 3, None, farmbench.FULL),
        (("--quick", "--micro", "--farm-bench"), (), 1, micro.QUICK, farmbench.QUICK),
        (("--cases", "2", "--micro"), ("2",), 3, micro.FULL, None),
        (("--quick", "--cases", "3", "5"), ("3", "5"), 1, None, None),
        (("--runs", "5", "--cases", "small-app"), ("1",), 5, None, None),
    ],
)
def test_parts_and_sizes(
    argv: tuple[str, ...],
    cases: tuple[str, ...],
    runs: int,
    micro_sizes: micro.MicroSizes | None,
    farm_sizes: farmbench.FarmSizes | None,
) -> None:
    chosen = _plan(*argv)
    assert tuple(case.name.split("-")[0] for case in chosen.cases) == cases
    assert chosen.runs == runs
    assert chosen.micro == micro_sizes
    assert chosen.farm == farm_sizes


def test_an_unknown_case_is_refused() -> None:
    with pytest.raises(ValueError, match="no benchmark case 'nine'"):
        _plan("--cases", "nine")


def test_full_sizes_are_issue_5s() -> None:
    assert micro.FULL.snapshot_files == 100_000
    assert farmbench.FULL.submitted == 1000
    assert farmbench.FULL.throughput_builds == 100
    assert farmbench.FULL.latency_builds >= 50
