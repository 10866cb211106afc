"""COPY and ADD in real builds, checked by unpacking the result with umoci."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_build import farm, write_context
from tests.support.images import PushedImage
from tests.support.runtime import unpack_image


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server on 127.0.0.1 serving a directory, for ADD of URLs."""
    root = tmp_path / "served"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def _tarball(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))


def test_copy_and_add_semantics(
    busybox_image: PushedImage, tmp_path: Path, file_server: tuple[str, Path]
) -> None:
    url, served = file_server
    (served / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    checksum = "sha256:" + hashlib.sha256((served / "tool.sh").read_bytes()).hexdigest()
    ctx = write_context(
        tmp_path / "ctx",
        f"""
        FROM {busybox_image.reference} AS base
        WORKDIR /app
        COPY app.py requirements.txt ./
        COPY src/ /app/src/
        COPY conf /etc/myconf
        COPY --chown=app:app --chmod=0640 secret.cfg /app/
        COPY --chmod=u+x,go-w scripts/*.sh /usr/local/bin/
        COPY --exclude=*.tmp data /data
        COPY --parents src/./pkg/mod.py /parents/
        COPY <<EOF /etc/motd
        welcome to $HOSTNAME_FOR_TEST
        EOF
        ADD bundle.tar.gz /opt/bundle/
        ADD --checksum={checksum} {url}/tool.sh /opt/tool.sh
        FROM scratch
        COPY --from=base /app/src /src
        COPY --from=base /etc/motd /motd
        COPY --from={busybox_image.reference} /etc/group /group
        """,
        {
            "app.py": "print('app')\n",
            "requirements.txt": "requests\n",
            "src/main.py": "main\n",
            "src/pkg/mod.py": "mod\n",
            "conf/a.conf": "a\n",
            "secret.cfg": "s\n",
            "scripts/run.sh": "#!/bin/sh\n",
            "scripts/notes.txt": "not copied\n",
            "data/keep.txt": "keep\n",
            "data/skip.tmp": "skip\n",
            "ignored.log": "never\n",
            ".dockerignore": "*.log\n",
        },
    )
    (ctx / "src/link").symlink_to("main.py")
    os.chmod(ctx / "scripts/run.sh", 0o664)
    _tarball(ctx / "bundle.tar.gz", {"bin/tool": b"#!/bin/sh\n", "share/doc.txt": b"doc\n"})
    layout = tmp_path / "layout"
    result = farm(
        "build", "--context", str(ctx), "--target", "base", "--no-push",
        "--oci-layout-path", str(layout),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    root = unpack_image(layout, "latest", tmp_path / "bundle")
    assert (root / "app/app.py").read_text() == "print('app')\n"
    assert (root / "app/requirements.txt").exists()
    assert (root / "app/src/main.py").read_text() == "main\n"
    assert os.readlink(root / "app/src/link") == "main.py"
    assert (root / "etc/myconf/a.conf").read_text() == "a\n"
    secret = (root / "app/secret.cfg").stat()
    assert (secret.st_uid, secret.st_gid, secret.st_mode & 0o777) == (1000, 1000, 0o640)
    assert (root / "usr/local/bin/run.sh").stat().st_mode & 0o777 == 0o744
    assert not (root / "usr/local/bin/notes.txt").exists()
    assert (root / "data/keep.txt").exists() and not (root / "data/skip.tmp").exists()
    assert (root / "parents/pkg/mod.py").read_text() == "mod\n"
    assert (root / "etc/motd").read_text() == "welcome to $HOSTNAME_FOR_TEST\n".replace(
        "$HOSTNAME_FOR_TEST", ""
    )
    assert (root / "opt/bundle/bin/tool").stat().st_mode & 0o777 == 0o755
    assert (root / "opt/bundle/share/doc.txt").read_text() == "doc\n"
    assert (root / "opt/tool.sh").read_text() == "#!/bin/sh\necho tool\n"
    assert (root / "opt/tool.sh").stat().st_mode & 0o777 == 0o600
    assert not list(root.rglob("ignored.log"))

    final = tmp_path / "final"
    result = farm("build", "--context", str(ctx), "--no-push", "--oci-layout-path", str(final))
    assert result.returncode == 0, result.stderr
    root = unpack_image(final, "latest", tmp_path / "final-bundle")
    assert sorted(p.name for p in root.iterdir()) == ["group", "motd", "src"]
    assert (root / "src/pkg/mod.py").read_text() == "mod\n"
    assert (root / "group").read_text().startswith("root:x:0:")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "COPY missing.txt /x",
            "Dockerfile:2: COPY missing.txt /x: resolving COPY source 'missing.txt'",
        ),
        ("COPY ignored.log /x", "no source files were specified"),
        ("COPY --chmod=u+q a.txt /x", "invalid --chmod 'u+q'"),
        ("COPY --chown=nobody-here a.txt /x", "user 'nobody-here' not found"),
    ],
)
def test_copy_errors_name_the_source(
    busybox_image: PushedImage, tmp_path: Path, line: str, message: str
) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        f"FROM {busybox_image.reference}\n{line}\n",
        {"a.txt": "a", "ignored.log": "x", ".dockerignore": "*.log\n"},
    )
    result = farm("build", "--context", str(ctx), "--no-push")
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_add_checksum_mismatch_fails(
    busybox_image: PushedImage, tmp_path: Path, file_server: tuple[str, Path]
) -> None:
    url, served = file_server
    (served / "f").write_text("real")
    ctx = write_context(
        tmp_path / "ctx",
        f"FROM {busybox_image.reference}\nADD --checksum=sha256:{'0' * 64} {url}/f /f\n",
    )
    result = farm("build", "--context", str(ctx), "--no-push")
    assert result.returncode == 1
    assert "Dockerfile:2:" in result.stderr and "checksum mismatch" in result.stderr


