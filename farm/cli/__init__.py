"""The ``farm`` command line.

Errors the user can act on print one line, ``farm: error: ...``, and exit 1; a
usage error exits 2 (argparse's convention). No traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from executor.errors import ExecutorError
from farm.cli import build, image, queue

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="farm", description="Build, copy and inspect container images with no daemon."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build.add_parser(commands)
    image.add_parser(commands)
    queue.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ExecutorError as exc:
        if args.debug:
            raise
        print(f"farm: error: {exc}", file=sys.stderr)
        return 1
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
