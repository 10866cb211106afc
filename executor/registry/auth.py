"""Registry credentials: where they come from (keychains).

A Keychain answers one question: what credentials, if any, for this registry?
Sources, tried in the order given to ``MultiKeychain``:

- ``StaticKeychain``: credentials given on the command line for one registry.
- ``DockerConfigKeychain``: docker's ``config.json`` (``$DOCKER_CONFIG`` or
  ``~/.docker``): ``credHelpers`` for the host, else ``credsStore``, else ``auths``.
  Helpers are the ``docker-credential-<name> get`` programs.
- ``EcrKeychain``: Amazon ECR hosts, through boto3's ``get_authorization_token``
  and the standard AWS credential chain.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from executor.errors import CredentialsError

# Docker Hub's credentials are stored under this legacy key.
_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_ECR_HOST = re.compile(r"^(\d{12})\.dkr(?:-fips)?\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
# A credential helper that hangs must not hang the build.
_HELPER_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Credentials:
    """A username and password, or an identity (refresh) token."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token)


class Keychain(Protocol):
    """Finds credentials for a registry host."""

    def resolve(self, registry: str) -> Credentials | None: ...


@dataclass(frozen=True)
class StaticKeychain:
    """Fixed credentials for named registries."""

    entries: Mapping[str, Credentials]

    def resolve(self, registry: str) -> Credentials | None:
        return self.entries.get(_config_key(registry))


@dataclass(frozen=True)
class MultiKeychain:
    """The first keychain that has credentials wins."""

    keychains: Sequence[Keychain]

    def resolve(self, registry: str) -> Credentials | None:
        for keychain in self.keychains:
            found = keychain.resolve(registry)
            if found is not None and not found.empty:
                return found
        return None


def _config_key(value: str) -> str:
    """Normalise a config.json key or a registry name to a bare host."""
    host = value.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if host in _HUB_NAMES else host


HelperRunner = Callable[[str, str], str]


def run_credential_helper(helper: str, server: str) -> str:
    """Run ``docker-credential-<helper> get`` with the server URL on stdin."""
    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.run(
            [program, "get"],
            input=server,
            capture_output=True,
            text=True,
            timeout=_HELPER_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError as exc:
        raise CredentialsError(f"credential helper {program} not found on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise CredentialsError(
            f"credential helper {program} did not answer in {_HELPER_TIMEOUT_SECONDS}s",
            temporary=True,
        ) from exc
    if proc.returncode != 0:
        out = (proc.stdout or proc.stderr).strip()
        if "credentials not found" in out.lower():
            return ""
        raise CredentialsError(f"credential helper {program} failed for {server}: {out[:200]}")
    return proc.stdout


@dataclass(frozen=True)
class DockerConfigKeychain:
    """Credentials from docker's config.json and the helpers it names."""

    path: Path
    run_helper: HelperRunner = run_credential_helper

    @classmethod
    def default(cls, environ: Mapping[str, str] | None = None) -> DockerConfigKeychain:
        env = os.environ if environ is None else environ
        directory = env.get("DOCKER_CONFIG") or str(Path(env.get("HOME", "~")) / ".docker")
        return cls(Path(directory).expanduser() / "config.json")

    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise CredentialsError(f"reading {self.path}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CredentialsError(f"{self.path}: invalid JSON at line {exc.lineno}") from exc
        if not isinstance(data, dict):
            raise CredentialsError(f"{self.path}: want a JSON object")
        return data

    def resolve(self, registry: str) -> Credentials | None:
        config = self._load()
        host = _config_key(registry)
        helpers = config.get("credHelpers") or {}
        helper = next((h for k, h in helpers.items() if _config_key(k) == host), None)
        helper = helper or config.get("credsStore")
        if helper:
            found = self._from_helper(str(helper), host)
            if found is not None:
                return found
        for key, entry in (config.get("auths") or {}).items():
            if _config_key(key) == host and isinstance(entry, dict):
                return self._from_entry(entry, key)
        return None

    def _from_helper(self, helper: str, host: str) -> Credentials | None:
        server = _HUB_CONFIG_KEY if host == "docker.io" else host
        out = self.run_helper(helper, server)
        if not out.strip():
            return None
        try:
            data = json.loads(out)
            username, secret = str(data.get("Username", "")), str(data.get("Secret", ""))
        except (json.JSONDecodeError, AttributeError) as exc:
            raise CredentialsError(f"credential helper {helper}: unreadable answer") from exc
        # Docker's convention: the username "<token>" means the secret is an identity token.
        if username == "<token>":
            return Credentials(identity_token=secret)
        return Credentials(username, secret)

    def _from_entry(self, entry: Mapping[str, Any], key: str) -> Credentials:
        if entry.get("identitytoken"):
            return Credentials(identity_token=str(entry["identitytoken"]))
        if entry.get("auth"):
            try:
                decoded = base64.b64decode(str(entry["auth"]), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise CredentialsError(f"{self.path}: auths[{key!r}].auth is not base64") from exc
            username, sep, password = decoded.partition(":")
            if not sep:
                raise CredentialsError(f"{self.path}: auths[{key!r}].auth is not user:password")
            return Credentials(username, password)
        return Credentials(str(entry.get("username", "")), str(entry.get("password", "")))


class EcrTokenSource(Protocol):
    """The one boto3 call the ECR keychain needs."""

    def __call__(self, region: str, registry_id: str) -> str: ...


def _boto3_ecr_token(region: str, registry_id: str) -> str:
    import boto3
    import botocore.exceptions

    try:
        client = boto3.client("ecr", region_name=region)
        answer = client.get_authorization_token(registryIds=[registry_id])
        return str(answer["authorizationData"][0]["authorizationToken"])
    except botocore.exceptions.NoCredentialsError as exc:
        raise CredentialsError(f"ECR {registry_id} in {region}: no AWS credentials found") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise CredentialsError(f"ECR {registry_id} in {region}: {exc}", temporary=True) from exc
    except botocore.exceptions.ClientError as exc:
        raise CredentialsError(f"ECR {registry_id} in {region}: {exc}") from exc


@dataclass(frozen=True)
class EcrKeychain:
    """Short-lived credentials for Amazon ECR hosts."""

    token_source: EcrTokenSource = _boto3_ecr_token

    def resolve(self, registry: str) -> Credentials | None:
        match = _ECR_HOST.match(registry)
        if match is None:
            return None
        token = self.token_source(match.group(2), match.group(1))
        username, _, password = base64.b64decode(token).decode().partition(":")
        return Credentials(username, password)


def default_keychain(extra: Sequence[Keychain] = ()) -> Keychain:
    """Explicit keychains first, then docker's config.json, then ECR."""
    return MultiKeychain([*extra, DockerConfigKeychain.default(), EcrKeychain()])
