"""Free TCP ports on the loopback interface."""

from __future__ import annotations

import socket

__all__ = ["LOOPBACK", "free_port", "port_is_open"]

# Every service a test starts listens here and nowhere else.
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    The port is released before returning, so another process may take it before the
    caller binds it; callers that start a server should retry on "address already in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_open(port: int, *, timeout: float = 0.5) -> bool:
    """Say whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False
