import json

import pytest

from executor.errors import ManifestError, PlatformNotFoundError
from executor.oci.config import ImageConfig
from executor.oci.digest import Digest
from executor.oci.image import RawManifest
from executor.oci.manifest import Index, Manifest, Platform, canonical_json
from executor.oci.mediatype import MediaType

D1, D2, D3 = (Digest.of(bytes([i])) for i in range(3))


def _desc(digest: Digest, media_type: str, **more: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": str(digest), "size": 10, **more}


MANIFEST = {
    "schemaVersion": 2,
    "mediaType": MediaType.OCI_MANIFEST,
    "config": _desc(D1, MediaType.OCI_CONFIG),
    "layers": [_desc(D2, MediaType.OCI_LAYER_GZIP, annotations={"a": "b"}, futureField=[1])],
    "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    "someExtension": {"kept": True},
}


def test_manifest_round_trip_keeps_unknown_fields() -> None:
    data = canonical_json(MANIFEST)
    manifest = Manifest.parse(data)
    assert manifest.layers[0].annotations == {"a": "b"}
    assert manifest.to_bytes() == data


def test_index_round_trip_and_platform_selection() -> None:
    index = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_INDEX,
        "manifests": [
            _desc(D1, MediaType.OCI_MANIFEST, platform={"os": "linux", "architecture": "arm64"}),
            _desc(
                D2,
                MediaType.OCI_MANIFEST,
                platform={"os": "linux", "architecture": "arm", "variant": "v6"},
            ),
            _desc(
                D3,
                MediaType.OCI_MANIFEST,
                platform={"os": "linux", "architecture": "arm", "variant": "v7"},
            ),
        ],
        "x-extra": 1,
    }
    data = canonical_json(index)
    parsed = Index.parse(data)
    assert parsed.to_bytes() == data
    assert parsed.select(Platform.parse("linux/arm64")).digest == D1
    assert parsed.select(Platform.parse("linux/arm/v7")).digest == D3
    with pytest.raises(PlatformNotFoundError, match=r"linux/amd64 \(has: linux/arm64"):
        parsed.select(Platform.parse("linux/amd64"))


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"schemaVersion": 1}, "schemaVersion must be 2"),
        ({**MANIFEST, "layers": "x"}, "'layers' missing or not a list"),
        ({**MANIFEST, "config": {"mediaType": "x", "size": 1}}, r"manifest.config: 'digest'"),
        ({**MANIFEST, "layers": [{**_desc(D1, "x"), "size": -1}]}, r"layers\[0\]: negative size"),
        ({**MANIFEST, "layers": [{**_desc(D1, "x"), "digest": "sha256:zz"}]}, r"layers\[0\]"),
    ],
)
def test_bad_manifests_name_the_field(body: dict[str, object], error: str) -> None:
    with pytest.raises(ManifestError, match=error):
        Manifest.parse(json.dumps(body).encode())


def test_raw_manifest_media_type_from_body_or_shape() -> None:
    docker = json.dumps({**MANIFEST, "mediaType": MediaType.DOCKER_MANIFEST}).encode()
    assert RawManifest.of(docker, "text/plain").media_type == MediaType.DOCKER_MANIFEST
    no_type = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert RawManifest.of(no_type).media_type == MediaType.OCI_INDEX
    raw = RawManifest.of(docker)
    assert raw.digest == Digest.of(docker)
    with pytest.raises(ManifestError, match="want an image index"):
        raw.index()


def test_config_round_trip_and_layer_append() -> None:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/bin", "A=1", "A=2"],
            "Cmd": ["sh"],
            "ExposedPorts": {"80/tcp": {}},
            "Labels": {"x": "y"},
            "Unknown": 5,
        },
        "rootfs": {"type": "layers", "diff_ids": [str(D1)]},
        "history": [{"created_by": "ADD x", "created": "2024-01-01T00:00:00Z"}],
        "moby.buildkit.buildinfo.v1": "e30=",
    }
    data = canonical_json(config)
    parsed = ImageConfig.parse(data)
    assert parsed.to_bytes() == data
    assert parsed.config.env_dict() == {"PATH": "/bin", "A": "2"}
    assert parsed.platform == Platform("linux", "amd64")
    grown = parsed.with_layer(D2, parsed.history[0])
    assert grown.diff_ids == (D1, D2) and len(grown.history) == 2
    empty = parsed.with_layer(None, parsed.history[0])
    assert empty.diff_ids == (D1,)


def test_platform_parse_errors() -> None:
    with pytest.raises(ManifestError, match="os/arch"):
        Platform.parse("linux")
