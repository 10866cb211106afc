"""What travels: request bodies, response headers and responses, and the basic-auth value."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol


class Blocks(Protocol):
    """A request body streamed block by block, whose length is known up front."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[bytes]: ...


Body = bytes | Blocks | None


class Source(Protocol):
    """Where a response body is read from: its connection, or bytes in tests."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class Headers(Mapping[str, str]):
    """Response headers by case-insensitive name; repeated ones joined with ``", "``."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for name, value in items:
            known = self._items.get(name.lower())
            self._items[name.lower()] = (
                (known[0], f"{known[1]}, {value}") if known else (name, value)
            )

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


class Response:
    """A status, its headers and a body to read once; closing it frees the connection."""

    def __init__(self, status: int, reason: str, headers: Headers, body: Source) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self._body = body
        self._content: bytes | None = None

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes of the body as sent (fewer only at its end; -1: all the rest)."""
        return self._body.read(size)

    def content(self) -> bytes:
        """The rest of the body, read on the first call and kept."""
        if self._content is None:
            self._content = self._body.read()
            self._body.close()
        return self._content

    def json(self) -> Any:
        """The body parsed as JSON; ValueError if it is not JSON."""
        return json.loads(self.content())

    @property
    def text(self) -> str:
        """The body as text (UTF-8, undecodable bytes replaced): for error messages."""
        return self.content().decode(errors="replace")

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def basic_auth(username: str, password: str) -> str:
    """The ``Authorization`` value for HTTP basic authentication (UTF-8, RFC 7617)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
