import hashlib
import io

import pytest

from executor.errors import DigestMismatchError, InvalidDigestError
from executor.oci.digest import Digest, VerifyingReader, copy_verified


def test_of_and_parse_round_trip() -> None:
    d = Digest.of(b"hello")
    assert str(d) == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert Digest.parse(str(d)) == d
    assert d.short == str(d)[:19]


@pytest.mark.parametrize(
    "text", ["sha256", "sha256:", "sha256:ABC" + "0" * 61, "sha1:" + "0" * 40, "sha256:" + "0" * 63]
)
def test_bad_digests_are_rejected(text: str) -> None:
    with pytest.raises(InvalidDigestError):
        Digest.parse(text)


def test_verify_names_both_digests() -> None:
    with pytest.raises(DigestMismatchError, match="want sha256:.*got sha256:"):
        Digest.of(b"a").verify(b"b", "blob")


def test_verifying_reader_checks_at_eof() -> None:
    good = VerifyingReader(io.BytesIO(b"data"), Digest.of(b"data"), 4, "blob")
    assert good.read() == b"data"
    assert good.read() == b""
    bad = VerifyingReader(io.BytesIO(b"datb"), Digest.of(b"data"), 4, "blob")
    bad.read(2)
    bad.read(2)
    with pytest.raises(DigestMismatchError, match="digest mismatch"):
        bad.read(2)


def test_verifying_reader_stops_oversized_streams_early() -> None:
    reader = VerifyingReader(io.BytesIO(b"x" * 10), Digest.of(b"x" * 4), 4, "blob")
    with pytest.raises(DigestMismatchError, match="more than the 4 bytes"):
        reader.read(10)


def test_copy_verified_size_and_digest() -> None:
    sink = io.BytesIO()
    assert copy_verified(io.BytesIO(b"abc"), sink, Digest.of(b"abc"), expected_size=3) == 3
    assert sink.getvalue() == b"abc"
    with pytest.raises(DigestMismatchError, match="size mismatch"):
        copy_verified(io.BytesIO(b"abc"), io.BytesIO(), Digest.of(b"abc"), expected_size=4)
