"""Flag values: mounts, durations, repeated and boolean flags."""

from __future__ import annotations

import pytest

from executor.dockerfile import DockerfileError, Location, Mount, parse_dockerfile
from executor.dockerfile.flags import FlagKind, parse_duration, parse_mount, take_flags

WHERE = Location("Dockerfile", 3)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("30s", 30.0), ("1h2m3s", 3723.0), ("1.5m", 90.0), ("250ms", 0.25)],
)
def test_duration(text: str, seconds: float) -> None:
    assert parse_duration("interval", text, location=WHERE) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1", "1s2", "-1s", "1 s", "1d"])
def test_bad_duration(text: str) -> None:
    with pytest.raises(DockerfileError, match=r"^Dockerfile:3: HEALTHCHECK --interval: bad"):
        parse_duration("interval", text, location=WHERE)


@pytest.mark.parametrize(
    ("spec", "mount"),
    [
        ("type=ssh", Mount("ssh", ())),
        ("type=secret,id=a,target=/run/a", Mount("secret", (("id", "a"), ("target", "/run/a")))),
        (
            "target=/x,from=build,source=/out",
            Mount("bind", (("target", "/x"), ("from", "build"), ("source", "/out"))),
        ),
        (
            "type=cache,id=go,target=/go,readonly",
            Mount("cache", (("id", "go"), ("target", "/go"), ("readonly", "true"))),
        ),
    ],
)
def test_mount(spec: str, mount: Mount) -> None:
    assert parse_mount(spec, location=WHERE) == mount


def test_mount_get_returns_last_value() -> None:
    mount = Mount("cache", (("target", "/a"), ("id", "x"), ("target", "/b")))
    assert (mount.get("target"), mount.get("id"), mount.get("mode")) == ("/b", "x", None)


def test_take_flags_stops_at_first_word_and_keeps_rest_verbatim() -> None:
    flags, rest = take_flags(
        "--link --exclude=a --exclude=b --chown=1 --chown=2  src  --x dest",
        {"link": FlagKind.BOOL, "exclude": FlagKind.LIST, "chown": FlagKind.STRING},
        instruction="COPY",
        location=WHERE,
    )
    assert flags.flag("link")
    assert flags.list("exclude") == ("a", "b")
    assert flags.string("chown") == "2"
    assert rest == "src  --x dest"


def test_onbuild_heredoc_is_refused() -> None:
    with pytest.raises(DockerfileError) as caught:
        parse_dockerfile("FROM a\nONBUILD COPY <<EOF /x\nhi\nEOF\n")
    assert str(caught.value) == "Dockerfile:2: COPY heredoc markers do not match their bodies"
