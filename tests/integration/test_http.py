"""executor.http against real servers on 127.0.0.1: scripted ones, a proxy, and the registry.

The scripted servers count TCP connections and keep the requests they got, so reuse,
redirects and headers are checked where they arrive; the registry cases are what users
meet: blobs redirected to another host, a registry with its own certificate, a proxy.
"""

from __future__ import annotations

import io
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from executor.errors import NetworkError, RegistryError
from executor.http import HttpClient, Timeouts
from executor.oci.digest import Digest
from executor.oci.image import read_config
from executor.oci.manifest import Descriptor
from executor.oci.mediatype import MediaType
from executor.oci.reference import ImageReference
from executor.registry.auth import Credentials, StaticKeychain
from executor.registry.client import RegistryClient, RegistryConnector
from executor.registry.hosts import Endpoint, RegistryOptions
from executor.registry.remote import RegistrySource
from executor.registry.transport import RegistryTransport, RetryPolicy
from tests.support.images import PushedImage, push_layout
from tests.support.ports import LOOPBACK
from tests.support.proxy import ForwardProxy
from tests.support.registry import HtpasswdAuth, RegistryServer
from tests.support.tls import ServerCertificate
from tests.support.web import RecordingServer, Reply, Seen

QUICK = Timeouts(connect=2, read=2)
FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


class _Blocks:
    """A streamed body: blocks and their total length."""

    def __init__(self, *blocks: bytes) -> None:
        self.blocks = blocks

    def __len__(self) -> int:
        return sum(len(b) for b in self.blocks)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.blocks)


def _client() -> HttpClient:
    return HttpClient(QUICK, environ={})  # no proxies from the machine's environment


# -- connections --------------------------------------------------------------------------


def test_sequential_requests_share_one_connection() -> None:
    with RecordingServer(lambda seen: Reply(body=b"answer:" + seen.body)) as server:
        client = _client()
        for _ in range(5):
            with client.request("GET", f"{server.url}/a") as response:
                assert (response.status, response.content()) == (200, b"answer:")
        client.request("HEAD", f"{server.url}/a").close()
        assert client.request("PUT", f"{server.url}/b", body=b"whole").content() == b"answer:whole"
        streamed = client.request("PATCH", f"{server.url}/c", body=_Blocks(b"in ", b"blocks"))
        assert streamed.content() == b"answer:in blocks"
        assert server.connections == 1
    last = server.seen[-1]
    assert last.headers["content-length"] == "9"
    assert last.headers["user-agent"].startswith("farm-executor/")
    assert last.headers["accept-encoding"] == "identity"


def test_threads_share_the_pool() -> None:
    with RecordingServer(lambda seen: Reply(body=seen.target.encode())) as server:
        client = _client()
        failures: list[str] = []

        def work(worker: int) -> None:
            for index in range(10):
                path = f"/{worker}/{index}"
                body = client.request("GET", f"{server.url}{path}").content()
                if body != path.encode():
                    failures.append(f"{path}: {body!r}")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert len(server.seen) == 40
        assert server.connections <= 4


def test_a_connection_goes_back_only_after_its_answer_was_read() -> None:
    big = os.urandom(1 << 20)
    with RecordingServer(
        lambda seen: Reply(body=big if seen.target == "/big" else b"small")
    ) as server:
        client = _client()
        client.request("GET", f"{server.url}/small").close()  # a little left: read out, kept
        with client.request("GET", f"{server.url}/big") as response:
            assert response.read(10) == big[:10]  # most of a MiB left: the connection goes
        assert client.request("GET", f"{server.url}/small").content() == b"small"
        assert [s.connection for s in server.seen] == [1, 1, 2]


def test_a_server_that_closes_gets_a_new_connection() -> None:
    with RecordingServer(lambda seen: Reply(headers={"Connection": "close"}, body=b"x")) as server:
        client = _client()
        for _ in range(3):
            assert client.request("GET", server.url).content() == b"x"
        assert server.connections == 3


