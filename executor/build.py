"""One build, start to finish: a short list of named steps.

open the context -> parse the Dockerfile -> pick the stages the target needs
-> run each stage -> add the build's labels -> write the outputs -> report
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

from executor import base
from executor.context import open_context
from executor.dockerfile import (
    Copy,
    Dockerfile,
    Instruction,
    Run,
    Stage,
    expand_base,
    parse_dockerfile,
    resolve_meta_args,
    unconsumed_build_args,
)
from executor.errors import BuildInputError
from executor.fs.overlay import OverlaySnapshotter
from executor.fs.snapshot import Snapshotter, WalkSnapshotter
from executor.image import BuildImage
from executor.oci.digest import Digest
from executor.oci.manifest import Platform
from executor.oci.reference import ImageReference
from executor.options import BuildOptions
from executor.output import EarlyUploads, write_outputs
from executor.registry.client import RegistryConnector
from executor.report import BuildReporter
from executor.sandbox.probes import ProbeCache
from executor.sandbox.select import choose_sandbox, probe_overlay
from executor.sandbox.spec import Sandbox
from executor.stage import BuildServices, StageState, created_timestamp, run_step

# How many stages may run at once.
MAX_PARALLEL_STAGES = 4


@dataclass(frozen=True)
class BuildResult:
    """What a build made."""

    digest: Digest
    image: BuildImage
    timings: Mapping[str, float]
    # Bytes over the network: "pulled" (base and --from image layers), "pushed".
    transferred: Mapping[str, int] = field(default_factory=dict)


def _deps(stage: Stage, names: Mapping[str, int], meta: Mapping[str, str]) -> set[int]:
    """Indexes of the earlier stages a stage reads from (FROM, COPY --from, RUN --mount from)."""
    refs: list[str] = [expand_base(stage, meta)[0]]
    for inst in stage.instructions:
        if isinstance(inst, Copy) and inst.from_:
            refs.append(inst.from_)
        if isinstance(inst, Run):
            refs.extend(m.get("from") or "" for m in inst.mounts)
    found = {_earlier_stage(ref, names, stage.index) for ref in refs}
    return {index for index in found if index is not None}


def _earlier_stage(ref: str, names: Mapping[str, int], before: int) -> int | None:
    """The index of the stage ``ref`` names (by name or number) if it comes before."""
    key = ref.lower()
    if key in names and names[key] < before:
        return names[key]
    if key.isdigit() and int(key) < before:
        return int(key)
    return None


def stages_needed(
    dockerfile: Dockerfile, target: str | None, meta: Mapping[str, str]
) -> list[Stage]:
    """The target stage (default: the last) and every stage it depends on, in order."""
    stages = dockerfile.stages
    names = {s.name: s.index for s in stages if s.name}
    if target is None:
        goal = stages[-1].index
    elif target.lower() in names:
        goal = names[target.lower()]
    else:
        known = ", ".join(s.name for s in stages if s.name) or "none"
        raise BuildInputError(f"target stage {target!r} not found (stages: {known})")
    needed = {goal}
    todo = [goal]
    while todo:
        for dep in _deps(stages[todo.pop()], names, meta):
            if dep not in needed:
                needed.add(dep)
                todo.append(dep)
    return [s for s in stages if s.index in needed]


class _Stages:
    """Finished stages by name and index; also images COPY --from names."""

    def __init__(
        self,
        workspace: Path,
        connector: RegistryConnector,
        platform: Platform,
        reporter: BuildReporter,
    ) -> None:
        self._workspace = workspace
        self._connector = connector
        self._platform = platform
        self._reporter = reporter
        self.done: dict[str, StageState] = {}
        # Per image: a lock (stages pull different images at once, one image once)
        # and where it is unpacked.
        self._images: dict[str, tuple[threading.Lock, Path]] = {}
        self._unpacked: set[str] = set()
        self._lock = threading.Lock()

    def add(self, state: StageState) -> None:
        self.done[str(state.index)] = state
        if state.name:
            self.done[state.name] = state

    def get(self, name: str) -> StageState | None:
        return self.done.get(name.lower())

    def stage_rootfs(self, name: str) -> Path | None:
        state = self.get(name)
        return state.ensure_rootfs() if state is not None else None

    def image_rootfs(self, reference: str) -> Path:
        """The files of an image COPY --from names, pulled and unpacked on first use."""
        with self._lock:
            if reference not in self._images:
                rootfs = self._workspace / "images" / str(len(self._images)) / "rootfs"
                self._images[reference] = (threading.Lock(), rootfs)
            lock, rootfs = self._images[reference]
        with lock:
            if reference not in self._unpacked:
                image = base.pull(self._connector, ImageReference.parse(reference), self._platform)
                base.unpack(image, rootfs, self._reporter)
                self._unpacked.add(reference)
        return rootfs


def _onbuild_instructions(triggers: tuple[str, ...], filename: str) -> tuple[Instruction, ...]:
    if not triggers:
        return ()
    text = "FROM scratch\n" + "\n".join(triggers) + "\n"
    return (
        parse_dockerfile(text, filename=f"{filename} (ONBUILD of the base image)")
        .stages[0]
        .instructions
    )


def _run_stage(
    stage: Stage,
    services: BuildServices,
    stages: _Stages,
    connector: RegistryConnector,
    *,
    total: int,
    number: int,
    prepared: Future[BuildImage] | None = None,
) -> StageState:
    options = services.options
    image_name, platform_text = expand_base(stage, services.meta_args)
    earlier = stages.get(image_name)
    reporter = services.reporter
    steps = len(stage.instructions)
    reporter.step(number, total, 0, steps, stage.from_.original)
    if prepared is not None:
        parent = prepared.result()  # pulled and unpacked into the rootfs already
    elif earlier is not None:
        parent = earlier.image
    elif image_name.lower() == "scratch":
        parent = base.scratch(_platform(platform_text, options))
    else:
        parent = _pull(image_name, platform_text, services, connector)
    triggers = parent.config.config.on_build
    # ONBUILD triggers run once, in the first stage built FROM the image; not inherited.
    parent = parent.with_config(
        parent.config.with_config(replace(parent.config.config, on_build=()))
    )
    state = StageState(
        index=stage.index,
        name=stage.name,
        image=parent,
        rootfs=_rootfs_path(options, stage),
        services=services,
        unpacked=prepared is not None,
    )
    instructions = (
        *_onbuild_instructions(triggers, stage.from_.location.file),
        *stage.instructions,
    )
    for number_in_stage, instruction in enumerate(instructions, start=1):
        reporter.step(number, total, number_in_stage, len(instructions), instruction.original)
        run_step(state, instruction)
    return state


def _platform(platform_text: str | None, options: BuildOptions) -> Platform:
    return Platform.parse(platform_text) if platform_text else options.platform or Platform.host()


def _rootfs_path(options: BuildOptions, stage: Stage) -> Path:
    label = re.sub(r"[^a-z0-9_.-]", "_", stage.name or str(stage.index))
    return options.workspace / "stages" / f"{stage.index}-{label}" / "rootfs"


def _prepare_base(
    stage: Stage, services: BuildServices, connector: RegistryConnector
) -> BuildImage:
    """Pull a waiting stage's base image and unpack it into the stage's rootfs."""
    image = _pull(*expand_base(stage, services.meta_args), services, connector)
    with services.reporter.phase("unpack"):
        base.unpack(image, _rootfs_path(services.options, stage), services.reporter)
    return image


def _pull(
    image_name: str,
    platform_text: str | None,
    services: BuildServices,
    connector: RegistryConnector,
) -> BuildImage:
    with services.reporter.phase("pull"):
        return base.pull(
            connector, ImageReference.parse(image_name), _platform(platform_text, services.options)
        )


def _from_image(stage: Stage, names: Mapping[str, int], meta: Mapping[str, str]) -> bool:
    """Whether the stage starts FROM a registry image (not scratch, not another stage)."""
    ref = expand_base(stage, meta)[0]
    return ref.lower() != "scratch" and _earlier_stage(ref, names, stage.index) is None


def _run_stages(
    needed: list[Stage],
    services: BuildServices,
    stages: _Stages,
    connector: RegistryConnector,
    meta: Mapping[str, str],
) -> StageState:
    """Run the stages, each as soon as the stages it reads from are done; return the last.

    Independent stages run at once (threads: the work is in sandboxed processes, I/O
    and zlib, which release the GIL).
    """
    names = {s.name: s.index for s in needed if s.name}
    deps = {s.index: _deps(s, names, meta) for s in needed}
    number = {s.index: n for n, s in enumerate(needed, start=1)}
    by_index = {s.index: s for s in needed}
    done: dict[int, StageState] = {}
    running: dict[Future[StageState], int] = {}
    # Stage work is mostly in sandboxed processes and I/O, so a few threads beyond the
    # core count do no harm; a cap keeps disk and memory use bounded.
    workers = max(1, min(len(needed), MAX_PARALLEL_STAGES))
    # A stage that waits for others (COPY --from) but starts FROM an image has its base
    # pulled and unpacked meanwhile, instead of after they end. Stages that can start
    # at once unpack lazily, when a step first needs files.
    prepared: dict[int, Future[BuildImage]] = {}
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stage") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare") as preparer,
    ):
        for index, stage in by_index.items():
            if deps[index] and _from_image(stage, names, meta):
                prepared[index] = preparer.submit(_prepare_base, stage, services, connector)
        while len(done) < len(needed):
            for index, stage in by_index.items():
                ready = deps[index] <= done.keys()
                if index not in done and index not in running.values() and ready:
                    future = pool.submit(
                        _run_stage,
                        stage,
                        services,
                        stages,
                        connector,
                        total=len(needed),
                        number=number[index],
                        prepared=prepared.get(index),
                    )
                    running[future] = index
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                index = running.pop(future)
                try:
                    state = future.result()
                except BaseException:
                    for other in running:
                        other.cancel()
                    for waiting in prepared.values():
                        waiting.cancel()
                    raise
                done[index] = state
                stages.add(state)
    return done[needed[-1].index]


def build(
    options: BuildOptions,
    *,
    connector: RegistryConnector,
    reporter: BuildReporter,
    sandbox: Sandbox | None = None,
) -> BuildResult:
    """Build the Dockerfile the options name and write the outputs they ask for."""
    started = time.monotonic()
    workspace = options.workspace
    workspace.mkdir(parents=True, exist_ok=True)
    with reporter.phase("context"):
        context = open_context(options.context, dockerfile=options.dockerfile, workspace=workspace)
    try:
        dockerfile_text = context.read_dockerfile().decode()
    except UnicodeDecodeError as exc:
        raise BuildInputError(f"{options.dockerfile}: not UTF-8 text") from exc
    dockerfile = parse_dockerfile(dockerfile_text, filename=options.dockerfile)
    meta = resolve_meta_args(dockerfile, options.build_args)
    needed = stages_needed(dockerfile, options.target, meta)
    for name in unconsumed_build_args(dockerfile, options.build_args, stages=needed):
        reporter.info(f"warning: build-arg {name} was not consumed by any ARG")
    platform = options.platform or Platform.host()
    stages = _Stages(workspace, connector, platform, reporter)
    probes = ProbeCache.default()
    chosen_sandbox = sandbox or choose_sandbox(options.sandbox, cache=probes)
    services = BuildServices(
        options=options,
        sandbox=chosen_sandbox,
        new_snapshotter=_snapshotter_factory(options, chosen_sandbox, probes),
        reporter=reporter,
        context=context,
        layers_dir=workspace / "layers",
        stages=stages,
        escape=dockerfile.escape,
        meta_args=meta,
        created=created_timestamp(options),
    )
    early = None
    if not options.no_push and options.destinations:
        early = EarlyUploads(connector, options.destinations[0], reporter)
        final_index = needed[-1].index
        offer = early.offer
        services.on_layer = lambda index, layer: offer(layer) if index == final_index else None
    try:
        final = _run_stages(needed, services, stages, connector, meta)
        image = _finish(final.image, options, services.created)
        if early is not None:
            with reporter.phase("push"):
                early.finish()
        digest = write_outputs(image, options, connector, reporter, early=early)
    finally:
        if early is not None:
            early.close()
    timings = dict(reporter.timings)
    timings["total"] = time.monotonic() - started
    if options.timings_file is not None:
        options.timings_file.write_text(json.dumps(timings, indent=2, sort_keys=True) + "\n")
    reporter.info(f"built {digest} ({len(image.layers)} layers, {timings['total']:.2f}s)")
    return BuildResult(digest, image, timings, dict(reporter.bytes))


def _snapshotter_factory(
    options: BuildOptions, sandbox: Sandbox, probes: ProbeCache
) -> Callable[[], Snapshotter]:
    """overlay where the sandbox can mount it (the namespace backends), else the walk.

    kaniko's mode names (full, redo, time) all mean a walk here.
    """
    mode = options.snapshot_mode
    # One probe per build (a namespace with an overlay mount, ~50 ms).
    why_not = (
        probes.passed(f"overlay:{sandbox.name}", lambda: probe_overlay(sandbox))
        if mode in ("auto", "overlay")
        else "not asked for"
    )
    if mode == "overlay" and why_not is not None:
        raise BuildInputError(f"--snapshot-mode=overlay does not work here: {why_not}")
    if why_not is None:
        scratch = options.workspace / "overlay"
        return lambda: OverlaySnapshotter(scratch, tuple(options.ignore_paths))
    return lambda: WalkSnapshotter(ignore=options.ignore_paths)


def _finish(image: BuildImage, options: BuildOptions, created: str) -> BuildImage:
    config = image.config
    labels = {**config.config.labels, **options.labels}
    config = replace(config, created=created, config=replace(config.config, labels=labels))
    return image.with_config(config)


def clean_workspace(workspace: Path) -> None:
    """Remove everything a build wrote (stage rootfs trees are big)."""
    shutil.rmtree(workspace, ignore_errors=True)
