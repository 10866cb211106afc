"""HTTP/1.1 on the standard library's http.client: what the registry and ``ADD <url>`` need.

:class:`HttpClient` keeps idle keep-alive connections per (scheme, host, port) for
threads to share; a connection goes back only once its response was read to the end.
It connects within ``Timeouts.connect`` and waits at most ``Timeouts.read`` for each
read; verifies TLS (:func:`tls_context`); goes through the proxies the environment
names (:class:`Proxies`); and follows redirects, dropping ``Authorization`` when the
origin changes. Bodies travel as they are: ``Accept-Encoding: identity`` is asked for
and no ``Content-Encoding`` is undone, so a blob arrives as its digest says.

Errors (from :mod:`executor.errors`)::

    NetworkError      could not connect, timed out, or the answer broke off (temporary)
    └── TLSError      the TLS handshake failed (permanent)

An HTTP status is never an error here: the caller decides what a 404 means.
"""

from executor.http.client import HttpClient, Params, Sender, Timeouts, tls_context
from executor.http.message import Blocks, Body, Headers, Response, Source, basic_auth
from executor.http.proxies import Proxies, Proxy

__all__ = [
    "Blocks",
    "Body",
    "Headers",
    "HttpClient",
    "Params",
    "Proxies",
    "Proxy",
    "Response",
    "Sender",
    "Source",
    "Timeouts",
    "basic_auth",
    "tls_context",
]
