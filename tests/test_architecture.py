"""Dependencies point one way (ARCHITECTURE.md): the room table's "may import" column is the rule, read from
the document itself, and the core imports neither the shells nor the I/O rooms."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "ARCHITECTURE.md"
#: the column's words for sets of rooms (ARCHITECTURE.md, under the table)
CORE, EVERYTHING = "core", "everything"
#: the package's own ``__init__`` (``__version__``) belongs to no room; anyone may import it
TOP = "unet"


def _rooms() -> list[tuple[list[str], str]]:
    """``[(paths, may import)]``: the rows of the room table whose paths are Python modules or packages."""
    lines = DOC.read_text().splitlines()
    start = lines.index("| room | what lives there | may import |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        room, _what, may = (c.strip() for c in line.strip("|").split(" | "))
        paths = re.findall(r"`([^`]+)`", room)
        if paths and all(p.endswith((".py", "/")) for p in paths):
            rows.append((paths, may))
    return rows


def _alias(path: str) -> str:
    """How the column names a room's path: without ``unet/``, ``.py`` and the trailing ``/`` (a path outside
    ``unet/``, an entry point, as it is)."""
    if not path.startswith("unet/"):
        return path
    return path.removeprefix("unet/").removesuffix("/").removesuffix(".py")


def _table() -> tuple[dict[str, int], dict[int, set[int]], set[int]]:
    """``(path -> room, room -> rooms it may import, the core rooms)`` parsed from ARCHITECTURE.md."""
    rows = _rooms()
    room_of = {path: i for i, (paths, _) in enumerate(rows) for path in paths}
    alias = {_alias(path): i for path, i in room_of.items()}
    assert len(alias) == len(room_of), "two paths of ARCHITECTURE.md's table have the same name"
    core = set(range(room_of["unet/io/"]))  # "core": every room above unet/io/
    allowed: dict[int, set[int]] = {}
    for i, (_, may) in enumerate(rows):
        allowed[i] = {i}
        for token in re.sub(r"\([^)]*\)", "", may).replace(";", ",").split(","):
            words = token.replace(":", " ").split()
            for word in (w.strip("`") for w in words):
                if word == CORE:
                    allowed[i] |= core
                elif word == EVERYTHING:
                    allowed[i] |= set(range(len(rows)))
                elif word in alias:
                    allowed[i].add(alias[word])
                # anything else: a third-party package (not checked here)
    return room_of, allowed, core


def _modules() -> dict[str, Path]:
    """``{dotted name: file}`` of every module of ``unet/`` and the entry points at the root."""
    out = {}
    for path in sorted((ROOT / "unet").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted(ROOT.glob("*.py")):
        out[f"<root>.{path.stem}"] = path
    return out


def _room(file: Path, room_of: dict[str, int]) -> int | None:
    """The room of a file: the longest table path that is the file or a folder holding it."""
    rel = file.relative_to(ROOT).as_posix()
    holders = [p for p in room_of if rel == p or (p.endswith("/") and rel.startswith(p))]
    return room_of[max(holders, key=len)] if holders else None


def _marker(file: Path) -> bool:
    """A package's ``__init__.py`` without code (``unet/data/``): a folder, no room of its own."""
    body = ast.parse(file.read_text()).body
    return file.name == "__init__.py" and all(isinstance(n, ast.Expr) for n in body)


def _imports(name: str, file: Path, modules: dict[str, Path]) -> set[str]:
    """Our own modules that ``file`` imports, wherever the import statement is (function-local and
    ``TYPE_CHECKING`` imports included); ``from package import module`` names the module."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    own = set()
    for imported in found:
        while imported and imported not in modules:  # a name inside a module: the module
            imported = imported.rpartition(".")[0]
        if imported and imported != TOP:
            own.add(imported)
    return own


def test_every_module_is_in_a_room_and_every_room_exists() -> None:
    room_of, _, _ = _table()
    missing = [p for p in room_of if not (ROOT / p).exists()]
    assert not missing, f"ARCHITECTURE.md names paths that do not exist: {missing}"
    homeless = [
        str(f.relative_to(ROOT))
        for name, f in _modules().items()
        if name != TOP and _room(f, room_of) is None and f.parent != ROOT and not _marker(f)
    ]
    assert not homeless, f"modules in no room of ARCHITECTURE.md's table: {homeless}"


def test_rooms_import_only_what_the_table_allows() -> None:
    """Every import between our own rooms is one the "may import" column of ARCHITECTURE.md allows."""
    room_of, allowed, _ = _table()
    rows = _rooms()
    modules = _modules()
    forbidden = []
    for name, file in modules.items():
        here = _room(file, room_of)
        if here is None:
            continue
        for imported in sorted(_imports(name, file, modules)):
            there = _room(modules[imported], room_of)
            if there is not None and there not in allowed[here]:
                forbidden.append(
                    f"{file.relative_to(ROOT)} imports {imported}: room {rows[here][0][0]} may not import "
                    f"room {rows[there][0][0]} (ARCHITECTURE.md: {rows[here][1]!r})"
                )
    assert not forbidden, "\n".join(forbidden)


#: what the core must not pull in: the framework shells and the file formats
SHELLS_AND_IO = ("lightning", "hydra", "omegaconf", "unet.io", "tifffile", "zarr", "roifile", "PIL")

CHILD = """
import importlib, json, sys
core, banned = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in core:
    importlib.import_module(name)
print(json.dumps(sorted(b for b in banned if any(m == b or m.startswith(b + ".") for m in sys.modules))))
"""


def test_the_core_imports_no_shell_and_no_io() -> None:
    """One fresh interpreter imports every module of the core rooms (ARCHITECTURE.md: the rooms above
    ``unet/io/``); none of the shells' or I/O packages may load."""
    room_of, _, core = _table()
    names = [name for name, f in _modules().items() if _room(f, room_of) in core]
    assert "unet.tasks" in names and "unet.models.shapes" in names and "unet.validation" in names
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(names), json.dumps(SHELLS_AND_IO)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing the core loaded {loaded}"