def test_add_and_copy_edge_cases(busybox_image: PushedImage, tmp_path: Path) -> None:
    import gzip

    ctx = write_context(
        tmp_path / "ctx",
        f"""
        FROM {busybox_image.reference}
        ADD plain.gz /plain.gz
        USER app
        WORKDIR /appdir
        RUN touch made-by-app
        USER root
        COPY --chown=app dir /newdir/deeper/
        """,
        {"dir/f": "f\n"},
    )
    (ctx / "plain.gz").write_bytes(gzip.compress(b"not a tarball\n"))
    layout = tmp_path / "layout"
    result = farm("build", "--context", str(ctx), "--no-push", "--oci-layout-path", str(layout))
    assert result.returncode == 0, result.stderr
    root = unpack_image(layout, "latest", tmp_path / "bundle")
    assert gzip.decompress((root / "plain.gz").read_bytes()) == b"not a tarball\n"
    assert (root / "appdir").stat().st_uid == 1000
    assert (root / "appdir/made-by-app").exists()
    assert (root / "newdir").stat().st_uid == 1000 and (root / "newdir/deeper/f").exists()


def test_add_refuses_whiteout_names_in_a_tarball(
    busybox_image: PushedImage, tmp_path: Path
) -> None:
    """A plain tarball's .wh. entry is not a deletion (nothing is removed), and no layer
    could hold such a name, so ADD refuses it."""
    ctx = write_context(tmp_path / "ctx", f"FROM {busybox_image.reference}\nADD wh.tar /etc/\n")
    _tarball(ctx / "wh.tar", {".wh.passwd": b"", "extra.conf": b"x\n"})
    result = farm("build", "--context", str(ctx), "--no-push")
    assert result.returncode == 1
    assert "Dockerfile:2: unpacking wh.tar" in result.stderr
    assert ".wh. cannot be stored in an image layer" in result.stderr


def test_several_sources_need_a_directory(busybox_image: PushedImage, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        f"FROM {busybox_image.reference}\nCOPY *.txt /glob\n",
        {"a.txt": "a", "b.txt": "b"},
    )
    result = farm("build", "--context", str(ctx), "--no-push")
    assert result.returncode == 1
    assert "2 sources match, so the destination must be a directory ending in /" in result.stderr
