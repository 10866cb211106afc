"""An S3 endpoint for tests: moto's server mode, a real HTTP server in its own process.

No MinIO is packaged here; moto speaks the S3 REST API over HTTP, so the code under
test goes through botocore's real signing, transport and error parsing. Credentials
are dummies, handed out as a dict (`client_env()`) for clients and child processes;
nothing here changes os.environ.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config

from tests.support.commands import SupportError
from tests.support.ports import LOOPBACK, free_port

__all__ = ["S3_REGION", "S3Server", "S3StartError"]

# moto accepts any credentials; fixed dummies keep real ones out of the tests.
_ACCESS_KEY_ID = "farm-test-access-key"
_SECRET_ACCESS_KEY = "farm-test-secret-key"
S3_REGION = "us-east-1"

# Importing moto and starting werkzeug takes one to three seconds; the rest is margin.
DEFAULT_START_TIMEOUT_SECONDS = 30.0
_STOP_TIMEOUT_SECONDS = 5.0
# free_port() can race with another process; a few fresh ports make that harmless.
_BIND_ATTEMPTS = 3
_LOG_TAIL_LINES = 30
_POLL_INTERVAL_SECONDS = 0.05


class S3StartError(SupportError):
    """The moto server did not come up; the message ends with its log tail."""


class S3Server:
    """One `python -m moto.server` process on 127.0.0.1; a context manager.

    `workdir` holds its log (`moto.log`); without one, a temporary directory is made
    on start and removed on stop. Point clients at `endpoint_url` with path-style
    addressing and the credentials from `client_env()`.
    """

    def __init__(
        self, workdir: Path | None = None, *, start_timeout: float = DEFAULT_START_TIMEOUT_SECONDS
    ) -> None:
        self._own_workdir = workdir is None
        # Set on start when none is given.
        self.workdir: Path | None = workdir
        self.start_timeout = start_timeout
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> S3Server:
        """Start the server and wait until it answers HTTP; raise S3StartError if not."""
        if self._process is not None:
            raise RuntimeError("S3 server already started")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="farm-moto-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            port = free_port()
            self._port = port
            with self.log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # Its own process group, so a Ctrl-C goes to pytest, which stops it.
                    start_new_session=True,
                )
            try:
                self._wait_until_ready()
            except S3StartError:
                lost_port = "address already in use" in self.log_tail().lower()
                if lost_port and attempt < _BIND_ATTEMPTS:
                    self._terminate()
                    continue
                self.stop()
                raise
            return self
        raise AssertionError("unreachable")  # the loop returns or raises

    def stop(self) -> None:
        """Terminate the process (kill it if it lingers) and wait for it; idempotent.

        A work directory made by start() is removed with its log.
        """
        self._terminate()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT_SECONDS)

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def log_path(self) -> Path:
        """The server's log: stdout and stderr."""
        if self.workdir is None:
            raise RuntimeError("S3 server not started")
        return self.workdir / "moto.log"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    # -- addresses and clients -------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 (kept after stop, to test a dead endpoint)."""
        if self._port is None:
            raise RuntimeError("S3 server not started")
        return self._port

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

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the server's log."""
        if self.workdir is None:
            return ""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- internals -----------------------------------------------------------------------

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        process = self._process
        assert process is not None
        with requests.Session() as session:
            while True:
                if process.poll() is not None:
                    raise S3StartError(
                        f"moto server exited with status {process.returncode} before "
                        f"answering on {self.endpoint_url}; log tail:\n{self.log_tail()}"
                    )
                try:
                    # moto's own API answers without credentials once the server is up.
                    response = session.get(f"{self.endpoint_url}/moto-api/data.json", timeout=1)
                except (requests.ConnectionError, requests.Timeout):
                    pass
                else:
                    if response.status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise S3StartError(
                        f"moto server did not answer on {self.endpoint_url} within "
                        f"{self.start_timeout} s; log tail:\n{self.log_tail()}"
                    )
                time.sleep(_POLL_INTERVAL_SECONDS)
