"""`farm build` end to end: real base image, real registry, real sandbox, checked by
skopeo, umoci and runc."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from tests.support.images import PushedImage, push_layout
from tests.support.registry import RegistryServer
from tests.support.runtime import run_image, unpack_image


def farm(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "farm", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
        check=False,
    )


def write_context(root: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(textwrap.dedent(dockerfile).lstrip())
    for name, content in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def skopeo_config(reference: str) -> dict[str, object]:
    out = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--config",
            "--tls-verify=false",
            "--no-creds",
            f"docker://{reference}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


APP = """
    ARG BASE
    FROM ${BASE}
    ENV GREETING="hello from farm" APP_HOME=/srv/app
    WORKDIR $APP_HOME
    RUN echo "$GREETING" > greeting.txt && chmod 0640 greeting.txt && mkdir -p data \\
        && ln -s greeting.txt hello && chown -R app:app data
    RUN rm -rf /home/app && rm /etc/group- 2>/dev/null; echo done
    USER app
    RUN id -un > /tmp/whoami
    LABEL org.example.team=builds
    EXPOSE 8080/tcp 9090
    STOPSIGNAL SIGTERM
    ENTRYPOINT ["/bin/sh", "-c"]
    CMD ["echo \\"$GREETING as $(id -un) in $(pwd)\\""]
