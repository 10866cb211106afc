import gc
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from executor.errors import DigestMismatchError, LayoutError
from executor.oci.archive import DockerArchiveSink, DockerArchiveSource
from executor.oci.config import ImageConfig
from executor.oci.image import RawManifest
from executor.oci.manifest import Descriptor, canonical_json
from executor.oci.mediatype import MediaType
from tests.unit.executor.oci.images_for_tests import (
    AMD64,
    ARM64,
    FakeImage,
    MemorySource,
    copy_image,
    make_image,
    make_index,
    opener,
    put_image,
    read_blob,
    write_docker_archive,
    write_image,
    write_tar,
)


def _members(path: Path) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    """name -> (header, bytes), in archive order."""
    out = {}
    with tarfile.open(path) as tar:
        for info in tar.getmembers():
            f = tar.extractfile(info)
            assert f is not None
            out[info.name] = (info, f.read())
    return out


def _json_member(path: Path, name: str) -> object:
    return json.loads(_members(path)[name][1])


def _archive(tmp_path: Path, image: FakeImage, tags: list[str] | None = None) -> Path:
    path = tmp_path / "image.tar"
    write_image(
        DockerArchiveSink(path, ["docker.io/library/app:1"] if tags is None else tags), image
    )
    return path


def test_archive_of_gzip_image_holds_uncompressed_layers_whose_sha256_are_the_diff_ids(
    tmp_path: Path,
) -> None:
    image = make_image(1, layers=3, compression="gzip")
    path = _archive(tmp_path, image)

    members = _members(path)
    diff_ids = ImageConfig.parse(image.config).diff_ids
    layer_names = [f"blobs/sha256/{d.hex}" for d in diff_ids]
    for name, layer in zip(layer_names, image.layers, strict=True):
        data = members[name][1]
        assert data == layer.tar
        assert f"sha256:{hashlib.sha256(data).hexdigest()}" == str(layer.diff_id)
    assert [layer.diff_id for layer in image.layers] == list(diff_ids)


def test_archive_keeps_the_config_bytes_so_the_image_id_is_unchanged(tmp_path: Path) -> None:
    image = make_image(1)
    path = _archive(tmp_path, image)

    config_digest = image.config_descriptor.digest
    assert _members(path)[f"blobs/sha256/{config_digest.hex}"][1] == image.config


def test_archive_manifest_json_and_repositories_are_as_docker_writes_them(tmp_path: Path) -> None:
    image = make_image(1)
    path = _archive(tmp_path, image, ["docker.io/library/app:1", "127.0.0.1:5000/app:1"])

    config_hex = image.config_descriptor.digest.hex
    assert _json_member(path, "manifest.json") == [
        {
            "Config": f"blobs/sha256/{config_hex}",
            "RepoTags": ["app:1", "127.0.0.1:5000/app:1"],
            "Layers": [f"blobs/sha256/{layer.diff_id.hex}" for layer in image.layers],
        }
    ]
    assert _json_member(path, "repositories") == {
        "app": {"1": config_hex},
        "127.0.0.1:5000/app": {"1": config_hex},
    }


def test_archive_members_are_in_a_fixed_order_with_fixed_metadata(tmp_path: Path) -> None:
    image = make_image(1)
    path = _archive(tmp_path, image)

    members = _members(path)
    assert list(members) == [
        "manifest.json",
        "repositories",
        f"blobs/sha256/{image.config_descriptor.digest.hex}",
        *(f"blobs/sha256/{layer.diff_id.hex}" for layer in image.layers),
    ]
    for info, _ in members.values():
        assert (info.mode, info.mtime, info.uid, info.gid) == (0o644, 0, 0, 0)
        assert (info.uname, info.gname, info.isreg()) == ("", "", True)


