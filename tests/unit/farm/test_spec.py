"""farm.spec: wire schemas round-trip, and every malformed input is refused by key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from executor.oci.digest import Digest
from executor.oci.manifest import Platform
from executor.oci.reference import ImageReference
from farm.batchfile import BatchItem, parse_batch_file
from farm.spec import (
    OUTCOME_STATES,
    SCHEMA_VERSION,
    BuildOutcome,
    BuildRequest,
    SpecError,
)

DIGEST = Digest.of(b"context")
IMAGE_DIGEST = Digest.of(b"manifest")


def full_request() -> BuildRequest:
    return BuildRequest(
        build_id="build-0001",
        context_digest=DIGEST,
        dockerfile="docker/Dockerfile.prod",
        destinations=(
            ImageReference.parse("127.0.0.1:5000/app:1.0"),
            ImageReference.parse("registry.example/team/app:latest"),
        ),
        build_args={"VERSION": "1.0", "EMPTY": ""},
        labels={"org.opencontainers.image.source": "https://example/app"},
        target="release",
        platform=Platform.parse("linux/arm64/v8"),
        no_push=False,
        batch_id="batch-0001",
        depends_on=("build-0000",),
        retry_of="build-000x",
        submitted_at=1_700_000_000.5,
        secrets=("npmrc", "pip.conf"),
    )


def request_json(**changes: Any) -> dict[str, Any]:
    obj = full_request().to_json()
    obj.update(changes)
    return obj


def full_outcome() -> BuildOutcome:
    return BuildOutcome(
        build_id="build-0001",
        state="SUCCESS",
        digest=IMAGE_DIGEST,
        pushed=(f"127.0.0.1:5000/app@{IMAGE_DIGEST}",),
        reason="",
        timings={"fetch": 0.5, "build": 12.0, "push": 3.25},
        layers=4,
        worker="worker-7",
    )


# -- requests ----------------------------------------------------------------------------


def test_request_round_trips_through_json_text() -> None:
    request = full_request()
    obj = json.loads(json.dumps(request.to_json()))
    assert obj["version"] == SCHEMA_VERSION
    assert BuildRequest.from_json(obj) == request


def test_minimal_request_gets_the_defaults() -> None:
    obj = {"version": 1, "build_id": "abcdefgh", "context_digest": str(DIGEST)}
    request = BuildRequest.from_json(obj)
    assert request == BuildRequest(build_id="abcdefgh", context_digest=DIGEST)
    assert request.dockerfile == "Dockerfile"
    assert request.destinations == ()
    assert BuildRequest.from_json(request.to_json()) == request


def test_request_maps_cannot_be_changed_after_validation() -> None:
    args = {"A": "1"}
    request = BuildRequest(build_id="abcdefgh", context_digest=DIGEST, build_args=args)
    args["B"] = "2"
    assert dict(request.build_args) == {"A": "1"}
    with pytest.raises(TypeError):
        request.build_args["C"] = "3"  # type: ignore[index]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"build_id": "UPPER-case"}, "'build_id': invalid build id"),
        ({"build_id": "short"}, "'build_id': invalid build id"),
        ({"build_id": 12345678}, "'build_id': want str, got int"),
        ({"context_digest": "sha256:abc"}, "'context_digest': invalid sha256 digest"),
        ({"context_digest": str(Digest.of(b"x", "sha512"))}, "'context_digest': want a sha256"),
        ({"dockerfile": "../Dockerfile"}, "'dockerfile': invalid Dockerfile path"),
        ({"dockerfile": "/etc/Dockerfile"}, "'dockerfile': invalid Dockerfile path"),
        ({"destinations": "app:1"}, "'destinations': want list, got str"),
        ({"destinations": ["ok:1", "Bad Ref"]}, "'destinations'[1]: invalid image reference"),
        ({"destinations": ["ok:1", 7]}, "'destinations'[1]: want a string, got int"),
        ({"build_args": {"A": 1}}, "'build_args'['A']: want a string, got int"),
        ({"build_args": ["A=1"]}, "'build_args': want dict, got list"),
        ({"labels": {"": "x"}}, "'labels': invalid key ''"),
        ({"target": 3}, "'target': want str, got int"),
        ({"target": ""}, "'target': empty stage name"),
        ({"platform": "linux"}, "'platform': invalid platform"),
        ({"no_push": "yes"}, "'no_push': want bool, got str"),
        ({"batch_id": "NO"}, "'batch_id': invalid build id"),
        ({"depends_on": ["ok-ok-ok", "BAD"]}, "'depends_on'[1]: invalid build id"),
        ({"depends_on": ["build-0001"]}, "'depends_on': build build-0001 depends on itself"),
        ({"retry_of": "x"}, "'retry_of': invalid build id"),
        ({"submitted_at": "now"}, "'submitted_at': want float, got str"),
        ({"submitted_at": True}, "'submitted_at': want float, got bool"),
        ({"submitted_at": -1}, "'submitted_at': want a non-negative unix time"),
        ({"secrets": "npmrc"}, "'secrets': want list, got str"),
        ({"secrets": ["ok", "../etc/shadow"]}, "'secrets'[1]: invalid secret id"),
        ({"colour": "blue"}, "unknown key 'colour'"),
    ],
)
def test_malformed_request_is_refused_naming_the_key(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match="^build request: ") as info:
        BuildRequest.from_json(request_json(**changes))
    assert message in str(info.value)
    assert info.value.temporary is False


@pytest.mark.parametrize("key", ["version", "build_id", "context_digest"])
def test_request_without_a_required_key_is_refused(key: str) -> None:
    obj = request_json()
    del obj[key]
    with pytest.raises(SpecError, match=f"build request: '{key}': missing"):
        BuildRequest.from_json(obj)


@pytest.mark.parametrize("obj", [None, [], "text", 3])
def test_request_that_is_not_an_object_is_refused(obj: Any) -> None:
    with pytest.raises(SpecError, match="build request: want a JSON object"):
        BuildRequest.from_json(obj)


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (SCHEMA_VERSION + 1, f"'version': schema version {SCHEMA_VERSION + 1} is newer"),
        (0, "'version': invalid schema version 0"),
        ("1", "'version': want int, got str"),
        (1.0, "'version': want int, got float"),
    ],
)
def test_request_version_is_checked(version: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        BuildRequest.from_json(request_json(version=version))


def test_request_built_directly_is_validated_too() -> None:
    with pytest.raises(SpecError, match="build request: 'build_id'"):
        BuildRequest(build_id="NOT OK", context_digest=DIGEST)


# -- outcomes ----------------------------------------------------------------------------


def test_outcome_round_trips_through_json_text() -> None:
    outcome = full_outcome()
    obj = json.loads(outcome.dumps())
    assert obj["version"] == SCHEMA_VERSION
    assert BuildOutcome.from_json(obj) == outcome


def test_failed_outcome_without_digest_round_trips() -> None:
    outcome = BuildOutcome(build_id="build-0001", state="FAILURE", reason="RUN exited 1")
    assert BuildOutcome.from_json(outcome.to_json()) == outcome


def test_outcome_states_are_the_terminal_states() -> None:
    assert {"SUCCESS", "FAILURE", "CANCELLED"} <= OUTCOME_STATES
    assert "QUEUED" not in OUTCOME_STATES


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"state": "WORKING"}, "'state': 'WORKING' is not one of"),
        ({"state": None}, "'state': want str, got NoneType"),
        ({"digest": "md5:00"}, "'digest': unsupported digest algorithm"),
        ({"pushed": ["127.0.0.1:5000/app:1"]}, "'pushed'[0]: pushed reference"),
        ({"timings": {"build": "fast"}}, "'timings'['build']: want a number"),
        ({"timings": {"build": -1}}, "'timings'['build']: want non-negative seconds"),
        ({"layers": -2}, "'layers': want a non-negative count"),
        ({"layers": 2.5}, "'layers': want int, got float"),
        ({"version": 99}, "'version': schema version 99 is newer"),
        ({"extra": 1}, "unknown key 'extra'"),
    ],
)
def test_malformed_outcome_is_refused_naming_the_key(changes: dict[str, Any], message: str) -> None:
    obj = full_outcome().to_json()
    obj.update(changes)
    with pytest.raises(SpecError, match="^build outcome: ") as info:
        BuildOutcome.from_json(obj)
    assert message in str(info.value)


# -- batch files -------------------------------------------------------------------------

BATCH = """
builds:
  - name: base
    context: images/base
    destinations: ["127.0.0.1:5000/base:1"]
  - name: app
    context: /abs/app
    dockerfile: docker/Dockerfile
    destinations: ["127.0.0.1:5000/app:1", "127.0.0.1:5000/app:latest"]
    build_args: {BASE: "127.0.0.1:5000/base:1"}
    labels: {team: payments}
    secrets: [npmrc]
    target: release
    depends_on: [base]
