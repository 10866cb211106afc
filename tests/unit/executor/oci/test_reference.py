import pytest

from executor.errors import InvalidReferenceError
from executor.oci.digest import Digest
from executor.oci.reference import ImageReference

HEX = "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("user/app", "docker.io", "user/app", "latest", None),
        ("index.docker.io/app", "docker.io", "library/app", "latest", None),
        ("docker.io/library/app:v1", "docker.io", "library/app", "v1", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/a/b/c:t", "localhost:5000", "a/b/c", "t", None),
        ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", "latest", None),
        ("[::1]:5000/app:x", "[::1]:5000", "app", "x", None),
        ("gcr.io/p/app@sha256:" + HEX, "gcr.io", "p/app", None, "sha256:" + HEX),
        ("gcr.io/p/app:t@sha256:" + HEX, "gcr.io", "p/app", "t", "sha256:" + HEX),
        ("Registry/app", "Registry", "app", "latest", None),
        ("a.b/x__y/z-z.q", "a.b", "x__y/z-z.q", "latest", None),
    ],
)
def test_parse_normalises_like_docker(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = ImageReference.parse(text)
    assert (ref.registry, ref.repository, ref.tag) == (registry, repository, tag)
    assert ref.digest == (Digest.parse(digest) if digest else None)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("Upper", "lowercase"),
        ("docker.io/Upper/x", "lowercase"),
        ("a//b", "path component"),
        ("app:-tag", "invalid tag"),
        ("app:" + "t" * 129, "invalid tag"),
        ("app@sha256:abc", "64 lowercase hex"),
        ("app@md5:" + HEX, "unsupported digest algorithm"),
        ("app name", "white space"),
        ("-app", "path component"),
        ("x/" + "a" * 260, "longer than 255"),
    ],
)
def test_invalid_references_say_why(text: str, why: str) -> None:
    with pytest.raises(InvalidReferenceError, match=why) as info:
        ImageReference.parse(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("text", "full", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("me/app:1", "docker.io/me/app:1", "me/app:1"),
        ("localhost:5000/app:1", "localhost:5000/app:1", "localhost:5000/app:1"),
    ],
)
def test_string_forms(text: str, full: str, familiar: str) -> None:
    ref = ImageReference.parse(text)
    assert str(ref) == full
    assert ref.familiar == familiar
    assert ImageReference.parse(str(ref)) == ref


def test_identifier_prefers_digest() -> None:
    ref = ImageReference.parse("app:1@sha256:" + HEX)
    assert ref.identifier == "sha256:" + HEX
    assert ImageReference.parse("app:1").identifier == "1"
    assert ref.with_tag("2").identifier == "2"
