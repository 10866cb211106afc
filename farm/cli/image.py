"""``farm image inspect`` and ``farm image copy``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from executor.errors import PlatformNotFoundError
from executor.locations import (
    RegistryLocation,
    open_sink,
    open_source,
    parse_location,
)
from executor.oci.copy import copy_image
from executor.oci.image import RawManifest, read_config
from executor.oci.manifest import Platform
from farm.cli.flags import add_registry_flags, connector, parse_creds
from farm.cli.output import Progress, format_bytes

LOCATION_HELP = "docker://REF, REF, oci:DIR[:TAG], docker-archive:FILE[:REF] or scratch"


def add_parser(commands: Any) -> None:
    image = commands.add_parser("image", help="inspect and copy images")
    sub = image.add_subparsers(dest="image_command", required=True, metavar="COMMAND")

    inspect = sub.add_parser("inspect", help="show an image's manifest, platform and layers")
    inspect.add_argument("ref", metavar="REF", help=LOCATION_HELP)
    inspect.add_argument("--json", action="store_true", help="print JSON for machines")
    inspect.add_argument("--raw", action="store_true", help="print the manifest bytes as stored")
    inspect.add_argument("--platform", type=Platform.parse, help="os/arch[/variant] of an index")
    inspect.add_argument("--creds", type=parse_creds, metavar="USER:PASS")
    add_registry_flags(inspect)
    inspect.set_defaults(func=run_inspect)

    copy = sub.add_parser("copy", help="copy an image between registries, layouts and archives")
    copy.add_argument("src", metavar="SRC", help=LOCATION_HELP)
    copy.add_argument("dst", metavar="DST", help=LOCATION_HELP)
    copy.add_argument(
        "--platform",
        type=Platform.parse,
        help="copy only this platform of an index (default: all of them)",
    )
    copy.add_argument("--src-creds", type=parse_creds, metavar="USER:PASS")
    copy.add_argument("--dest-creds", type=parse_creds, metavar="USER:PASS")
    copy.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    copy.add_argument("--digest-file", help="write the copied manifest digest to this file")
    add_registry_flags(copy)
    copy.set_defaults(func=run_copy)


def run_inspect(args: argparse.Namespace) -> int:
    location = parse_location(args.ref)
    creds = {}
    if args.creds is not None and isinstance(location, RegistryLocation):
        creds[location.reference.registry] = args.creds
    source = open_source(location, connector(args, creds), platform=args.platform)
    top = source.get_manifest()
    if args.raw:
        sys.stdout.write(top.data.decode())
        return 0
    report: dict[str, Any] = {
        "name": source.describe(),
        "digest": str(top.digest),
        "mediaType": top.media_type,
    }
    image = top
    if top.is_index:
        index = top.index()
        report["manifests"] = [
            {
                "digest": str(m.digest),
                "mediaType": m.media_type,
                "platform": str(m.platform) if m.platform else None,
                "size": m.size,
            }
            for m in index.manifests
        ]
        wanted = args.platform or Platform.host()
        try:
            chosen = index.select(wanted, source.describe())
        except PlatformNotFoundError:
            if args.platform is not None:
                raise
            return _print_report(report, args.json)
        image = source.get_manifest(chosen.digest)
        report["image"] = {"digest": str(image.digest), "mediaType": image.media_type}
    report.update(_image_report(source, image))
    return _print_report(report, args.json)


def _image_report(source: Any, raw: RawManifest) -> dict[str, Any]:
    manifest = raw.manifest()
    config, _ = read_config(source, manifest)
    c = config.config
    return {
        "platform": str(config.platform),
        "created": config.created,
        "config": {
            "digest": str(manifest.config.digest),
            "user": c.user,
            "env": list(c.env),
            "entrypoint": list(c.entrypoint) if c.entrypoint is not None else None,
            "cmd": list(c.cmd) if c.cmd is not None else None,
            "workingDir": c.working_dir,
            "exposedPorts": list(c.exposed_ports),
            "volumes": list(c.volumes),
            "labels": dict(c.labels),
            "stopSignal": c.stop_signal,
        },
        "layers": [
            {"digest": str(layer.digest), "size": layer.size, "mediaType": layer.media_type}
            for layer in manifest.layers
        ],
        "size": sum(layer.size for layer in manifest.layers) + manifest.config.size,
        "history": len(config.history),
    }


def _print_report(report: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    rows = [
        ("Name", report["name"]),
        ("Digest", report["digest"]),
        ("MediaType", report["mediaType"]),
    ]
    for entry in report.get("manifests", []):
        rows.append(("Manifest", f"{entry['digest']}  {entry['platform'] or '-'}"))
    if "image" in report:
        rows.append(("Image", report["image"]["digest"]))
    if "config" in report:
        c = report["config"]
        rows += [
            ("Platform", report["platform"]),
            ("Created", report["created"] or "-"),
            ("Config", c["digest"]),
            ("User", c["user"] or "-"),
            ("WorkingDir", c["workingDir"] or "-"),
            ("Entrypoint", json.dumps(c["entrypoint"])),
            ("Cmd", json.dumps(c["cmd"])),
        ]
        rows += [("Env", e) for e in c["env"]]
        rows += [("Label", f"{k}={v}") for k, v in sorted(c["labels"].items())]
        rows += [("ExposedPort", p) for p in c["exposedPorts"]]
        rows.append(("Size", format_bytes(report["size"])))
        rows += [
            ("Layer", f"{layer['digest']}  {format_bytes(layer['size']):>10}  {layer['mediaType']}")
            for layer in report["layers"]
        ]
    for key, value in rows:
        print(f"{key + ':':<12} {value}")
    return 0


def run_copy(args: argparse.Namespace) -> int:
    src, dst = parse_location(args.src), parse_location(args.dst)
    creds = {}
    if args.src_creds is not None and isinstance(src, RegistryLocation):
        creds[src.reference.registry] = args.src_creds
    if args.dest_creds is not None and isinstance(dst, RegistryLocation):
        creds[dst.reference.registry] = args.dest_creds
    conn = connector(args, creds)
    mount_from: list[str] = []
    if (
        isinstance(src, RegistryLocation)
        and isinstance(dst, RegistryLocation)
        and src.reference.registry == dst.reference.registry
    ):
        mount_from.append(src.reference.repository)
    source = open_source(src, conn, platform=args.platform)
    sink = open_sink(dst, conn, mount_from=mount_from)
    result = copy_image(
        source, sink, platform=args.platform, on_progress=None if args.quiet else Progress()
    )
    if args.digest_file:
        with open(args.digest_file, "w") as f:
            f.write(str(result.digest))
    print(
        f"copied {source.describe()} to {sink.describe()}: {result.digest} "
        f"({result.blobs_copied} blobs, {format_bytes(result.bytes_copied)}; "
        f"{result.blobs_skipped} already there)"
    )
    return 0
