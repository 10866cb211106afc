import json
from pathlib import Path

import pytest

from executor.errors import DigestMismatchError, LayoutError
from executor.oci.digest import Digest
from executor.oci.layout import REF_NAME_ANNOTATION, OciLayoutSink, OciLayoutSource
from executor.oci.manifest import Descriptor
from executor.oci.mediatype import MediaType
from tests.unit.executor.oci.images_for_tests import (
    AMD64,
    ARM64,
    make_image,
    make_index,
    opener,
    put_image,
    read_blob,
    write_image,
    write_layout,
)


def _index_json(root: Path) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = json.loads((root / "index.json").read_bytes())["manifests"]
    return entries


def _names(root: Path) -> dict[str, str]:
    """ref name -> digest, from index.json."""
    out = {}
    for entry in _index_json(root):
        annotations = entry.get("annotations")
        assert isinstance(annotations, dict)
        out[annotations[REF_NAME_ANNOTATION]] = str(entry["digest"])
    return out


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_image_round_trip_keeps_manifest_digest_and_blob_bytes(tmp_path: Path) -> None:
    image = make_image(1)
    write_image(OciLayoutSink(tmp_path / "layout", "v1"), image)

    source = OciLayoutSource(tmp_path / "layout", "v1")
    raw = source.get_manifest()
    assert raw.data == image.manifest.data
    assert raw.digest == image.manifest.digest
    assert raw.media_type == MediaType.OCI_MANIFEST
    for descriptor, data in image.blobs.values():
        assert read_blob(source, descriptor) == data


def test_index_round_trip_keeps_digests_of_index_and_platform_manifests(tmp_path: Path) -> None:
    amd, arm = make_image(1, platform=AMD64), make_image(2, platform=ARM64)
    index = make_index([amd, arm])
    sink = OciLayoutSink(tmp_path, "multi")
    put_image(sink, amd, top=False)
    put_image(sink, arm, top=False)
    sink.put_manifest(index, top=True)
    sink.commit()

    source = OciLayoutSource(tmp_path, "multi")
    top = source.get_manifest()
    assert (top.digest, top.data, top.media_type) == (index.digest, index.data, MediaType.OCI_INDEX)
    for image in (amd, arm):
        child = source.get_manifest(image.manifest.digest)
        assert child.data == image.manifest.data
        assert child.media_type == MediaType.OCI_MANIFEST
        for descriptor, data in image.blobs.values():
            assert read_blob(source, descriptor) == data