def test_archive_of_the_same_image_is_byte_identical(tmp_path: Path) -> None:
    image = make_image(1)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    first, second = _archive(tmp_path / "a", image), _archive(tmp_path / "b", image)

    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize(
    ("tag", "repo_tag", "repository"),
    [
        ("docker.io/library/app:1", "app:1", "app"),
        ("docker.io/someone/app:2", "someone/app:2", "someone/app"),
        ("127.0.0.1:5000/app:1", "127.0.0.1:5000/app:1", "127.0.0.1:5000/app"),
        ("quay.io/org/tool:v3", "quay.io/org/tool:v3", "quay.io/org/tool"),
        ("busybox", "busybox:latest", "busybox"),
    ],
)
def test_repo_tags_use_the_familiar_form(
    tmp_path: Path, tag: str, repo_tag: str, repository: str
) -> None:
    image = make_image(1, layers=1)
    path = _archive(tmp_path, image, [tag])

    manifest = _json_member(path, "manifest.json")
    assert isinstance(manifest, list)
    assert manifest[0]["RepoTags"] == [repo_tag]
    assert _json_member(path, "repositories") == {
        repository: {repo_tag.rpartition(":")[2]: image.config_descriptor.digest.hex}
    }


def test_untagged_archive_has_null_repo_tags_and_no_repositories_file(tmp_path: Path) -> None:
    image = make_image(1)
    path = _archive(tmp_path, image, [])

    manifest = _json_member(path, "manifest.json")
    assert isinstance(manifest, list)
    assert manifest[0]["RepoTags"] is None
    assert "repositories" not in _members(path)
    source = DockerArchiveSource(path)
    assert source.get_manifest().manifest().config.digest == image.config_descriptor.digest


def test_tag_with_a_digest_is_refused(tmp_path: Path) -> None:
    digest = make_image(1).config_descriptor.digest
    with pytest.raises(LayoutError, match="by tag"):
        DockerArchiveSink(tmp_path / "x.tar", [f"app@{digest}"])


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_registry_image_through_archive_and_back_keeps_config_digest_and_diff_ids(
    tmp_path: Path, compression: str
) -> None:
    image = make_image(7, layers=3, compression=compression)
    path = tmp_path / "image.tar"
    copy_image(MemorySource(image.manifest, [image]), DockerArchiveSink(path, ["app:1"]))

    source = DockerArchiveSource(path, "app:1")
    manifest = source.get_manifest().manifest()
    assert manifest.config.digest == image.config_descriptor.digest
    assert manifest.config.media_type == MediaType.DOCKER_CONFIG
    config = ImageConfig.parse(read_blob(source, manifest.config))
    assert config.diff_ids == tuple(layer.diff_id for layer in image.layers)
    assert [layer.digest for layer in manifest.layers] == list(config.diff_ids)
    assert {layer.media_type for layer in manifest.layers} == {MediaType.DOCKER_LAYER}
    for descriptor, layer in zip(manifest.layers, image.layers, strict=True):
        assert read_blob(source, descriptor) == layer.tar


def test_archive_source_synthesizes_the_same_canonical_manifest_every_time(
    tmp_path: Path,
) -> None:
    path = _archive(tmp_path, make_image(1))

    first = DockerArchiveSource(path).get_manifest()
    second = DockerArchiveSource(path, "docker.io/library/app:1").get_manifest()
    assert first.data == second.data
    assert first.media_type == MediaType.DOCKER_MANIFEST
    assert first.data == canonical_json(json.loads(first.data))


