"""Self-signed certificates: the token issuer's signing certificate, and TLS registries'.

One EC P-256 key per certificate; the certificate is its own CA (a trust anchor a client
can be pointed at with SSL_CERT_FILE or REQUESTS_CA_BUNDLE), valid from an hour ago for
two days, and names its hosts as subject alternative names.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ports import LOOPBACK

__all__ = ["ServerCertificate", "self_signed_certificate"]

# The certificate outlives any test run; its start is backdated against clock skew.
_CERT_BACKDATE = datetime.timedelta(hours=1)
_CERT_LIFETIME = datetime.timedelta(days=2)


def self_signed_certificate(
    key: ec.EllipticCurvePrivateKey, common_name: str, *, hosts: Sequence[str] = ()
) -> x509.Certificate:
    """A CA certificate for `key`; `hosts` (addresses or DNS names) become its SANs."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CERT_BACKDATE)
        .not_valid_after(now + _CERT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(host) for host in hosts]), critical=False
        )
    return builder.sign(key, hashes.SHA256())


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


@dataclass(frozen=True)
class ServerCertificate:
    """A server's certificate and key as PEM files, for 127.0.0.1 and localhost."""

    cert_path: Path
    key_path: Path

    @classmethod
    def create(
        cls, workdir: Path, *, hosts: Sequence[str] = (LOOPBACK, "localhost")
    ) -> ServerCertificate:
        """Make a key and its certificate and write both under `workdir`."""
        workdir.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self_signed_certificate(key, hosts[0], hosts=hosts)
        files = cls(workdir / "server.crt", workdir / "server.key")
        files.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files.key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return files