"""


def test_build_push_inspect_unpack_and_run(busybox_image: PushedImage, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", APP)
    ref = f"{busybox_image.registry.host}/team/app:1"
    layout = tmp_path / "layout"
    result = farm(
        "build",
        "--context", str(ctx),
        "--build-arg", f"BASE={busybox_image.reference}",
        "--destination", ref,
        "--oci-layout-path", str(layout),
        "--digest-file", str(tmp_path / "digest"),
        "--label", "org.example.build=42",
        "--timings-file", str(tmp_path / "timings.json"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    digest = (tmp_path / "digest").read_text()
    assert result.stdout.strip() == digest
    assert "[stage 1/1 step 3/11] RUN echo" in result.stderr

    inspected = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", "--no-creds", f"docker://{ref}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert inspected["Digest"] == digest
    config = skopeo_config(ref)["config"]
    assert isinstance(config, dict)
    assert "GREETING=hello from farm" in config["Env"]
    assert config["WorkingDir"] == "/srv/app"
    assert config["User"] == "app"
    assert config["Labels"] == {"org.example.team": "builds", "org.example.build": "42"}
    assert sorted(config["ExposedPorts"]) == ["8080/tcp", "9090/tcp"]
    assert config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"] == ["/bin/sh", "-c"]
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert timings["run"] > 0 and timings["total"] >= timings["run"]

    rootfs = unpack_image(layout, "1", tmp_path / "bundle")
    greeting = rootfs / "srv/app/greeting.txt"
    assert greeting.read_text() == "hello from farm\n"
    assert greeting.stat().st_mode & 0o777 == 0o640
    assert os.readlink(rootfs / "srv/app/hello") == "greeting.txt"
    assert (rootfs / "srv/app/data").stat().st_uid == 1000
    assert not (rootfs / "home/app").exists()  # a whiteout in the layer removed it
    assert (rootfs / "tmp/whoami").read_text() == "app\n"

    ran = run_image(layout, "1", tmp_path / "run-bundle")
    assert ran.status == 0, ran.stderr
    assert ran.stdout == "hello from farm as app in /srv/app\n"


def test_failing_run_names_the_line_code_and_output(
    busybox_image: PushedImage, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        f"""
        FROM {busybox_image.reference}
        RUN echo preparing
        RUN echo first line; echo "the real problem" >&2; exit 7
        RUN echo never
        """,
    )
    # Its own temporary directory, which nothing else on the machine writes to; the
    # default workspace lives there too.
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    result = farm(
        "build", "--context", str(ctx), "--no-push", env={**os.environ, "TMPDIR": str(private_tmp)}
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()
    message = "\n".join(last[-4:])
    assert "farm: error: Dockerfile:3: RUN echo first line;" in message
    assert "exit code 7" in message
    assert "| the real problem" in message
    assert "never" not in result.stderr.split("farm: error:")[0].split("RUN echo never")[-1]
    assert "Traceback" not in result.stderr
    assert os.listdir(private_tmp) == []  # workspace and temporaries gone after a failure


@pytest.mark.parametrize(
    ("dockerfile", "message"),
    [
        ("FROM scratch\nFOO bar\n", "Dockerfile:2: unknown instruction"),
        ("RUN echo hi\n", "Dockerfile:1:"),
        ("FROM scratch\nCOPY --nope x /\n", "Dockerfile:2:"),
    ],
)
def test_dockerfile_errors_name_the_line(tmp_path: Path, dockerfile: str, message: str) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    result = farm("build", "--context", str(ctx), "--no-push")
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_reproducible_builds_give_one_digest(busybox_image: PushedImage, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        f"""
        FROM {busybox_image.reference}
        RUN mkdir /out && echo stable > /out/file && touch /out/file
        CMD ["cat", "/out/file"]
        """,
    )
    digests = []
    for run in range(2):
        result = farm(
            "build", "--context", str(ctx), "--reproducible", "--no-push",
            "--tar-path", str(tmp_path / f"image{run}.tar"),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        digests.append(result.stdout.strip())
    assert digests[0] == digests[1]
    with tarfile.open(tmp_path / "image0.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(tar.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
    assert config["created"] == "1970-01-01T00:00:00Z"


def test_multi_stage_target_builds_only_what_it_needs(
    busybox_image: PushedImage, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        f"""
        FROM {busybox_image.reference} AS unused
        RUN exit 1
        FROM {busybox_image.reference} AS builder
        RUN mkdir -p /out && echo built > /out/artifact
        FROM builder AS tested
        RUN test -f /out/artifact && echo tested > /out/tested
        FROM scratch
        COPY --from=unused /etc/passwd /never
        """,
    )
    layout = tmp_path / "layout"
    result = farm(
        "build", "--context", str(ctx), "--target", "tested", "--no-push",
        "--oci-layout-path", str(layout),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "RUN exit 1" not in result.stderr
    rootfs = unpack_image(layout, "latest", tmp_path / "bundle")
    assert (rootfs / "out/artifact").read_text() == "built\n"
    assert (rootfs / "out/tested").read_text() == "tested\n"
    bad = farm("build", "--context", str(ctx), "--target", "nope", "--no-push")
    assert bad.returncode == 1 and "target stage 'nope' not found" in bad.stderr


def test_secrets_reach_only_the_step_that_asks(busybox_image: PushedImage, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("hunter2-very-secret")
    ctx = write_context(
        tmp_path / "ctx",
        f"""
        FROM {busybox_image.reference}
        RUN --mount=type=secret,id=token wc -c < /run/secrets/token > /token-length
        RUN test ! -e /run/secrets/token && echo absent > /later
        """,
    )
    archive = tmp_path / "image.tar"
    result = farm(
        "build", "--context", str(ctx), "--no-push", "--tar-path", str(archive),
        "--secret", f"id=token,src={secret}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    data = archive.read_bytes()
    assert b"hunter2" not in data
    rootfs = tmp_path / "rootfs"
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        names = []
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                names += inner.getnames()
                inner.extractall(rootfs, filter="fully_trusted")
    assert not any("run/secrets" in n for n in names)
    assert (rootfs / "token-length").read_text().strip() == "19"
    assert (rootfs / "later").read_text() == "absent\n"


def test_shell_maintainer_link_and_workspace_hygiene(
    busybox_image: PushedImage, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        f"""
        FROM {busybox_image.reference}
        MAINTAINER Jane Doe <jane@example.com>
        SHELL ["/bin/sh", "-ec"]
        RUN echo "shell is $0 with flags $-" > /shell-info
        COPY --link a.txt /linked/a.txt
        """,
        {"a.txt": "a\n"},
    )
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    layout = tmp_path / "layout"
    result = farm(
        "build", "--context", str(ctx), "--no-push", "--oci-layout-path", str(layout),
        env={**os.environ, "TMPDIR": str(tmpdir)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rootfs = unpack_image(layout, "latest", tmp_path / "bundle")
    assert (
        "flags" in (rootfs / "shell-info").read_text()
        and "e" in (rootfs / "shell-info").read_text().split("flags ")[1]
    )
    assert (rootfs / "linked/a.txt").read_text() == "a\n"
    config = json.loads(
        subprocess.run(
            [sys.executable, "-m", "farm", "image", "inspect", "--raw", f"oci:{layout}:latest"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    blobs = layout / "blobs/sha256"
    image_config = json.loads((blobs / config["config"]["digest"].split(":")[1]).read_text())
    assert image_config["author"] == "Jane Doe <jane@example.com>"
    assert image_config["config"]["Shell"] == ["/bin/sh", "-ec"]
    # The default workspace lives in TMPDIR and is gone afterwards (after a failure:
    # test_failing_run_names_the_line_code_and_output).
    assert list(tmpdir.iterdir()) == []


def test_layer_of_incompressible_and_text_files_unpacks_with_umoci(
    busybox_image: PushedImage, tmp_path: Path
) -> None:
    # Chunks that would not compress go into the gzip stream as stored blocks between
    # deflated ones; Go's gzip reader in umoci, which checks every diff_id, must agree.
    ctx = write_context(
        tmp_path / "ctx",
        f"""
        FROM {busybox_image.reference}
        RUN head -c 700000 /dev/urandom > /noise && seq 1 200000 > /text \\
            && cat /noise /text /noise > /mixed && sha256sum /noise /text /mixed > /sums
        """,
    )
    layout = tmp_path / "layout"
    result = farm(
        "build", "--context", str(ctx), "--no-push",
        "--oci-layout-path", str(layout),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rootfs = unpack_image(layout, "latest", tmp_path / "bundle")
    for line in (rootfs / "sums").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((rootfs / name.lstrip("/")).read_bytes()).hexdigest() == digest
    assert (rootfs / "text").stat().st_size > 1_000_000


def test_final_stage_layers_are_uploaded_while_later_steps_run(
    busybox_image: PushedImage, tmp_path: Path
) -> None:
    """The second RUN sees the repository appear in the registry's catalog: the first
    RUN's layer is on its way before the build ends. Each blob is uploaded once."""
    host = busybox_image.registry.host
    ctx = write_context(
        tmp_path / "ctx",
        f"""
        FROM {busybox_image.reference}
        RUN head -c 1000000 /dev/urandom > /big
        RUN for i in $(seq 100); do \\
              wget -q -O- http://{host}/v2/_catalog | grep -q team/early && break; sleep 0.1; \\
            done; wget -q -O- http://{host}/v2/_catalog > /catalog
        """,
    )
    outcome = tmp_path / "outcome.json"
    result = farm(
        "build", "--context", str(ctx), "--outcome-file", str(outcome),
        "--destination", f"{host}/team/early:1", "--destination", f"{host}/team/copy:1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    layout = tmp_path / "layout"
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", f"docker://{host}/team/early:1",
         f"oci:{layout}:1"],
        check=True, capture_output=True,
    )  # fmt: skip
    rootfs = unpack_image(layout, "1", tmp_path / "bundle")
    assert "team/early" in (rootfs / "catalog").read_text()
    assert "uploading layer" not in result.stderr  # no early upload failed
    # Uploaded once: the base layer is mounted from its repository, and the second
    # destination mounts everything from the first.
    manifest = json.loads((layout / "blobs" / "sha256" / _index_manifest(layout)).read_text())
    new_blobs = [manifest["config"], *manifest["layers"][1:]]
    pushed = json.loads(outcome.read_text())["bytes"]["pushed"]
    assert pushed == sum(blob["size"] for blob in new_blobs)


