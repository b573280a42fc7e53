"""The documentation: the site builds with warnings as errors, and every example in it and in the README runs
and prints what the page shows.

Examples are fenced blocks of two kinds:

- ``console``: lines starting with ``$ `` are shell commands (run by bash, with the ``normstats`` of this
  Python's environment first on the PATH, stdout and stderr merged as a terminal shows them); the lines after a
  command, up to the next one, are its output. A last output line ``...`` means the page shows only the start.
- ``pycon``: Python sessions (``>>>``), run as doctests (``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``).

Outputs are compared up to float rounding (:mod:`tests.rounding`): another machine reproduces them in all but
the last bits.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.rounding import same_up_to_rounding

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.rglob("*.md")])
FENCE = re.compile(r"^```(console|pycon)\n(.*?)^```", re.S | re.M)


@dataclass(frozen=True)
class Example:
    page: Path
    line: int
    command: str
    shown: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: {self.command[:60]}"


def _console_examples(page: Path) -> list[Example]:
    text = page.read_text(encoding="utf-8")
    out = []
    for match in FENCE.finditer(text):
        if match.group(1) != "console":
            continue
        first = text.count("\n", 0, match.start(2)) + 1
        command, shown, start = None, [], first
        for i, line in enumerate(match.group(2).splitlines()):
            if line.startswith("$ "):
                if command is not None:
                    out.append(Example(page, start, command, "\n".join(shown)))
                command, shown, start = line[2:], [], first + i
            elif command is not None:
                shown.append(line)
        if command is not None:
            out.append(Example(page, start, command, "\n".join(shown)))
    return out


def _pycon_blocks(page: Path) -> list[tuple[Path, int, str]]:
    text = page.read_text(encoding="utf-8")
    return [(page, text.count("\n", 0, m.start(2)) + 1, m.group(2)) for m in FENCE.finditer(text)
            if m.group(1) == "pycon"]


EXAMPLES = [e for page in PAGES for e in _console_examples(page)]
SESSIONS = [b for page in PAGES for b in _pycon_blocks(page)]


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("COLUMNS", None)  # a pipe: the tables take the width a file gets
    env["NO_COLOR"] = "1"
    return env


def test_there_are_examples_to_check() -> None:
    assert len(EXAMPLES) >= 5 and SESSIONS


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_console_example_prints_what_the_page_shows(example: Example, tmp_path: Path) -> None:
    run = subprocess.run(["bash", "-c", example.command], capture_output=False, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=_environment(), timeout=300)
    printed = "\n".join(line.rstrip() for line in run.stdout.rstrip("\n").splitlines())
    shown = "\n".join(line.rstrip() for line in example.shown.rstrip("\n").splitlines())
    if shown.endswith("\n...") or shown == "...":
        shown = shown[:-3].rstrip("\n")
        printed = "\n".join(printed.splitlines()[: len(shown.splitlines())])
    assert same_up_to_rounding(printed, shown) is None, f"{example}\n--- printed ---\n{printed}\n--- shown ---\n{shown}"


@pytest.mark.parametrize("session", SESSIONS, ids=lambda s: f"{s[0].relative_to(ROOT)}:{s[1]}")
def test_python_session_runs_as_shown(session: tuple[Path, int, str]) -> None:
    page, line, text = session
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {}, str(page.relative_to(ROOT)), str(page), line)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, f"{page}:{line}: see the doctest report above"


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS),
                          str(tmp_path / "html")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "html" / "reference" / "cli.html").read_text(encoding="utf-8").count("--samples") >= 3
    assert "normstats.simulate" in (tmp_path / "html" / "reference" / "api.html").read_text(encoding="utf-8")
