"""Image references, parsed and normalised as Docker does.

The grammar is distribution's ``reference`` package: ``[domain/]path[:tag][@digest]``.
Normalisation follows Docker's ``ParseNormalizedNamed``: the first path component
is a registry only if it contains ``.`` or ``:``, is ``localhost`` or has an
uppercase letter; otherwise the registry is ``docker.io``, and single-component
Docker Hub names gain ``library/``. A reference with neither tag nor digest gets
``latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from executor.errors import InvalidDigestError, InvalidReferenceError
from executor.oci.digest import Digest

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
# The aliases Docker folds into docker.io.
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
# Repository names longer than this are rejected by distribution.
_MAX_NAME_LENGTH = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = re.compile(rf"^(?:{_IPV6}|{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*)(?::[0-9]+)?$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


@dataclass(frozen=True)
class ImageReference:
    """A normalised image reference: registry, repository, and a tag or digest or both."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """Parse and normalise ``text``; raise InvalidReferenceError saying what is wrong."""
        return _parse(text)

    @property
    def name(self) -> str:
        """``registry/repository``."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What the registry API takes after ``/manifests/``: the digest if any, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def familiar(self) -> str:
        """The short form Docker prints: ``busybox:latest`` for docker.io/library/busybox."""
        name = self.name
        if self.registry == DEFAULT_REGISTRY:
            name = self.repository.removeprefix("library/")
        text = name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def with_tag(self, tag: str) -> ImageReference:
        if not _TAG.match(tag):
            raise InvalidReferenceError(f"invalid tag {tag!r}")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: Digest) -> ImageReference:
        return replace(self, digest=digest)

    def with_registry(self, registry: str) -> ImageReference:
        return replace(self, registry=registry)


def _parse(text: str) -> ImageReference:
    def fail(why: str) -> InvalidReferenceError:
        return InvalidReferenceError(f"invalid image reference {text!r}: {why}")

    if not text:
        raise fail("it is empty")
    if text != text.strip() or any(c.isspace() for c in text):
        raise fail("it contains white space")
    rest = text
    digest: Digest | None = None
    if "@" in rest:
        rest, _, digest_text = rest.partition("@")
        try:
            digest = Digest.parse(digest_text)
        except InvalidDigestError as exc:
            raise fail(str(exc)) from exc
    tag: str | None = None
    # A colon after the last slash starts the tag; one before it is a port.
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise fail(f"invalid tag {tag!r}")
    if not rest:
        raise fail("the repository name is empty")

    registry, sep, path = rest.partition("/")
    if not sep or not (
        "." in registry
        or ":" in registry
        or registry == "localhost"
        or registry != registry.lower()
    ):
        registry, path = DEFAULT_REGISTRY, rest
    if not _DOMAIN.match(registry):
        raise fail(f"invalid registry {registry!r}")
    if registry in _HUB_ALIASES:
        registry = DEFAULT_REGISTRY
        if "/" not in path:
            path = f"library/{path}"
    if path != path.lower():
        raise fail("repository name must be lowercase")
    for component in path.split("/"):
        if not _PATH_COMPONENT.match(component):
            raise fail(f"invalid repository path component {component!r}")
    if len(f"{registry}/{path}") > _MAX_NAME_LENGTH:
        raise fail(f"repository name longer than {_MAX_NAME_LENGTH} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageReference(registry, path, tag, digest)