"""


def test_batch_file_parses_in_file_order(tmp_path: Path) -> None:
    items = parse_batch_file(BATCH, base_dir=tmp_path)
    assert items == (
        BatchItem(
            name="base",
            context=str(tmp_path / "images" / "base"),
            destinations=(ImageReference.parse("127.0.0.1:5000/base:1"),),
        ),
        BatchItem(
            name="app",
            context="/abs/app",
            dockerfile="docker/Dockerfile",
            destinations=(
                ImageReference.parse("127.0.0.1:5000/app:1"),
                ImageReference.parse("127.0.0.1:5000/app:latest"),
            ),
            build_args={"BASE": "127.0.0.1:5000/base:1"},
            labels={"team": "payments"},
            secrets=("npmrc",),
            target="release",
            depends_on=("base",),
        ),
    )


def test_batch_file_may_be_json(tmp_path: Path) -> None:
    text = json.dumps({"version": 1, "builds": [{"name": "one", "context": "."}]})
    (item,) = parse_batch_file(text, base_dir=tmp_path)
    assert item.context == str(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("builds: [", "batch file: not valid YAML"),
        ("- a\n- b\n", "batch file: want a JSON object, got list"),
        ("builds: []\n", "batch file: 'builds': no builds"),
        ("jobs: []\n", "batch file: unknown key 'jobs'"),
        ("version: 2\nbuilds: [{name: a, context: .}]\n", "'version': schema version 2 is newer"),
        ("builds: [{context: .}]\n", "batch file: 'builds'[0]: 'name': missing"),
        ("builds: [{name: a}]\n", "batch file: build 'a': 'context': missing"),
        ("builds: [{name: 'a b', context: .}]\n", "build 'a b': 'name': invalid name"),
        (
            "builds: [{name: a, context: ., destinations: ['ok:1', 'NOT OK']}]\n",
            "batch file: build 'a': 'destinations'[1]: invalid image reference",
        ),
        (
            "builds: [{name: a, context: ., dockerfile: ../Dockerfile}]\n",
            "batch file: build 'a': 'dockerfile': invalid Dockerfile path",
        ),
        (
            "builds: [{name: a, context: ., build_args: {X: 1}}]\n",
            "batch file: build 'a': 'build_args'['X']: want a string, got int",
        ),
        ("builds: [{name: a, context: ., tag: x}]\n", "build 'a': unknown key 'tag'"),
        (
            "builds: [{name: a, context: ., secrets: [.hidden/x]}]\n",
            "batch file: build 'a': 'secrets'[0]: invalid secret id '.hidden/x'",
        ),
        (
            "builds: [{name: a, context: .}, {name: a, context: .}]\n",
            "build 'a': 'name': defined twice",
        ),
        (
            "builds: [{name: a, context: ., depends_on: [b]}]\n",
            "build 'a': 'depends_on': no build named 'b'",
        ),
        (
            "builds: [{name: a, context: ., depends_on: [a]}]\n",
            "build 'a': 'depends_on': cycle a -> a",
        ),
        (
            "builds:\n"
            "  - {name: a, context: ., depends_on: [b]}\n"
            "  - {name: b, context: ., depends_on: [c]}\n"
            "  - {name: c, context: ., depends_on: [a]}\n",
            "'depends_on': cycle a -> b -> c -> a",
        ),
    ],
)
def test_malformed_batch_file_is_refused_naming_item_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_batch_file(text, base_dir=tmp_path)
    assert message in str(info.value)


def test_batch_file_diamond_is_not_a_cycle(tmp_path: Path) -> None:
    text = (
        "builds:\n"
        "  - {name: top, context: ., depends_on: [left, right]}\n"
        "  - {name: left, context: ., depends_on: [base]}\n"
        "  - {name: right, context: ., depends_on: [base]}\n"
        "  - {name: base, context: .}\n"
    )
    names = [item.name for item in parse_batch_file(text, base_dir=tmp_path)]
    assert names == ["top", "left", "right", "base"]
