"""The package's import direction: every import inside ``src/normstats`` goes down the stack below, never up;
inside a subpackage, between its kinds (``output``) or between its commands and their shared part (``cli``), in
the order it declares; and no module imports, directly or through others, a module that imports it back.

Every ``import`` counts, wherever it stands: at the top of a module, inside a function (a lazy import) and
under ``if TYPE_CHECKING:`` (a type-only import is still a dependency a reader has to follow). A module may
import its own subpackage and anything on a lower level; modules on the same level import one another only
inside one subpackage (only the foundation level holds more than one unit, and its modules are single files).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import normstats

PACKAGE = Path(normstats.__file__).parent

#: Top to bottom. A unit is a subpackage or a top-level module; the foundation modules share the lowest level.
LEVELS: tuple[tuple[str, ...], ...] = (
    ("__init__",),
    ("cli",),
    ("api",),
    ("models",),
    ("theory",),
    ("networks",),
    ("output",),
    ("published",),
    ("engine",),
    ("layers",),
    ("exact",),
    ("registry", "params", "stats", "errors", "lazy", "_version"),
)
RANK = {unit: i for i, units in enumerate(LEVELS) for unit in units}


def _unit(module: str) -> str:
    """``normstats.engine.blocks`` -> ``engine``; ``normstats.cli`` -> ``cli``; ``normstats`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every import of a ``normstats`` module in ``path``."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "normstats"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.split(".")[0] != "normstats":
                continue
            if module == "normstats":  # from normstats import engine: the names are submodules or the API
                out += [(node.lineno, f"normstats.{a.name}") for a in node.names]
            else:  # from normstats.cli import options: a submodule where the name is one
                subs = [f"{module}.{a.name}" for a in node.names if _is_module(f"{module}.{a.name}")]
                out += [(node.lineno, m) for m in subs] or [(node.lineno, module)]
    return out


def _is_module(name: str) -> bool:
    """Whether ``normstats.a.b`` is a module or package of the package under test (a C extension counts, by its
    source ``.c`` file: ``from normstats.layers import _relu_kernels``)."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return any(path.with_suffix(s).exists() for s in (".py", ".c")) or (path / "__init__.py").exists()


def _violations(path: Path) -> list[str]:
    importer = _module_name(path)
    here = _unit(importer)
    bad = []
    for line, module in _imports(path):
        there = _unit(module)
        if there not in RANK:
            bad.append(f"{importer}:{line} imports {module}, which is on no level of LEVELS")
        elif here == "__init__" or there == here:
            continue
        elif RANK[there] < RANK[here]:
            bad.append(f"{importer}:{line} imports {module}: {there} sits above {here}")
    return bad


#: Inside a subpackage: its folders or modules from top to bottom (a name missing from the list is a command
#: or helper on the top level of that subpackage). A module imports its own room or a lower one, never a
#: higher one or a neighbour on its own level (two commands do not import each other).
ROOMS: dict[str, tuple[tuple[str, ...], ...]] = {
    "output": (("terminal", "figures"), ("files",), ("results",)),
    "cli": (("__init__", "__main__"), ("main",), ("layers", "network", "export", "meanfield", "jacobian", "model"),
            ("options", "output"), ("errors",)),
}


def _room(module: str) -> str | None:
    """``normstats.output.files.atomic`` -> ``files``; ``normstats.cli.options`` -> ``options``."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 else "__init__" if len(parts) == 2 else None


def _room_violations(path: Path) -> list[str]:
    importer = _module_name(path)
    if path.name == "__main__.py":
        importer += ".__main__"
    unit = _unit(importer)
    if unit not in ROOMS:
        return []
    rank = {room: i for i, rooms in enumerate(ROOMS[unit]) for room in rooms}
    here = _room(importer)
    bad = []
    for line, module in _imports(path):
        if _unit(module) != unit or here == "__init__" or here == "__main__":
            continue
        there = _room(module)
        if there not in rank or here not in rank:
            bad.append(f"{importer}:{line} imports {module}: {there or here} is in no room of ROOMS[{unit!r}]")
        elif there != here and rank[there] <= rank[here]:
            bad.append(f"{importer}:{line} imports {module}: {there} does not sit below {here} in {unit}")
    return bad


def _graph() -> dict[str, set[str]]:
    """Every module of the package with the package modules it imports anywhere (top level, inside a function,
    under ``TYPE_CHECKING``). ``from normstats.output import files`` names a submodule; an import of a package
    is an edge to its ``__init__``. The parents that Python imports implicitly are no edges: they are not
    written, and a package ``__init__`` that only re-exports is loaded before its modules anyway."""
    modules = {_module_name(p): p for p in MODULES}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for _, module in _imports(path):
            if module not in modules and _is_module(module):  # a C extension: it imports nothing of ours
                continue
            while module not in modules and "." in module:  # from pkg.mod import name: the module
                module = module.rpartition(".")[0]
            if module in modules and module != name:
                edges.add(module)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _is_package(unit: str) -> bool:
    return (PACKAGE / unit).is_dir()


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_unit_of_the_package_has_a_level() -> None:
    units = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    units |= {p.stem for p in PACKAGE.glob("*.py")}
    assert units == set(RANK)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_down_the_stack(path: Path) -> None:
    assert _violations(path) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_inside_a_subpackage_run_down_its_rooms(path: Path) -> None:
    assert _room_violations(path) == []


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    """No circle of imports, however long, and whether or not an import is deferred into a function."""
    assert _cycles(_graph()) == []


def test_the_circle_check_finds_a_circle_through_a_deferred_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_counts_an_import_inside_a_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "normstats"
    (fake / "output").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "output" / "__init__.py").write_text("")
    (fake / "output" / "one.py").write_text("from normstats.output.two import g\n")
    (fake / "output" / "two.py").write_text("def g():\n    from normstats.output import one\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    monkeypatch.setattr(sys.modules[__name__], "MODULES", sorted(fake.rglob("*.py")))
    assert _cycles(_graph()) == [["normstats.output.one", "normstats.output.two"]]


def test_every_room_exists() -> None:
    for unit, rooms in ROOMS.items():
        for room in (r for level in rooms for r in level):
            assert (PACKAGE / unit / room).is_dir() or (PACKAGE / unit / f"{room}.py").exists(), (unit, room)
    for unit in ROOMS:
        names = {p.stem for p in (PACKAGE / unit).iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
        assert names == {r for level in ROOMS[unit] for r in level} | {"__init__"}, unit


@pytest.mark.parametrize("unit", [u for u in RANK if _is_package(u)])
def test_each_subpackage_says_what_it_holds_and_what_it_may_import(unit: str) -> None:
    doc = ast.get_docstring(ast.parse((PACKAGE / unit / "__init__.py").read_text(encoding="utf-8")))
    assert doc and "May import" in doc


def test_the_check_catches_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A layer module that imports the engine, lazily inside a function, or the output under TYPE_CHECKING, is
    caught; an import within its own subpackage or of a foundation module is not."""
    fake = tmp_path / "normstats"
    (fake / "layers").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    source = (
        "from typing import TYPE_CHECKING\n"
        "from normstats.layers.base import Layer\n"
        "from normstats.exact.quadrature import integrate\n"
        "from normstats.errors import NormstatsError\n"
        "if TYPE_CHECKING:\n"
        "    from normstats.output.results.table import Row\n"
        "def f():\n"
        "    from normstats import engine\n"
        "    from ..api import simulate\n"
    )
    (fake / "layers" / "bad.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    found = _violations(fake / "layers" / "bad.py")
    assert found == [
        "normstats.layers.bad:6 imports normstats.output.results.table: output sits above layers",
        "normstats.layers.bad:8 imports normstats.engine: engine sits above layers",
        "normstats.layers.bad:9 imports normstats.api: api sits above layers",
    ]


def test_the_layout_page_names_every_subpackage_and_module() -> None:
    page = (Path(__file__).parents[1] / "docs" / "explanation" / "layout.md").read_text(encoding="utf-8")
    for unit in RANK:
        if unit == "__init__":
            continue
        assert (f"`{unit}/`" if _is_package(unit) else f"`{unit}.py`") in page, unit
