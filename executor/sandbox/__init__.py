"""Running RUN steps inside a stage rootfs, never in the builder's own root."""

from executor.sandbox.namespaces import NamespaceSandbox
from executor.sandbox.proot import ProotSandbox
from executor.sandbox.select import BACKENDS, BackendReport, choose_sandbox, make_sandbox, probe_all
from executor.sandbox.spec import Mount, OutputSink, RunSpec, Sandbox

__all__ = [
    "BACKENDS",
    "BackendReport",
    "Mount",
    "NamespaceSandbox",
    "OutputSink",
    "ProotSandbox",
    "RunSpec",
    "Sandbox",
    "choose_sandbox",
    "make_sandbox",
    "probe_all",
]
