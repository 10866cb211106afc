"""The executor's one exception tree.

Every error the executor raises on purpose derives from :class:`ExecutorError` and
knows whether trying again could help (``temporary``)::

    ExecutorError
    ├── InvalidReferenceError      an image reference that does not parse
    ├── InvalidDigestError         a digest string that does not parse
    ├── DigestMismatchError        bytes whose digest is not the one promised
    ├── ManifestError              a manifest, index or config that is not valid
    ├── PlatformNotFoundError      an index with no entry for the wanted platform
    ├── LayoutError                an OCI layout or docker-archive that cannot be used
    ├── LayerError                 a layer that cannot be written or read
    ├── CredentialsError           a credential store or helper that failed
    ├── SandboxError               no sandbox backend can run the step here
    ├── StepFailedError            a RUN step exited non-zero (the user's build failed)
    ├── BuildInputError            a build input that is wrong: a missing COPY source,
    │                              an unknown stage, a secret that was not given
    ├── NetworkError               a server that could not be reached, or stopped answering
    │   │                          (temporary)
    │   └── TLSError               a TLS handshake that failed: an untrusted certificate,
    │                              or a server speaking plain HTTP (permanent)
    └── RegistryError              the registry said no, or could not be reached
        ├── AuthenticationError    401: no credentials, or wrong ones
        ├── AuthorizationError     403: credentials that may not do this
        ├── NotFoundError          404: no such repository, tag or blob
        └── RegistryUnavailableError  connection errors, 429 and 5xx (temporary)

Messages read as a chain of what was being done, for example
``pulling 127.0.0.1:5000/app@sha256:ab12..: 401 UNAUTHORIZED: authentication required``.
"""

from __future__ import annotations


class ExecutorError(Exception):
    """Base of every error the executor raises on purpose."""

    temporary: bool = False

    def __init__(self, message: str, *, temporary: bool | None = None) -> None:
        super().__init__(message)
        if temporary is not None:
            self.temporary = temporary


class InvalidReferenceError(ExecutorError):
    """An image reference that does not follow the distribution grammar."""


class InvalidDigestError(ExecutorError):
    """A digest string that is not ``algorithm:hex`` of a supported algorithm."""


class DigestMismatchError(ExecutorError):
    """Content whose digest differs from the descriptor that announced it."""


class ManifestError(ExecutorError):
    """A manifest, index or image config that is malformed or of an unknown type."""


class PlatformNotFoundError(ExecutorError):
    """An image index that has no manifest for the requested platform."""


class LayoutError(ExecutorError):
    """An OCI image layout or docker-archive that is missing, malformed or unwritable."""


class LayerError(ExecutorError):
    """A layer tarball that cannot be written or read."""


class CredentialsError(ExecutorError):
    """A docker config file or credential helper that could not give credentials."""


class SandboxError(ExecutorError):
    """A sandbox backend that is unavailable on this host or failed to start a step."""


class StepFailedError(ExecutorError):
    """A RUN step that exited non-zero; the message has the line, status and output tail."""

    def __init__(self, message: str, *, exit_code: int, tail: tuple[str, ...] = ()) -> None:
        super().__init__(message, temporary=False)
        self.exit_code = exit_code
        self.tail = tail


class BuildInputError(ExecutorError):
    """A build input that is wrong: a missing COPY source, an unknown stage or secret."""


class NetworkError(ExecutorError):
    """A connection that failed, timed out or broke off before the answer was complete."""

    temporary = True


class TLSError(NetworkError):
    """A TLS handshake that failed; trying again gives the same answer."""

    temporary = False


class RegistryError(ExecutorError):
    """The registry refused a request or could not be reached.

    ``status`` is the HTTP status (``None`` for connection errors) and ``codes``
    the error codes from the registry's JSON error body, if it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        codes: tuple[str, ...] = (),
        temporary: bool | None = None,
    ) -> None:
        super().__init__(message, temporary=temporary)
        self.status = status
        self.codes = codes


class AuthenticationError(RegistryError):
    """401 from the registry or the token service."""


class AuthorizationError(RegistryError):
    """403 from the registry or the token service."""


class NotFoundError(RegistryError):
    """404: the repository, tag, manifest or blob does not exist."""


class RegistryUnavailableError(RegistryError):
    """The registry could not be reached, was overloaded (429) or failed (5xx)."""

    temporary = True
