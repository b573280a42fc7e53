"""The documentation: the site builds with warnings as errors, and every example in it and in the README runs
and prints what the page shows (:mod:`tests.docs_examples` says what an example is)."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs_examples import DOCS, ROOT, Example, console_examples, difference, pages, pycon_blocks, run

EXAMPLES = [e for page in pages() for e in console_examples(page)]
SESSIONS = [b for page in pages() for b in pycon_blocks(page)]


def test_there_are_examples_to_check() -> None:
    assert len(EXAMPLES) >= 10 and SESSIONS
    assert {e.page for e in EXAMPLES} >= {ROOT / "README.md"}


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_console_example_prints_what_the_page_shows(example: Example) -> None:
    """Each example in a test of its own: the suite's workers (tests/conftest.py) run them side by side, with the
    other tests (a module fixture running all of them would run in full in every worker that needs it)."""
    printed = run(example)
    found = difference(example, printed)
    shown = "\n".join(example.shown)
    assert found is None, f"{example}: {found}\n--- printed ---\n" + "\n".join(printed) + f"\n--- shown ---\n{shown}"


def test_a_left_out_run_of_lines_is_matched_at_both_ends() -> None:
    example = Example(ROOT / "README.md", 1, "true", ("a 1.0", "...", "z 2.0"))
    assert difference(example, ["a 1.0", "b", "c", "z 2.0"]) is None
    assert difference(example, ["a 1.0", "b", "c", "z 2.5"]) is not None
    assert difference(example, ["a 1.5", "z 2.0"]) is not None
    assert difference(Example(ROOT / "README.md", 1, "true", ("a",)), ["a", "b"]) is not None


@pytest.mark.parametrize("session", SESSIONS, ids=lambda s: f"{s[0].relative_to(ROOT)}:{s[1]}")
def test_python_session_runs_as_shown(session: tuple[Path, int, str]) -> None:
    page, line, text = session
    test = doctest.DocTestParser().get_doctest(text, {}, str(page.relative_to(ROOT)), str(page), line)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, f"{page}:{line}: see the doctest report above"


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS),
                           str(tmp_path / "html")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    cli = (tmp_path / "html" / "reference" / "cli.html").read_text(encoding="utf-8")
    from normstats.cli import main

    assert all(f'id="normstats-{name}"' in cli for name in main.commands)  # type: ignore[attr-defined]
    assert "normstats.simulate" in (tmp_path / "html" / "reference" / "api.html").read_text(encoding="utf-8")