@contextmanager
def _raw_server(*answers: bytes, hold: bool = False) -> Iterator[str]:
    """A socket server sending each answer on a connection of its own; yields its URL.

    After its answer the server hangs up, or with `hold` keeps the connection open until
    the client closes it, so what the answer left unsaid stays unsaid; an empty answer
    says nothing at all.
    """
    listener = socket.create_server((LOOPBACK, 0))

    def serve() -> None:
        for answer in answers:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(answer)
                while (hold or not answer) and conn.recv(65536):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{listener.getsockname()[1]}/"
    finally:
        listener.close()
        thread.join(timeout=5)


def _read_in_blocks(url: str) -> bytes:
    client = HttpClient(Timeouts(connect=2, read=0.3), environ={})
    with client.request("GET", url) as response:
        return b"".join(iter(lambda: response.read(4), b""))


def _read_whole(url: str) -> bytes:
    return HttpClient(Timeouts(connect=2, read=0.3), environ={}).request("GET", url).content()


@pytest.mark.parametrize("read", [_read_in_blocks, _read_whole])
@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"", "timed out"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b", "broke off 90 bytes short"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc", "broke off"),
    ],
    ids=["silent", "short", "short-chunked"],
)
def test_an_answer_that_does_not_come_is_a_temporary_network_error(
    answer: bytes, error: str, read: Callable[[str], bytes]
) -> None:
    with _raw_server(answer) as url, pytest.raises(NetworkError, match=error) as info:
        read(url)
    assert info.value.temporary


def test_a_partly_read_answer_does_not_lend_its_connection() -> None:
    # The rest of the body never comes, so the idle connection looks alive: only
    # knowing the answer was not read to its end keeps it from being used again.
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 10
    whole = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    with _raw_server(partial, whole, hold=True) as url:
        client = _client()
        with client.request("GET", url) as response:
            assert response.read(10) == b"x" * 10
        assert client.request("GET", url).content() == b"ok"
        client.close()  # the server holds on until its connections are closed


