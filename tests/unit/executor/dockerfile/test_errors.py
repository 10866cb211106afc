"""Every parse error names the Dockerfile and the line, and says what is wrong."""

from __future__ import annotations

import pytest

from executor.dockerfile import DockerfileError, parse_dockerfile
from executor.errors import ExecutorError

CASES = [
    ("", "Dockerfile:1: the Dockerfile is empty: it has no instructions"),
    ("# only a comment\n\n", "Dockerfile:1: the Dockerfile is empty: it has no instructions"),
    ("ARG A\n", "Dockerfile:1: no FROM instruction"),
    ("FROM scratch\nFROBNICATE x\n", "Dockerfile:2: unknown instruction: FROBNICATE"),
    (
        "ARG A\nRUN true\nFROM scratch\n",
        "Dockerfile:2: RUN before the first FROM: only ARG may come before FROM",
    ),
    ("FROM scratch\nRUN\n", "Dockerfile:2: RUN requires at least one argument"),
    ("FROM\n", "Dockerfile:1: FROM requires at least one argument"),
    (
        "FROM a b\n",
        "Dockerfile:1: FROM takes an image and optionally AS name: FROM image [AS name]",
    ),
    ("FROM a AS 1x\n", "Dockerfile:1: invalid stage name '1x'"),
    ("FROM a AS x\nFROM b AS X\n", "Dockerfile:2: duplicate stage name 'x'"),
    ("FROM --pltform=x a\n", "Dockerfile:1: unknown flag for FROM: --pltform"),
    (
        "FROM scratch\nCOPY --from=a b\n",
        "Dockerfile:2: COPY requires at least two arguments: source and destination",
    ),
    (
        "FROM scratch\nCOPY --checksum=sha256:0 a b\n",
        "Dockerfile:2: unknown flag for COPY: --checksum",
    ),
    ("FROM scratch\nADD --from=x a b\n", "Dockerfile:2: unknown flag for ADD: --from"),
    ("FROM scratch\nCOPY --chown a b\n", "Dockerfile:2: COPY --chown needs a value: --chown=VALUE"),
    ("FROM scratch\nCOPY --link=yes a b\n", "Dockerfile:2: --link takes true or false, not 'yes'"),
    (
        "FROM scratch\nRUN --network=bridge x\n",
        "Dockerfile:2: RUN --network=bridge: use one of default, host, none",
    ),
    (
        "FROM scratch\nRUN --mount=type=nfs,target=/x x\n",
        "Dockerfile:2: unknown mount type 'nfs': use one of bind, cache, secret, ssh, tmpfs",
    ),
    ("FROM scratch\nRUN --mount=type=cache x\n", "Dockerfile:2: --mount type=cache needs a target"),
    (
        "FROM scratch\nRUN --mount=type=cache,target x\n",
        "Dockerfile:2: --mount option 'target' needs a value: target=VALUE",
    ),
    (
        "FROM scratch\nSHELL /bin/sh -c\n",
        'Dockerfile:2: SHELL requires the arguments in JSON form: SHELL ["/bin/sh", "-c"]',
    ),
    (
        'FROM scratch\nSHELL ["/bin/sh", 1]\n',
        'Dockerfile:2: SHELL requires the arguments in JSON form: SHELL ["/bin/sh", "-c"]',
    ),
    (
        "FROM scratch\nSHELL []\n",
        'Dockerfile:2: SHELL requires the arguments in JSON form: SHELL ["/bin/sh", "-c"]',
    ),
    ("FROM scratch\nRUN <<EOF\necho\n", "Dockerfile:2: unterminated heredoc <<EOF"),
    ("FROM scratch\nRUN <<A <<B\na\nA\nb\n", "Dockerfile:2: unterminated heredoc <<B"),
    (
        "FROM scratch\nHEALTHCHECK --interval=10 CMD x\n",
        "Dockerfile:2: HEALTHCHECK --interval: bad duration '10' (use e.g. 30s, 1m30s)",
    ),
    (
        "FROM scratch\nHEALTHCHECK --timeout=5q CMD x\n",
        "Dockerfile:2: HEALTHCHECK --timeout: bad duration '5q' (use e.g. 30s, 1m30s)",
    ),
    (
        "FROM scratch\nHEALTHCHECK --start-period=10us CMD x\n",
        "Dockerfile:2: HEALTHCHECK --start-period cannot be less than 1ms",
    ),
    (
        "FROM scratch\nHEALTHCHECK --retries=-1 CMD x\n",
        "Dockerfile:2: HEALTHCHECK --retries must be a whole number, not '-1'",
    ),
    (
        "FROM scratch\nHEALTHCHECK --interval=1s NONE\n",
        "Dockerfile:2: HEALTHCHECK NONE takes no other arguments",
    ),
    (
        "FROM scratch\nHEALTHCHECK curl x\n",
        "Dockerfile:2: HEALTHCHECK needs NONE or CMD: HEALTHCHECK [options] CMD command",
    ),
    ("FROM scratch\nHEALTHCHECK CMD\n", "Dockerfile:2: HEALTHCHECK requires at least one argument"),
    (
        "FROM scratch\nHEALTHCHECK --bogus=1 CMD x\n",
        "Dockerfile:2: unknown flag for HEALTHCHECK: --bogus",
    ),
    ("FROM scratch\nENV A\n", "Dockerfile:2: ENV A needs a value: ENV name=value"),
    ("FROM scratch\nENV A=1 B\n", "Dockerfile:2: ENV 'B' is not of the form name=value"),
    ("FROM scratch\nLABEL a\n", "Dockerfile:2: LABEL 'a' is not of the form name=value"),
    ("FROM scratch\nLABEL =x\n", "Dockerfile:2: LABEL names can not be blank"),
    ("FROM scratch\nARG =x\n", "Dockerfile:2: ARG names can not be blank"),
    ("FROM scratch\nUSER a b\n", "Dockerfile:2: USER requires exactly one argument"),
    ("FROM scratch\nSTOPSIGNAL\n", "Dockerfile:2: STOPSIGNAL requires at least one argument"),
    ("FROM scratch\nEXPOSE\n", "Dockerfile:2: EXPOSE requires at least one argument"),
    ('FROM scratch\nVOLUME [""]\n', "Dockerfile:2: VOLUME specified can not be an empty string"),
    (
        "FROM scratch\nONBUILD ONBUILD RUN x\n",
        "Dockerfile:2: ONBUILD ONBUILD isn't allowed as an ONBUILD trigger",
    ),
    (
        "FROM scratch\nONBUILD FROM x\n",
        "Dockerfile:2: ONBUILD FROM isn't allowed as an ONBUILD trigger",
    ),
    ("FROM scratch\nONBUILD NOPE x\n", "Dockerfile:2: unknown instruction: NOPE"),
    (
        "FROM scratch\nONBUILD RUN --network=x y\n",
        "Dockerfile:2: RUN --network=x: use one of default, host, none",
    ),
    ("# escape=x\nFROM scratch\n", "Dockerfile:1: invalid escape token 'x': use \\ or `"),
    (
        "# escape=`\n# escape=\\\nFROM scratch\n",
        "Dockerfile:2: only one escape parser directive can be used",
    ),
    ("FROM scratch\nRUN a \\\n  b\nBAD\n", "Dockerfile:4: unknown instruction: BAD"),
    ("FROM scratch\nRUN <<EOF\nx\nEOF\nBAD\n", "Dockerfile:5: unknown instruction: BAD"),
]


@pytest.mark.parametrize(("text", "message"), CASES)
def test_error_names_file_and_line(text: str, message: str) -> None:
    with pytest.raises(DockerfileError) as caught:
        parse_dockerfile(text)
    assert str(caught.value) == message
    assert isinstance(caught.value, ExecutorError)
    assert not caught.value.temporary


def test_error_uses_the_given_filename() -> None:
    with pytest.raises(DockerfileError) as caught:
        parse_dockerfile("FROM scratch\n\nNOPE\n", filename="svc/Dockerfile.prod")
    assert str(caught.value) == "svc/Dockerfile.prod:3: unknown instruction: NOPE"
    assert (caught.value.filename, caught.value.line) == ("svc/Dockerfile.prod", 3)
    assert caught.value.problem == "unknown instruction: NOPE"
