"""``farm build``: one Dockerfile to an image, with no services. Flags named as kaniko's."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from executor.build import build
from executor.errors import BuildInputError, ExecutorError
from executor.fs.compression import COMPRESSIONS
from executor.oci.manifest import Platform
from executor.oci.reference import ImageReference
from executor.options import SNAPSHOT_MODES, BuildOptions
from executor.report import BuildReporter
from executor.sandbox.select import BACKENDS, make_sandbox, probe_all, probe_overlay
from farm.cli.flags import add_registry_flags, connector


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "build",
        help="build a Dockerfile into an image, with no daemon and no services",
        description="Build a Dockerfile. With no --destination and no output path the "
        "image is built and only its digest printed.",
    )
    p.add_argument("-c", "--context", default=".", help="DIR, dir://DIR or tar://FILE (default .)")
    p.add_argument("-f", "--dockerfile", default="Dockerfile", help="relative to the context")
    p.add_argument("-d", "--destination", action="append", default=[], metavar="REF")
    p.add_argument(
        "--no-push", action="store_true", help="build (and write files) but push nothing"
    )
    p.add_argument("--tar-path", type=Path, help="also write a docker-archive here")
    p.add_argument("--oci-layout-path", type=Path, help="also write an OCI image layout here")
    p.add_argument("--digest-file", type=Path, help="write the image digest here")
    p.add_argument("--image-name-with-digest-file", type=Path, help="write REF@DIGEST lines here")
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY[=VALUE]")
    p.add_argument("--target", help="build this stage (and what it needs) only")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--custom-platform", type=Platform.parse, metavar="OS/ARCH[/VARIANT]")
    p.add_argument(
        "--reproducible", action="store_true", help="timestamps at 0: same input, same digest"
    )
    p.add_argument(
        "--compression", choices=[c for c in COMPRESSIONS if c != "none"], default="gzip"
    )
    p.add_argument("--compression-level", type=int)
    p.add_argument("--snapshot-mode", choices=SNAPSHOT_MODES, default="auto")
    p.add_argument("--ignore-path", action="append", default=[], metavar="PATH")
    p.add_argument("--secret", action="append", default=[], metavar="id=ID,src=FILE")
    p.add_argument("--sandbox", choices=("auto", *BACKENDS), default="auto")
    p.add_argument("--timings-file", type=Path, help="write per-phase seconds as JSON here")
    p.add_argument(
        "--workspace", type=Path, help="keep the build's files here (default: a temp dir)"
    )
    p.add_argument(
        "--run-cache-dir",
        type=Path,
        help="RUN --mount=type=cache directories live here and persist across builds "
        "(default: inside the workspace, so per build)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the digest")
    # For the farm's worker: how the build ended, as JSON (error class, temporary flag).
    p.add_argument("--outcome-file", type=Path, help=argparse.SUPPRESS)
    # For the farm's worker: build args and labels as JSON, kept out of the command line.
    p.add_argument("--args-file", type=Path, help=argparse.SUPPRESS)
    # For the farm's worker: die with it (PR_SET_PDEATHSIG) if it is killed outright.
    p.add_argument("--die-with-parent", type=int, metavar="PID", help=argparse.SUPPRESS)
    add_registry_flags(p)
    p.set_defaults(func=run_build)

    doctor = commands.add_parser("doctor", help="say which sandboxes and snapshotters work here")
    doctor.set_defaults(func=run_doctor)


def _pairs(values: list[str], flag: str, *, from_env: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key:
            raise argparse.ArgumentTypeError(f"{flag} {item!r}: want KEY=VALUE")
        if not sep:
            if not from_env:
                raise argparse.ArgumentTypeError(f"{flag} {item!r}: want KEY=VALUE")
            # kaniko and docker take a bare KEY's value from the environment.
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out


def _secrets(values: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in values:
        fields = dict(part.partition("=")[::2] for part in item.split(","))
        secret_id = fields.get("id")
        source = fields.get("src") or fields.get("source")
        if not secret_id or not source:
            raise argparse.ArgumentTypeError(f"--secret {item!r}: want id=ID,src=FILE")
        path = Path(source)
        if not path.is_file():
            raise BuildInputError(f"--secret {secret_id}: {source} is not a readable file")
        out[secret_id] = path
    return out


def _args_file(path: Path) -> dict[str, dict[str, str]]:
    """``{"build_args": {...}, "labels": {...}}``, each a map of strings."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BuildInputError(f"--args-file {path}: {exc}") from exc
    out: dict[str, dict[str, str]] = {}
    for key in ("build_args", "labels"):
        value = obj.get(key, {}) if isinstance(obj, dict) else None
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise BuildInputError(f"--args-file {path}: {key!r}: want a map of strings")
        out[key] = value
    return out