def test_sink_refuses_an_index(tmp_path: Path) -> None:
    amd, arm = make_image(1, platform=AMD64), make_image(2, platform=ARM64)
    sink = DockerArchiveSink(tmp_path / "x.tar", ["app:1"])

    assert sink.accepts_index is False
    with pytest.raises(LayoutError, match="cannot hold an index"):
        sink.put_manifest(make_index([amd, arm]), top=True)


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
@pytest.mark.parametrize("change", ["other-bytes", "one-byte-short"])
def test_sink_rejects_a_layer_not_matching_its_digest_and_leaves_nothing(
    tmp_path: Path, compression: str, change: str
) -> None:
    image = make_image(1, compression=compression)
    path = tmp_path / "out" / "image.tar"
    path.parent.mkdir()
    sink = DockerArchiveSink(path, ["app:1"])
    layer = image.layers[0]
    if change == "other-bytes":
        tampered = make_image(2, compression=compression).layers[0].blob
    else:
        # The announced blob cut short (or grown by one byte, uncompressed): caught by the
        # size and digest check at EOF, before any decompressor complaint.
        tampered = layer.blob + b"\0" if compression == "none" else layer.blob[:-1]

    with pytest.raises(DigestMismatchError):
        sink.put_blob(layer.descriptor, opener(tampered))
    assert not sink.has_blob(layer.descriptor)
    sink.put_blob(image.config_descriptor, opener(image.config))
    sink.put_blob(image.layers[1].descriptor, opener(image.layers[1].blob))
    sink.put_manifest(image.manifest, top=True)
    with pytest.raises(LayoutError, match=f"layer {layer.descriptor.digest.short} was not written"):
        sink.commit()
    assert list(path.parent.iterdir()) == []


def test_sink_rejects_layers_whose_diff_ids_differ_from_the_config(tmp_path: Path) -> None:
    image, other = make_image(1, layers=1), make_image(2, layers=1)
    # A manifest pointing at another image's layer: the config's diff_id does not match.
    manifest = image.manifest.manifest().with_layers((other.layers[0].descriptor,))
    sink = DockerArchiveSink(tmp_path / "image.tar", ["app:1"])
    sink.put_blob(image.config_descriptor, opener(image.config))
    sink.put_blob(other.layers[0].descriptor, opener(other.layers[0].blob))
    sink.put_manifest(RawManifest(manifest.to_bytes(), MediaType.OCI_MANIFEST), top=True)

    with pytest.raises(DigestMismatchError, match="layer 0 decompresses to .* diff_id is"):
        sink.commit()
    assert list(tmp_path.iterdir()) == []


def test_sink_trusts_the_magic_bytes_over_a_media_type_claiming_gzip(tmp_path: Path) -> None:
    image = make_image(1, layers=1, compression="none")
    layer = image.layers[0]
    mislabelled = Descriptor(MediaType.OCI_LAYER_GZIP, layer.descriptor.digest, len(layer.blob))
    sink = DockerArchiveSink(tmp_path / "image.tar", [])
    sink.put_blob(image.config_descriptor, opener(image.config))
    sink.put_blob(mislabelled, opener(layer.blob))
    sink.put_manifest(image.manifest, top=True)
    sink.commit()

    assert _members(tmp_path / "image.tar")[f"blobs/sha256/{layer.diff_id.hex}"][1] == layer.tar


def test_abandoned_sink_removes_its_staging_directory(tmp_path: Path) -> None:
    image = make_image(1)
    sink = DockerArchiveSink(tmp_path / "image.tar", ["app:1"])
    put_image(sink, image)
    assert len(list(tmp_path.iterdir())) == 1  # the staging directory

    del sink
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_committed_sink_leaves_only_the_archive(tmp_path: Path) -> None:
    _archive(tmp_path, make_image(1))
    assert [p.name for p in tmp_path.iterdir()] == ["image.tar"]


# --- the source on archives written by hand ---------------------------------------------


def test_source_reads_old_style_archive_and_checks_layers_against_diff_ids(tmp_path: Path) -> None:
    image = make_image(3, layers=2)
    write_docker_archive(tmp_path / "old.tar", [(image, ["app:latest"])])

    source = DockerArchiveSource(tmp_path / "old.tar")
    manifest = source.get_manifest().manifest()
    assert manifest.config.digest == image.config_descriptor.digest
    assert [layer.digest for layer in manifest.layers] == [la.diff_id for la in image.layers]


