"""Mean-field theory (``normstats meanfield``): the 2-D quadrature against closed forms, the fixed points, slopes
and depth scales against 30-digit mpmath and closed forms, the edge of chaos, the finite-width check at growing
width, the phase grid against the accurate path, the figure, the JSON document and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import normstats
from normstats.exact.bivariate import bivariate_expectation
from normstats.exact.kernels import erf_kernel, identity_kernel, relu_kernel
from normstats.layers.expr import CustomActivation
from normstats.output.files import schema as export
from normstats.registry import make_layer
from normstats.theory.finite_width import propagate
from normstats.theory.meanfield import MeanField, edge_of_chaos
from normstats.theory.phase import phase_diagram
from tests.test_cli import run, run_bad

CORRELATIONS = (-1.0, -0.93, -0.2, 0.0, 0.41, 0.9, 0.999, 1 - 1e-7, 1 - 1e-13, 1.0)


def _erf() -> CustomActivation:
    return CustomActivation("erf(x)")


@pytest.mark.parametrize("c", CORRELATIONS)
def test_bivariate_quadrature_matches_the_closed_kernels(c: float) -> None:
    relu = make_layer("relu")

    def step(x: np.ndarray) -> np.ndarray:
        return (x > 0).astype(float)

    erf = _erf()
    q1, q2 = 1.3, 0.45
    kernels = [
        (relu.f, relu.f, (0.0,), relu_kernel(q1, q2, c)[0]),
        (step, step, (0.0,), relu_kernel(q1, q2, c)[1]),
        (erf.f, erf.f, (), erf_kernel(q1, q2, c)[0]),
        (erf.df, erf.df, (), erf_kernel(q1, q2, c)[1]),
        (lambda x: x, lambda x: x, (), identity_kernel(q1, q2, c)[0]),
    ]
    for f, g, kinks, exact in kernels:
        assert bivariate_expectation(f, g, q1, q2, c, kinks, kinks) == pytest.approx(exact, rel=1e-12, abs=1e-14)


def test_kinked_functions_with_kinks_off_zero() -> None:
    """hardtanh's kinks at +-1: E[f(u1) f(u2)] against mpmath's 2-D integral in the rotated coordinates."""
    mpmath = pytest.importorskip("mpmath")
    layer = make_layer("hardtanh")
    q, c = 1.7, 0.6
    value = bivariate_expectation(layer.f, layer.f, q, q, c, layer.breakpoints, layer.breakpoints)
    mpmath.mp.dps = 20
    # E[f(u1) f(u2)] = E_z1[f(u1) h(z1)] with h(z1) = E[f(u2) | z1] in closed form for the clip function:
    # u2 | z1 ~ N(m, v), m = sqrt(q) c z1, v = q (1 - c^2); E clip(N(m, v), -1, 1) by truncated moments.
    s = mpmath.sqrt(q * (1 - c * c))

    def h(m: mpmath.mpf) -> mpmath.mpf:
        a, b = (-1 - m) / s, (1 - m) / s
        inside = m * (mpmath.ncdf(b) - mpmath.ncdf(a)) + s * (mpmath.npdf(a) - mpmath.npdf(b))
        return -mpmath.ncdf(a) + inside + (1 - mpmath.ncdf(b))

    def outer(z: mpmath.mpf) -> mpmath.mpf:
        u = mpmath.sqrt(q) * z
        return max(-1, min(1, u)) * h(mpmath.sqrt(q) * c * z) * mpmath.npdf(z)

    r = 1 / mpmath.sqrt(q)
    exact = mpmath.quad(outer, [-mpmath.inf, -r, 0, r, mpmath.inf])
    assert value == pytest.approx(float(exact), rel=1e-12)


def _tanh_reference(sigma_w2: float, sigma_b2: float) -> tuple[float, float, float]:
    """q*, chi_1 and xi_c (ordered phase: -1/log chi_1) of tanh by mpmath at 30 digits."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30
    w, b = mpmath.mpf(sigma_w2), mpmath.mpf(sigma_b2)

    def expect(g, q):  # type: ignore[no-untyped-def]
        r = mpmath.sqrt(q)
        return mpmath.quad(lambda z: g(r * z) * mpmath.npdf(z), [-mpmath.inf, 0, mpmath.inf])

    qs = mpmath.findroot(lambda q: w * expect(lambda u: mpmath.tanh(u) ** 2, q) + b - q, 0.4)
    chi = w * expect(lambda u: mpmath.sech(u) ** 4, qs)
    return float(qs), float(chi), float(-1 / mpmath.log(chi))