def _check_output_paths(args: argparse.Namespace) -> None:
    """Fail before building, not after pushing, when an output file cannot be written."""
    for flag in (
        "tar_path",
        "oci_layout_path",
        "digest_file",
        "image_name_with_digest_file",
        "timings_file",
    ):
        path = getattr(args, flag)
        if path is not None and not path.parent.is_dir():
            name = "--" + flag.replace("_", "-")
            raise BuildInputError(f"{name} {path}: directory {path.parent} does not exist")


def run_build(args: argparse.Namespace) -> int:
    if args.die_with_parent is not None:
        from executor.sandbox.enter import die_with_parent

        die_with_parent()
        if os.getppid() != args.die_with_parent:
            raise BuildInputError("the worker that started this build is gone")
    _check_output_paths(args)
    build_args = _pairs(args.build_arg, "--build-arg", from_env=True)
    labels = _pairs(args.label, "--label")
    if args.args_file is not None:
        from_file = _args_file(args.args_file)
        build_args.update(from_file["build_args"])
        labels.update(from_file["labels"])
    destinations = tuple(ImageReference.parse(d) for d in args.destination)
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="farm-build-"))
    options = BuildOptions(
        context=args.context.removeprefix("dir://"),
        workspace=workspace,
        dockerfile=args.dockerfile,
        destinations=destinations,
        no_push=args.no_push,
        tar_path=args.tar_path,
        oci_layout_path=args.oci_layout_path,
        digest_file=args.digest_file,
        image_name_with_digest_file=args.image_name_with_digest_file,
        build_args=build_args,
        target=args.target,
        labels=labels,
        platform=args.custom_platform,
        reproducible=args.reproducible,
        source_date_epoch=_epoch_from_env(),
        compression=args.compression,
        compression_level=args.compression_level,
        snapshot_mode=args.snapshot_mode,
        ignore_paths=tuple(args.ignore_path),
        secrets=_secrets(args.secret),
        sandbox=args.sandbox,
        timings_file=args.timings_file,
        run_cache_dir=args.run_cache_dir,
    )
    reporter = BuildReporter(sys.stderr, quiet=args.quiet)
    try:
        result = build(options, connector=connector(args, {}), reporter=reporter)
    except ExecutorError as exc:
        _write_outcome(
            args.outcome_file,
            {
                "ok": False,
                "error": type(exc).__name__,
                "temporary": exc.temporary,
                "message": str(exc),
                "bytes": dict(reporter.bytes),
            },
        )
        raise
    finally:
        if args.workspace is None:
            shutil.rmtree(workspace, ignore_errors=True)
    _write_outcome(
        args.outcome_file,
        {
            "ok": True,
            "digest": str(result.digest),
            "timings": dict(result.timings),
            "layers": len(result.image.layers),
            "bytes": dict(result.transferred),
        },
    )
    print(result.digest)
    return 0


def _write_outcome(path: Path | None, outcome: dict[str, object]) -> None:
    if path is not None:
        path.write_text(json.dumps(outcome))


def _epoch_from_env() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise BuildInputError(f"SOURCE_DATE_EPOCH={value!r}: want a whole number of seconds")
    return int(value)


def run_doctor(args: argparse.Namespace) -> int:
    print("sandboxes (strongest first; auto picks the first that works):")
    chosen = None
    for report in probe_all():
        mark = "ok " if report.works else "no "
        if report.works and chosen is None:
            chosen = report.name
        print(f"  {mark} {report.name:<7} {report.reason or ''}".rstrip())
    print(f"auto sandbox: {chosen or 'none works here'}")
    print("snapshotters (auto takes overlay where it works):")
    print("  ok  walk    stat-cache walk, works everywhere")
    overlay_reason = probe_overlay(make_sandbox(chosen)) if chosen else "no sandbox works"
    mark = "ok " if overlay_reason is None else "no "
    print(f"  {mark} overlay {overlay_reason or 'RUN steps write to an overlayfs upper dir'}")
    return 0 if chosen else 1
