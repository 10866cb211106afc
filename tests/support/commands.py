"""Running the third-party tools the tests rely on, failing loudly when one is missing.

Exceptions::

    SupportError
     +-- ToolMissingError   a binary is not installed (never a skip: the test fails)
     +-- CommandError       a tool exited non-zero; carries its command line and stderr
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "CommandError",
    "SupportError",
    "ToolMissingError",
    "redact",
    "require_tool",
    "run_tool",
]

# How long one tool invocation may take before the test fails; generous because a
# loaded CI machine can be slow, short enough that a hung tool does not eat the run.
DEFAULT_TIMEOUT_SECONDS = 120.0


class SupportError(Exception):
    """Something the test support code needs did not work."""


class ToolMissingError(SupportError):
    """A binary the tests need is not installed."""

    def __init__(self, tool: str, package: str) -> None:
        super().__init__(
            f"{tool!r} is not on PATH: install the Debian package {package!r} "
            "(see .ci/install-deps)"
        )
        self.tool = tool
        self.package = package


class CommandError(SupportError):
    """A tool exited with a non-zero status."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        shown = redact(args)
        super().__init__(f"running {' '.join(shown)!r}: exit status {returncode}: {stderr.strip()}")
        self.args_run = shown
        self.returncode = returncode
        self.stderr = stderr


# Which Debian package brings each tool, for the error message.
_PACKAGES = {
    "busybox": "busybox-static",
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
    "umoci": "umoci",
}


# Options whose value is USER:PASSWORD (skopeo's), masked in error messages.
_CREDENTIAL_OPTIONS = frozenset({"--creds", "--src-creds", "--dest-creds"})


def redact(args: Sequence[str]) -> tuple[str, ...]:
    """Return `args` with the password of every credentials option replaced by `***`."""
    shown = list(args)
    for index, arg in enumerate(shown):
        option, equals, value = arg.partition("=")
        if equals and option in _CREDENTIAL_OPTIONS:
            shown[index] = f"{option}={_mask(value)}"
        elif arg in _CREDENTIAL_OPTIONS and index + 1 < len(shown):
            shown[index + 1] = _mask(shown[index + 1])
    return tuple(shown)


def _mask(credentials: str) -> str:
    user, _, _ = credentials.partition(":")
    return f"{user}:***"


def require_tool(tool: str) -> str:
    """Return the absolute path of `tool`, or raise ToolMissingError."""
    path = shutil.which(tool)
    if path is None:
        raise ToolMissingError(tool, _PACKAGES.get(tool, tool))
    return path


def run_tool(
    args: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> str:
    """Run a tool to completion and return its stdout; raise CommandError on failure."""
    argv = [str(arg) for arg in args]
    argv[0] = require_tool(argv[0])
    try:
        completed = subprocess.run(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise CommandError(argv, -1, f"timed out after {timeout} s; {stderr}") from exc
    if completed.returncode != 0:
        raise CommandError(argv, completed.returncode, completed.stderr)
    return completed.stdout
