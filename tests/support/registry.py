"""The CNCF distribution registry (Debian `docker-registry` 2.8) as a test service.

Each RegistryServer is its own `docker-registry serve CONFIG` process on 127.0.0.1 and a
free port, with its storage, config and log under the work directory it is given. Auth
is data: None (open), HtpasswdAuth (basic auth against bcrypt entries) or a started
TokenIssuer (bearer tokens; the registry trusts the issuer's certificate).
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import requests

from tests.support.commands import SupportError, require_tool
from tests.support.ports import LOOPBACK, free_port
from tests.support.token import TokenIssuer

__all__ = ["HtpasswdAuth", "RegistryAuth", "RegistryServer", "RegistryStartError"]

# Cold start on this kind of machine takes well under a second; the margin is for load.
DEFAULT_START_TIMEOUT_SECONDS = 15.0
# SIGTERM ends the registry at once (2.8 drains only with http.draintimeout set).
_STOP_TIMEOUT_SECONDS = 5.0
# free_port() can race with another process; a few fresh ports make that harmless.
_BIND_ATTEMPTS = 3
_LOG_TAIL_LINES = 30
_POLL_INTERVAL_SECONDS = 0.02


class RegistryStartError(SupportError):
    """The registry process did not come up; the message ends with its log tail."""


@dataclass(frozen=True)
class HtpasswdAuth:
    """Basic auth: the registry checks users against an htpasswd file of bcrypt entries."""

    users: Mapping[str, str] = field(default_factory=dict)
    realm: str = "farm-test-registry"

    def htpasswd(self) -> str:
        """Render the htpasswd file (distribution accepts only bcrypt entries)."""
        lines = []
        for user, password in self.users.items():
            # Cost 4 is bcrypt's minimum: the tests need the format, not the hardness,
            # and every failed or first login costs one hash on the registry side.
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
            lines.append(f"{user}:{hashed}\n")
        return "".join(lines)


RegistryAuth = HtpasswdAuth | TokenIssuer


class RegistryServer:
    """One `docker-registry serve` process on 127.0.0.1; a context manager.

    `workdir` holds `config.yml`, `registry.log`, `storage/` and, with basic auth,
    `htpasswd`. Use `host` in image references and `url` for plain HTTP requests.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        auth: RegistryAuth | None = None,
        access_log: bool = False,
        start_timeout: float = DEFAULT_START_TIMEOUT_SECONDS,
    ) -> None:
        self.workdir = workdir
        self.auth = auth
        self.access_log = access_log
        self.start_timeout = start_timeout
        self.root = workdir / "storage"
        self.log_path = workdir / "registry.log"
        self.config_path = workdir / "config.yml"
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> RegistryServer:
        """Start the process and wait until `/v2/` answers; raise RegistryStartError if not."""
        if self._process is not None:
            raise RuntimeError("registry already started")
        binary = require_tool("docker-registry")
        self.root.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            port = free_port()
            self._write_config(port)
            self._port = port
            with self.log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    [binary, "serve", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # Its own process group, so a Ctrl-C in the terminal goes to pytest,
                    # which then stops the registry in order.
                    start_new_session=True,
                )
            try:
                self._wait_until_ready()
            except RegistryStartError:
                lost_port = "address already in use" in self.log_tail().lower()
                self.stop()
                if lost_port and attempt < _BIND_ATTEMPTS:
                    continue
                raise
            return self
        raise AssertionError("unreachable")  # the loop returns or raises

    def stop(self) -> None:
        """Terminate the process (kill it if it lingers) and wait for it; idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT_SECONDS)

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    # -- addresses -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1."""
        if self._port is None:
            raise RuntimeError("registry not started")
        return self._port

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, the registry part of an image reference."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://{self.host}"

    # -- storage -------------------------------------------------------------------------

    def repository_dir(self, name: str) -> Path:
        """Where the filesystem driver keeps repository `name` (links, tags, uploads)."""
        return self.root / "docker" / "registry" / "v2" / "repositories" / name

    def delete_repository(self, name: str) -> None:
        """Remove repository `name` from storage so that later pushes upload blobs again.

        Only the repository's links go: the blobs stay in the global blob store
        (`docker/registry/v2/blobs`), so a client that mounts across repositories, or a
        registry that checked the global store, would still find them. The registry has
        no blob descriptor cache configured, so it notices the removal at once.
        """
        path = self.repository_dir(name)
        if not path.is_dir():
            raise FileNotFoundError(f"no repository {name!r} in {self.root}")
        shutil.rmtree(path)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the registry's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- internals -----------------------------------------------------------------------

    def _first_failure(self) -> str:
        """The log's first panic or fatal line: config errors panic before a long trace."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "no log written"
        for line in text.splitlines():
            if line.startswith("panic:") or "level=fatal" in line:
                return line
        return "no panic or fatal line in the log"

    def _write_config(self, port: int) -> None:
        config: dict[str, object] = {
            "version": 0.1,
            "log": {
                "level": "warn",
                "formatter": "text",
                "accesslog": {"disabled": not self.access_log},
            },
            "storage": {
                "filesystem": {"rootdirectory": str(self.root)},
                "delete": {"enabled": True},
                # No `cache` section on purpose: a blob descriptor cache would hide
                # delete_repository() from the running registry.
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": f"{LOOPBACK}:{port}", "secret": secrets.token_hex(32)},
        }
        auth = self._auth_config()
        if auth:
            config["auth"] = auth
        # JSON is YAML, and needs no YAML library here.
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")

    def _auth_config(self) -> dict[str, object]:
        match self.auth:
            case None:
                return {}
            case HtpasswdAuth():
                path = self.workdir / "htpasswd"
                path.write_text(self.auth.htpasswd())
                return {"htpasswd": {"realm": self.auth.realm, "path": str(path)}}
            case TokenIssuer():
                issuer = self.auth
                return {
                    "token": {
                        "realm": issuer.realm,
                        "service": issuer.service,
                        "issuer": issuer.issuer,
                        "rootcertbundle": str(issuer.cert_path),
                    }
                }

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        process = self._process
        assert process is not None
        with requests.Session() as session:
            while True:
                if process.poll() is not None:
                    raise RegistryStartError(
                        f"docker-registry exited with status {process.returncode} "
                        f"before answering on {self.url}: {self._first_failure()}; "
                        f"log tail:\n{self.log_tail()}"
                    )
                try:
                    response = session.get(f"{self.url}/v2/", timeout=1)
                except (requests.ConnectionError, requests.Timeout):
                    pass
                else:
                    if response.status_code in (200, 401):
                        return
                if time.monotonic() > deadline:
                    raise RegistryStartError(
                        f"docker-registry did not answer on {self.url}/v2/ within "
                        f"{self.start_timeout} s; log tail:\n{self.log_tail()}"
                    )
                time.sleep(_POLL_INTERVAL_SECONDS)
