"""One parsing function per instruction, and the one table that maps names to them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from executor.dockerfile.errors import DockerfileError
from executor.dockerfile.expansion import split_words
from executor.dockerfile.flags import (
    NETWORK_MODES,
    FlagKind,
    Flags,
    parse_duration,
    parse_mount,
    take_flags,
)
from executor.dockerfile.heredocs import is_marker
from executor.dockerfile.instructions import (
    Arg,
    ArgDeclaration,
    Cmd,
    Copy,
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
    OnBuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
)


@dataclass(frozen=True)
class Line:
    """One instruction as read: its keyword, arguments, place and heredocs."""

    keyword: str
    arguments: str
    location: Location
    escape: str
    heredocs: tuple[Heredoc, ...] = ()

    @property
    def original(self) -> str:
        return f"{self.keyword} {self.arguments}".rstrip()

    def fail(self, problem: str) -> DockerfileError:
        return DockerfileError(self.location.file, self.location.line, problem)

    def flags(self, accepted: dict[str, FlagKind]) -> tuple[Flags, str]:
        return take_flags(
            self.arguments, accepted, instruction=self.keyword, location=self.location
        )

    def require(self, text: str) -> str:
        if not text.strip():
            raise self.fail(f"{self.keyword} requires at least one argument")
        return text.strip()


def _json_list(text: str) -> tuple[str, ...] | None:
    """The strings of a JSON array, or ``None`` if ``text`` is not one (shell form)."""
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return None
    return tuple(value)


def _command(line: Line, text: str) -> tuple[tuple[str, ...] | str, bool]:
    text = line.require(text)
    exec_form = _json_list(text)
    return (text, True) if exec_form is None else (exec_form, False)


def parse_from(line: Line) -> From:
    """``FROM [--platform=P] image [AS name]``."""
    flags, rest = line.flags({"platform": FlagKind.STRING})
    words = split_words(line.require(rest), line.escape)
    name = None
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        if not name[0].isalpha() or not all(c.isalnum() or c in "-_." for c in name):
            raise line.fail(f"invalid stage name {words[2]!r}")
    elif len(words) != 1:
        raise line.fail("FROM takes an image and optionally AS name: FROM image [AS name]")
    return From(
        image=words[0],
        name=name,
        platform=flags.string("platform"),
        location=line.location,
        original=line.original,
    )


def parse_run(line: Line) -> Run:
    """``RUN [--mount=...] [--network=...] command`` in shell or exec form."""
    flags, rest = line.flags({"mount": FlagKind.LIST, "network": FlagKind.STRING})
    network = flags.string("network")
    if network is not None and network not in NETWORK_MODES:
        raise line.fail(f"RUN --network={network}: use one of {', '.join(sorted(NETWORK_MODES))}")
    command, shell_form = _command(line, rest)
    mounts = tuple(parse_mount(spec, location=line.location) for spec in flags.list("mount"))
    return Run(
        command=command,
        shell_form=shell_form,
        mounts=mounts,
        network=network,
        heredocs=line.heredocs,
        location=line.location,
        original=line.original,
    )


def parse_cmd(line: Line) -> Cmd:
    """``CMD`` in shell or exec form."""
    command, shell_form = _command(line, line.arguments)
    return Cmd(command, shell_form, line.location, line.original)


def parse_entrypoint(line: Line) -> Entrypoint:
    """``ENTRYPOINT`` in shell or exec form."""
    command, shell_form = _command(line, line.arguments)
    return Entrypoint(command, shell_form, line.location, line.original)


def _pairs(line: Line, *, legacy: bool) -> tuple[KeyValue, ...]:
    """``k=v k2=v2``; with ``legacy``, also ``k value with spaces`` (ENV only)."""
    text = line.require(line.arguments)
    words = split_words(text, line.escape)
    if legacy and "=" not in words[0]:
        if len(words) < 2:
            raise line.fail(f"{line.keyword} {words[0]} needs a value: {line.keyword} name=value")
        value = text[len(words[0]) :].strip()
        return (KeyValue(words[0], value),)
    pairs = []
    for word in words:
        key, has_value, value = word.partition("=")
        if not has_value:
            raise line.fail(f"{line.keyword} {word!r} is not of the form name=value")
        if not key:
            raise line.fail(f"{line.keyword} names can not be blank")
        pairs.append(KeyValue(key, value))
    return tuple(pairs)


def parse_env(line: Line) -> Env:
    """``ENV a=b c=d`` or the legacy ``ENV a b``."""
    return Env(_pairs(line, legacy=True), line.location, line.original)


def parse_label(line: Line) -> Label:
    """``LABEL k=v ...``."""
    return Label(_pairs(line, legacy=False), line.location, line.original)


def parse_arg(line: Line) -> Arg:
    """``ARG name[=default] ...``."""
    declarations = []
    for word in split_words(line.require(line.arguments), line.escape):
        name, has_default, default = word.partition("=")
        if not name:
            raise line.fail("ARG names can not be blank")
        declarations.append(ArgDeclaration(name, default if has_default else None))
    return Arg(tuple(declarations), line.location, line.original)


def parse_expose(line: Line) -> Expose:
    """``EXPOSE port[/proto] ...``."""
    return Expose(
        tuple(split_words(line.require(line.arguments), line.escape)),
        line.location,
        line.original,
    )


def parse_volume(line: Line) -> Volume:
    """``VOLUME ["/a"]`` or ``VOLUME /a /b``."""
    text = line.require(line.arguments)
    paths = _json_list(text)
    if paths is None:
        paths = tuple(split_words(text, line.escape))
    if not paths or not all(path.strip() for path in paths):
        raise line.fail("VOLUME specified can not be an empty string")
    return Volume(paths, line.location, line.original)


def _one_word(line: Line) -> str:
    words = split_words(line.require(line.arguments), line.escape)
    if len(words) != 1:
        raise line.fail(f"{line.keyword} requires exactly one argument")
    return words[0]


def parse_user(line: Line) -> User:
    """``USER user[:group]``."""
    return User(_one_word(line), line.location, line.original)


def parse_workdir(line: Line) -> Workdir:
    """``WORKDIR path`` (the rest of the line, as Docker takes it)."""
    return Workdir(line.require(line.arguments), line.location, line.original)


def parse_stopsignal(line: Line) -> StopSignal:
    """``STOPSIGNAL signal``."""
    return StopSignal(_one_word(line), line.location, line.original)


def parse_maintainer(line: Line) -> Maintainer:
    """``MAINTAINER name``."""
    return Maintainer(line.require(line.arguments), line.location, line.original)


_COPY_FLAGS = {
    "chown": FlagKind.STRING,
    "chmod": FlagKind.STRING,
    "link": FlagKind.BOOL,
    "parents": FlagKind.BOOL,
    "exclude": FlagKind.LIST,
}


def _parse_copy(line: Line, *, add: bool) -> Copy:
    extra = {"checksum": FlagKind.STRING} if add else {"from": FlagKind.STRING}
    flags, rest = line.flags(_COPY_FLAGS | extra)
    text = line.require(rest)
    words = _json_list(text)
    if words is None:
        words = tuple(split_words(text, line.escape))
    if len(words) < 2:
        raise line.fail(f"{line.keyword} requires at least two arguments: source and destination")
    sources = words[:-1]
    if sum(1 for source in sources if is_marker(source)) != len(line.heredocs):
        raise line.fail(f"{line.keyword} heredoc markers do not match their bodies")
    return Copy(
        sources=sources,
        dest=words[-1],
        from_=flags.string("from"),
        chown=flags.string("chown"),
        chmod=flags.string("chmod"),
        link=flags.flag("link"),
        parents=flags.flag("parents"),
        excludes=flags.list("exclude"),
        checksum=flags.string("checksum"),
        add=add,
        heredocs=line.heredocs,
        location=line.location,
        original=line.original,
    )


def parse_copy(line: Line) -> Copy:
    """``COPY [--from= --chown= --chmod= --link --parents --exclude=] src... dest``."""
    return _parse_copy(line, add=False)


def parse_add(line: Line) -> Copy:
    """``ADD [--checksum= --chown= --chmod= --link --parents --exclude=] src... dest``."""
    return _parse_copy(line, add=True)


def parse_shell(line: Line) -> Shell:
    """``SHELL ["executable", ...]``: JSON form only."""
    command = _json_list(line.require(line.arguments))
    if not command:
        raise line.fail('SHELL requires the arguments in JSON form: SHELL ["/bin/sh", "-c"]')
    return Shell(command, line.location, line.original)


_HEALTHCHECK_FLAGS = {
    "interval": FlagKind.STRING,
    "timeout": FlagKind.STRING,
    "start-period": FlagKind.STRING,
    "start-interval": FlagKind.STRING,
    "retries": FlagKind.STRING,
}


def parse_healthcheck(line: Line) -> Healthcheck:
    """``HEALTHCHECK NONE`` or ``HEALTHCHECK [--interval= ...] CMD command``."""
    flags, rest = line.flags(_HEALTHCHECK_FLAGS)
    keyword, _, command_text = line.require(rest).partition(" ")
    if keyword.upper() == "NONE":
        if command_text.strip() or flags.strings:
            raise line.fail("HEALTHCHECK NONE takes no other arguments")
        return Healthcheck(None, False, None, None, None, None, None, line.location, line.original)
    if keyword.upper() != "CMD":
        raise line.fail("HEALTHCHECK needs NONE or CMD: HEALTHCHECK [options] CMD command")
    command, shell_form = _command(line, command_text)

    def duration(name: str) -> float | None:
        text = flags.string(name)
        return None if text is None else parse_duration(name, text, location=line.location)

    retries_text = flags.string("retries")
    retries = None
    if retries_text is not None:
        if not retries_text.isdigit():
            raise line.fail(f"HEALTHCHECK --retries must be a whole number, not {retries_text!r}")
        retries = int(retries_text)
    return Healthcheck(
        command=command,
        shell_form=shell_form,
        interval=duration("interval"),
        timeout=duration("timeout"),
        start_period=duration("start-period"),
        start_interval=duration("start-interval"),
        retries=retries,
        location=line.location,
        original=line.original,
    )


# ONBUILD may not wrap these (Docker's rule).
_NOT_TRIGGERS = frozenset({"ONBUILD", "FROM", "MAINTAINER"})


def parse_onbuild(line: Line) -> OnBuild:
    """``ONBUILD INSTRUCTION arguments``."""
    keyword, _, arguments = line.require(line.arguments).partition(" ")
    keyword = keyword.upper()
    if keyword in _NOT_TRIGGERS:
        raise line.fail(f"ONBUILD {keyword} isn't allowed as an ONBUILD trigger")
    parse = PARSERS.get(keyword)
    if parse is None:
        raise line.fail(f"unknown instruction: {keyword}")
    inner = Line(keyword, arguments.strip(), line.location, line.escape)
    trigger = parse(inner)
    if isinstance(trigger, From):
        raise line.fail("ONBUILD FROM isn't allowed as an ONBUILD trigger")
    return OnBuild(trigger, line.location, line.original)


PARSERS: dict[str, Callable[[Line], Instruction | From]] = {
    "ADD": parse_add,
    "ARG": parse_arg,
    "CMD": parse_cmd,
    "COPY": parse_copy,
    "ENTRYPOINT": parse_entrypoint,
    "ENV": parse_env,
    "EXPOSE": parse_expose,
    "FROM": parse_from,
    "HEALTHCHECK": parse_healthcheck,
    "LABEL": parse_label,
    "MAINTAINER": parse_maintainer,
    "ONBUILD": parse_onbuild,
    "RUN": parse_run,
    "SHELL": parse_shell,
    "STOPSIGNAL": parse_stopsignal,
    "USER": parse_user,
    "VOLUME": parse_volume,
    "WORKDIR": parse_workdir,
}
