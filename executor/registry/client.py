"""The registry HTTP API (distribution spec) for one repository at a time.

Manifests are fetched with every manifest type accepted and verified against the
digest asked for (or the ``Docker-Content-Digest`` the registry sent). Blobs
stream through a digest-verifying reader. Uploads are monolithic below
``CHUNKED_UPLOAD_THRESHOLD`` and chunked above it, and restart from scratch on a
temporary failure, since a half-sent chunk leaves the upload session unknown.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import BinaryIO

from executor.errors import (
    DigestMismatchError,
    ManifestError,
    NetworkError,
    RegistryError,
    RegistryUnavailableError,
)
from executor.http import Response
from executor.oci.digest import Digest, Reader, VerifyingReader
from executor.oci.image import BlobOpener, RawManifest
from executor.oci.manifest import Descriptor
from executor.oci.mediatype import ACCEPTED_MANIFEST_TYPES
from executor.registry.auth import Keychain
from executor.registry.challenge import TokenCache, repository_scope
from executor.registry.hosts import Endpoint, RegistryOptions
from executor.registry.transport import RegistryTransport, RetryPolicy

# Registries cap manifests at a few MiB; refuse anything bigger before reading it.
MAX_MANIFEST_BYTES = 4 << 20
# Blobs above this go up in chunks, so one failure does not resend hundreds of MiB
# to a registry that kept part of it, and so proxies with body limits cope.
CHUNKED_UPLOAD_THRESHOLD = 64 << 20
UPLOAD_CHUNK_BYTES = 16 << 20
# Upload bodies stream from the source in blocks of this size: large enough that
# per-block Python costs vanish, small enough that parallel uploads stay light.
SEND_BLOCK_BYTES = 1 << 20
_ACCEPT = ", ".join(ACCEPTED_MANIFEST_TYPES)


class _BodyPart:
    """The next ``length`` bytes of a stream as a request body, read in blocks.

    ``__len__`` gives the Content-Length, and the blocks go out as they come
    (an ``executor.http.Blocks`` body), never gathered into one buffer.
    ``final``: the part ends the blob, so the stream must end with it; the probe
    for that end happens before the last block goes out, so a source that fails
    its digest check (a VerifyingReader) stops the request before it completes.
    """

    def __init__(self, stream: Reader, length: int, *, final: bool, what: str) -> None:
        self._stream = stream
        self._length = length
        self._final = final
        self._what = what

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        left = self._length
        while left:
            block = self._stream.read(min(left, SEND_BLOCK_BYTES))
            if not block:
                raise DigestMismatchError(
                    f"{self._what}: the source ended {left} bytes short of the descriptor's size"
                )
            left -= len(block)
            if not left and self._final:
                _check_end(self._stream, self._what)
            yield block


def _check_end(stream: Reader, what: str) -> None:
    """Read past the blob's last byte: a verifying source checks its digest here."""
    if stream.read(1):
        raise DigestMismatchError(f"{what}: the source has more bytes than the descriptor says")