def test_sink_creates_the_layout_files_and_names_the_top_manifest(tmp_path: Path) -> None:
    root = tmp_path / "new" / "layout"
    image = make_image(3)
    write_image(OciLayoutSink(root, "app-1.0"), image)

    assert json.loads((root / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    assert _index_json(root) == [
        {
            "mediaType": MediaType.OCI_MANIFEST,
            "digest": str(image.manifest.digest),
            "size": len(image.manifest.data),
            "annotations": {REF_NAME_ANNOTATION: "app-1.0"},
        }
    ]
    blobs = {f"blobs/sha256/{d.hex}" for d in [image.manifest.digest, *image.blobs]}
    assert _files(root) == {"oci-layout", "index.json", *blobs}
    assert all((root / name).stat().st_mode & 0o777 == 0o644 for name in blobs)


def test_writing_a_tag_replaces_its_entry_and_keeps_the_other_tags(tmp_path: Path) -> None:
    first, second, third = make_image(1), make_image(2), make_image(3)
    write_image(OciLayoutSink(tmp_path, "a"), first)
    write_image(OciLayoutSink(tmp_path, "b"), second)
    write_image(OciLayoutSink(tmp_path, "a"), third)

    assert _names(tmp_path) == {"a": str(third.manifest.digest), "b": str(second.manifest.digest)}
    assert OciLayoutSource(tmp_path, "a").get_manifest().data == third.manifest.data
    assert OciLayoutSource(tmp_path, "b").get_manifest().data == second.manifest.data


def test_layout_written_by_another_tool_keeps_its_entries_when_we_add_a_tag(
    tmp_path: Path,
) -> None:
    theirs = make_image(1)
    write_layout(tmp_path, [("theirs", theirs.manifest), (None, theirs.manifest)], [theirs])
    ours = make_image(2)
    write_image(OciLayoutSink(tmp_path, "ours"), ours)

    entries = _index_json(tmp_path)
    assert [e.get("annotations") for e in entries] == [
        {REF_NAME_ANNOTATION: "theirs"},
        None,
        {REF_NAME_ANNOTATION: "ours"},
    ]


def test_untagged_image_written_twice_is_listed_once(tmp_path: Path) -> None:
    image = make_image(1)
    write_image(OciLayoutSink(tmp_path, None), image)
    write_image(OciLayoutSink(tmp_path, None), image)

    assert [e["digest"] for e in _index_json(tmp_path)] == [str(image.manifest.digest)]
    assert OciLayoutSource(tmp_path, None).get_manifest().data == image.manifest.data


def test_source_without_tag_reads_the_only_entry(tmp_path: Path) -> None:
    image = make_image(1)
    write_layout(tmp_path, [("whatever", image.manifest)], [image])

    assert OciLayoutSource(tmp_path, None).get_manifest().digest == image.manifest.digest


def test_source_without_tag_refuses_several_entries_and_names_their_tags(tmp_path: Path) -> None:
    one, two = make_image(1), make_image(2)
    write_layout(tmp_path, [("one", one.manifest), ("two", two.manifest)], [one, two])

    with pytest.raises(LayoutError, match=r"lists 2 manifests.*'one', 'two'"):
        OciLayoutSource(tmp_path, None).get_manifest()


def test_source_with_unknown_tag_names_the_tags_there(tmp_path: Path) -> None:
    image = make_image(1)
    write_layout(tmp_path, [("one", image.manifest), (None, image.manifest)], [image])

    with pytest.raises(
        LayoutError, match=r"no manifest tagged 'two' \(tags: 'one', \(untagged\)\)"
    ):
        OciLayoutSource(tmp_path, "two").get_manifest()


def test_source_reads_an_index_written_by_hand_with_its_children(tmp_path: Path) -> None:
    amd, arm = make_image(1, platform=AMD64), make_image(2, platform=ARM64)
    index = make_index([amd, arm])
    write_layout(tmp_path, [("latest", index)], [amd, arm])

    source = OciLayoutSource(tmp_path, "latest")
    assert source.get_manifest().digest == index.digest
    assert source.get_manifest(arm.manifest.digest).data == arm.manifest.data


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: bytes([b[0] ^ 1]) + b[1:], id="one-byte-flipped"),
        pytest.param(lambda b: b[:-1], id="truncated"),
        pytest.param(lambda b: b + b"x", id="extended"),
    ],
)
def test_corrupted_blob_on_disk_raises_digest_mismatch_when_read(
    tmp_path: Path, damage: object
) -> None:
    image = make_image(1)
    write_image(OciLayoutSink(tmp_path, "v1"), image)
    layer = image.layers[0].descriptor
    path = tmp_path / "blobs" / "sha256" / layer.digest.hex
    assert callable(damage)
    path.write_bytes(damage(path.read_bytes()))

    with pytest.raises(DigestMismatchError):
        read_blob(OciLayoutSource(tmp_path, "v1"), layer)


def test_corrupted_manifest_on_disk_raises_digest_mismatch(tmp_path: Path) -> None:
    image = make_image(1)
    write_image(OciLayoutSink(tmp_path, "v1"), image)
    path = tmp_path / "blobs" / "sha256" / image.manifest.digest.hex
    path.write_bytes(path.read_bytes().replace(b"2", b"3", 1))

    with pytest.raises(DigestMismatchError):
        OciLayoutSource(tmp_path, "v1").get_manifest()


@pytest.mark.parametrize(
    ("data", "size_delta"),
    [
        pytest.param(b"not the promised bytes", 0, id="wrong-bytes"),
        pytest.param(None, 1, id="wrong-size"),
    ],
)
def test_sink_rejects_blob_not_matching_its_descriptor_and_leaves_no_file(
    tmp_path: Path, data: bytes | None, size_delta: int
) -> None:
    good = b"the real bytes" * 100
    descriptor = Descriptor.of(good, MediaType.OCI_LAYER)
    descriptor = Descriptor(descriptor.media_type, descriptor.digest, descriptor.size + size_delta)
    sink = OciLayoutSink(tmp_path, "v1")

    with pytest.raises(DigestMismatchError):
        sink.put_blob(descriptor, opener(good if data is None else data))

    assert list((tmp_path / "blobs" / "sha256").iterdir()) == []
    assert not sink.has_blob(descriptor)


def test_has_blob_checks_existence_and_size(tmp_path: Path) -> None:
    data = b"some layer bytes"
    descriptor = Descriptor.of(data, MediaType.OCI_LAYER)
    sink = OciLayoutSink(tmp_path, "v1")
    assert not sink.has_blob(descriptor)

    sink.put_blob(descriptor, opener(data))

    assert sink.has_blob(descriptor)
    assert not sink.has_blob(Descriptor(descriptor.media_type, descriptor.digest, 3))


