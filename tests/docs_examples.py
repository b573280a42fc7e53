"""The examples of the README and of the documentation pages (``docs/**/*.md``): finding them, running them,
comparing what they print with what the page shows, and rewriting a page's shown output after a change that
moves it on purpose.

An example is a fenced ``console`` block: lines starting with ``$ `` are shell commands (bash, with the
``normstats`` of this Python's environment first on the PATH, stdout and stderr merged as a terminal shows
them, NO_COLOR and no COLUMNS: the tables take the width a file or a pipe gets); the lines after a command, up to
the next one, are its output. A line ``...`` stands for lines left out: an excerpt shows the first lines of the
output, then ``...``, then (optionally) its last lines. Outputs are compared up to float rounding
(:mod:`tests.rounding`). A command shown without running it belongs in a ``bash`` block.

    python -m tests.docs_examples            # check every example (as tests/test_docs.py does)
    python -m tests.docs_examples --refresh [PAGE ...]  # rewrite the shown outputs from fresh runs; review the diff
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.rounding import same_up_to_rounding

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(console|pycon)\n(.*?)^```", re.S | re.M)
GAP = "..."


def pages() -> list[Path]:
    return sorted([ROOT / "README.md", *(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)])


@dataclass(frozen=True)
class Example:
    page: Path
    line: int
    command: str
    shown: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: {self.command[:70]}"


def console_examples(page: Path) -> list[Example]:
    text = page.read_text(encoding="utf-8")
    out = []
    for match in FENCE.finditer(text):
        if match.group(1) != "console":
            continue
        first = text.count("\n", 0, match.start(2)) + 1
        command: str | None = None
        shown: list[str] = []
        start = first
        for i, line in enumerate(match.group(2).splitlines()):
            if line.startswith("$ "):
                if command is not None:
                    out.append(Example(page, start, command, tuple(shown)))
                command, shown, start = line[2:], [], first + i
            elif command is not None:
                shown.append(line)
        if command is not None:
            out.append(Example(page, start, command, tuple(shown)))
    return out


def pycon_blocks(page: Path) -> list[tuple[Path, int, str]]:
    text = page.read_text(encoding="utf-8")
    return [(page, text.count("\n", 0, m.start(2)) + 1, m.group(2)) for m in FENCE.finditer(text)
            if m.group(1) == "pycon"]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("COLUMNS", None)
    env.pop("FORCE_COLOR", None)
    env["NO_COLOR"] = "1"
    return env


def run(example: Example, cwd: Path = ROOT) -> list[str]:
    """What the command prints, stdout and stderr merged, trailing spaces removed. Commands run where a reader
    runs them, in the checkout (none of them writes a file)."""
    done = subprocess.run(["bash", "-c", example.command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, cwd=cwd, env=environment(), timeout=600)
    return [line.rstrip() for line in done.stdout.rstrip("\n").splitlines()]


def _parts(shown: tuple[str, ...]) -> tuple[list[str], list[str] | None]:
    """The shown output's head, and its tail after a ``...`` line (None: the whole output is shown)."""
    lines = [line.rstrip() for line in shown]
    while lines and not lines[-1]:
        lines.pop()
    if GAP not in lines:
        return lines, None
    cut = lines.index(GAP)
    if GAP in lines[cut + 1:]:
        raise ValueError("an example may leave out one run of lines (one '...')")
    return lines[:cut], lines[cut + 1:]


def difference(example: Example, printed: list[str]) -> str | None:
    """None when ``printed`` is what the page shows (up to rounding and the lines left out), else why not."""
    head, tail = _parts(example.shown)
    if tail is None:
        return same_up_to_rounding("\n".join(printed), "\n".join(head))
    if len(printed) < len(head) + len(tail):
        return f"printed {len(printed)} lines, the page shows {len(head) + len(tail)} and leaves some out"
    found = same_up_to_rounding("\n".join(printed[: len(head)]), "\n".join(head))
    if found is None and tail:
        found = same_up_to_rounding("\n".join(printed[len(printed) - len(tail):]), "\n".join(tail))
    return found


def refreshed(example: Example, printed: list[str]) -> list[str]:
    """The shown output rewritten from ``printed``, with the same lines left out."""
    head, tail = _parts(example.shown)
    if tail is None:
        return printed
    return [*printed[: len(head)], GAP, *(printed[len(printed) - len(tail):] if tail else [])]


def refresh(page: Path, workdir: Path = ROOT) -> None:
    lines = page.read_text(encoding="utf-8").split("\n")
    for example in reversed(console_examples(page)):  # from the bottom: line numbers above stay valid
        start = example.line  # 1-based line of the "$ " line is example.line; its output follows
        new = refreshed(example, run(example, workdir))
        lines[start: start + len(example.shown)] = new
    page.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str]) -> int:
    chosen = [p for p in pages() if not argv[1:] or str(p.relative_to(ROOT)) in argv[1:]]
    if argv[:1] == ["--refresh"]:
        for page in chosen:
            if console_examples(page):
                refresh(page)
                print(f"refreshed {page.relative_to(ROOT)}")
        return 0
    bad = 0
    for page in chosen:
        for example in console_examples(page):
            found = difference(example, run(example))
            if found is not None:
                bad += 1
                print(f"{example}: {found}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
