"""docker-archive tarballs (the ``docker save`` / ``docker load`` format) as a source and sink.

The tar holds ``manifest.json`` (``[{"Config": ..., "RepoTags": [...], "Layers": [...]}]``),
the image config, one uncompressed layer tar per layer and a legacy ``repositories``
file. Names follow Docker 25+: ``blobs/sha256/<config hex>`` and
``blobs/sha256/<diff_id hex>``; readers (docker load, skopeo) follow the paths in
manifest.json, so older ``<id>/layer.tar`` archives read the same.

The config travels byte for byte, so the image ID (the config digest) and the
diff_ids survive registry -> archive -> registry. Layers are stored uncompressed,
as Docker stores them, so a layer's compressed digest does not survive.

Modules: ``source`` reads an archive (DockerArchiveSource), ``sink`` writes one
(DockerArchiveSink), ``format`` holds the names both use.
"""

from executor.oci.archive.sink import DockerArchiveSink
from executor.oci.archive.source import DockerArchiveSource

__all__ = ["DockerArchiveSink", "DockerArchiveSource"]
