"""Normalization layers, softmax and weight standardization: references against independent computations
(mpmath at high precision, brute-force simulation), and the infinite moments (issue 15 item 3) in every
output."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math

import mpmath as mp
import numpy as np
import pytest

import normstats
from normstats.engine import blocks as engine
from tests.test_cli import run, run_bad

Z_MAX = 4.0
TOL = 1e-9


def _chi2_mean(h, k: int) -> mp.mpf:
    """E h(S), S ~ chi^2_k, by mpmath at 30 digits over the chi-square density (not the log-scale rule)."""
    with mp.workdps(30):
        norm = 1 / (mp.mpf(2) ** (mp.mpf(k) / 2) * mp.gamma(mp.mpf(k) / 2))
        dens = lambda s: norm * s ** (mp.mpf(k) / 2 - 1) * mp.exp(-s / 2)  # noqa: E731
        return mp.quad(lambda s: h(s) * dens(s), [0, 1, k, 4 * k + 40, mp.inf])


def _expected(n: int, centred: bool, eps: float) -> tuple[float, float]:
    """(fp std, bp std) from the module docstring's expectations over S, by mpmath."""
    k = n - 1 if centred else n
    lost = 1 if centred else 0
    e = mp.mpf(eps)
    fp = _chi2_mean(lambda s: s / (s + n * e), k)
    bp = _chi2_mean(lambda s: (n - lost - (2 - s / (s + n * e)) * s / (s + n * e)) / (s + n * e), k)
    return float(mp.sqrt(fp)), float(mp.sqrt(bp))


@pytest.mark.parametrize(
    "name, params, n, centred",
    [
        ("batchnorm", {"batch": 8, "eps": 0.0}, 8, True),
        ("batchnorm", {"batch": 8}, 8, True),
        ("batchnorm", {"batch": 4, "features": 3, "positions": 2, "eps": 0.01}, 8, True),
        ("layernorm", {"features": 16, "eps": 0.0}, 16, True),
        ("layernorm", {"features": 768}, 768, True),
        ("layernorm", {"features": 2, "eps": 0.5}, 2, True),
        ("rmsnorm", {"features": 16, "eps": 0.0}, 16, False),
        ("rmsnorm", {"features": 768}, 768, False),
        ("rmsnorm", {"features": 1, "eps": 0.1}, 1, False),
        ("groupnorm", {"groups": 2, "channels": 6, "positions": 4}, 12, True),
    ],
)
def test_norm_references_agree_with_mpmath(name: str, params: dict, n: int, centred: bool) -> None:
    layer = normstats.make_layer(name, **params)
    refs = {**layer.quadrature(), **layer.formula()}
    fp, bp = _expected(n, centred, params.get("eps", layer.values["eps"]))
    assert refs["fp_mean"] == 0.0 and refs["bp_mean"] == 0.0
    assert refs["fp_std"] == pytest.approx(fp, abs=TOL)
    assert refs["bp_std"] == pytest.approx(bp, abs=TOL)


def test_closed_forms_at_eps_0() -> None:
    """bp std = sqrt((n - 2) / (n - 3)) centred, sqrt((n - 1) / (n - 2)) for RMS norm; fp std 1."""
    assert normstats.make_layer("batchnorm", batch=8, eps=0).formula()["bp_std"] == pytest.approx(math.sqrt(6 / 5))
    assert normstats.make_layer("layernorm", features=16, eps=0).formula()["bp_std"] == pytest.approx(
        math.sqrt(14 / 13))
    assert normstats.make_layer("rmsnorm", features=16, eps=0).formula()["bp_std"] == pytest.approx(
        math.sqrt(15 / 14))
    assert normstats.make_layer("batchnorm", batch=2, eps=0).formula()["bp_std"] == 0.0
    assert normstats.make_layer("batchnorm", batch=3, eps=0).formula()["bp_std"] == math.inf
    assert normstats.make_layer("rmsnorm", features=2, eps=0).formula()["bp_std"] == math.inf
    assert "bp_std" not in normstats.make_layer("batchnorm", batch=3, eps=0).quadrature()


