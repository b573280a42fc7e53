"""The figures committed under ``docs/`` read back as images, are shown by a page, and that page (or the script
it names) says the command that makes them.

A figure is checked twice: its maker's own tests read back the PNG they write (tests/test_plotting.py and the
figure tests of each command), and this file reads back the committed ones, so that a figure truncated,
blank or left behind by a removed page fails the suite.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

matplotlib_image = pytest.importorskip("matplotlib.image")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FIGURES = sorted(DOCS.glob("*.png"))
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def test_there_are_committed_figures() -> None:
    assert len(FIGURES) >= 6, FIGURES


@pytest.mark.parametrize("figure", FIGURES, ids=lambda p: p.name)
def test_a_committed_figure_reads_back_as_a_picture(figure: Path) -> None:
    pixels = matplotlib_image.imread(figure)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4), pixels.shape
    height, width = pixels.shape[:2]
    assert height >= 300 and width >= 400, (height, width)
    gray = pixels[..., :3].mean(axis=2)
    # drawn on: a fair share of pixels is not background, and there is dark ink (axes, text)
    assert (gray < 0.95).mean() > 0.01, "the figure is almost blank"
    assert gray.min() < 0.3, "the figure has no dark ink"
    assert np.isfinite(pixels).all()


@pytest.mark.parametrize("figure", FIGURES, ids=lambda p: p.name)
def test_a_committed_figure_is_shown_with_the_command_that_makes_it(figure: Path) -> None:
    shown = [p for p in PAGES if f"]({'' if p.name == 'README.md' else '../'}{figure.name})" in p.read_text()
             or f"](docs/{figure.name})" in p.read_text() or f"](../{figure.name})" in p.read_text()]
    assert shown, f"no page shows {figure.name}"
    target = f"docs/{figure.name}"
    commands = []
    for page in shown:
        text = page.read_text()
        commands += [line for line in text.splitlines() if target in line and ("--plot" in line or "scripts/" in line)]
        for script in re.findall(r"docs/scripts/\w+\.py", text):
            if target in (ROOT / script).read_text():
                commands.append(script)
    assert commands, f"{figure.name}: no page that shows it gives the command that makes it"
