"""The README's promises: two quick-start commands (CI runs the second verbatim) and a Python example that
runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.rounding import same_up_to_rounding

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str, text: str = README) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, title
    return match.group(1)


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_second() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", _section("Quick start"), re.S)
    assert len(blocks) == 2
    install_run, test = (b.strip() for b in blocks)
    assert "\n" not in install_run and "\n" not in test
    assert install_run.endswith("normstats table")
    assert test.endswith("pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci.splitlines()


@pytest.mark.slow
def test_python_api_example_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    page = (ROOT / "docs" / "guide" / "python.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", page, re.S)
    exec(compile(code, "docs/guide/python.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    # The figures the page quotes in comments are what the code prints: a whole-line comment shows the
    # output of the print above it, an inline comment the output of its own line.
    lines = code.splitlines()
    quoted_stats = next(line[2:] for line in lines if line.startswith("# "))
    quoted_constants = next(line.split("  # ", 1)[1] for line in lines if "row.constants()" in line)
    # to float rounding: BLAS kernels differ between CPUs (see tests/rounding.py)
    assert same_up_to_rounding(printed[0], quoted_stats) is None, (printed[0], quoted_stats)
    assert same_up_to_rounding(printed[1], quoted_constants) is None, (printed[1], quoted_constants)


def test_what_it_finds_quotes_the_committed_tables() -> None:
    """The estimates in "What it finds" are those of tables/table.csv, formatted as the tool prints them."""
    import csv

    from normstats.output.results.numbers import pm

    with (ROOT / "tables" / "table.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    where = {"sigmoid": ("sigmoid", ""), "2x2 max pooling": ("maxpool", "k=2;stride=2;padding=0;size=interior")}
    quoted = re.findall(r"^\| (sigmoid|2x2 max pooling) \| (\w+) (\w+) \|.*\| ([^|]+) \|$", _section("What it finds"), re.M)
    assert len(quoted) == 3
    for label, part, stat, text in quoted:
        layer, params = where[label]
        (row,) = [r for r in rows if r["layer"] == layer and r["params"] == params and r["statistic"] == f"{part}_{stat}"]
        assert text.strip() == pm(float(row["estimate"]), float(row["se"])), (label, part, stat)


def test_the_readme_is_short_and_every_link_resolves() -> None:
    """The front door: at most about 250 lines, and every relative link leads to a file of the repository."""
    assert len(README.splitlines()) <= 260
    links = re.findall(r"\]\(((?!https?:)[^)#]+)\)", README)
    assert links
    for link in links:
        assert (ROOT / link).exists(), link


def test_a_newcomer_finds_install_table_and_a_2x2_max_pool_in_the_readme() -> None:
    assert "normstats table" in _section("Quick start")
    assert "normstats simulate --layer maxpool --k 2" in _section("A layer's constants")