@pytest.mark.parametrize(
    ("reference", "seed"),
    [
        ("app:1", 1),
        ("docker.io/library/app:1", 1),
        ("other:2", 2),
        ("docker.io/library/other:2", 2),
    ],
)
def test_source_picks_the_image_tagged_reference(tmp_path: Path, reference: str, seed: int) -> None:
    one, two = make_image(1), make_image(2)
    write_docker_archive(tmp_path / "two.tar", [(one, ["app:1"]), (two, ["other:2"])])

    manifest = DockerArchiveSource(tmp_path / "two.tar", reference).get_manifest().manifest()
    assert manifest.config.digest == make_image(seed).config_descriptor.digest


def test_source_without_reference_refuses_several_images_and_lists_them(tmp_path: Path) -> None:
    one, two = make_image(1), make_image(2)
    write_docker_archive(tmp_path / "two.tar", [(one, ["app:1", "app:one"]), (two, None)])

    with pytest.raises(
        LayoutError, match=r"holds 2 images; name one of: app:1, app:one; \(untagged"
    ):
        DockerArchiveSource(tmp_path / "two.tar").get_manifest()
    with pytest.raises(LayoutError, match=r"no image tagged 'app:2' \(has: app:1, app:one"):
        DockerArchiveSource(tmp_path / "two.tar", "app:2").get_manifest()


@pytest.mark.parametrize("evil", ["../evil", "/etc/evil", "blobs/../../evil"])
def test_source_refuses_an_archive_with_a_member_escaping(tmp_path: Path, evil: str) -> None:
    image = make_image(1)
    write_docker_archive(tmp_path / "evil.tar", [(image, ["app:1"])], extra=[(evil, b"x")])

    with pytest.raises(LayoutError, match="escapes the archive"):
        DockerArchiveSource(tmp_path / "evil.tar").get_manifest()


def test_source_refuses_a_manifest_json_path_escaping(tmp_path: Path) -> None:
    entry: list[dict[str, object]] = [{"Config": "../config.json", "RepoTags": None, "Layers": []}]
    write_tar(tmp_path / "evil.tar", [("manifest.json", json.dumps(entry).encode())])

    with pytest.raises(LayoutError, match="escapes the archive"):
        DockerArchiveSource(tmp_path / "evil.tar").get_manifest()


def test_source_refuses_a_layer_symlink_leading_out_of_the_archive(tmp_path: Path) -> None:
    image = make_image(1, layers=1)
    path = tmp_path / "link.tar"
    write_docker_archive(path, [(image, ["app:1"])])
    layer_name = f"{image.layers[0].diff_id.hex[:16]}/layer.tar"
    with tarfile.open(path, "a") as tar:
        link = tarfile.TarInfo(layer_name)
        link.type = tarfile.SYMTYPE
        link.linkname = "../../etc/passwd"
        tar.addfile(link)

    with pytest.raises(LayoutError, match="escapes the archive"):
        DockerArchiveSource(path).get_manifest()


def test_source_follows_a_symlink_to_a_shared_layer_as_old_docker_save_wrote(
    tmp_path: Path,
) -> None:
    image = make_image(1, layers=1)
    tar_bytes = image.layers[0].tar
    config = ImageConfig.parse(image.config)
    # The same layer twice: the second entry is a symlink to the first, as docker save did.
    doubled = json.loads(image.config)
    doubled["rootfs"]["diff_ids"] = [str(config.diff_ids[0])] * 2
    config_bytes = json.dumps(doubled).encode()
    config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    entry = [{"Config": config_name, "RepoTags": None, "Layers": ["a/layer.tar", "b/layer.tar"]}]
    path = tmp_path / "shared.tar"
    members = [("manifest.json", json.dumps(entry).encode()), (config_name, config_bytes)]
    write_tar(path, [*members, ("a/layer.tar", tar_bytes)])
    with tarfile.open(path, "a") as tar:
        link = tarfile.TarInfo("b/layer.tar")
        link.type = tarfile.SYMTYPE
        link.linkname = "../a/layer.tar"
        tar.addfile(link)

    source = DockerArchiveSource(path)
    layers = source.get_manifest().manifest().layers
    assert [la.digest for la in layers] == [config.diff_ids[0]] * 2
    assert read_blob(source, layers[1]) == tar_bytes