def test_done_when_tanh_agrees_with_30_digit_mpmath() -> None:
    """The issue's check: q*, chi_1 and xi_c of tanh at (1.5, 0.05) to 1e-9, through the CLI's JSON."""
    data = json.loads(run("meanfield", "--layer", "tanh", "--sigma-w2", "1.5", "--sigma-b2", "0.05",
                          "--format", "json").stdout)
    fp = data["fixed_point"]
    q_ref, chi_ref, xi_ref = _tanh_reference(1.5, 0.05)
    assert fp["phase"] == "ordered" and fp["c_star"] == 1.0
    assert fp["q_star"] == pytest.approx(q_ref, rel=1e-9)
    assert fp["chi_1"] == pytest.approx(chi_ref, rel=1e-9)
    assert fp["xi_c"] == pytest.approx(xi_ref, rel=1e-9)


def test_chi_q_equals_the_f_double_prime_form_and_a_finite_difference() -> None:
    """chi_q = sigma_w^2 E[f f' u] / q (our form) = sigma_w^2 E[f'^2 + f f''] (Schoenholz et al.) = dq'/dq."""
    m = MeanField(make_layer("tanh"), 2.2, 0.1)
    qs = m.q_star(1.0)
    ours = m.q_slope(qs)
    # tanh'' = -2 tanh (1 - tanh^2)
    schoenholz = m.sigma_w2 * m._expect(
        lambda u, z: (1 - np.tanh(u) ** 2) ** 2 - 2 * np.tanh(u) ** 2 * (1 - np.tanh(u) ** 2), qs
    )
    assert ours == pytest.approx(schoenholz, rel=1e-12)
    h = 1e-5 * qs  # central difference: error O(h^2) ~ 1e-10 relative
    assert ours == pytest.approx((m.q_map(qs + h) - m.q_map(qs - h)) / (2 * h), rel=1e-8)


def test_the_slope_of_the_c_map_at_1_is_chi_1() -> None:
    m = MeanField(make_layer("tanh"), 2.5, 0.05)
    qs = m.q_star(1.0)
    h = 1e-4  # one-sided second-order difference: error O(h^2 C''') ~ 1e-8
    slope = (3 * m.c_map(1.0, qs) - 4 * m.c_map(1 - h, qs) + m.c_map(1 - 2 * h, qs)) / (2 * h)
    assert slope == pytest.approx(m.chi_1(qs), rel=1e-6)
    assert m.cross_slope(qs, 1 - 1e-9) == pytest.approx(m.chi_1(qs), rel=1e-7)


def test_relu_and_identity_closed_forms() -> None:
    """ReLU: q' = sigma_w^2 q / 2 + sigma_b^2, so q* = sigma_b^2 / (1 - sigma_w^2 / 2) and chi_1 = chi_q =
    sigma_w^2 / 2; its trajectory follows the arc-cosine kernel; identity: q* = sigma_b^2 / (1 - sigma_w^2)."""
    fp = MeanField(make_layer("relu"), 1.6, 0.1).fixed_point(1.0, 0.3)
    assert fp.q_star == pytest.approx(0.1 / 0.2, rel=1e-13)
    assert fp.chi_1 == pytest.approx(0.8, rel=1e-13) and fp.chi_q == pytest.approx(0.8, rel=1e-12)
    assert fp.c_star == 1.0 and fp.c_star_from_c0 == 1.0 and fp.xi_c == pytest.approx(-1 / math.log(0.8))
    m = MeanField(make_layer("relu"), 1.6, 0.1)
    q, c = 1.0, -0.4
    for p in m.trajectory(1.0, -0.4, 5)[1:]:
        nq = 1.6 * q / 2 + 0.1
        c = (1.6 * relu_kernel(q, q, c)[0] + 0.1) / nq
        q = nq
        assert p.q == pytest.approx(q, rel=1e-13) and p.c == pytest.approx(c, rel=1e-12)
    lin = MeanField(make_layer("identity"), 0.5, 0.2).fixed_point(1.0, None)
    assert lin.q_star == pytest.approx(0.4, rel=1e-13) and lin.chi_1 == pytest.approx(0.5, rel=1e-13)


