"""Build arguments: ARG defaults, ``--build-arg`` overrides and the values visible.

Docker's rules: an override wins over a default; an ARG with neither has no
value (it expands to ""); an ARG in a stage without a default takes the value of
the meta-ARG (declared before the first FROM) of the same name; FROM sees only
the meta-ARGs. Overrides that no ARG declares are reported, as Docker warns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from executor.dockerfile.expansion import expand
from executor.dockerfile.instructions import Arg, Dockerfile, Stage

# Docker accepts these as build args without an ARG and never warns about them.
PREDEFINED_ARGS = frozenset(
    {"HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY",
     "http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy"}
)  # fmt: skip

_NO_VALUES: Mapping[str, str] = {}


def resolve_args(
    args: Iterable[Arg],
    overrides: Mapping[str, str],
    *,
    inherited: Mapping[str, str] = _NO_VALUES,
    env: Mapping[str, str] = _NO_VALUES,
    escape: str = "\\",
) -> dict[str, str]:
    """The values of ``args`` after overrides, in declaration order.

    ``inherited`` holds the meta-ARG values a stage may take over; ``env`` the
    stage's ENV so far, which ARG defaults may refer to (ENV wins in expansion,
    as in Docker, only for names that are not ARGs themselves).
    """
    values: dict[str, str] = {}
    for arg in args:
        for declaration in arg.declarations:
            name = declaration.name
            if name in overrides:
                values[name] = overrides[name]
            elif declaration.default is not None:
                scope = {**env, **values}
                values[name] = expand(
                    declaration.default, scope, location=arg.location, escape=escape
                )
            elif name in inherited:
                values[name] = inherited[name]
    return values


def resolve_meta_args(dockerfile: Dockerfile, overrides: Mapping[str, str]) -> dict[str, str]:
    """The values of the ARGs before the first FROM: what FROM lines may use."""
    return resolve_args(dockerfile.meta_args, overrides, escape=dockerfile.escape)


def expand_base(
    stage: Stage, meta_values: Mapping[str, str], *, escape: str = "\\"
) -> tuple[str, str | None]:
    """The stage's base image and platform with the meta-ARGs expanded."""
    location = stage.from_.location
    image = expand(stage.base, meta_values, location=location, escape=escape)
    platform = stage.platform
    if platform is not None:
        platform = expand(platform, meta_values, location=location, escape=escape)
    return image, platform


def unconsumed_build_args(
    dockerfile: Dockerfile,
    overrides: Mapping[str, str],
    *,
    stages: Sequence[Stage] | None = None,
) -> tuple[str, ...]:
    """The override names no ARG declares (in the given stages, default all), sorted."""
    declared: set[str] = set()
    args: list[Arg] = list(dockerfile.meta_args)
    for stage in dockerfile.stages if stages is None else stages:
        args.extend(item for item in stage.instructions if isinstance(item, Arg))
    for arg in args:
        declared.update(declaration.name for declaration in arg.declarations)
    return tuple(sorted(set(overrides) - declared - PREDEFINED_ARGS))
