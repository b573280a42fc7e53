"""Dropout under both scale conventions (``--convention sqrt|inverted``): closed forms against the mask enumerated
exactly, and the estimates against the closed forms, through the API and the command line."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import pytest

import normstats
from tests.test_cli import run

Z_MAX = 4.5


@pytest.mark.parametrize("convention", ["sqrt", "inverted"])
@pytest.mark.parametrize("p", ["0.1", "0.5", "0.9", "1"])
def test_closed_forms_equal_the_enumerated_mask(convention: str, p: str) -> None:
    """y = x m c with m ~ Bernoulli(p): E y^2 = sum over m in {0, 1} of P(m) (m c)^2 E x^2, in exact
    rationals for the inverted convention (c = 1/p) and for c^2 = 1/p under sqrt."""
    keep = Fraction(p)
    c2 = 1 / keep if convention == "sqrt" else 1 / keep**2
    second = (1 - keep) * 0 + keep * c2
    refs = normstats.make_layer("dropout", p=float(keep), convention=convention).formula()
    assert refs["fp_mean"] == refs["bp_mean"] == 0.0
    assert refs["fp_std"] == pytest.approx(math.sqrt(second), rel=1e-15)
    assert refs["bp_std"] == refs["fp_std"]


@pytest.mark.parametrize("convention", ["sqrt", "inverted"])
@pytest.mark.parametrize("p", [0.5, 0.9])
def test_estimates_match_the_closed_forms(convention: str, p: float) -> None:
    row = normstats.simulate("dropout", samples=100_000, seed=17, p=p, convention=convention)
    for stat in row.stats().values():
        assert stat.reference is not None, stat
        if stat.exact:  # the conditional bp mean, 0 in every draw: the reference itself, never z-tested
            assert stat.estimate == stat.reference and stat.z is None, stat
            continue
        assert abs(stat.z) < Z_MAX, stat


@pytest.mark.parametrize(("convention", "std"), [("sqrt", 1.0), ("inverted", math.sqrt(2))])
def test_both_conventions_from_the_command_line(convention: str, std: float) -> None:
    out = run("simulate", "--layer", "dropout", "--p", "0.5", "--convention", convention, "-n", "1e5", "--format", "json")
    (row,) = json.loads(out.stdout)["rows"]
    assert row["params"] == {"p": 0.5, "convention": convention}
    assert row["fp_std"]["reference"] == pytest.approx(std, rel=1e-15)
    assert abs(row["fp_std"]["z"]) < Z_MAX and abs(row["bp_std"]["z"]) < Z_MAX


def test_the_default_table_shows_both_conventions() -> None:
    from normstats.published.default_table import DEFAULT_ROWS

    conventions = {params.get("convention", "sqrt") for name, params in DEFAULT_ROWS if name == "dropout"}
    assert conventions == {"sqrt", "inverted"}
    assert ("dropout", {"p": 0.9, "convention": "inverted"}) in DEFAULT_ROWS
