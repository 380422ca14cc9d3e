"""The package's import graph keeps its layers: nothing imports upwards, no cycles, imports at the top.

The layers (lowest first) are drawn in docs/architecture.md; :data:`LAYERS` is the
same picture as data. A module may import its own package and any lower layer.
Imports inside functions are allowed only where they keep ``cs336 --help`` fast
(the command modules, which import their library code when they run) or load an
optional dependency (the W&B and TensorBoard trackers).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cs336_basics"

LAYERS: list[list[str]] = [
    ["errors"],
    ["fileio", "progress"],
    ["config"],
    ["outputs"],
    ["runtime"],
    ["tokenizer", "hub", "model"],
    ["datasets", "sample"],
    ["runs"],
    ["generation"],
    ["evaluation"],
    ["training"],
    ["reporting"],
    ["interop"],
    ["experiments", "prepare", "download", "export", "compat"],
    ["quickstart"],
    ["commands"],
    ["cli"],
    ["__main__"],
]

LOCAL_IMPORTS_ALLOWED = {
    "commands": "each command imports its library code when it runs, so 'cs336 --help' imports no torch",
    "training.trackers": "wandb and tensorboard are optional dependencies, imported only when enabled",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__")
        out[name] = path
    return out


def _unit(module: str) -> str:
    """The longest entry of LAYERS that ``module`` is or lives in."""
    best = ""
    for layer in LAYERS:
        for unit in layer:
            if (module == unit or module.startswith(unit + ".")) and len(unit) > len(best):
                best = unit
    assert best, f"cs336_basics.{module} is in no layer: add it to LAYERS and docs/architecture.md"
    return best


def _rank(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def _package(unit: str) -> str:
    return unit.split(".")[0]


def _imports(path: Path) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(top-level imports, function-local imports) as (module, line): ``from pkg import sub`` names ``pkg.sub``
    when that is a module of ours, else ``pkg``."""
    modules = {f"cs336_basics.{m}" if m else "cs336_basics" for m in _modules()}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    local_nodes = {id(sub) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for sub in ast.walk(node) if isinstance(sub, (ast.Import, ast.ImportFrom))}
    top, local = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for name in dict.fromkeys(names):
            (local if id(node) in local_nodes else top).append((name, node.lineno))
    return top, local


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _ in _imports(path)[0]:
            if target.startswith("cs336_basics."):
                graph[name].add(target[len("cs336_basics."):])
    return graph


def test_no_import_runs_up_the_layers():
    violations = []
    for name, path in _modules().items():
        if not name:
            continue  # cs336_basics/__init__.py
        src_unit = _unit(name)
        for target, line in _imports(path)[0]:
            if not target.startswith("cs336_basics."):
                continue
            dst_unit = _unit(target[len("cs336_basics."):])
            if _package(dst_unit) == _package(src_unit):
                continue
            if _rank(dst_unit) >= _rank(src_unit):
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {src_unit} -> {dst_unit}")
    assert not violations, "imports that run up (or across) the layers:\n" + "\n".join(violations)


def test_module_graph_has_no_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_function_local_imports_are_justified():
    offenders = []
    for name, path in _modules().items():
        if any(name == k or name.startswith(k + ".") for k in LOCAL_IMPORTS_ALLOWED):
            continue
        offenders += [f"{path.relative_to(PACKAGE.parent)}:{line}: import {target}"
                      for target, line in _imports(path)[1]]
    assert not offenders, "imports inside functions (move them to the top of the file):\n" + "\n".join(offenders)


def test_every_layer_unit_exists():
    modules = _modules()
    for layer in LAYERS:
        for unit in layer:
            assert any(m == unit or m.startswith(unit + ".") for m in modules), unit


def test_help_imports_no_torch():
    """``cs336 --help`` registers every command; none of that may import torch (about 2 s on its own)."""
    code = ("import sys; from cs336_basics.cli import build_parser; build_parser(['--help']); "
            "heavy = [m for m in ('torch', 'matplotlib') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"building the CLI imported {out}"


def test_config_imports_no_torch():
    """Every layer reads its settings from ``cs336_basics.config``: loading, overriding and describing a config,
    the variant names with their facts, and counting a model's parameters (``cs336 model info``) import no torch."""
    code = ("import sys; import cs336_basics.config as c; from cs336_basics.config.accounting import count_parameters; "
            "cfg = c.apply_overrides(c.load_config('tinystories'), ['model.ffn=moe']); "
            "c.describe_fields(c.RunConfig); count_parameters(c.preset('gpt2-small')); "
            "print('torch' if 'torch' in sys.modules else '')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"reading a config imported {out}"


# ----------------------------------------------------------------------------- benchmarks/

BENCHMARKS = PACKAGE.parent / "benchmarks"


def _benchmark_graph() -> dict[str, set[str]]:
    """benchmarks' modules and the ones of benchmarks each imports, at the top or inside a function (a local
    import closes a circle as surely as a top-level one)."""
    names = {path.stem for path in BENCHMARKS.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in BENCHMARKS.glob("*.py"):
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                found = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            targets |= {name.split(".")[1] for name in found
                        if name.startswith("benchmarks.") and name.split(".")[1] in names}
            targets |= {"__init__"} if "benchmarks" in found else set()
        graph[path.stem] = targets - {path.stem}
    return graph


def test_benchmarks_import_graph_has_no_cycles():
    graph = _benchmark_graph()
    assert graph["render"] and graph["script"], "the walk found no imports: check _benchmark_graph"
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in stack:
                raise AssertionError("import cycle in benchmarks/: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in done:
                visit(nxt, stack + [nxt])
        done.add(node)

    for node in sorted(graph):
        visit(node, [node])


def test_benchmarks_change_sys_path_in_one_place():
    """A script run as a file gets the repository on sys.path from benchmarks/standalone.py, and from nowhere else."""
    changers = sorted(path.name for path in BENCHMARKS.glob("*.py")
                      for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                      if isinstance(node, ast.Attribute) and node.attr == "path"
                      and isinstance(node.value, ast.Name) and node.value.id == "sys")
    assert set(changers) == {"standalone.py"}, changers
