"""executor.output's early uploads against a registry that stalls: a failed build ends
within EarlyUploads' bound, with its own error; a successful one waits for its uploads."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.image import LayerRef
from executor.oci.digest import Digest
from executor.oci.manifest import Descriptor
from executor.oci.reference import ImageReference
from executor.output import ABANDON_UPLOAD_AFTER_SECONDS, EarlyUploads
from executor.registry.auth import StaticKeychain
from executor.registry.client import RegistryConnector
from executor.registry.hosts import RegistryOptions
from executor.report import BuildReporter
from tests.integration.test_build import write_context
from tests.support.images import PushedImage
from tests.support.stalling_registry import StallingRegistry

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
# Starting a thread and answering on loopback: well under this.
_SLACK_SECONDS = 2.0


@pytest.fixture
def stalling() -> Iterator[StallingRegistry]:
    with StallingRegistry() as started:
        yield started


def _layer(tmp_path: Path) -> LayerRef:
    data = b"layer bytes " * 1000
    path = tmp_path / "layer.tar.gz"
    path.write_bytes(data)
    digest = Digest.of(data)
    return LayerRef(Descriptor(LAYER_MEDIA_TYPE, digest, len(data)), digest, path=path)


def _uploads(stalling: StallingRegistry, reporter: BuildReporter) -> EarlyUploads:
    connector = RegistryConnector(RegistryOptions(), StaticKeychain({}))
    destination = ImageReference.parse(f"{stalling.host}/team/app:1")
    return EarlyUploads(connector, destination, reporter, abandon_after=0.5)


def test_a_failed_build_abandons_a_stalled_upload_after_the_bound(
    stalling: StallingRegistry, tmp_path: Path
) -> None:
    log = io.StringIO()
    uploads = _uploads(stalling, BuildReporter(log))
    uploads.offer(_layer(tmp_path))
    assert stalling.stalled.wait(10), "the upload never reached its PUT"
    started = time.monotonic()
    uploads.close()
    assert 0.5 <= time.monotonic() - started < 0.5 + _SLACK_SECONDS
    assert "abandoned an early upload still running after 0.5s" in log.getvalue()


def test_a_successful_build_waits_for_its_uploads_past_the_bound(
    stalling: StallingRegistry, tmp_path: Path
) -> None:
    reporter = BuildReporter(io.StringIO())
    uploads = _uploads(stalling, reporter)
    layer = _layer(tmp_path)
    uploads.offer(layer)
    assert stalling.stalled.wait(10), "the upload never reached its PUT"
    threading.Timer(1.5, stalling.release).start()
    started = time.monotonic()
    uploads.finish()
    assert time.monotonic() - started >= 1.0  # past the 0.5 s bound, until the answer
    uploads.close()
    assert reporter.bytes["pushed"] == layer.descriptor.size


def test_a_build_failing_during_a_stalled_upload_ends_with_its_own_error(
    stalling: StallingRegistry, busybox_image: PushedImage, tmp_path: Path
) -> None:
    """`farm build` whose second RUN fails once the first RUN's layer is stuck in its
    PUT: it ends within the bound, failing on exit code 3, not on a registry timeout."""
    ctx = write_context(
        tmp_path / "ctx",
        f"""
        FROM {busybox_image.reference}
        RUN head -c 100000 /dev/urandom > /big
        RUN for i in $(seq 100); do \\
              wget -q -O- http://{stalling.host}/stalled | grep -q yes && break; sleep 0.1; \\
            done; exit 3
        """,
    )
    # The old unbounded wait sat out the transport's 120 s read timeout, and retried.
    result = subprocess.run(
        [sys.executable, "-m", "farm", "build", "--context", str(ctx),
         "--destination", f"{stalling.host}/team/app:1"],
        capture_output=True, text=True, timeout=ABANDON_UPLOAD_AFTER_SECONDS + 60, check=False,
    )  # fmt: skip
    ended = time.monotonic()
    assert stalling.stalled_at is not None, result.stderr
    assert ended - stalling.stalled_at < ABANDON_UPLOAD_AFTER_SECONDS + _SLACK_SECONDS * 3
    assert result.returncode == 1, result.stderr
    assert "exit code 3" in result.stderr
    assert "abandoned an early upload" in result.stderr
    assert "timed out" not in result.stderr.lower()