def test_degenerate_fixed_points_are_said() -> None:
    unbounded = MeanField(make_layer("relu"), 2.5, 0.1).fixed_point(1.0, None)
    assert unbounded.q_star == math.inf and unbounded.phase == "unbounded" and unbounded.xi_c is None
    zero = MeanField(make_layer("tanh"), 0.5, 0.0).fixed_point(1.0, None)
    assert zero.q_star == 0.0 and zero.c_star is None and zero.note
    assert zero.chi_1 == pytest.approx(0.5, rel=1e-12)  # the limit q -> 0+: sigma_w^2 tanh'(0)^2
    edge = MeanField(make_layer("relu"), 2.0, 0.0).fixed_point(1.0, None)  # every q is fixed
    assert edge.phase == "critical" and edge.xi_c == math.inf and edge.xi_q == math.inf


def test_erf_chaotic_fixed_point_against_the_arcsine_kernel() -> None:
    """In the chaotic phase c* < 1 solves the C-map; for erf the C-map is Williams' arcsine kernel."""
    from scipy.optimize import brentq

    w, b = 3.0, 0.05
    fp = MeanField(_erf(), w, b).fixed_point(1.0, -0.3)
    qs = brentq(lambda q: w * erf_kernel(q, q, 1.0)[0] + b - q, 1e-6, 10, xtol=1e-15)
    assert fp.q_star == pytest.approx(qs, rel=1e-12)
    cs = brentq(lambda c: (w * erf_kernel(qs, qs, c)[0] + b) / qs - c, 0.0, 0.999, xtol=1e-15)
    chi_c = w * erf_kernel(qs, qs, cs)[1]
    assert fp.phase == "chaotic" and fp.c_star == pytest.approx(cs, rel=1e-11)
    assert fp.chi_c == pytest.approx(chi_c, rel=1e-11) and fp.xi_c == pytest.approx(-1 / math.log(chi_c), rel=1e-10)
    assert fp.c_star_from_c0 == pytest.approx(cs, rel=1e-11)  # from c0 = -0.3 the C-map enters [0, 1)


def test_edge_of_chaos_of_erf_relu_and_tanh() -> None:
    """erf's critical line in closed form, parametrised by q*: chi_1 = sigma_w^2 (4/pi) / sqrt(1 + 4 q*) = 1
    gives sigma_w^2 = (pi/4) sqrt(1 + 4 q*), and the q-map sigma_b^2 = q* - sigma_w^2 (2/pi) arcsin(2 q* / (1 + 2
    q*)). ReLU's edge is sigma_w^2 = 2 (with q* at infinity); tanh's meets (1, 0)."""
    for q in (0.3, 1.2):
        w = math.pi / 4 * math.sqrt(1 + 4 * q)
        b = q - w * 2 / math.pi * math.asin(2 * q / (1 + 2 * q))
        found_w, found_q = edge_of_chaos(_erf(), b, 1.0)
        assert found_w == pytest.approx(w, rel=1e-10) and found_q == pytest.approx(q, rel=1e-8)
    w, q = edge_of_chaos(make_layer("relu"), 0.0, 1.0)  # every q is fixed at sigma_w^2 = 2: q0 stays
    assert w == pytest.approx(2.0, rel=1e-12) and q == pytest.approx(1.0, rel=1e-12)
    w, q = edge_of_chaos(make_layer("relu"), 0.1, 1.0)  # q* = 0.1 / (1 - sigma_w^2 / 2) runs off to infinity
    assert w == pytest.approx(2.0, rel=1e-12) and q == math.inf
    w, _ = edge_of_chaos(make_layer("tanh"), 0.0, 1.0)  # chi_1 = sigma_w^2 tanh'(0)^2 where q* = 0
    assert w == pytest.approx(1.0, rel=1e-9)


