"""Numbers are never cut: at 80 columns the tables switch to a compact layout, and in a pipe they take the width
they need. Every estimate, reference and constant must appear whole."""

from __future__ import annotations

import io
import re

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


def test_huge_estimates_are_written_in_scientific_notation() -> None:
    """A residual branch scaled by 1e100 gives estimates near 1e100: each shown as ``m.me+XXX ± s.se+XXX``
    (fmt.SCIENTIFIC_FROM), never as a 150-digit integer; an ordinary estimate keeps fixed notation."""
    result = CliRunner().invoke(main, ["network", "res(linear, alpha=1e100)", "--input", "8", "-n", "20"])
    assert result.exit_code == 0, result.output
    assert not re.search(r"\d{16}", result.stdout), result.stdout
    assert re.search(r"\de\+(?:98|99|100) ± \d\.\de\+(?:98|99|100)", result.stdout), result.stdout
    assert fmt.pm(-6.56e148, 9.19e148) == "-6.6e+148 ± 9.2e+148"
    assert fmt.pm(1.2345e13, 3.3e9) == "1.23450e+13 ± 3.3e+09"
    assert fmt.pm(5.0, 2e12) == "0.0e+00 ± 2.0e+12"  # the estimate rounds to 0 at the se's place
    assert fmt.pm(999999.5, 0.3) == "999999.50 ± 0.30"
    assert fmt.z(3e15) == "+3.00e+15" and fmt.z(1.5) == "+1.50"
