"""benchmarks/ is a package run as ``python -m benchmarks.<script>``: every module imports in a fresh
interpreter without editing ``sys.path`` or loading sibling files by path, and the imports of ``unet/`` and
``benchmarks/`` form no cycle."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = ("unet", "benchmarks")


def module_files(root: Path = ROOT, trees: tuple[str, ...] = TREES) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``trees`` (a package is its ``__init__``)."""
    out = {}
    for tree in trees:
        for path in sorted((root / tree).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:`` (imports for annotations only, never executed)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imported_names(
    name: str, path: Path, *, in_functions: bool, type_checking: bool = False
) -> Iterator[str]:
    """The modules ``name`` imports: at module level (what runs on import), and with ``in_functions`` also
    the imports inside functions (deferred, but a circle of those is a circle of the design all the same).
    ``from a import b`` names ``a.b`` where that is a module, else ``a``; relative imports are resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip = set() if type_checking else _type_checking_nodes(tree)
    if in_functions:
        nodes = list(ast.walk(tree))
    else:
        nodes = [
            n
            for stmt in tree.body
            if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            for n in ast.walk(stmt)
        ]
    for node in nodes:
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                yield f"{base}.{alias.name}"
                yield base


def import_graph(root: Path = ROOT, trees: tuple[str, ...] = TREES) -> dict[str, set[str]]:
    """Module -> the modules of ``trees`` it imports, every kind: module level, inside functions (the old
    quality <-> arms <-> peer_monai circle was made of those) and for type checking only (the old
    evaluation <-> report circle was one of those): a deferred import breaks a circle at run time, not in
    the design. A package's ``__init__`` counts as imported with any of its modules (the old predict ->
    loading -> export.loading -> export -> predict circle ran through one)."""
    mods = module_files(root, trees)
    graph = {}
    for name, path in mods.items():
        targets = set()
        for target in imported_names(name, path, in_functions=True, type_checking=True):
            # importing a.b.c runs the packages a and a.b first (their __init__): edges to them too, except
            # to the packages that hold the importing module itself (already running)
            parts = target.split(".")
            for k in range(1, len(parts) + 1):
                m = ".".join(parts[:k])
                if m in mods and not name.startswith(m + "."):
                    targets.add(m)
        graph[name] = targets - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph (``[a, b, ..., a]``), or ``None`` if it is acyclic (iterative DFS)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_unet_and_benchmarks_imports_form_no_cycle() -> None:
    graph = import_graph()
    assert "benchmarks.common" in graph and "unet.evaluation" in graph
    assert "benchmarks.common" in graph["benchmarks.quality"]  # the graph sees the imports
    assert "benchmarks.arms" in graph["benchmarks.quality"]  # ... also those inside functions
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
    assert not any(t.startswith("benchmarks") for m, ts in graph.items() if m.startswith("unet") for t in ts)


def test_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    """The check fails on a circle like the old one: a copy of benchmarks/ where common imports arms back
    (inside a function, as quality and arms used to import each other)."""
    (tmp_path / "benchmarks").mkdir()
    for path in (ROOT / "benchmarks").glob("*.py"):
        (tmp_path / "benchmarks" / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    assert find_cycle(import_graph(tmp_path, ("benchmarks",))) is None
    common = tmp_path / "benchmarks" / "common.py"
    common.write_text(
        common.read_text(encoding="utf-8") + "\n\ndef _back():\n    from benchmarks import arms\n",
        encoding="utf-8",
    )
    cycle = find_cycle(import_graph(tmp_path, ("benchmarks",)))
    assert cycle is not None and {"benchmarks.common", "benchmarks.arms"} <= set(cycle), cycle
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_path_hacks_in_benchmarks() -> None:
    for name, path in module_files(trees=("benchmarks",)).items():
        text = path.read_text(encoding="utf-8")
        for hack in ("sys.path.insert", "sys.path.append", "spec_from_file_location"):
            assert hack not in text, f"{name}: {hack}"


@pytest.mark.xdist_group("subprocess")
def test_every_benchmark_module_imports_in_a_fresh_interpreter(tmp_path: Path) -> None:
    """Each module of benchmarks/ imports in a new interpreter (run from elsewhere, the checkout on
    PYTHONPATH as ``benchmarks.common.child_env`` sets it) and leaves ``sys.path`` as it found it."""
    names = sorted(module_files(trees=("benchmarks",)))
    assert {"benchmarks", "benchmarks.common", "benchmarks.quality", "benchmarks.arms"} <= set(names)
    code = (
        "import importlib, json, sys\n"
        "before = list(sys.path)\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps({'same_path': sys.path == before, 'file': sys.modules['benchmarks'].__file__}))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(names)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["same_path"]
    assert Path(out["file"]).resolve() == (ROOT / "benchmarks" / "__init__.py").resolve()


@pytest.mark.xdist_group("subprocess")
def test_child_processes_run_the_module_from_anywhere(tmp_path: Path) -> None:
    """``arms`` starts its runs as ``python -m benchmarks.arms --one ...`` with ``child_env()``: that finds
    this checkout from another working directory and without a PYTHONPATH of the caller."""
    from benchmarks.common import ROOT as COMMON_ROOT
    from benchmarks.common import child_env

    assert COMMON_ROOT == ROOT
    bare = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env = child_env(bare, OMP_NUM_THREADS="1")
    assert env["PYTHONPATH"] == str(ROOT) and env["OMP_NUM_THREADS"] == "1"
    assert child_env({"PYTHONPATH": "/x"})["PYTHONPATH"] == os.pathsep.join([str(ROOT), "/x"])
    code = "import benchmarks.arms as a, unet; print(a.__file__); print(unet.__file__)"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    arms_file, unet_file = proc.stdout.split()
    assert Path(arms_file).resolve() == (ROOT / "benchmarks" / "arms.py").resolve()
    assert Path(unet_file).resolve().parent == (ROOT / "unet").resolve()  # this checkout's package
