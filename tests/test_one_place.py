"""Idioms and names that live in one module, found by reading the source (``ast``), so they stay there.

- Renaming a written file into place (temp file, fsync, ``os.replace``) is :mod:`cs336_basics.fileio`'s
  (``atomic_path``, ``atomic_writer``, ``atomic_write_text``, ``replace_dir_atomically``): no other module of
  the package or of ``benchmarks/`` calls ``os.replace`` / ``os.rename`` / ``shutil.move``, or a path's
  one-argument ``.replace(target)`` / ``.rename(target)``.
- The names of the files and folders of run and dataset directories are :mod:`cs336_basics.runs.layout`'s,
  a tokenizer directory's files :mod:`cs336_basics.tokenizer.tokenizer_dir`'s: no other module that may
  import the home module spells one as a string (docstrings and comments may mention them; help texts and
  messages, which hold spaces, may too).
"""

from __future__ import annotations

import ast
from pathlib import Path

from cs336_basics.runs import layout
from cs336_basics.tokenizer import tokenizer_dir
from tests.test_architecture import PACKAGE, _modules, _package, _rank, _unit

BENCHMARKS = PACKAGE.parent / "benchmarks"

RENAMES_ALLOWED = {
    ("experiments/sweep.py", "replace"): "sets a dead run's metrics aside under another name: a move, not a write",
}
"""(file, call) pairs outside fileio.py that move a file, and why that is not the write-then-rename idiom."""


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that stand alone as statements: module, class, function and attribute docstrings."""
    return {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


def _renames(path: Path) -> list[tuple[int, str]]:
    """(line, call) of every call in ``path`` that renames a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        func = node.func
        owner = func.value.id if isinstance(func.value, ast.Name) else None
        if (owner, func.attr) in (("os", "replace"), ("os", "rename"), ("shutil", "move")):
            found.append((node.lineno, f"{owner}.{func.attr}"))
        elif func.attr in ("replace", "rename") and owner not in ("os", "dataclasses") \
                and len(node.args) == 1 and not node.keywords:  # str.replace takes two arguments
            found.append((node.lineno, func.attr))
    return found


def test_only_fileio_renames_files_into_place():
    sources = [p for p in PACKAGE.rglob("*.py") if p.name != "fileio.py" or p.parent != PACKAGE]
    sources += sorted(BENCHMARKS.glob("*.py"))
    offenders = []
    for path in sources:
        where = path.relative_to(PACKAGE if path.is_relative_to(PACKAGE) else PACKAGE.parent).as_posix()
        offenders += [f"{where}:{line}: {call}" for line, call in _renames(path)
                      if (where, call.split(".")[-1]) not in RENAMES_ALLOWED]
    assert not offenders, ("files renamed into place outside fileio.py (use fileio.atomic_path / atomic_writer):\n"
                           + "\n".join(offenders))


def test_the_rename_scan_finds_the_idiom():
    """The scan is not blind: fileio.py itself renames, with os.replace."""
    assert any(call == "os.replace" for _, call in _renames(PACKAGE / "fileio.py"))


FILE_NAMES = {
    "runs.layout": {layout.CONFIG_FILE, layout.METRICS_FILE, layout.WEIGHTS_FILE, layout.LOCK_FILE,
                    layout.REPORT_FILE, layout.BEST_CHECKPOINT, layout.LATEST_CHECKPOINT}
                   | {f"{split}.{ext}" for split in layout.SPLITS for ext in ("npy", "txt")},
    "tokenizer.tokenizer_dir": set(tokenizer_dir.FILES),
}
"""File names by their home module: a string equal to one, or a path that holds one, is theirs alone."""
DIR_NAMES = {"runs.layout": {layout.CHECKPOINTS, layout.SAMPLES, layout.PLOTS, layout.TOKENIZER}}
"""Folder names by their home module: also words in their own right ("samples" is a metrics event, "tokenizer"
a command), so only a path that holds one, or one joined to a path with ``/``, is theirs alone."""
NAMES_ALLOWED = {
    ("export.py", "model.safetensors"): "the weights file of a Hugging Face folder: transformers' name for it",
}
"""(file, name) pairs that spell a name outside its home, and why."""


def _may_import(module: str, home: str) -> bool:
    src, dst = _unit(module), _unit(home)
    return _package(src) == _package(dst) or _rank(src) > _rank(dst)


def _spelled_names(path: Path, files: set[str], dirs: set[str]) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    joined = {id(side) for node in ast.walk(tree) if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
              for side in (node.left, node.right)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in docs:
            continue
        text = node.value
        parts = text.split("/") if not any(c.isspace() for c in text) else []
        if any(p in files for p in parts) or (len(parts) > 1 and any(p in dirs for p in parts)) \
                or (text in dirs and id(node) in joined):
            found.append((node.lineno, text))
    return found


def test_run_dataset_and_tokenizer_file_names_are_spelled_only_in_their_home_module():
    offenders = []
    for module, path in sorted(_modules().items()):
        where = path.relative_to(PACKAGE).as_posix()
        for home in FILE_NAMES:
            if not module or module == home or not _may_import(module, home):
                continue
            offenders += [f"{where}:{line}: {text!r} (use {home})"
                          for line, text in _spelled_names(path, FILE_NAMES[home], DIR_NAMES.get(home, set()))
                          if (where, text) not in NAMES_ALLOWED]
    assert not offenders, "names of run/dataset/tokenizer files spelled outside their home:\n" + "\n".join(offenders)


def test_the_name_scan_finds_names(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('"""Docstrings may say metrics.jsonl."""\n'
                     'a = run / "metrics.jsonl"\nb = glob("*/config.toml")\nc = root / "checkpoints"\n'
                     'd = {"samples": 1}\ne = f"{root}/plots/x"\nf = "see metrics.jsonl in the run"\n')
    found = _spelled_names(probe, FILE_NAMES["runs.layout"], DIR_NAMES["runs.layout"])
    assert [text for _, text in found] == ["metrics.jsonl", "*/config.toml", "checkpoints", "/plots/x"]