class RegistryClient:
    """API calls against one endpoint; every method names the repository it acts on."""

    def __init__(self, transport: RegistryTransport, registry: str) -> None:
        self.transport = transport
        self.registry = registry  # the name in references (docker.io, not registry-1...)

    @property
    def host(self) -> str:
        return self.transport.endpoint.host

    def _where(self, repository: str) -> str:
        return f"{self.registry}/{repository}"

    # -- manifests ------------------------------------------------------------

    def get_manifest(self, repository: str, identifier: str) -> RawManifest:
        """Fetch a manifest by tag or digest, verified."""
        what = f"pulling manifest {self._where(repository)}{_sep(identifier)}{identifier}"
        response = self.transport.request(
            "GET",
            f"/v2/{repository}/manifests/{identifier}",
            scopes=frozenset({repository_scope(repository, ["pull"])}),
            what=what,
            headers={"Accept": _ACCEPT},
            stream=True,
        )
        with response:
            declared_len = response.headers.get("Content-Length")
            if declared_len and int(declared_len) > MAX_MANIFEST_BYTES:
                raise ManifestError(f"{what}: manifest of {declared_len} bytes is too big")
            try:
                data = response.read(MAX_MANIFEST_BYTES + 1)
            except NetworkError as exc:
                raise RegistryUnavailableError(f"{what}: {exc}") from exc
            if len(data) > MAX_MANIFEST_BYTES:
                raise ManifestError(f"{what}: manifest is over {MAX_MANIFEST_BYTES} bytes")
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            header_digest = response.headers.get("Docker-Content-Digest")
        raw = RawManifest.of(data, content_type)
        if identifier.startswith("sha"):
            Digest.parse(identifier).verify(data, what)
        elif header_digest:
            try:
                expected = Digest.parse(header_digest)
            except ValueError:
                expected = None
            if expected is not None and expected.algorithm == "sha256" and expected != raw.digest:
                raise DigestMismatchError(
                    f"{what}: registry says {expected} but the body hashes to {raw.digest}"
                )
        return raw

    def manifest_digest(self, repository: str, identifier: str) -> Digest | None:
        """HEAD a manifest: its digest if it exists, None if not."""
        response = self.transport.request(
            "HEAD",
            f"/v2/{repository}/manifests/{identifier}",
            scopes=frozenset({repository_scope(repository, ["pull"])}),
            what=f"checking manifest {self._where(repository)}{_sep(identifier)}{identifier}",
            headers={"Accept": _ACCEPT},
            ok=frozenset({200, 404}),
        )
        if response.status == 404:
            return None
        header = response.headers.get("Docker-Content-Digest")
        return Digest.parse(header) if header else None

    def put_manifest(self, repository: str, reference: str, raw: RawManifest) -> Digest:
        """Upload a manifest under a tag or its digest."""
        what = f"pushing manifest {self._where(repository)}{_sep(reference)}{reference}"
        response = self.transport.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            scopes=frozenset({repository_scope(repository, ["pull", "push"])}),
            what=what,
            headers={"Content-Type": raw.media_type},
            body=raw.data,
            ok=frozenset({200, 201, 202}),
        )
        header = response.headers.get("Docker-Content-Digest")
        if header and Digest.parse(header) != raw.digest:
            raise DigestMismatchError(f"{what}: registry stored {header}, we sent {raw.digest}")
        return raw.digest

    # -- blobs ----------------------------------------------------------------

    @contextmanager
    def open_blob(self, repository: str, descriptor: Descriptor) -> Iterator[BinaryIO]:
        """Stream a blob (following redirects), verifying digest and size as it is read."""
        what = f"pulling blob {descriptor.digest.short} from {self._where(repository)}"
        response = self.transport.request(
            "GET",
            f"/v2/{repository}/blobs/{descriptor.digest}",
            scopes=frozenset({repository_scope(repository, ["pull"])}),
            what=what,
            stream=True,
        )
        with response:
            reader = VerifyingReader(response, descriptor.digest, descriptor.size, what)
            yield reader  # type: ignore[misc]

    def blob_exists(
        self, repository: str, descriptor: Descriptor, *, for_push: bool = False
    ) -> bool:
        """HEAD a blob. ``for_push`` asks for the push scope, so one token serves a whole push."""
        actions = ["pull", "push"] if for_push else ["pull"]
        response = self.transport.request(
            "HEAD",
            f"/v2/{repository}/blobs/{descriptor.digest}",
            scopes=frozenset({repository_scope(repository, actions)}),
            what=f"checking blob {descriptor.digest.short} in {self._where(repository)}",
            ok=frozenset({200, 404}),
        )
        return response.status == 200

    def push_blob(
        self,
        repository: str,
        descriptor: Descriptor,
        opener: BlobOpener,
        *,
        mount_from: Sequence[str] = (),
    ) -> bool:
        """Mount the blob from one of ``mount_from``, or else upload it; True if mounted.

        A mount the registry cannot do opens an upload session instead (202); the
        upload goes into the last such session, so a failed mount costs no round trip
        more than a plain upload (two requests for a small blob: the POST and the PUT).
        """
        session = None
        for index, other in enumerate(mount_from):
            mounted, session = self._mount_or_start(repository, descriptor, other)
            if mounted:
                return True
            if session is not None and index < len(mount_from) - 1:
                self._cancel_upload(repository, session)
        self.upload_blob(repository, descriptor, opener, session=session)
        return False

    def _mount_or_start(
        self, repository: str, descriptor: Descriptor, from_repository: str
    ) -> tuple[bool, str | None]:
        """POST a mount: whether it mounted, and if not, the upload session it opened
        instead (None when the registry named none: the upload opens its own)."""
        what = (
            f"mounting blob {descriptor.digest.short} from {from_repository} into "
            f"{self._where(repository)}"
        )
        response = self.transport.request(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            scopes=frozenset(
                {
                    repository_scope(repository, ["pull", "push"]),
                    repository_scope(from_repository, ["pull"]),
                }
            ),
            what=what,
            params={"mount": str(descriptor.digest), "from": from_repository},
            ok=frozenset({201, 202}),
        )
        with response:
            if response.status == 201:
                return True, None
            location = response.headers.get("Location")
        return False, location or None  # a URL or a path: transport.request takes either

    def upload_blob(
        self,
        repository: str,
        descriptor: Descriptor,
        opener: BlobOpener,
        *,
        session: str | None = None,
    ) -> None:
        """Upload a blob, restarting the whole upload on a temporary failure.

        ``session``: an upload session already open (a failed mount's), used by the
        first attempt; a restart opens a new one.
        """
        what = f"pushing blob {descriptor.digest.short} to {self._where(repository)}"
        policy = self.transport.retry_policy
        attempt = 0
        while True:
            try:
                self._upload_once(repository, descriptor, opener, what, session)
                return
            except RegistryError as exc:
                attempt += 1
                if not exc.temporary or attempt >= policy.attempts:
                    raise
                session = None
                policy.sleep(policy.delay(attempt))

    def _upload_once(
        self,
        repository: str,
        descriptor: Descriptor,
        opener: BlobOpener,
        what: str,
        session: str | None,
    ) -> None:
        scopes = frozenset({repository_scope(repository, ["pull", "push"])})
        location = session
        if location is None:
            start = self.transport.request(
                "POST",
                f"/v2/{repository}/blobs/uploads/",
                scopes=scopes,
                what=what,
                ok=frozenset({202}),
            )
            with start:
                location = self._location(start, what)
        size = descriptor.size
        with opener() as source:
            body: _BodyPart | bytes = b""
            if size > CHUNKED_UPLOAD_THRESHOLD:
                location = self._send_chunks(location, source, size, scopes, what)
            elif size:
                body = _BodyPart(source, size, final=True, what=what)
            else:
                _check_end(source, what)
            self.transport.request(
                "PUT",
                location,
                scopes=scopes,
                what=what,
                params={"digest": str(descriptor.digest)},
                headers={"Content-Type": "application/octet-stream"},
                body=body,
                ok=frozenset({201, 204}),
                retry=False,
            )

    def _send_chunks(
        self,
        location: str,
        source: BinaryIO,
        size: int,
        scopes: frozenset[str],
        what: str,
    ) -> str:
        for offset in range(0, size, UPLOAD_CHUNK_BYTES):
            length = min(UPLOAD_CHUNK_BYTES, size - offset)
            end = offset + length - 1
            response = self.transport.request(
                "PATCH",
                location,
                scopes=scopes,
                what=f"{what} (bytes {offset}-{end})",
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{end}",
                },
                body=_BodyPart(source, length, final=end == size - 1, what=what),
                ok=frozenset({202}),
                retry=False,
            )
            location = self._location(response, what)
        return location

    def _location(self, response: Response, what: str) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"{what}: registry sent no upload Location")
        return location  # a URL or a path: transport.request takes either

    def _cancel_upload(self, repository: str, location: str) -> None:
        # An abandoned session expires by itself in the registry, so failing here is fine.
        with contextlib.suppress(RegistryError):
            self.transport.request(
                "DELETE",
                location,
                scopes=frozenset({repository_scope(repository, ["pull", "push"])}),
                what="cancelling an upload",
                ok=frozenset({200, 202, 204, 404}),
                retry=False,
            )


