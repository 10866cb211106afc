"""TLS settings: what is trusted, from where, and what verification is off."""

from __future__ import annotations

import ssl
from pathlib import Path

import certifi
import pytest

from executor.errors import TLSError
from executor.http import tls_context

_CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


@pytest.fixture
def no_ca_settings(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _cas(context: ssl.SSLContext) -> int:
    return context.cert_store_stats()["x509_ca"]


def test_verification_off_checks_neither_chain_nor_name() -> None:
    context = tls_context(verify=False, environ={"REQUESTS_CA_BUNDLE": "/nonexistent"})
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)


def test_the_system_cas_are_trusted_by_default(no_ca_settings: pytest.MonkeyPatch) -> None:
    context = tls_context(verify=True, environ={})
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert _cas(context) == _cas(ssl.create_default_context())


def test_a_bundle_variable_replaces_the_system_cas(
    no_ca_settings: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundle = tmp_path / "one.pem"
    pem = Path(certifi.where()).read_text()
    bundle.write_text(pem[: pem.index("-----END CERTIFICATE-----") + 26])
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        assert _cas(tls_context(verify=True, environ={variable: str(bundle)})) == 1


def test_a_missing_bundle_is_a_tls_error(no_ca_settings: pytest.MonkeyPatch) -> None:
    with pytest.raises(TLSError, match="loading CA certificates from /nonexistent") as info:
        tls_context(verify=True, environ={"REQUESTS_CA_BUNDLE": "/nonexistent"})
    assert not info.value.temporary


def test_without_a_system_store_certifi_is_trusted(no_ca_settings: pytest.MonkeyPatch) -> None:
    no_ca_settings.setenv("SSL_CERT_FILE", "/nonexistent")
    no_ca_settings.setenv("SSL_CERT_DIR", "/nonexistent")
    assert _cas(ssl.create_default_context()) == 0  # the premise: no CA store at all
    expected = ssl.create_default_context(cafile=certifi.where())
    assert _cas(tls_context(verify=True, environ={})) == _cas(expected) > 0
