"""What a docker-archive's reader and writer agree on."""

from __future__ import annotations

MANIFEST_FILE = "manifest.json"
# Enough to tell gzip (2 bytes) and zstd (4 bytes) magic apart.
MAGIC_BYTES = 4
