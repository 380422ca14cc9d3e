"""The on-disk layout of run and dataset directories, and the one rule that finds a run's data.

A run directory ``runs/NAME/`` holds::

    config.toml        the resolved RunConfig (every default spelled out)
    metrics.jsonl      one JSON object per logged event (see runs/metrics.py)
    checkpoints/       step_0000100.pt ..., best.pt, latest.pt (see runs/checkpoint.py)
    samples/           generated text during and after training
    plots/             PNG/SVG learning curves
    model.safetensors  the final weights
    report.md          the run report (cs336 report)
    .lock              held by the trainer while it runs (one trainer per run directory)

A dataset directory ``data/NAME/`` keeps the tokenizer next to the token files::

    train.txt valid.txt          raw text (or the published file names)
    tokenizer/                   vocab.json, merges.txt, tokenizer.json, meta.json
    train.npy valid.npy          token ids, with train.npy.manifest.json beside each

Relative paths in a run's config (``data.dataset_dir`` and the explicit
``data.*_path`` overrides) are relative to where ``cs336 train`` was started.
Later commands (generate, eval, report) may run elsewhere, so
:func:`find_beside` looks a relative path up from the working directory, then
from the run directory, its parent and its grandparent; :func:`resolve_data`
applies that one rule to every data path of a config, for the trainer (no run
directory: the working directory only) and for inference alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cs336_basics.config import dump_config
from cs336_basics.errors import UserError, not_a_file
from cs336_basics.outputs import DirOutput

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
PLOTS = "plots"
WEIGHTS_FILE = "model.safetensors"
LOCK_FILE = ".lock"
REPORT_FILE = "report.md"
BEST_CHECKPOINT = "best.pt"
LATEST_CHECKPOINT = "latest.pt"
TOKENIZER = "tokenizer"
SPLITS = ("train", "valid")


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def samples(self) -> Path:
        return self.root / SAMPLES

    @property
    def plots(self) -> Path:
        return self.root / PLOTS

    @property
    def weights_path(self) -> Path:
        return self.root / WEIGHTS_FILE

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def report_path(self) -> Path:
        return self.root / REPORT_FILE

    def exists(self) -> bool:
        return (self.root / CONFIG_FILE).is_file() or (self.root / METRICS_FILE).is_file()

    def create(self) -> "RunDir":
        """Make the directory tree (idempotent); a clear error when the location is not writable."""
        try:
            for sub in (self.root, self.checkpoints, self.samples, self.plots):
                sub.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create run directory {self.root}: {exc.strerror}; choose another "
                            "--set train.runs_dir") from exc
        return self

    def write_config(self, cfg: Any) -> Path:
        return dump_config(cfg, self.config_path)


RUN_FILES = frozenset((CONFIG_FILE, METRICS_FILE, CHECKPOINTS, SAMPLES, PLOTS, WEIGHTS_FILE, LOCK_FILE, REPORT_FILE))


def is_run_dir(directory: Path) -> bool:
    """True for a directory the trainer wrote: a config or metrics, or nothing but its own names (an early crash)."""
    directory = Path(directory)
    return RunDir(directory).exists() or all(entry.name in RUN_FILES for entry in directory.iterdir())


RUN_DIR = DirOutput("cs336 train", "run directory", is_run_dir)
"""A run directory as an output: a rerun resumes it, or replaces its records with train.overwrite."""


@dataclass(frozen=True)
class DatasetDir:
    """Paths inside one dataset directory."""

    root: Path

    @property
    def tokenizer(self) -> Path:
        return self.root / TOKENIZER

    def tokens(self, split: str) -> Path:
        return self.root / f"{split}.npy"

    def text(self, split: str) -> Path:
        return self.root / f"{split}.txt"


def search_bases(run_dir: Path | None) -> list[Path]:
    """Where relative config paths are looked up: the working directory, then the run dir and two parents."""
    bases = [Path.cwd()]
    if run_dir is not None:
        run_dir = Path(run_dir).resolve()
        bases += [run_dir, run_dir.parent, run_dir.parent.parent]
    return bases


def find_beside(path: str | Path | None, run_dir: Path | None, *, want_dir: bool = False) -> Path | None:
    """An existing file (or directory) for a config path, by the lookup rule above; None if none exists."""
    if not path:
        return None
    path = Path(path)
    kind = Path.is_dir if want_dir else Path.is_file
    candidates = [path] if path.is_absolute() else [base / path for base in search_bases(run_dir)]
    return next((c for c in candidates if kind(c)), None)


def why_not_found(path: str | Path, run_dir: Path | None) -> str:
    """Why :func:`find_beside` found no file for ``path``: what the first candidate that is there at all is
    ("is a directory", "is a symlink loop", ...), else "does not exist"."""
    path = Path(path)
    candidates = [path] if path.is_absolute() else [base / path for base in search_bases(run_dir)]
    present = (c for c in candidates if c.is_symlink() or c.exists())
    return next((problem for c in present if (problem := not_a_file(c))), "does not exist")


@dataclass(frozen=True)
class DataPaths:
    """Where a run's data is: the token files and the tokenizer (None where not found)."""

    train: Path | None
    valid: Path | None
    tokenizer: Path | None
    train_text: Path | None = None
    """The training text beside the token files, when the dataset directory has one (for word lists)."""


def resolve_data(cfg: Any, run_dir: Path | None = None, *, strict: bool = False) -> DataPaths:
    """The data paths of ``cfg`` (a RunConfig): explicit ``data.*`` paths, else the dataset directory's files.

    ``strict`` (the trainer) turns every path the config names but that does not exist into a
    one-line error; otherwise (inference, reports) what is missing is None.
    """
    data = cfg.data

    def lookup(explicit: str | None, in_dataset: str | None, key: str, want_dir: bool = False) -> Path | None:
        if explicit:
            found = find_beside(explicit, run_dir, want_dir=want_dir)
            if found is None and strict:
                problem = "is not a directory" if want_dir else why_not_found(explicit, run_dir)
                raise UserError(f"{key} {explicit} {problem}; fix the path or unset it")
            return found
        if data.dataset_dir and in_dataset:
            return find_beside(Path(data.dataset_dir) / in_dataset, run_dir, want_dir=want_dir)
        return None

    if data.dataset_dir and strict and find_beside(data.dataset_dir, run_dir, want_dir=True) is None:
        raise UserError(f"data.dataset_dir {data.dataset_dir} is not a directory; create it with 'cs336 prepare' "
                        "or fix the path")
    train = lookup(data.train_path, "train.npy", "data.train_path")
    if strict and train is None:
        if data.dataset_dir:
            where = Path(data.dataset_dir) / "train.npy"
            problem = why_not_found(where, run_dir)
            if problem == "does not exist":
                raise UserError(f"no training data: {where} does not exist; "
                                f"run 'cs336 prepare --data {data.dataset_dir}' first")
            raise UserError(f"no training data: {where} {problem}; move it out of the way, then run "
                            f"'cs336 prepare --data {data.dataset_dir}' to rebuild the token file")
        raise UserError("no training data: set data.dataset_dir (or --dataset DIR) or data.train_path")
    return DataPaths(train=train, valid=lookup(data.valid_path, "valid.npy", "data.valid_path"),
                     tokenizer=lookup(data.tokenizer_dir, TOKENIZER, "data.tokenizer_dir", want_dir=True),
                     train_text=lookup(None, "train.txt", "", want_dir=False))
