"""The error raised for a Dockerfile that cannot be parsed or expanded."""

from __future__ import annotations

from executor.errors import ExecutorError


class DockerfileError(ExecutorError):
    """A Dockerfile that is malformed; the message starts with ``FILE:LINE: ``.

    A bad Dockerfile never gets better by trying again, so it is permanent.
    """

    def __init__(self, filename: str, line: int, problem: str) -> None:
        super().__init__(f"{filename}:{line}: {problem}", temporary=False)
        self.filename = filename
        self.line = line
        self.problem = problem
