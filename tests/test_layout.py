"""The package's import direction: every import inside ``src/normstats`` goes down the stack below, never up.

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
            else:
                out.append((node.lineno, module))
    return out


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
        "    from normstats.output.results import Row\n"
        "def f():\n"
        "    from normstats import engine\n"
        "    from ..api import simulate\n"
    )
    (fake / "layers" / "bad.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    found = _violations(fake / "layers" / "bad.py")
    assert found == [
        "normstats.layers.bad:6 imports normstats.output.results: output sits above layers",
        "normstats.layers.bad:8 imports normstats.engine: engine sits above layers",
        "normstats.layers.bad:9 imports normstats.api: api sits above layers",
    ]


def test_the_readme_layout_section_names_every_subpackage_and_module() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    for unit in RANK:
        if unit == "__init__":
            continue
        assert (f"`{unit}/`" if _is_package(unit) else f"`{unit}.py`") in section, unit