def _sep(identifier: str) -> str:
    return "@" if identifier.startswith("sha") and ":" in identifier else ":"


class RegistryConnector:
    """Makes clients for registries, sharing credentials, tokens and connections."""

    def __init__(
        self,
        options: RegistryOptions,
        keychain: Keychain,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.options = options
        self._keychain = keychain
        self._retry = retry
        self._tokens = TokenCache()
        self._lock = threading.Lock()
        self._transports: dict[Endpoint, RegistryTransport] = {}

    def _client(self, endpoint: Endpoint, registry: str) -> RegistryClient:
        with self._lock:
            transport = self._transports.get(endpoint)
            if transport is None:
                transport = RegistryTransport(
                    endpoint,
                    self._keychain,
                    registry=endpoint.host if endpoint.mirror else registry,
                    retry=self._retry,
                    tokens=self._tokens,
                )
                self._transports[endpoint] = transport
        return RegistryClient(transport, registry)

    def pull_clients(self, registry: str) -> list[RegistryClient]:
        """Clients for the mirrors of ``registry`` (in order), then for itself."""
        return [self._client(e, registry) for e in self.options.pull_endpoints(registry)]

    def push_client(self, registry: str) -> RegistryClient:
        return self._client(self.options.push_endpoint(registry), registry)
