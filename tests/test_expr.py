"""Custom activations by formula: the allow-list refuses everything else with one line, derivatives are exact,
kinks are found, and the references match the built-ins."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

import normstats
from normstats.layers.expr import CustomActivation, evaluate, parse
from tests.test_cli import run, run_bad

MISH = "x * tanh(log1p(exp(x)))"


def test_mish_formula_gives_the_builtin_references() -> None:
    custom = normstats.exact.references.reference_moments(CustomActivation(MISH))
    builtin = normstats.exact.references.reference_moments(normstats.make_layer("mish"))
    for stat in ("fp_mean", "fp_std", "bp_mean", "bp_std"):
        assert custom[stat].value == pytest.approx(builtin[stat].value, abs=1e-9, rel=1e-9), stat


@pytest.mark.parametrize(
    ("formula", "layer", "params"),
    [
        ("maximum(x, 0.2 * x)", "leaky_relu", {"slope": 0.2}),
        ("where(x > 0, x, 0.5 * expm1(x))", "elu", {"alpha": 0.5}),
        ("minimum(maximum(x, -0.5), 2)", "hardtanh", {"min_val": -0.5, "max_val": 2.0}),
        ("x * ndtr(x)", "gelu", {}),
        ("x * expit(1.702 * x)", "silu", {"beta": 1.702}),
        ("x / (1 + abs(x))", "softsign", {}),
        ("where(x <= -3, 0, where(x >= 3, x, x * (x + 3) / 6))", "hardswish", {}),
    ],
)
def test_formulas_reproduce_builtin_references(formula: str, layer: str, params: dict) -> None:
    custom = CustomActivation(formula).quadrature()
    builtin = normstats.make_layer(layer, **params)
    expected = {**builtin.quadrature(), **builtin.formula()}
    for stat in ("fp_mean", "fp_std", "bp_std"):
        assert custom[stat] == pytest.approx(expected[stat], abs=1e-9, rel=1e-9), stat


def test_kinks_are_the_roots_of_switches() -> None:
    assert CustomActivation("abs(x - 0.3) + maximum(x, 2 * x - 1)").breakpoints == pytest.approx((0.0, 0.3, 1.0))
    assert CustomActivation("where((x > -1) * (x < 2.5), x ** 2, 0)").breakpoints == pytest.approx((-1, 0, 2.5))
    assert CustomActivation("-1.5 < x < 0.25").breakpoints == pytest.approx((-1.5, 0.0, 0.25))


@pytest.mark.parametrize(
    ("formula", "derivative"),
    [
        ("x ** 3 - 2 * x", lambda x: 3 * x**2 - 2),
        ("exp(sin(x)) / (1 + x ** 2)", lambda x: np.exp(np.sin(x)) * (np.cos(x) * (1 + x**2) - 2 * x) / (1 + x**2) ** 2),
        ("erf(x) * cosh(x / 3)", lambda x: 2 / np.sqrt(np.pi) * np.exp(-x * x) * np.cosh(x / 3)
         + erf(x) * np.sinh(x / 3) / 3),
        ("sqrt(1 + x ** 2) ** x", lambda x: (1 + x**2) ** (x / 2) * (0.5 * np.log1p(x**2) + x**2 / (1 + x**2))),
        # log_sigmoid(x) + softplus(-x) is identically 0, so only sigmoid's derivative remains
        ("log_sigmoid(x) + softplus(-x) + sigmoid(x)", lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
    ],
)
def test_derivatives_are_exact(formula: str, derivative) -> None:  # type: ignore[no-untyped-def]
    x = np.linspace(-3.1, 2.9, 41)
    _, d, _ = evaluate(parse(formula), x)
    np.testing.assert_allclose(d, derivative(x), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("__import__('os')", "function '__import__' is not allowed"),
        ("x.__class__", "attribute access is not allowed"),
        ("(1).real", "attribute access is not allowed"),
        ("lambda: x", "lambdas are not allowed"),
        ("x[0]", "subscripts are not allowed"),
        ("'x'", "constant 'x' is not a real number"),
        ("True * x", "constant True is not a real number"),
        ("os", "name 'os' is not allowed"),
        ("eval('1')", "function 'eval' is not allowed"),
        ("exp(x, 2)", "exp() takes 1 argument; got 2"),
        ("exp(x=x)", "takes positional arguments only"),
        ("x // 2", "operator // is not allowed"),
        ("x == 0", "comparison == is not allowed"),
        ("[x for x in ()]", "comprehensions are not allowed"),
        ("1 if x > 0 else 2", "'a if condition else b' is not allowed; write where(condition, a, b)"),
        ("x + (1 if x else 2)", "is not allowed (here: 1 if x else 2)"),
        ("x > 0 and x < 1", "'and' and 'or' are not allowed"),
        ("(x, 1)", "tuples (commas outside a call) are not allowed"),
        ("x +", "not a formula (syntax error"),
        ("x; import os", "not a formula (syntax error"),
        ("log(x)", "is not finite at x = -8"),
        ("", "--expr must be a formula over x"),
    ],
)
def test_bad_formulas_are_refused_in_one_line_with_exit_2(formula: str, message: str) -> None:
    with pytest.raises(normstats.NormstatsError) as info:
        CustomActivation(formula)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert message in run_bad("simulate", "--expr", formula, "-n", "100")


def test_simulate_expr_estimates_sit_within_a_few_se() -> None:
    row = normstats.simulate(expr=MISH, samples=200_000, seed=7)
    assert row.layer == "expr" and row.params == {"expr": MISH}
    for stat in row.stats().values():
        if stat.exact:  # the conditional bp mean, 0 in every draw: the reference itself, never z-tested
            assert stat.estimate == stat.reference and stat.z is None, stat
            continue
        assert abs(stat.z) < 4.0, stat


def test_cli_expr_json_and_exclusive_options() -> None:
    import json

    doc = json.loads(run("simulate", "--expr", MISH, "-n", "1000", "--format", "json").stdout)
    assert doc["rows"][0]["params"] == {"expr": MISH}
    assert "exactly one of --layer" in run_bad("simulate", "--layer", "relu", "--expr", "x")
    assert "--expr takes no layer parameters" in run_bad("simulate", "--expr", "x", "--slope", "2")
