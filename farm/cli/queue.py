"""The farm's commands and their flags: worker, exporter, up, down, submit, status, wait,
logs, cancel, retry, list. The work is in farm/cli/farm_commands.py, imported only when
one of them runs: Celery, Redis and boto3 cost `farm build` nearly half a second."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

# farm.records.BuildState's values, spelled out so the parser needs no Redis client.
STATES = (
    "QUEUED",
    "WORKING",
    "SUCCESS",
    "FAILURE",
    "INTERNAL_ERROR",
    "TIMEOUT",
    "CANCELLED",
    "EXPIRED",
)


def _lazy(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from farm.cli import farm_commands

        code: int = getattr(farm_commands, name)(args)
        return code

    return run


def add_parser(commands: Any) -> None:
    worker = commands.add_parser("worker", help="run a build worker (one build at a time)")
    worker.add_argument("--metrics-addr", default="0.0.0.0", help="where /metrics listens")
    worker.add_argument("--metrics-port", type=int, help="default: FARM_METRICS_PORT")
    worker.add_argument("--name", help="worker name (default: host and pid)")
    worker.set_defaults(func=_lazy("run_worker"))

    submit = commands.add_parser("submit", help="submit a build (or a batch) to the farm")
    submit.add_argument("--context", type=Path, default=Path("."))
    submit.add_argument("-f", "--dockerfile", default="Dockerfile")
    submit.add_argument("-d", "--destination", action="append", default=[], metavar="REF")
    submit.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("--target")
    submit.add_argument("--custom-platform", metavar="OS/ARCH[/VARIANT]")
    submit.add_argument("--no-push", action="store_true")
    submit.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="ID",
        help="a secret the workers provide (FARM_SECRETS_DIR/ID) for RUN --mount=type=secret",
    )
    submit.add_argument("--digest-file", type=Path, help="with --wait: write the digest here")
    submit.add_argument(
        "--image-name-with-digest-file", type=Path, help="with --wait: write REF@DIGEST lines here"
    )
    submit.add_argument("--batch", type=Path, help="a YAML file listing builds")
    submit.add_argument(
        "--fail-fast", action="store_true", help="with --batch: stop at the first failure"
    )
    submit.add_argument("--wait", action="store_true", help="wait for the outcome")
    submit.add_argument("--json", action="store_true")
    submit.set_defaults(func=_lazy("run_submit"))

    for name, func, help_text in (
        ("status", "run_status", "show a build's record"),
        ("wait", "run_wait", "wait for a build (or batch) to end; exit 0 only on success"),
        ("cancel", "run_cancel", "cancel a build or a batch: queued never starts, running stops"),
        ("retry", "run_retry", "submit an ended build (or a batch's unsuccessful ones) again"),
    ):
        p = commands.add_parser(name, help=help_text)
        p.add_argument("build_id", metavar="ID")
        p.add_argument("--json", action="store_true")
        if name == "wait":
            p.add_argument("--timeout", type=float)
        p.set_defaults(func=_lazy(func))

    logs = commands.add_parser("logs", help="print a build's log")
    logs.add_argument("build_id", metavar="ID")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    logs.set_defaults(func=_lazy("run_logs"))

    exporter = commands.add_parser("exporter", help="serve queue depth and builds in flight")
    exporter.add_argument("--metrics-addr", default="0.0.0.0")
    exporter.add_argument("--metrics-port", type=int, default=9809)
    exporter.set_defaults(func=_lazy("run_exporter"))

    start = commands.add_parser("up", help="start a whole farm on this machine (for trying it)")
    start.add_argument("--workers", type=int, default=2)
    start.set_defaults(func=_lazy("run_up"))
    stop = commands.add_parser("down", help="stop the farm `farm up` started")
    stop.set_defaults(func=_lazy("run_down"))

    listing = commands.add_parser("list", help="list builds")
    listing.add_argument("--batch", help="only this batch")
    listing.add_argument("--state", choices=STATES)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_lazy("run_list"))
