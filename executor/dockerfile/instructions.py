"""One frozen dataclass per Dockerfile instruction.

Word-valued fields hold the text as written (quotes and escapes intact): expanding
them is a separate step (:func:`executor.dockerfile.expansion.expand`) because the
environment is only known while the stage is built. RUN, CMD and ENTRYPOINT are
never expanded by the builder; the shell does it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where an instruction starts: the Dockerfile's name and a 1-based line."""

    file: str
    line: int


@dataclass(frozen=True)
class Heredoc:
    """One here-document: ``<<NAME`` (``expand``) or ``<<'NAME'`` / ``<<"NAME"``.

    ``body`` already has leading tabs removed when the marker was ``<<-``; it ends
    with a newline when it has any line at all, as Docker writes it.
    """

    name: str
    body: str
    expand: bool
    strip_tabs: bool


@dataclass(frozen=True)
class Mount:
    """``RUN --mount=type=...`` with its remaining ``key=value`` options, in order."""

    type: str
    options: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        """The value of option ``key`` (the last one given), or ``None``."""
        found = None
        for name, value in self.options:
            if name == key:
                found = value
        return found


@dataclass(frozen=True)
class KeyValue:
    """One ``key=value`` pair of ENV, LABEL or ARG (raw words, not expanded)."""

    key: str
    value: str


@dataclass(frozen=True)
class ArgDeclaration:
    """One ``ARG name`` or ``ARG name=default`` (the default is a raw word)."""

    name: str
    default: str | None


@dataclass(frozen=True)
class From:
    """``FROM [--platform=P] image [AS name]``; ``image`` may be ``scratch``."""

    image: str
    name: str | None
    platform: str | None
    location: Location
    original: str


@dataclass(frozen=True)
class Run:
    """``RUN``: ``command`` is a string in shell form and a tuple in exec form."""

    command: tuple[str, ...] | str
    shell_form: bool
    mounts: tuple[Mount, ...]
    network: str | None
    heredocs: tuple[Heredoc, ...]
    location: Location
    original: str


@dataclass(frozen=True)
class Cmd:
    """``CMD``: shell form (a string) or exec form (a tuple)."""

    command: tuple[str, ...] | str
    shell_form: bool
    location: Location
    original: str


@dataclass(frozen=True)
class Entrypoint:
    """``ENTRYPOINT``: shell form (a string) or exec form (a tuple)."""

    command: tuple[str, ...] | str
    shell_form: bool
    location: Location
    original: str


@dataclass(frozen=True)
class Env:
    """``ENV a=b c=d`` or the legacy ``ENV a b c`` (one pair, the rest is the value)."""

    pairs: tuple[KeyValue, ...]
    location: Location
    original: str


@dataclass(frozen=True)
class Arg:
    """``ARG name[=default] ...``."""

    declarations: tuple[ArgDeclaration, ...]
    location: Location
    original: str


@dataclass(frozen=True)
class Label:
    """``LABEL k=v ...``."""

    pairs: tuple[KeyValue, ...]
    location: Location
    original: str


@dataclass(frozen=True)
class Expose:
    """``EXPOSE 80 443/udp ...`` (raw words)."""

    ports: tuple[str, ...]
    location: Location
    original: str


@dataclass(frozen=True)
class Volume:
    """``VOLUME ["/a", "/b"]`` or ``VOLUME /a /b``."""

    paths: tuple[str, ...]
    location: Location
    original: str


@dataclass(frozen=True)
class User:
    """``USER name[:group]``."""

    user: str
    location: Location
    original: str


@dataclass(frozen=True)
class Workdir:
    """``WORKDIR path``."""

    path: str
    location: Location
    original: str


@dataclass(frozen=True)
class Copy:
    """``COPY`` and ``ADD`` (``add`` tells them apart; only ADD has ``checksum``).

    Heredoc sources appear in ``sources`` as their marker (``<<EOF``) and their
    bodies in ``heredocs``, in the same order.
    """

    sources: tuple[str, ...]
    dest: str
    from_: str | None
    chown: str | None
    chmod: str | None
    link: bool
    parents: bool
    excludes: tuple[str, ...]
    checksum: str | None
    add: bool
    heredocs: tuple[Heredoc, ...]
    location: Location
    original: str


@dataclass(frozen=True)
class Shell:
    """``SHELL ["executable", "arg", ...]`` (JSON form only)."""

    command: tuple[str, ...]
    location: Location
    original: str


@dataclass(frozen=True)
class Healthcheck:
    """``HEALTHCHECK NONE`` (``command`` is ``None``) or ``HEALTHCHECK [opts] CMD ...``.

    Durations are in seconds; ``None`` means the option was not given.
    """

    command: tuple[str, ...] | str | None
    shell_form: bool
    interval: float | None
    timeout: float | None
    start_period: float | None
    start_interval: float | None
    retries: int | None
    location: Location
    original: str


@dataclass(frozen=True)
class StopSignal:
    """``STOPSIGNAL signal``."""

    signal: str
    location: Location
    original: str


@dataclass(frozen=True)
class Maintainer:
    """``MAINTAINER name`` (deprecated, but still accepted)."""

    name: str
    location: Location
    original: str


@dataclass(frozen=True)
class OnBuild:
    """``ONBUILD <instruction>``: the trigger, parsed, stored for child images."""

    trigger: Instruction
    location: Location
    original: str


Instruction = (
    Run
    | Cmd
    | Entrypoint
    | Env
    | Arg
    | Label
    | Expose
    | Volume
    | User
    | Workdir
    | Copy
    | Shell
    | Healthcheck
    | StopSignal
    | Maintainer
    | OnBuild
)


@dataclass(frozen=True)
class Stage:
    """One ``FROM`` and the instructions that follow it."""

    index: int
    name: str | None
    base: str
    platform: str | None
    from_: From
    instructions: tuple[Instruction, ...]


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile: directives, the ARGs before the first FROM, the stages."""

    filename: str
    directives: tuple[tuple[str, str], ...]
    escape: str
    meta_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]