@pytest.mark.parametrize(
    "name, params",
    [("batchnorm", {"batch": 8, "eps": 0}), ("layernorm", {"features": 16, "eps": 0}),
     ("rmsnorm", {"features": 16, "eps": 0}), ("softmax", {"n": 16})],
)
def test_done_when_estimates_sit_within_a_few_se(name: str, params: dict) -> None:
    row = normstats.simulate(name, samples=300_000, seed=11, **params)
    for stat in row.stats().values():
        if stat.exact:  # exact in every draw: the reference itself, never z-tested (tests/test_exact_statistics.py)
            assert stat.estimate == stat.reference and stat.se == 0.0 and stat.z is None, stat
            continue
        assert stat.reference is not None and stat.z is not None and abs(stat.z) < Z_MAX, stat


def _softmax_n2(t: float) -> tuple[float, float]:
    """n = 2: y_1 = sigmoid((X_1 - X_2) / T) = sigmoid(sqrt(2) Z / T), a one-dimensional mpmath integral."""
    with mp.workdps(30):
        y = lambda z: 1 / (1 + mp.exp(-mp.sqrt(2) * z / t))  # noqa: E731
        e = lambda f: mp.quad(lambda z: f(z) * mp.npdf(z), [-mp.inf, 0, mp.inf])  # noqa: E731
        m2, m3, m4 = e(lambda z: y(z) ** 2), e(lambda z: y(z) ** 3), e(lambda z: y(z) ** 4)
        m22 = e(lambda z: y(z) ** 2 * (1 - y(z)) ** 2)
        return float(mp.sqrt(m2 - mp.mpf(1) / 4)), float(mp.sqrt((m2 - 2 * m3 + m4 + m22) / t**2))


@pytest.mark.parametrize("t", [0.5, 1.0, 3.0])
def test_softmax_quadrature_against_mpmath_at_two_logits(t: float) -> None:
    refs = normstats.make_layer("softmax", n=2, temperature=t).quadrature()
    fp, bp = _softmax_n2(t)
    assert refs["fp_std"] == pytest.approx(fp, abs=TOL)
    assert refs["bp_std"] == pytest.approx(bp, abs=TOL)


def test_softmax_quadrature_against_a_long_simulation() -> None:
    """n = 16 at 1M draws (dy integrated out), a few se; and no reference outside the temperatures the
    quadrature vouches for."""
    layer = normstats.make_layer("softmax", n=16, temperature=0.5)
    refs = layer.quadrature()
    est = engine.run(layer, 1_000_000, seed=5).estimates()
    for stat in ("fp_std", "bp_std"):
        value, se = est[stat]
        assert abs(value - refs[stat]) < Z_MAX * se, (stat, value, se, refs[stat])
    assert normstats.make_layer("softmax", temperature=0.1).quadrature() == {}


