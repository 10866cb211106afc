"""The rest of farm build's surface: ONBUILD, RUN mounts and network, outputs, contexts."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from tests.integration.test_build import farm, write_context
from tests.support.images import PushedImage
from tests.support.runtime import unpack_image


def _config(layout: Path, tag: str = "latest") -> dict[str, object]:
    result = farm("image", "inspect", "--json", f"oci:{layout}:{tag}")
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_onbuild_triggers_run_in_the_child(busybox_image: PushedImage, tmp_path: Path) -> None:
    host = busybox_image.registry.host
    parent = write_context(
        tmp_path / "parent",
        f"""
        FROM {busybox_image.reference}
        ONBUILD RUN echo triggered > /onbuild
        ONBUILD ENV FROM_TRIGGER=yes
        """,
    )
    result = farm("build", "--context", str(parent), "--destination", f"{host}/parent:1")
    assert result.returncode == 0, result.stderr
    child = write_context(tmp_path / "child", f"FROM {host}/parent:1\nRUN cat /onbuild\n")
    layout = tmp_path / "layout"
    result = farm("build", "--context", str(child), "--no-push", "--oci-layout-path", str(layout))
    assert result.returncode == 0, result.stderr
    assert "RUN echo triggered > /onbuild" in result.stderr
    rootfs = unpack_image(layout, "latest", tmp_path / "bundle")
    assert (rootfs / "onbuild").read_text() == "triggered\n"
    config = _config(layout)["config"]
    assert isinstance(config, dict)
    assert "FROM_TRIGGER=yes" in config["env"]


def test_run_mounts_and_network(busybox_image: PushedImage, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        f"""
        FROM {busybox_image.reference}
        RUN --mount=type=cache,target=/var/cache/pkgs echo cached > /var/cache/pkgs/item
        RUN --mount=type=cache,target=/var/cache/pkgs cp /var/cache/pkgs/item /from-cache
        RUN --mount=type=bind,source=app,target=/src cat /src/file > /from-bind
        RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t && ls /scratch > /from-tmpfs
        RUN --network=none tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > /interfaces
        """,
        {"app/file": "bound\n"},
    )
    layout = tmp_path / "layout"
    result = farm(
        "build", "--context", str(ctx), "--no-push", "--oci-layout-path", str(layout),
        "--run-cache-dir", str(tmp_path / "run-cache"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rootfs = unpack_image(layout, "latest", tmp_path / "bundle")
    assert (rootfs / "from-cache").read_text() == "cached\n"
    assert not (rootfs / "var/cache/pkgs/item").exists()  # the cache is not in the image
    (cache_dir,) = (tmp_path / "run-cache").glob("var_cache_pkgs-*")
    assert (cache_dir / "item").read_text() == "cached\n"
    assert (rootfs / "from-bind").read_text() == "bound\n"
    assert not (rootfs / "src").exists() and not (rootfs / "scratch").exists()
    assert (rootfs / "from-tmpfs").read_text() == "t\n"
    assert (rootfs / "interfaces").read_text() == "lo\n"


def test_outputs_compression_and_tar_context(busybox_image: PushedImage, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        f"""
        FROM {busybox_image.reference}
        COPY hello.txt /hello.txt
        RUN mkdir -p /var/log/app && echo noise > /var/log/app/log && echo kept > /kept
        """,
        {"hello.txt": "hi\n"},
    )
    context_tar = tmp_path / "context.tar.gz"
    with tarfile.open(context_tar, "w:gz") as tar:
        for path in sorted(ctx.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(ctx)), recursive=False)
    ref = f"{busybox_image.registry.host}/zstd/app:2"
    layout = tmp_path / "layout"
    result = farm(
        "build", "--context", f"tar://{context_tar}", "--destination", ref,
        "--oci-layout-path", str(layout), "--compression", "zstd", "--compression-level", "5",
        "--ignore-path", "/var/log", "--image-name-with-digest-file", str(tmp_path / "names"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    digest = result.stdout.strip()
    assert (tmp_path / "names").read_text() == f"{busybox_image.registry.host}/zstd/app@{digest}\n"
    report = _config(layout, "2")
    layers = report["layers"]
    assert isinstance(layers, list)
    # The base layer keeps its gzip; the two new ones are zstd.
    assert [layer["mediaType"].rsplit("+", 1)[-1] for layer in layers] == ["gzip", "zstd", "zstd"]
    copy = farm("image", "copy", f"oci:{layout}:2", f"oci:{tmp_path / 'copy'}:x")
    assert copy.returncode == 0, copy.stderr
    archive = tmp_path / "flat.tar"
    assert farm("image", "copy", ref, f"docker-archive:{archive}").returncode == 0
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        names: list[str] = []
        for layer in manifest[0]["Layers"][1:]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                names += inner.getnames()
    assert "kept" in names and "hello.txt" in names
    assert not any(n.startswith("var/log") for n in names)


def test_registry_mirror_serves_docker_hub_bases(
    busybox_image: PushedImage, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox\nRUN echo mirrored > /m\n")
    layout = tmp_path / "layout"
    result = farm(
        "build", "--context", str(ctx), "--no-push", "--oci-layout-path", str(layout),
        "--registry-mirror", busybox_image.registry.host,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (unpack_image(layout, "latest", tmp_path / "b") / "m").read_text() == "mirrored\n"


def test_custom_platform_sets_the_config(tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM scratch\nCOPY a /a\n", {"a": "x"})
    layout = tmp_path / "layout"
    result = farm(
        "build", "--context", str(ctx), "--no-push", "--oci-layout-path", str(layout),
        "--custom-platform", "linux/arm64/v8",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _config(layout)["platform"] == "linux/arm64/v8"


def test_a_200_mib_file_keeps_the_builder_small(tmp_path: Path) -> None:
    """Layers stream: a 200 MiB file written by RUN must not raise peak RSS past 150 MiB."""
    import shutil
    import subprocess
    import sys

    ctx = write_context(
        tmp_path / "ctx",
        """
        FROM scratch
        COPY busybox /bin/busybox
        RUN ["/bin/busybox", "sh", "-c", "/bin/busybox head -c 209715200 /dev/urandom > /big"]
        """,
    )
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", ctx / "busybox")
    # A fresh parent process, so the peak is this build's alone, not the test run's.
    probe = (
        "import resource, subprocess, sys\n"
        "rc = subprocess.run(sys.argv[1:]).returncode\n"
        "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run(
        [
            sys.executable, "-c", probe, sys.executable, "-m", "farm", "build",
            "--context", str(ctx), "--no-push", "--compression", "zstd", "-q",
            "--oci-layout-path", str(tmp_path / "layout"),
        ],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    rc, peak_kib = out.stdout.split()[-2:]
    assert rc == "0", out.stderr
    assert int(peak_kib) < 150 * 1024, f"peak RSS {int(peak_kib) // 1024} MiB"
    blobs = list((tmp_path / "layout/blobs/sha256").iterdir())
    assert max(b.stat().st_size for b in blobs) > 200 * 1024 * 1024  # the file is really there


def test_independent_stages_run_at_once(busybox_image: PushedImage, tmp_path: Path) -> None:
    """Stage a waits (up to 20 s) for a file that stage b writes into a shared cache
    mount: built one after the other, a would give up and fail the build."""
    base = busybox_image.reference
    ctx = write_context(
        tmp_path / "ctx",
        f"""
        FROM {base} AS a
        RUN --mount=type=cache,id=sync,target=/sync i=0; \\
            while [ ! -f /sync/b-ready ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; \\
            test -f /sync/b-ready && echo a > /a
        FROM {base} AS b
        RUN --mount=type=cache,id=sync,target=/sync touch /sync/b-ready && echo b > /b
        FROM scratch
        COPY --from=a /a /a
        COPY --from=b /b /b
        """,
    )
    layout = tmp_path / "layout"
    result = farm("build", "--context", str(ctx), "--no-push", "--oci-layout-path", str(layout))
    assert result.returncode == 0, result.stderr
    rootfs = unpack_image(layout, "latest", tmp_path / "bundle")
    assert (rootfs / "a").read_text() == "a\n" and (rootfs / "b").read_text() == "b\n"


def test_rw_bind_mount_writes_are_thrown_away(busybox_image: PushedImage, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        f"""
        FROM {busybox_image.reference}
        RUN --mount=type=bind,source=app,target=/src,rw \
            echo changed > /src/file && cat /src/file > /seen
        """,
        {"app/file": "original\n"},
    )
    layout = tmp_path / "layout"
    result = farm("build", "--context", str(ctx), "--no-push", "--oci-layout-path", str(layout))
    assert result.returncode == 0, result.stderr
    assert (ctx / "app/file").read_text() == "original\n"
    assert (unpack_image(layout, "latest", tmp_path / "b") / "seen").read_text() == "changed\n"


def test_hostile_mounts_stay_inside(busybox_image: PushedImage, tmp_path: Path) -> None:
    """Bind sources resolve inside their root; cache ids cannot name the workspace."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "host-secret").write_text("host secret\n")
    base = busybox_image.reference
    cases = {
        "dotdot": "RUN --mount=type=bind,source=../outside,target=/m cat /m/host-secret",
        "stage-link": "RUN --mount=type=bind,from=a,source=hostdir,target=/m cat /m/host-secret",
        "cache-id": "RUN --mount=type=cache,id=..,target=/c ls /c > /listing",
    }
    for name, line in cases.items():
        ctx = write_context(
            tmp_path / name / "ctx",
            f"""
            FROM {base} AS a
            RUN ln -s {outside} /hostdir
            FROM {base}
            {line}
            """,
        )
        workspace = tmp_path / name / "ws"
        layout = tmp_path / name / "layout"
        result = farm(
            "build", "--context", str(ctx), "--no-push", "--workspace", str(workspace),
            "--oci-layout-path", str(layout),
        )  # fmt: skip
        assert "host secret" not in result.stdout + result.stderr, name
        if name == "cache-id":
            assert result.returncode == 0, result.stderr
            listing = (
                unpack_image(layout, "latest", tmp_path / name / "b") / "listing"
            ).read_text()
            assert "layers" not in listing and "stages" not in listing
        else:
            assert result.returncode == 1 and "bind mount source" in result.stderr, result.stderr


def test_entrypoint_resets_an_inherited_cmd(busybox_image: PushedImage, tmp_path: Path) -> None:
    """busybox's CMD ["sh"] is dropped by a new ENTRYPOINT; a CMD of this stage is kept."""
    base = busybox_image.reference
    reset = write_context(tmp_path / "reset", f'FROM {base}\nENTRYPOINT ["/bin/echo"]\n')
    kept = write_context(
        tmp_path / "kept",
        f'FROM --platform=linux/amd64 {base}\nCMD ["hi"]\nENTRYPOINT ["/bin/echo"]\n',
    )
    for ctx, cmd in ((reset, None), (kept, ["hi"])):
        layout = ctx.parent / f"{ctx.name}-layout"
        result = farm("build", "--context", str(ctx), "--no-push", "--oci-layout-path", str(layout))
        assert result.returncode == 0, result.stderr
        config = _config(layout)["config"]
        assert isinstance(config, dict)
        assert config["entrypoint"] == ["/bin/echo"] and config["cmd"] == cmd


def test_farm_doctor_reports_backends() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "farm", "doctor"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for backend in ("chroot", "userns", "proot"):
        assert any(line.split()[:2] == ["ok", backend] for line in lines), out.stdout
    assert "auto sandbox: chroot" in lines
    assert any(line.split()[:2] == ["ok", "overlay"] for line in lines), out.stdout