def test_critical_command_reports_an_infinite_depth_scale() -> None:
    out = run("meanfield", "--layer", "tanh", "--critical", "--sigma-b2", "0.05").stdout
    assert "σw² at the edge" in out and "inf (edge of chaos)" in out and "critical" in out
    data = json.loads(run("meanfield", "--layer", "tanh", "--critical", "--sigma-b2", "0.05", "--depth", "2",
                          "--format", "json").stdout)
    edge = data["edge_of_chaos"]["sigma_w2"]
    assert data["inputs"]["sigma_w2"] == edge and data["fixed_point"]["xi_c"] == "inf"
    assert data["fixed_point"]["chi_1"] == pytest.approx(1.0, abs=1e-11)


def _richardson(lo: normstats.output.meanfield.FiniteWidthPoint,  # type: ignore[name-defined]
                hi: normstats.output.meanfield.FiniteWidthPoint, key: str) -> tuple[float, float]:  # type: ignore[name-defined]
    """The width-N and width-2N means extrapolated to infinite width, 2 m(2N) - m(N), and its se: the
    finite-width bias is O(1/N), so this removes its leading term."""
    m_lo, m_hi = getattr(lo, key), getattr(hi, key)
    s_lo, s_hi = getattr(lo, key + "_se"), getattr(hi, key + "_se")
    return 2 * m_hi - m_lo, math.sqrt(4 * s_hi**2 + s_lo**2)


def test_finite_width_networks_approach_the_mean_field_limit() -> None:
    """tanh in the chaotic phase, 4 layers. At width 4 the mean q is resolved away from the limit (the O(1/N)
    bias, many se); extrapolating widths 16 and 32 (bias removed to O(1/N^2)) lands on the limit within 4 se;
    at width 128 the deviation is within 4 se."""
    layer, w, b, depth = make_layer("tanh"), 2.5, 0.1, 4
    limit = MeanField(layer, w, b).trajectory(1.0, 0.2, depth)[-1]
    narrow = propagate(layer, w, b, 1.0, 0.2, depth, 4, 20000, seed=1)[-1]
    assert abs(narrow.q - limit.q) / narrow.q_se > 6
    n16 = propagate(layer, w, b, 1.0, 0.2, depth, 16, 8000, seed=2)[-1]
    n32 = propagate(layer, w, b, 1.0, 0.2, depth, 32, 4000, seed=3)[-1]
    for key, ref in (("q", limit.q), ("c", limit.c)):
        est, se = _richardson(n16, n32, key)
        assert abs(est - ref) < 4 * se, (key, est, ref, se)
    wide = propagate(layer, w, b, 1.0, 0.2, depth, 128, 300, seed=4)[-1]
    assert abs(wide.q - limit.q) < 4 * wide.q_se and abs(wide.c - limit.c) < 4 * wide.c_se
    assert abs(wide.q - limit.q) < abs(narrow.q - limit.q)


def test_finite_width_inputs_and_seeds() -> None:
    layer = make_layer("relu")
    first = propagate(layer, 2.0, 0.0, 0.7, -0.5, 2, 32, 5, seed=9)
    assert first[0].q == 0.7 and first[0].c == -0.5 and first[0].q_se == 0.0
    assert propagate(layer, 2.0, 0.0, 0.7, -0.5, 2, 32, 5, seed=9) == first
    assert propagate(layer, 2.0, 0.0, 0.7, -0.5, 2, 32, 5, seed=10) != first


