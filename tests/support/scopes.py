"""What a token grants: scopes as clients ask for them, and the policy that answers.

Scope syntax follows the distribution token scope spec
(https://distribution.github.io/distribution/spec/auth/scope/): `type:name:actions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["AccessPolicy", "DefaultPolicy", "Scope", "parse_scope"]


@dataclass(frozen=True)
class Scope:
    """One `type:name:actions` scope a client asks for, e.g. `repository:a/b:pull,push`."""

    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def parse_scope(text: str) -> Scope:
    """Parse `repository:library/busybox:pull,push` into a Scope; ValueError if malformed.

    The name is everything between the first and the last colon, so a name holding a
    colon (a registry host with a port) stays whole.
    """
    kind, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep and sep2 and kind and name):
        raise ValueError(f"malformed scope {text!r}")
    return Scope(kind, name, tuple(action for action in actions.split(",") if action))


class AccessPolicy(Protocol):
    """Decides which of the requested actions a user gets on a resource."""

    def grant(self, user: str | None, scope: Scope) -> tuple[str, ...]:
        """Return the granted subset of `scope.actions`; `user` is None when anonymous."""
        ...


@dataclass(frozen=True)
class DefaultPolicy:
    """Authenticated users get everything they ask for; anonymous ones at most `pull`."""

    anonymous_pull: bool = False

    def grant(self, user: str | None, scope: Scope) -> tuple[str, ...]:
        """Every action for a user; for anonymous, `pull` on repositories if allowed."""
        if user is not None:
            return scope.actions
        if self.anonymous_pull and scope.type == "repository":
            return tuple(action for action in scope.actions if action == "pull")
        return ()
