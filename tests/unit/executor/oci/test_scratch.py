import json
from pathlib import Path

import pytest

from executor.errors import ManifestError
from executor.oci.config import ImageConfig
from executor.oci.layout import OciLayoutSink, OciLayoutSource
from executor.oci.manifest import Descriptor, Platform, canonical_json
from executor.oci.mediatype import MediaType
from executor.oci.scratch import ScratchSource
from tests.unit.executor.oci.images_for_tests import copy_image, read_blob


@pytest.mark.parametrize(
    ("platform", "config"),
    [
        (
            Platform("linux", "amd64"),
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
            },
        ),
        (
            Platform("linux", "arm64", "v8"),
            {
                "architecture": "arm64",
                "os": "linux",
                "variant": "v8",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
            },
        ),
        (
            Platform("windows", "amd64", os_version="10.0.17763.1"),
            {
                "architecture": "amd64",
                "os": "windows",
                "os.version": "10.0.17763.1",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
            },
        ),
    ],
    ids=str,
)
def test_scratch_config_holds_only_the_platform_and_an_empty_rootfs(
    platform: Platform, config: dict[str, object]
) -> None:
    source = ScratchSource(platform)
    manifest = source.get_manifest().manifest()

    data = read_blob(source, manifest.config)
    assert data == canonical_json(config)
    parsed = ImageConfig.parse(data)
    assert (parsed.diff_ids, parsed.history, parsed.platform) == ((), (), platform)


def test_scratch_manifest_is_an_oci_manifest_without_layers() -> None:
    raw = ScratchSource(Platform("linux", "amd64")).get_manifest()

    assert raw.media_type == MediaType.OCI_MANIFEST
    manifest = raw.manifest()
    assert manifest.layers == ()
    assert manifest.config.media_type == MediaType.OCI_CONFIG
    assert raw.data == canonical_json(json.loads(raw.data))


def test_scratch_bytes_are_the_same_for_the_same_platform_and_differ_across_platforms() -> None:
    amd64 = ScratchSource(Platform("linux", "amd64")).get_manifest()

    assert ScratchSource(Platform("linux", "amd64")).get_manifest().data == amd64.data
    assert ScratchSource(Platform("linux", "arm64")).get_manifest().digest != amd64.digest


def test_scratch_has_no_other_manifest_or_blob() -> None:
    source = ScratchSource(Platform("linux", "amd64"))
    other = Descriptor.of(b"{}", MediaType.OCI_CONFIG)

    assert source.get_manifest(source.get_manifest().digest) == source.get_manifest()
    with pytest.raises(ManifestError, match="no manifest"):
        source.get_manifest(other.digest)
    with pytest.raises(ManifestError, match="no blob"):
        source.open_blob(other)


def test_scratch_copied_into_a_layout_reads_back_with_the_same_digest(tmp_path: Path) -> None:
    source = ScratchSource(Platform("linux", "amd64"))
    copy_image(source, OciLayoutSink(tmp_path, "scratch"))

    assert OciLayoutSource(tmp_path, "scratch").get_manifest() == source.get_manifest()