def test_a_push_asks_the_registry_no_more_than_it_must(
    busybox_layout: Path, tmp_path: Path
) -> None:
    """Round trips of a push: each new layer is asked about once (by its early upload,
    not again at the end), and the config's failed mount attempt becomes its upload
    session (no session opened and deleted)."""
    with RegistryServer(tmp_path / "registry", access_log=True) as registry:
        push_layout(busybox_layout, "latest", registry.host, "library/busybox")
        ctx = write_context(
            tmp_path / "ctx",
            f"""
            FROM {registry.host}/library/busybox:latest
            RUN echo one > /one
            RUN echo two > /two
            """,
        )
        destination = f"{registry.host}/team/counted:1"
        result = farm("build", "--context", str(ctx), "--destination", destination)
        assert result.returncode == 0, result.stderr
        raw = subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{destination}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        manifest = json.loads(raw.stdout)
        log = registry.log_path.read_text()
    requests = [
        line.split('"')[1] for line in log.splitlines() if '"' in line and "/team/counted/" in line
    ]
    for layer in manifest["layers"][1:]:
        heads = [
            r for r in requests if r.startswith(f"HEAD /v2/team/counted/blobs/{layer['digest']}")
        ]
        assert len(heads) == 1, requests
    assert not [r for r in requests if r.startswith("DELETE ")], requests
    config = manifest["config"]["digest"].replace(":", "%3A")
    mounts = [r for r in requests if r.startswith("POST ") and "mount=" in r]
    # The base layer and the config are offered for mounting from the base's repository;
    # the config is not there, so its upload goes into the session that POST opened.
    assert len(mounts) == 2 and any(f"mount={config}" in r for r in mounts), requests
    plain_posts = [r for r in requests if r.startswith("POST ") and "mount=" not in r]
    assert len(plain_posts) == len(manifest["layers"]) - 1, requests  # the new layers only


def _index_manifest(layout: Path) -> str:
    index = json.loads((layout / "index.json").read_text())
    digest: str = index["manifests"][0]["digest"]
    return digest.removeprefix("sha256:")