@pytest.mark.parametrize("name, shape, least", [("tanh", (9, 5), 20), ("hardtanh", (4, 3), 6)])
def test_the_phase_grid_agrees_with_the_accurate_path(name: str, shape: tuple[int, int], least: int) -> None:
    layer = make_layer(name)
    grid = phase_diagram(layer, 1.5, 0.05, grid=shape)
    checked = 0
    for i, b in enumerate(grid.sigma_b2):
        for j, w in enumerate(grid.sigma_w2):
            fp = MeanField(layer, float(w), float(b)).fixed_point(1.0, None)
            if fp.chi_1 is None or abs(fp.chi_1 - 1) < 0.05 or fp.xi_c is None:
                continue  # near the edge the grid's coarse rule is good to a few percent only
            assert grid.chi_1[i, j] == pytest.approx(fp.chi_1, rel=1e-6), (w, b)
            assert grid.xi_c[i, j] == pytest.approx(fp.xi_c, rel=1e-5), (w, b)
            checked += 1
    assert checked >= least


def test_the_phase_diagram_png(tmp_path: Path) -> None:
    import matplotlib.image

    from normstats.output.figures import phase as phase_plot

    target = tmp_path / "phase.png"
    run("meanfield", "--layer", "tanh", "--sigma-w2", "1.5", "--sigma-b2", "0.05", "--depth", "1", "--plot",
        str(target))
    img = matplotlib.image.imread(str(target))[..., :3]
    assert img.shape[0] > 400 and img.shape[1] > 600
    assert img.reshape(-1, 3).std(axis=0).max() > 0.05
    pixels = img.reshape(-1, 3)
    for colour in (phase_plot.ORDERED, phase_plot.CHAOTIC, phase_plot.EDGE, phase_plot.POINT):
        near = np.abs(pixels - np.asarray(colour)).max(axis=1) < 0.03
        assert near.mean() > 1e-4, colour


def test_json_document_follows_the_schema_and_labels_the_limit() -> None:
    validator = jsonschema.Draft202012Validator(export.schema())
    data = json.loads(run("meanfield", "--expr", "erf(x)", "--sigma-w2", "3", "--sigma-b2", "0.05", "--c0", "0.5",
                          "--depth", "3", "--width", "32", "--networks", "4", "--format", "json").stdout)
    validator.validate(data)
    assert data["limit"] == "infinite_width" and data["inputs"]["layer"] == "expr"
    assert data["inputs"]["params"] == {"expr": "erf(x)"} and data["normstats"] == normstats.__version__
    assert data["trajectory"][0] == {"layer": 0, "q": 1.0, "c": 0.5,
                                     "finite_width": {"q": 1.0, "q_se": 0.0, "c": 0.5, "c_se": 0.0}}
    assert all("z" not in p["finite_width"] for p in data["trajectory"])
    validator.validate(normstats.meanfield("relu", sigma_w2=2.5, sigma_b2=0.1, depth=2).to_dict())
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**data, "fixed_point": {**data["fixed_point"], "xi_c": "infinite"}})


def test_table_output_prints_ten_digits_and_the_finite_width_columns() -> None:
    out = run("meanfield", "--layer", "leaky_relu", "--slope", "0.2", "--sigma-w2", "1.2", "--sigma-b2", "0.1",
              "--depth", "3", "--width", "16", "--networks", "3").stdout
    assert "leaky_relu slope=0.2" in out and "mean field (infinite width)" in out
    fp = normstats.meanfield("leaky_relu", slope=0.2, sigma_w2=1.2, sigma_b2=0.1).fixed_point
    assert f"{fp.q_star:.10g}" in out and f"{fp.chi_1:.10g}" in out
    assert "width 16" in out and "no z is" in out


