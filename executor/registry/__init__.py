"""Talking to registries: credentials, transport, the API, and images as source and sink."""

from executor.registry.auth import (
    Credentials,
    DockerConfigKeychain,
    EcrKeychain,
    Keychain,
    MultiKeychain,
    StaticKeychain,
    default_keychain,
)
from executor.registry.client import RegistryClient, RegistryConnector
from executor.registry.hosts import Endpoint, RegistryOptions
from executor.registry.remote import RegistrySink, RegistrySource
from executor.registry.transport import RetryPolicy

__all__ = [
    "Credentials",
    "DockerConfigKeychain",
    "EcrKeychain",
    "Endpoint",
    "Keychain",
    "MultiKeychain",
    "RegistryClient",
    "RegistryConnector",
    "RegistryOptions",
    "RegistrySink",
    "RegistrySource",
    "RetryPolicy",
    "StaticKeychain",
    "default_keychain",
]