@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_weight_standardization_centres_each_row_to_norm_gain(layer: str) -> None:
    params = {"fan_in": 6, "fan_out": 4} if layer == "linear" else {"in_channels": 2, "out_channels": 3}
    inst = normstats.make_layer(layer, normalize="ws", gain=1.7, **params)
    w = inst.sampler(engine.setup_rng(0)).weight  # type: ignore[attr-defined]
    rows = w.reshape(len(w), -1)
    np.testing.assert_allclose(rows.sum(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose((rows * rows).sum(axis=1), 1.7**2, rtol=1e-12)


def test_gain_only_with_ws() -> None:
    assert "gain" not in normstats.make_layer("linear").values
    assert normstats.make_layer("linear", normalize="ws").values["gain"] == 1.0
    line = run_bad("simulate", "--layer", "linear", "--gain", "2")
    assert "--gain" in line and "ws" in line
    line = run_bad("simulate", "--layer", "linear", "--fan-in", "1", "--normalize", "ws")
    assert "fan-in" in line and "1" in line


@pytest.mark.parametrize(
    "args, words",
    [
        (("--layer", "batchnorm", "--batch", "1"), ("--batch", "[2, 65536]", "1")),
        (("--layer", "layernorm", "--features", "0"), ("--features", "0")),
        (("--layer", "rmsnorm", "--features", "0"), ("--features", "0")),
        (("--layer", "groupnorm", "--groups", "3", "--channels", "4"), ("--groups", "3", "4")),
        (("--layer", "batchnorm", "--eps", "-1"), ("--eps", "in [0, 1]", "-1")),
        (("--layer", "layernorm", "--features", "1", "--eps", "0"), ("--eps", "0 / 0")),
        (("--layer", "softmax", "--temperature", "0"), ("--temperature", "[0.001, ", "0")),
    ],
)
def test_bad_parameters_get_one_line(args: tuple[str, ...], words: tuple[str, ...]) -> None:
    line = run_bad("simulate", *args, "-n", "1000")
    for word in words:
        assert word in line, line


# -- infinite and undefined moments ---------------------------------------------------------------------------
def test_batch_of_three_says_its_bp_std_is_infinite_everywhere() -> None:
    args = ("simulate", "--layer", "batchnorm", "--batch", "3", "--eps", "0", "-n", "2000")
    result = run(*args)
    assert "bp std is infinite" in result.stderr
    bp_line = [line for line in result.stdout.splitlines() if "bp std" in line][0]
    assert "infinite" in bp_line and "±" not in bp_line
    doc = json.loads(run(*args, "--format", "json").stdout)
    bp = doc["rows"][0]["bp_std"]
    assert bp["estimate"] is None and bp["z"] is None and bp["status"] == "infinite" and "diverges" in bp["reason"]
    assert "status" not in doc["rows"][0]["fp_std"]
    rows = list(csv.DictReader(io.StringIO(run(*args, "--format", "csv").stdout)))
    bp_row = [r for r in rows if r["statistic"] == "bp_std"][0]
    assert bp_row["estimate"] == "infinite" and bp_row["reference"] == "infinite" and bp_row["z"] == ""
    assert "| infinite | infinite |" in run(*args, "--format", "markdown").stdout
    assert "& infinite & infinite &" in run(*args, "--format", "latex").stdout


def test_a_divergent_formula_is_infinite_and_its_python_export_imports(tmp_path) -> None:
    row = normstats.simulate(expr="exp(x**2/2)", samples=2000)
    assert row.fp_mean.status == "infinite" and row.fp_std.status == "infinite"
    assert row.bp_std.status == "infinite" and row.fp_std.z is None
    assert normstats.simulate(expr="x*exp(x**2/2)", samples=2000).fp_mean.status == "undefined"
    result = run("simulate", "--expr", "exp(x**2/2)", "-n", "2000", "--format", "python")
    assert "Warning" not in result.stderr and "fp mean is infinite" in result.stderr
    path = tmp_path / "consts.py"
    path.write_text(result.stdout)
    spec = importlib.util.spec_from_file_location("consts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    assert module.CONSTANTS["expr:expr=exp(x**2/2)"]["fp_shift"] == math.inf


def test_a_heavy_but_finite_formula_keeps_its_references() -> None:
    """exp(x^2/4): E f = sqrt(2) exactly; E f^2 = E exp(x^2/2) diverges."""
    row = normstats.simulate(expr="exp(x**2/4)", samples=2000)
    assert row.fp_mean.reference == pytest.approx(math.sqrt(2), abs=1e-12)
    assert row.fp_std.status == "infinite"


def test_a_constant_formula_has_std_exactly_0_and_no_scale() -> None:
    row = normstats.simulate(expr="2", samples=2000)
    assert row.fp_std.reference == 0.0 and row.fp_mean.reference == 2.0
    constants = row.constants()
    assert constants["fp_scale"] is None and constants["bp_scale"] is None


@pytest.mark.parametrize("name,params", [("layernorm", {"features": 1}),
                                         ("groupnorm", {"groups": 4, "channels": 4, "positions": 1})])
def test_a_centred_group_of_one_value_has_zero_output_and_gradient(name: str, params: dict) -> None:
    """A centred group of one value (eps > 0) is 0 whatever x, and so is its gradient: the references are
    closed forms 0 (the chi-square of 0 degrees of freedom has nothing to integrate; it used to raise
    ZeroDivisionError), and a run agrees exactly."""
    from normstats.exact.references import reference_moments

    layer = normstats.make_layer(name, **params)
    refs = reference_moments(layer)
    assert {s: (refs[s].value, refs[s].kind) for s in refs} == {s: (0.0, "closed_form") for s in refs}
    row = normstats.simulate(name, samples=1000, **params)
    assert all(stat.estimate == 0.0 and stat.se == 0.0 and stat.exact for stat in row.stats().values())
