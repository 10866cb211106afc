"""ADD of a local file: a tarball is unpacked, anything else copied as it is."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard

from executor import base
from executor.commands import copy as copy_command
from executor.context import BuildContext
from executor.dockerfile import Copy, parse_dockerfile
from executor.fs.compression import sniff
from executor.oci.manifest import Platform
from executor.options import BuildOptions
from executor.report import BuildReporter
from executor.stage import BuildServices, StageState


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _compressed(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def _add(tmp_path: Path, source: str) -> tuple[Copy, StageState]:
    """The ADD instruction and a stage with an empty rootfs, the context in tmp_path/ctx."""
    inst = parse_dockerfile(f"FROM scratch\nADD {source} /dest/\n").stages[0].instructions[0]
    assert isinstance(inst, Copy)
    unused: Any = None
    services = BuildServices(
        options=BuildOptions(context=str(tmp_path / "ctx"), workspace=tmp_path / "ws"),
        sandbox=unused,
        new_snapshotter=unused,
        reporter=BuildReporter(quiet=True),
        context=BuildContext(tmp_path / "ctx"),
        layers_dir=tmp_path / "ws" / "layers",
        stages=unused,
    )
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    image = base.scratch(Platform("linux", "amd64"))
    state = StageState(0, None, image, rootfs, services, unpacked=True)
    return inst, state


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_a_tarball_is_unpacked_and_sniffed_once(
    tmp_path: Path, compression: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ctx").mkdir()
    data = _compressed(_tar({"bin/tool": b"tool\n"}), compression)
    (tmp_path / "ctx" / "bundle").write_bytes(data)
    sniffed: list[bytes] = []

    def counting(head: bytes) -> str:
        sniffed.append(head)
        return sniff(head)

    monkeypatch.setattr(copy_command, "sniff", counting)
    inst, state = _add(tmp_path, "bundle")
    copy_command.copy(state, inst)
    assert (state.rootfs / "dest/bin/tool").read_bytes() == b"tool\n"
    assert sniffed == [data[:8]]


@pytest.mark.parametrize("content", [b"", b"\x1f\x8b not gzip", b"plain text\n" * 100])
def test_anything_else_is_copied(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "file").write_bytes(content)
    inst, state = _add(tmp_path, "file")
    copy_command.copy(state, inst)
    assert (state.rootfs / "dest/file").read_bytes() == content