@pytest.mark.parametrize(
    "tag",
    ["a/b", "", "-lead", "trail-", "x y", "two..dots", "ü", "a:", "../up", "a\nb"],
)
def test_tag_outside_the_ref_name_grammar_is_refused(tmp_path: Path, tag: str) -> None:
    with pytest.raises(LayoutError, match="invalid OCI layout tag"):
        OciLayoutSink(tmp_path, tag)
    with pytest.raises(LayoutError, match="invalid OCI layout tag"):
        OciLayoutSource(tmp_path, tag)


@pytest.mark.parametrize("tag", ["latest", "v1.2.3", "1", "a_b", "a--b", "a:b", "a@b+c", "A-Z"])
def test_tag_inside_the_ref_name_grammar_round_trips(tmp_path: Path, tag: str) -> None:
    image = make_image(1, layers=1)
    write_image(OciLayoutSink(tmp_path, tag), image)

    assert OciLayoutSource(tmp_path, tag).get_manifest().digest == image.manifest.digest


def test_sink_refuses_a_nonempty_directory_that_is_not_a_layout(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    image = make_image(1)

    with pytest.raises(LayoutError, match="not empty and not an OCI layout"):
        write_image(OciLayoutSink(tmp_path, "v1"), image)
    assert _files(tmp_path) == {"precious.txt"}


@pytest.mark.parametrize("layout_file", ['{"imageLayoutVersion": "2.0.0"}', "[]", "nonsense"])
def test_unsupported_layout_file_is_refused_by_source_and_sink(
    tmp_path: Path, layout_file: str
) -> None:
    image = make_image(1)
    write_layout(tmp_path, [("v1", image.manifest)], [image])
    (tmp_path / "oci-layout").write_text(layout_file)

    with pytest.raises(LayoutError):
        OciLayoutSource(tmp_path, "v1").get_manifest()
    with pytest.raises(LayoutError):
        write_image(OciLayoutSink(tmp_path, "v2"), image)


def test_source_refuses_a_directory_without_oci_layout_file(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="no oci-layout file"):
        OciLayoutSource(tmp_path, "v1").get_manifest()


def test_missing_blob_is_a_layout_error_naming_it(tmp_path: Path) -> None:
    image = make_image(1)
    write_image(OciLayoutSink(tmp_path, "v1"), image)
    layer = image.layers[1].descriptor
    (tmp_path / "blobs" / "sha256" / layer.digest.hex).unlink()

    with pytest.raises(LayoutError, match=f"{layer.digest.short}: missing"):
        read_blob(OciLayoutSource(tmp_path, "v1"), layer)


def test_sink_does_not_write_through_a_blobs_symlink_leading_outside(tmp_path: Path) -> None:
    root, outside = tmp_path / "layout", tmp_path / "outside"
    outside.mkdir()
    write_layout(root, [])
    (root / "blobs").mkdir()
    (root / "blobs" / "sha256").symlink_to(outside)
    data = b"layer"

    with pytest.raises(LayoutError, match="leads outside the layout"):
        OciLayoutSink(root, "v1").put_blob(Descriptor.of(data, MediaType.OCI_LAYER), opener(data))
    assert list(outside.iterdir()) == []


def test_source_does_not_read_through_a_blob_symlink_leading_outside(tmp_path: Path) -> None:
    data = b"secret outside the layout"
    (tmp_path / "outside").write_bytes(data)
    root = tmp_path / "layout"
    write_layout(root, [])
    digest = Digest.of(data)
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "blobs" / "sha256" / digest.hex).symlink_to(tmp_path / "outside")

    with pytest.raises(LayoutError, match="leads outside the layout"):
        read_blob(OciLayoutSource(root, None), Descriptor.of(data, MediaType.OCI_LAYER))


def test_commit_without_a_top_manifest_is_refused(tmp_path: Path) -> None:
    image = make_image(1)
    sink = OciLayoutSink(tmp_path, "v1")
    put_image(sink, image, top=False)

    with pytest.raises(LayoutError, match="no top manifest"):
        sink.commit()
    assert _index_json(tmp_path) == []


def test_parallel_blob_writes_into_a_new_layout(tmp_path: Path) -> None:
    """copy_image writes blobs from several threads; the first must not trip the others."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.unit.executor.oci.images_for_tests import opener

    for attempt in range(5):
        sink = OciLayoutSink(tmp_path / f"layout{attempt}", "t")
        blobs = [f"blob {attempt} {i}".encode() for i in range(16)]

        def put(data: bytes, sink: OciLayoutSink = sink) -> None:
            sink.put_blob(Descriptor(MediaType.OCI_LAYER, Digest.of(data), len(data)), opener(data))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, blobs))
        for data in blobs:
            assert sink.has_blob(Descriptor(MediaType.OCI_LAYER, Digest.of(data), len(data)))
