"""An S3 endpoint for tests: moto's server mode, a real HTTP server in its own process.

No MinIO is packaged here; moto speaks the S3 REST API over HTTP, so the code under
test goes through botocore's real signing, transport and error parsing. Credentials
are dummies, handed out as a dict (`client_env()`) for clients and child processes;
nothing here changes os.environ.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tests.support.commands import SupportError
from tests.support.ports import LOOPBACK
from tests.support.process import ManagedProcess, ReadinessProbe, http_probe

__all__ = ["S3_REGION", "S3Server", "S3StartError"]

# moto accepts any credentials; fixed dummies keep real ones out of the tests.
_ACCESS_KEY_ID = "farm-test-access-key"
_SECRET_ACCESS_KEY = "farm-test-secret-key"
S3_REGION = "us-east-1"

# Importing moto and starting werkzeug takes one to three seconds; the rest is margin.
DEFAULT_START_TIMEOUT_SECONDS = 30.0


class S3StartError(SupportError):
    """The moto server did not come up; the message ends with its log tail."""


class S3Server(ManagedProcess):
    """One `python -m moto.server` process on 127.0.0.1; a context manager.

    `workdir` holds its log (`moto.log`); without one, a temporary directory is made
    on start and removed on stop. Point clients at `endpoint_url` with path-style
    addressing and the credentials from `client_env()`.
    """

    name = "S3 server"
    start_error = S3StartError
    poll_interval = 0.05

    def __init__(
        self, workdir: Path | None = None, *, start_timeout: float = DEFAULT_START_TIMEOUT_SECONDS
    ) -> None:
        super().__init__(start_timeout=start_timeout)
        self._own_workdir = workdir is None
        # Set on start when none is given.
        self.workdir: Path | None = workdir

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        """Terminate the process (kill it if it lingers) and wait for it; idempotent.

        A work directory made by start() is removed with its log.
        """
        super().stop()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    # -- addresses and clients -------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://{LOOPBACK}:{self.port}"

    @staticmethod
    def client_env() -> dict[str, str]:
        """Environment variables that give a boto3 client the dummy credentials.

        Shared config and credentials files point at /dev/null so that nothing from
        the developer's ~/.aws leaks into a test.
        """
        return {
            "AWS_ACCESS_KEY_ID": _ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": _SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": S3_REGION,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }

    def client(self) -> Any:
        """A raw boto3 S3 client for this server (path-style), for setup and checks."""
        session = boto3.session.Session(
            aws_access_key_id=_ACCESS_KEY_ID,
            aws_secret_access_key=_SECRET_ACCESS_KEY,
            region_name=S3_REGION,
        )
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            config=Config(s3={"addressing_style": "path"}),
        )

    def create_bucket(self, name: str) -> None:
        """Create bucket `name` (in us-east-1, which takes no location constraint)."""
        self.client().create_bucket(Bucket=name)

    def list_keys(self, bucket: str) -> list[str]:
        """Every key in `bucket`, sorted, read with a raw client."""
        paginator = self.client().get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=bucket):
            keys.extend(str(item["Key"]) for item in page.get("Contents", []))
        return sorted(keys)

    # -- ManagedProcess hooks ------------------------------------------------------------

    def _log_file(self) -> Path | None:
        # stdout and stderr; the log goes with a work directory made by start().
        return None if self.workdir is None else self.workdir / "moto.log"

    def _prepare(self) -> str:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="farm-moto-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        return sys.executable

    def _argv(self, program: str, port: int) -> list[str]:
        return [program, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)]

    def _readiness_probe(self) -> AbstractContextManager[ReadinessProbe]:
        # moto's own API answers without credentials once the server is up.
        return http_probe(f"{self.endpoint_url}/moto-api/data.json", (200,))

    def _exited_message(self, returncode: int) -> str:
        return (
            f"moto server exited with status {returncode} before "
            f"answering on {self.endpoint_url}; log tail:\n{self.log_tail()}"
        )

    def _timeout_message(self) -> str:
        return (
            f"moto server did not answer on {self.endpoint_url} within "
            f"{self.start_timeout} s; log tail:\n{self.log_tail()}"
        )