@pytest.mark.parametrize(
    "args, words",
    [
        (("--sigma-w2", "-1"), "--sigma-w2 must be a finite number in (0, inf); got -1.0"),
        (("--sigma-w2", "1", "--sigma-b2", "-0.1"), "--sigma-b2 must be a finite number in [0, inf); got -0.1"),
        (("--sigma-w2", "1", "--depth", "0"), "--depth must be an integer in [1, 10,000]; got 0"),
        (("--sigma-w2", "1", "--c0", "1.5"), "--c0 must be a finite number in [-1, 1]; got 1.5"),
        (("--sigma-w2", "1", "--q0", "0"), "--q0 must be a finite number in (0, inf); got 0.0"),
        (("--sigma-w2", "nan"), "--sigma-w2 must be a finite number"),
        (("--sigma-w2", "1", "--width", "1"), "--width must be an integer in [2, 8,192]; got 1"),
        (("--sigma-b2", "0.1"), "--sigma-w2 is required"),
        (("--critical", "--sigma-w2", "1"), "--critical finds sigma_w2 itself"),
        (("--sigma-w2", "1", "--plot", "x.jpg"), "--plot must name a .png file"),
    ],
)
def test_bad_input_gets_one_line(args: tuple[str, ...], words: str) -> None:
    assert words in run_bad("meanfield", "--layer", "tanh", *args)


def test_non_elementwise_layers_get_one_line() -> None:
    assert "not elementwise" in run_bad("meanfield", "--layer", "maxpool", "--sigma-w2", "1")
    assert "has no parameter --k" in run_bad("meanfield", "--layer", "tanh", "--sigma-w2", "1", "--k", "3")


def test_missing_edges_are_answers() -> None:
    """No edge in [0.01, 100] is an answer (exit 0), checked against closed forms. f = 0.05 x with sigma_b^2 =
    0.1: chi_1 = sigma_w^2 / 400 at every q, q* = 0.1 / (1 - sigma_w^2 / 400); below 1 over the whole range,
    analysed at its top (chi_1 = 0.25, q* = 0.4 / 3), the critical line at sigma_w^2 = 400 (where q* runs off to
    infinity). f = 30 tanh without bias: chi_1 > 1 everywhere in it, analysed at its bottom; the critical line
    meets it at q* -> 0, sigma_w^2 = 1 / f'(0)^2 = 1 / 900."""
    out = run("meanfield", "--expr", "0.05*x", "--critical", "--sigma-b2", "0.1", "--depth", "1").stdout
    assert "no edge of chaos for σw² in [0.01, 100] at σb² = 0.1, q0 = 1" in out and "σw² analysed" in out
    data = json.loads(run("meanfield", "--expr", "0.05*x", "--critical", "--sigma-b2", "0.1", "--depth", "1",
                          "--format", "json").stdout)
    jsonschema.Draft202012Validator(export.schema()).validate(data)
    edge, fp = data["edge_of_chaos"], data["fixed_point"]
    assert edge["found"] is False and edge["sigma_w2"] is None and edge["jumps"] == []
    assert data["inputs"]["sigma_w2"] == edge["analysed_at"]["sigma_w2"] == 100.0
    assert fp["chi_1"] == pytest.approx(0.25, rel=1e-12) and fp["q_star"] == pytest.approx(0.4 / 3, rel=1e-12)
    assert "is below 1 at both ends of the range (chi_1 = 2.5e-05 at sigma_w2 = 0.01 and 0.25 at 100)" in edge["reason"]
    assert "its nearest point: sigma_w2 = 400)" in edge["reason"]
    data = json.loads(run("meanfield", "--expr", "30*tanh(x)", "--critical", "--depth", "1", "--format", "json").stdout)
    edge = data["edge_of_chaos"]
    assert edge["found"] is False and data["inputs"]["sigma_w2"] == 0.01 and data["fixed_point"]["chi_1"] > 1
    assert "is above 1 at both ends" in edge["reason"] and f"sigma_w2 = {1 / 900:.6g})" in edge["reason"]
    assert edge_of_chaos(make_layer("gelu"), 0.0, 1.0) == (None, None)