def test_source_gives_a_gzip_layer_member_the_docker_gzip_media_type(tmp_path: Path) -> None:
    image = make_image(1, layers=1, compression="gzip")
    layer = image.layers[0]
    config_name = f"{image.config_descriptor.digest.hex}.json"
    entry = [{"Config": config_name, "RepoTags": ["app:1"], "Layers": ["layer.tar.gz"]}]
    write_tar(
        tmp_path / "gz.tar",
        [
            ("manifest.json", json.dumps(entry).encode()),
            (config_name, image.config),
            ("layer.tar.gz", layer.blob),
        ],
    )

    source = DockerArchiveSource(tmp_path / "gz.tar")
    (descriptor,) = source.get_manifest().manifest().layers
    assert descriptor == Descriptor(
        MediaType.DOCKER_LAYER_GZIP, layer.descriptor.digest, len(layer.blob)
    )
    assert read_blob(source, descriptor) == layer.blob


def test_source_refuses_an_uncompressed_layer_that_is_not_its_diff_id(tmp_path: Path) -> None:
    image, other = make_image(1, layers=1), make_image(2, layers=1)
    config_name = f"{image.config_descriptor.digest.hex}.json"
    entry = [{"Config": config_name, "RepoTags": None, "Layers": ["layer.tar"]}]
    write_tar(
        tmp_path / "bad.tar",
        [
            ("manifest.json", json.dumps(entry).encode()),
            (config_name, image.config),
            ("layer.tar", other.layers[0].tar),
        ],
    )

    with pytest.raises(DigestMismatchError, match="diff_id"):
        DockerArchiveSource(tmp_path / "bad.tar").get_manifest()


def test_source_detects_a_layer_changed_after_it_was_hashed(tmp_path: Path) -> None:
    image = make_image(1, layers=1)
    path = _archive(tmp_path, image)
    source = DockerArchiveSource(path)
    layer = source.get_manifest().manifest().layers[0]
    data = bytearray(path.read_bytes())
    offset = data.find(image.layers[0].tar[600:700])
    data[offset] ^= 1
    path.write_bytes(bytes(data))

    with pytest.raises(DigestMismatchError):
        read_blob(source, layer)


def test_source_refuses_a_manifest_digest_it_does_not_have(tmp_path: Path) -> None:
    path = _archive(tmp_path, make_image(1))
    with pytest.raises(LayoutError, match="no manifest"):
        DockerArchiveSource(path).get_manifest(make_image(2).manifest.digest)


@pytest.mark.parametrize(
    "content",
    [pytest.param(b"", id="empty"), pytest.param(b"\x1f\x8b" + bytes(100), id="gzip-ish")],
)
def test_source_refuses_a_file_that_is_not_a_tar(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "x.tar").write_bytes(content)
    with pytest.raises(LayoutError):
        DockerArchiveSource(tmp_path / "x.tar").get_manifest()


def test_source_refuses_an_archive_without_manifest_json(tmp_path: Path) -> None:
    write_tar(tmp_path / "x.tar", [("something", b"else")])
    with pytest.raises(LayoutError, match="no manifest.json"):
        DockerArchiveSource(tmp_path / "x.tar").get_manifest()


def test_member_bytes_via_io_are_whole(tmp_path: Path) -> None:
    # Reading with a small chunk size still yields the whole verified blob.
    image = make_image(1, layers=1)
    source = DockerArchiveSource(_archive(tmp_path, image))
    layer = source.get_manifest().manifest().layers[0]
    with source.open_blob(layer) as stream:
        out = io.BytesIO()
        while chunk := stream.read(7):
            out.write(chunk)
    assert out.getvalue() == image.layers[0].tar