def test_nobody_listening_is_unreachable() -> None:
    listener = socket.create_server((LOOPBACK, 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(NetworkError, match=rf"{LOOPBACK}:{port} unreachable: Connection refused"):
        _client().request("GET", f"http://{LOOPBACK}:{port}/")


# -- redirects ----------------------------------------------------------------------------


def test_spaces_and_non_ascii_in_urls_go_out_percent_encoded() -> None:
    """As requests sent them: an ADD URL or a redirect's Location may hold either."""

    def answer(seen: Seen) -> Reply:
        if seen.target.startswith("/moved"):
            return Reply(302, {"Location": "/to a/fé"})
        return Reply(body=seen.target.encode())

    with RecordingServer(answer) as server:
        client = _client()
        direct = client.request("GET", f"{server.url}/dir é/a b.tar?q=x y&kept=%2F")
        assert direct.content() == b"/dir%20%C3%A9/a%20b.tar?q=x%20y&kept=%2F"
        assert client.request("GET", f"{server.url}/moved").content() == b"/to%20a/f%C3%A9"


def test_redirects_keep_authorization_only_on_the_same_origin() -> None:
    with RecordingServer(lambda seen: Reply(body=b"elsewhere")) as other:

        def answer(seen: Seen) -> Reply:
            moves = {
                "/same": (307, "/here"),
                "/away": (307, f"{other.url}/blob?signed=1"),
                "/form": (303, "here"),
                "/loop": (302, "/loop"),
            }
            if seen.target in moves:
                status, location = moves[seen.target]
                return Reply(status, {"Location": location})
            return Reply(body=b"here")

        with RecordingServer(answer) as server:
            client = _client()
            secret = {"Authorization": "Bearer secret", "Accept": "x/y"}
            assert client.request("GET", f"{server.url}/same", headers=secret).content() == b"here"
            away = client.request("GET", f"{server.url}/away", headers=secret)
            assert away.content() == b"elsewhere"
            form = client.request(
                "POST", f"{server.url}/form", headers={"Content-Type": "a/b"}, body=b"k=v"
            )
            assert form.content() == b"here"
            with pytest.raises(NetworkError, match="more than 10 redirects") as info:
                client.request("GET", f"{server.url}/loop")
            assert not info.value.temporary
            kept = client.request("PUT", f"{server.url}/same", body=b"x", follow_redirects=False)
            assert (kept.status, kept.headers["Location"]) == (307, "/here")
            for path, status in (("/same", 307), ("/loop", 302)):
                stream = client.request("PUT", f"{server.url}{path}", body=_Blocks(b"once"))
                assert stream.status == status  # a stream is not sent twice

        first_here = next(s for s in server.seen if s.target == "/here")
        assert first_here.headers["authorization"] == "Bearer secret"
        assert [(s.method, s.target) for s in other.seen] == [("GET", "/blob?signed=1")]
        assert "authorization" not in other.seen[0].headers
        assert other.seen[0].headers["accept"] == "x/y"
        # 303: the POST became a GET without its body.
        assert [(s.method, s.body) for s in server.seen if s.target == "/here"][-1] == ("GET", b"")
        assert len([s for s in server.seen if s.target == "/loop" and s.method == "GET"]) == 11
        assert [s.body for s in server.seen if s.method == "PUT"] == [b"x", b"once", b"once"]


def test_blob_pulls_follow_the_registry_to_another_host(
    tmp_path: Path, busybox_layout: Path
) -> None:
    """A registry that sends blob GETs elsewhere with 307, as S3- or CDN-backed ones do."""
    storage = tmp_path / "registry" / "storage"

    def from_storage(seen: Seen) -> Reply:
        path = storage / seen.target.split("?")[0].lstrip("/")
        return Reply(body=path.read_bytes()) if path.is_file() else Reply(404)

    auth = HtpasswdAuth({"ann": "pw"})
    with (
        RecordingServer(from_storage) as cdn,
        RegistryServer(tmp_path / "registry", auth=auth, redirect_blobs_to=cdn.url) as registry,
    ):
        push_layout(busybox_layout, "latest", registry.host, "library/busybox", ("ann", "pw"))
        keychain = StaticKeychain({registry.host: Credentials("ann", "pw")})
        connector = RegistryConnector(RegistryOptions(), keychain, retry=FAST_RETRY)
        source = RegistrySource(connector, ImageReference.parse(f"{registry.host}/library/busybox"))
        manifest = source.get_manifest().manifest()
        read_config(source, manifest)  # the config blob, digest checked
        with source.open_blob(manifest.layers[0]) as stream:
            layer = stream.read()
        assert Digest.of(layer) == manifest.layers[0].digest
        pulled = [s for s in cdn.seen if s.method == "GET"]
        hexes = {manifest.config.digest.hex, manifest.layers[0].digest.hex}
        assert {s.target.split("/")[-2] for s in pulled} == hexes
        assert all("authorization" not in s.headers for s in pulled)


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry serving HTTPS with a self-signed certificate for 127.0.0.1."""
    workdir = tmp_path_factory.mktemp("tls-registry")
    certificate = ServerCertificate.create(workdir / "tls")
    with RegistryServer(workdir / "registry", tls=certificate) as server:
        yield server


def _https_client(registry: RegistryServer, *, verify: bool = True) -> RegistryClient:
    endpoint = Endpoint(registry.host, scheme="https", verify_tls=verify)
    transport = RegistryTransport(endpoint, StaticKeychain({}), retry=FAST_RETRY)
    return RegistryClient(transport, registry.host)


def _round_trip(client: RegistryClient, repository: str) -> None:
    """Upload a blob and read it back, digest checked."""
    data = os.urandom(70_000)
    descriptor = Descriptor(MediaType.OCI_LAYER, Digest.of(data), len(data))
    client.upload_blob(repository, descriptor, lambda: _opener(data))
    with client.open_blob(repository, descriptor) as stream:
        assert stream.read() == data


@contextmanager
def _opener(data: bytes) -> Iterator[io.BytesIO]:
    yield io.BytesIO(data)


@pytest.fixture
def system_trust(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment without CA settings: only the system's CAs are trusted."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_an_untrusted_certificate_fails_with_the_way_out(
    tls_registry: RegistryServer, system_trust: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RegistryError) as info:
        _https_client(tls_registry).blob_exists("any", _descriptor())
    message = str(info.value)
    assert f"TLS handshake with {tls_registry.host} failed" in message
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "--skip-tls-verify" in message
    assert not info.value.temporary


def test_a_handshake_cut_off_by_the_peer_is_temporary() -> None:
    """A load balancer dropping the connection mid-handshake: worth another try."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        port = listener.getsockname()[1]

        def drop_one() -> None:
            connection, _ = listener.accept()
            connection.recv(1024)  # the ClientHello
            connection.close()

        dropper = threading.Thread(target=drop_one, daemon=True)
        dropper.start()
        with pytest.raises(NetworkError, match="cut off") as info:
            _client().request("GET", f"https://{LOOPBACK}:{port}/v2/")
        dropper.join(5)
    assert info.value.temporary


def test_plain_http_answering_tls_says_insecure_registry(registry: RegistryServer) -> None:
    with pytest.raises(RegistryError, match="TLS handshake.*--insecure-registry") as info:
        _https_client(registry).blob_exists("any", _descriptor())
    assert not info.value.temporary


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"])
def test_a_trusted_certificate_works(
    tls_registry: RegistryServer, system_trust: pytest.MonkeyPatch, variable: str
) -> None:
    assert tls_registry.tls is not None
    system_trust.setenv(variable, str(tls_registry.tls.cert_path))
    _round_trip(_https_client(tls_registry), f"trusted-{variable.lower()}")


def test_skip_tls_verify_works(tls_registry: RegistryServer) -> None:
    _round_trip(_https_client(tls_registry, verify=False), "unverified")


def _descriptor() -> Descriptor:
    return Descriptor(MediaType.OCI_LAYER, Digest.of(b"nothing"), 7)


# -- proxies --------------------------------------------------------------------------------


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment without the machine's proxy settings, in either case."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_http_goes_through_the_proxy_unless_no_proxy_names_the_host(
    busybox_image: PushedImage, no_proxy_env: pytest.MonkeyPatch
) -> None:
    host = busybox_image.registry.host
    reference = ImageReference.parse(busybox_image.reference)
    with ForwardProxy(credentials=("pat", "s3cret")) as proxy:
        no_proxy_env.setenv("HTTP_PROXY", f"http://pat:s3cret@{LOOPBACK}:{proxy.port}")
        connector = RegistryConnector(RegistryOptions(), StaticKeychain({}), retry=FAST_RETRY)
        assert str(RegistrySource(connector, reference).get_manifest().digest) == (
            busybox_image.digest
        )
        assert proxy.requests[0] == f"GET http://{host}/v2/"
        assert f"GET http://{host}/v2/{busybox_image.repository}/manifests/latest" in proxy.requests

        through = len(proxy.requests)
        no_proxy_env.setenv("NO_PROXY", f"example.com,{LOOPBACK}")
        connector = RegistryConnector(RegistryOptions(), StaticKeychain({}), retry=FAST_RETRY)
        RegistrySource(connector, reference).get_manifest()
        assert len(proxy.requests) == through


def test_https_goes_through_a_connect_tunnel(
    tls_registry: RegistryServer, no_proxy_env: pytest.MonkeyPatch
) -> None:
    assert tls_registry.tls is not None
    no_proxy_env.setenv("REQUESTS_CA_BUNDLE", str(tls_registry.tls.cert_path))
    with ForwardProxy() as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        _round_trip(_https_client(tls_registry), "tunnelled")
        # One tunnel, kept alive for the ping, the upload's requests and the pull.
        assert proxy.requests == [f"CONNECT {tls_registry.host}"]
