"""Build args: defaults, overrides, meta-ARGs in FROM, unconsumed overrides."""

from __future__ import annotations

from executor.dockerfile import (
    Arg,
    parse_dockerfile,
    resolve_args,
    resolve_meta_args,
    unconsumed_build_args,
)
from executor.dockerfile.buildargs import expand_base

TEXT = (
    "ARG REGISTRY=docker.io\n"
    "ARG TAG=3.19\n"
    "ARG PLATFORM\n"
    "FROM --platform=${PLATFORM:-linux/amd64} ${REGISTRY}/library/alpine:${TAG} AS base\n"
    "ARG TAG\n"
    "ARG VERSION=1.0\n"
    "ARG DERIVED=v${VERSION}-${TAG}\n"
    "ARG NOVALUE\n"
    "FROM base\n"
    "ARG LATE=x\n"
)


def stage_args(index: int) -> list[Arg]:
    stage = parse_dockerfile(TEXT).stages[index]
    return [item for item in stage.instructions if isinstance(item, Arg)]


def test_arg_before_from_is_used_in_from() -> None:
    dockerfile = parse_dockerfile(TEXT)
    meta = resolve_meta_args(dockerfile, {})
    assert meta == {"REGISTRY": "docker.io", "TAG": "3.19"}
    assert expand_base(dockerfile.stages[0], meta) == (
        "docker.io/library/alpine:3.19",
        "linux/amd64",
    )


def test_build_arg_overrides_meta_arg_in_from() -> None:
    dockerfile = parse_dockerfile(TEXT)
    meta = resolve_meta_args(dockerfile, {"TAG": "edge", "PLATFORM": "linux/arm64"})
    assert expand_base(dockerfile.stages[0], meta) == (
        "docker.io/library/alpine:edge",
        "linux/arm64",
    )


def test_stage_args_inherit_meta_values_and_expand_defaults() -> None:
    meta = resolve_meta_args(parse_dockerfile(TEXT), {})
    values = resolve_args(stage_args(0), {}, inherited=meta)
    # REGISTRY is not redeclared in the stage, so it is not visible there.
    assert values == {"TAG": "3.19", "VERSION": "1.0", "DERIVED": "v1.0-3.19"}


def test_overrides_win_over_defaults_and_feed_later_defaults() -> None:
    meta = resolve_meta_args(parse_dockerfile(TEXT), {"TAG": "t"})
    values = resolve_args(
        stage_args(0), {"TAG": "t", "VERSION": "2", "NOVALUE": "given"}, inherited=meta
    )
    assert values == {"TAG": "t", "VERSION": "2", "DERIVED": "v2-t", "NOVALUE": "given"}


def test_arg_default_may_use_env() -> None:
    (arg,) = parse_dockerfile("FROM scratch\nARG P=${HOME}/bin\n").stages[0].instructions
    assert isinstance(arg, Arg)
    assert resolve_args([arg], {}, env={"HOME": "/root"}) == {"P": "/root/bin"}


def test_unconsumed_overrides_are_reported() -> None:
    dockerfile = parse_dockerfile(TEXT)
    overrides = {"TAG": "1", "LATE": "2", "TYPO": "3", "HTTP_PROXY": "http://p", "ZZ": ""}
    assert unconsumed_build_args(dockerfile, overrides) == ("TYPO", "ZZ")


def test_unconsumed_only_counts_the_given_stages() -> None:
    dockerfile = parse_dockerfile(TEXT)
    overrides = {"LATE": "2", "VERSION": "3"}
    assert unconsumed_build_args(dockerfile, overrides, stages=dockerfile.stages[:1]) == ("LATE",)
