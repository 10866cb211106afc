"""The reference cases: a committed Dockerfile each, and a seeded generator for its files.

Generated files are written into a scratch context at run time, never committed. Each
generator is deterministic: the same seed writes the same bytes.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CASES", "CASES_DIR", "Case", "prepare_context", "select_cases"]

CASES_DIR = Path(__file__).parent / "cases"
SEED = 5  # issue 5; any fixed value does

# Case 2: 5,000 files of 1-4 KiB in 50 directories of 100.
MANY_FILES = 5000
MANY_FILES_PER_DIR = 100
MANY_FILES_MIN_SIZE = 1024
MANY_FILES_MAX_SIZE = 4096
# Case 4: the sources the build stage turns into ~200 artifacts.
MULTI_STAGE_PARTS = 10
MULTI_STAGE_PART_SIZE = 8192

Generator = Callable[[Path, random.Random], None]


@dataclass(frozen=True)
class Case:
    """One reference case: `name` is its directory under bench/cases/."""

    name: str
    generate: Generator

    @property
    def dockerfile(self) -> Path:
        return CASES_DIR / self.name / "Dockerfile"

    @property
    def short_name(self) -> str:
        """The name without its number: ``small-app`` for ``1-small-app``."""
        return self.name.split("-", 1)[1]


def _text(rng: random.Random, size: int) -> str:
    words = ("alpha", "beta", "gamma", "delta", "build", "layer", "cache", "push", "farm")
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(words)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size] + "\n"


def generate_small_app(root: Path, rng: random.Random) -> None:
    """A config, a requirements list, an entry script and a script directory."""
    (root / "app.conf").write_text(f"mode=bench\nworkers=2\nsecret={rng.getrandbits(64):x}\n")
    (root / "requirements.txt").write_text(
        "".join(f"package{i}=={rng.randint(0, 9)}.{rng.randint(0, 20)}\n" for i in range(12))
    )
    (root / "main.sh").write_text('#!/bin/sh\necho "app in $APP_HOME ($APP_MODE)"\n')
    scripts = root / "scripts"
    scripts.mkdir()
    (scripts / "setup.sh").write_text(
        "#!/bin/sh\nset -e\nmkdir -p /app/data /app/logs\n"
        'for n in 1 2 3; do echo "entry $n" > /app/data/entry-$n.txt; done\n'
        "wc -l /app/requirements.txt > /app/data/requirements.count\n"
    )
    for index in range(4):
        (scripts / f"task-{index}.sh").write_text("#!/bin/sh\n" + _text(rng, 400))


def generate_many_files(root: Path, rng: random.Random) -> None:
    """files/dNN/fNNNN.bin: 5,000 files of random bytes, 1-4 KiB each."""
    files = root / "files"
    for index in range(MANY_FILES):
        directory = files / f"d{index // MANY_FILES_PER_DIR:02d}"
        if index % MANY_FILES_PER_DIR == 0:
            directory.mkdir(parents=True)
        size = rng.randint(MANY_FILES_MIN_SIZE, MANY_FILES_MAX_SIZE)
        (directory / f"f{index:04d}.bin").write_bytes(rng.randbytes(size))


def generate_nothing(root: Path, rng: random.Random) -> None:
    """The case's RUN steps make all its files; the context holds only the Dockerfile."""


def generate_multi_stage(root: Path, rng: random.Random) -> None:
    """src/part-N.txt: the inputs the build stage turns into artifacts."""
    src = root / "src"
    src.mkdir()
    for index in range(MULTI_STAGE_PARTS):
        (src / f"part-{index}.txt").write_text(_text(rng, MULTI_STAGE_PART_SIZE))


CASES: tuple[Case, ...] = (
    Case("1-small-app", generate_small_app),
    Case("2-many-files", generate_many_files),
    Case("3-big-file", generate_nothing),
    Case("4-multi-stage", generate_multi_stage),
    Case("5-deep", generate_nothing),
)


def select_cases(names: list[str] | None) -> tuple[Case, ...]:
    """The cases named (by ``1-small-app``, ``small-app`` or ``1``), all if None."""
    if not names:
        return CASES
    chosen: list[Case] = []
    for name in names:
        matches = [c for c in CASES if name in (c.name, c.short_name, c.name.split("-")[0])]
        if not matches:
            known = ", ".join(c.name for c in CASES)
            raise ValueError(f"no benchmark case {name!r} (known: {known})")
        chosen.extend(m for m in matches if m not in chosen)
    return tuple(chosen)


def prepare_context(case: Case, context: Path, *, seed: int = SEED) -> Path:
    """Write `case`'s build context (Dockerfile + generated files) into `context`."""
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    shutil.copy2(case.dockerfile, context / "Dockerfile")
    case.generate(context, random.Random(f"{seed}:{case.name}"))
    return context
