"""The Dockerfile front end: parse into typed instructions, expand words, resolve ARGs.

Nothing here runs anything. The one error is :class:`DockerfileError`
(an :class:`executor.errors.ExecutorError`), whose message starts with
``FILE:LINE: ``::

    ExecutorError
    └── DockerfileError    a Dockerfile that cannot be parsed or expanded
"""

from executor.dockerfile.buildargs import (
    PREDEFINED_ARGS,
    expand_base,
    resolve_args,
    resolve_meta_args,
    unconsumed_build_args,
)
from executor.dockerfile.errors import DockerfileError
from executor.dockerfile.expansion import EXPANDING_INSTRUCTIONS, expand, split_words
from executor.dockerfile.instructions import (
    Arg,
    ArgDeclaration,
    Cmd,
    Copy,
    Dockerfile,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Heredoc,
    Instruction,
    KeyValue,
    Label,
    Location,
    Maintainer,
    Mount,
    OnBuild,
    Run,
    Shell,
    Stage,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from executor.dockerfile.parser import parse_dockerfile

__all__ = [  # noqa: RUF022 - plain sorted(), as tests/unit/test_exported_members.py checks
    "Arg",
    "ArgDeclaration",
    "Cmd",
    "Copy",
    "Dockerfile",
    "DockerfileError",
    "EXPANDING_INSTRUCTIONS",
    "Entrypoint",
    "Env",
    "Expose",
    "From",
    "Healthcheck",
    "Heredoc",
    "Instruction",
    "KeyValue",
    "Label",
    "Location",
    "Maintainer",
    "Mount",
    "OnBuild",
    "PREDEFINED_ARGS",
    "Run",
    "Shell",
    "Stage",
    "StopSignal",
    "User",
    "Volume",
    "Workdir",
    "expand",
    "expand_base",
    "parse_dockerfile",
    "resolve_args",
    "resolve_meta_args",
    "split_words",
    "unconsumed_build_args",
]
