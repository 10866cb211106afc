"""The CNCF distribution registry (Debian `docker-registry` 2.8) as a test service.

Each RegistryServer is its own `docker-registry serve CONFIG` process on 127.0.0.1 and a
free port, with its storage, config and log under the work directory it is given. Auth
is data: None (open), HtpasswdAuth (basic auth against bcrypt entries) or a started
TokenIssuer (bearer tokens; the registry trusts the issuer's certificate). With a
ServerCertificate it serves HTTPS; with `redirect_blobs_to` it answers blob GETs with
307 to that base URL plus the blob's path in storage (distribution's `redirect`
storage middleware, as registries backed by S3 or a CDN do).
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from tests.support.commands import SupportError, require_tool
from tests.support.ports import LOOPBACK
from tests.support.process import ManagedProcess, ReadinessProbe, http_probe
from tests.support.tls import ServerCertificate
from tests.support.token import TokenIssuer

__all__ = ["HtpasswdAuth", "RegistryAuth", "RegistryServer", "RegistryStartError"]

# Cold start on this kind of machine takes well under a second; the margin is for load.
DEFAULT_START_TIMEOUT_SECONDS = 15.0


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


class RegistryServer(ManagedProcess):
    """One `docker-registry serve` process on 127.0.0.1; a context manager.

    `workdir` holds `config.yml`, `registry.log`, `storage/` and, with basic auth,
    `htpasswd`. Use `host` in image references and `url` for plain HTTP requests.
    SIGTERM ends the registry at once (2.8 drains only with http.draintimeout set).
    """

    name = "registry"
    start_error = RegistryStartError

    def __init__(
        self,
        workdir: Path,
        *,
        auth: RegistryAuth | None = None,
        access_log: bool = False,
        tls: ServerCertificate | None = None,
        redirect_blobs_to: str | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(start_timeout=start_timeout)
        self.workdir = workdir
        self.auth = auth
        self.access_log = access_log
        self.tls = tls
        self.redirect_blobs_to = redirect_blobs_to
        self.root = workdir / "storage"
        self.config_path = workdir / "config.yml"

    # -- addresses -----------------------------------------------------------------------

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, the registry part of an image reference."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, or `https://` with TLS."""
        return f"{'https' if self.tls else 'http'}://{self.host}"

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

    # -- ManagedProcess hooks ------------------------------------------------------------

    def _log_file(self) -> Path:
        # stdout and stderr
        return self.workdir / "registry.log"

    def _prepare(self) -> str:
        binary = require_tool("docker-registry")
        self.root.mkdir(parents=True, exist_ok=True)
        return binary

    def _argv(self, program: str, port: int) -> list[str]:
        return [program, "serve", str(self.config_path)]

    def _configure(self, port: int) -> None:
        """Write config.yml for `port` (and the htpasswd file with basic auth)."""
        http: dict[str, object] = {"addr": f"{LOOPBACK}:{port}", "secret": secrets.token_hex(32)}
        if self.tls is not None:
            http["tls"] = {"certificate": str(self.tls.cert_path), "key": str(self.tls.key_path)}
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
            "http": http,
        }
        if self.redirect_blobs_to is not None:
            redirect = {"name": "redirect", "options": {"baseurl": self.redirect_blobs_to}}
            config["middleware"] = {"storage": [redirect]}
        auth = self._auth_config()
        if auth:
            config["auth"] = auth
        # JSON is YAML, and needs no YAML library here.
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")

    def _readiness_probe(self) -> AbstractContextManager[ReadinessProbe]:
        # 401 is an answer too: the registry is up and wants credentials.
        return http_probe(f"{self.url}/v2/", (200, 401))

    def _exited_message(self, returncode: int) -> str:
        return (
            f"docker-registry exited with status {returncode} "
            f"before answering on {self.url}: {self._first_failure()}; "
            f"log tail:\n{self.log_tail()}"
        )

    def _timeout_message(self) -> str:
        return (
            f"docker-registry did not answer on {self.url}/v2/ within "
            f"{self.start_timeout} s; log tail:\n{self.log_tail()}"
        )

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
