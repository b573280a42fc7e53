"""Numbers are never cut: at 80 columns the tables switch to a compact layout, and in a pipe they take the width
they need. Every estimate, reference and constant must appear whole."""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner
from rich.console import Console

import normstats
from normstats.cli import main
from normstats.output.results import numbers as fmt
from normstats.output.terminal import layers as render
from normstats.published import conventions

ROWS = [("maxpool", {"k": 3}), ("linear", {}), ("conv", {"size": "7"}), ("dropout", {"p": 0.9}),
        ("softplus", {"beta": 2.0, "threshold": 1.0})]


@pytest.fixture(scope="module", params=["some", "default table"])
def rows(request: pytest.FixtureRequest) -> list[normstats.Row]:
    if request.param == "default table":
        return list(normstats.table(samples=2000, seed=0).rows)
    return [normstats.simulate(name, samples=2000, seed=0, **params) for name, params in ROWS]


def _numbers(rows: list[normstats.Row]) -> list[str]:
    out = []
    for row in rows:
        for stat in row.stats().values():
            out += [fmt.estimate(stat), fmt.ref(stat.reference)]
        constants = conventions.constants(row)
        out += [fmt.constant(v) for v in constants.values()]
    return out


@pytest.mark.parametrize("width", [80, 100, 200])
def test_a_terminal_of_any_width_from_80_shows_every_number_whole(rows: list[normstats.Row], width: int) -> None:
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=True, color_system=None).print(
        render.results(rows, "title", width=width)
    )
    text = buf.getvalue()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    for number in _numbers(rows):
        assert number in text, number


def test_piped_output_takes_the_width_it_needs() -> None:
    out = CliRunner().invoke(main, ["simulate", "--layer", "linear", "-n", "1000"]).stdout
    assert "…" not in out
    assert "fan_in=128;fan_out=64;init=normal;normalize=fan-in" in out  # the params in one piece
