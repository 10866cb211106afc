"""Flags shared by every command that talks to registries, named as kaniko names them."""

from __future__ import annotations

import argparse

from executor.registry.auth import Credentials, Keychain, StaticKeychain, default_keychain
from executor.registry.client import RegistryConnector
from executor.registry.hosts import RegistryOptions


def add_registry_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registry access")
    group.add_argument("--insecure", action="store_true", help="talk plain HTTP to every registry")
    group.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST",
        help="talk plain HTTP to HOST (repeatable; loopback hosts always are)",
    )
    group.add_argument(
        "--skip-tls-verify", action="store_true", help="do not verify registries' certificates"
    )
    group.add_argument(
        "--skip-tls-verify-registry",
        action="append",
        default=[],
        metavar="HOST",
        help="do not verify HOST's certificate (repeatable)",
    )
    group.add_argument(
        "--registry-mirror",
        action="append",
        default=[],
        metavar="HOST",
        help="pull docker.io images through HOST first (repeatable, tried in order)",
    )
    group.add_argument(
        "--registry-map",
        action="append",
        default=[],
        metavar="FROM=TO[;TO...]",
        help="pull FROM's images through TO first (repeatable)",
    )


def registry_options(args: argparse.Namespace) -> RegistryOptions:
    try:
        return RegistryOptions.create(
            insecure=args.insecure,
            insecure_registries=args.insecure_registry,
            skip_tls_verify=args.skip_tls_verify,
            skip_tls_verify_registries=args.skip_tls_verify_registry,
            registry_mirrors=args.registry_mirror,
            registry_maps=args.registry_map,
        )
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def parse_creds(value: str) -> Credentials:
    """``USER:PASSWORD`` from a --creds flag."""
    username, sep, password = value.partition(":")
    if not sep or not username:
        raise argparse.ArgumentTypeError("credentials must be USER:PASSWORD")
    return Credentials(username, password)


def connector(args: argparse.Namespace, creds: dict[str, Credentials]) -> RegistryConnector:
    """A connector using explicit credentials first, then docker's config and ECR."""
    explicit: list[Keychain] = [StaticKeychain(creds)] if creds else []
    return RegistryConnector(registry_options(args), default_keychain(explicit))
