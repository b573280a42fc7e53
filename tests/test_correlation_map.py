"""Two correlated inputs through a vector network (``--input N --input-correlation RHO``): the measured cosine of
their outputs converges to the mean-field correlation map as the width grows, and the map itself
(:mod:`normstats.networks.correlation_limit`) agrees with independent computations: the arc-cosine kernel's
closed form for relu (Cho and Saul 2009), :class:`~normstats.theory.meanfield.MeanField`'s trajectory and mpmath
for tanh."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest

import normstats
from normstats.lazy import special
from normstats.networks.build import build_network
from normstats.networks.correlation_limit import correlation_limit
from normstats.networks.pairs import pair_cosine, partner
from normstats.networks.wide_limit import weight_factors
from normstats.registry import make_layer
from normstats.theory.meanfield import MeanField

RHO = 0.5


# -- the reference: the mean-field correlation map --------------------------------------------------------------
def _relu_c_map(c: float) -> float:
    """The relu C-map in closed form (the degree-1 arc-cosine kernel, Cho and Saul 2009, normalised by
    ``E[relu(u)^2] = q / 2``): ``c' = (sqrt(1 - c^2) + (pi - arccos c) c) / pi``, for every ``q``."""
    return (math.sqrt(1.0 - c * c) + (math.pi - math.acos(c)) * c) / math.pi


def test_relu_map_is_the_arc_cosine_kernel_layer_by_layer() -> None:
    net = build_network("6*(linear relu)", (64,), input_correlation=RHO)
    ref = correlation_limit(net)
    c = RHO
    for layer in range(6):
        assert ref[f"{2 * layer + 1}|correlation"] == pytest.approx(c, abs=1e-11)  # a linear layer keeps c
        c = _relu_c_map(c)
        # the quadrature's own tolerance is 1e-12 relative (exact/bivariate.py), six layers deep
        assert ref[f"{2 * layer + 2}|correlation"] == pytest.approx(c, abs=1e-11)


def test_normprop_shift_and_scale_are_part_of_the_map() -> None:
    """Under ``--normprop fp`` every relu's output is ``(relu(u) - s) k``: its cosine is, with the arc-cosine
    kernel and ``E[relu(u)] = sqrt(q / (2 pi))``, ``(K(c) - 2 s m + s^2) / (q / 2 - 2 s m + s^2)``."""
    net = build_network("4*(linear relu)", (64,), input_correlation=RHO, normprop="fp")
    ref = correlation_limit(net)
    c, x2 = RHO, 1.0  # the correlation at the next linear layer's output, the second moment of its input
    for stage in net.items:
        if stage.name == "linear":
            q = weight_factors(stage)[0] * x2
            assert ref[f"{stage.label}|correlation"] == pytest.approx(c, abs=1e-11)
            continue
        s = stage.shift
        m = math.sqrt(q / (2.0 * math.pi))
        theta = math.acos(c)
        kernel = q * (math.sin(theta) + (math.pi - theta) * c) / (2.0 * math.pi)
        c = (kernel - 2 * s * m + s * s) / (q / 2.0 - 2 * s * m + s * s)
        x2 = stage.fwd_scale**2 * (q / 2.0 - 2 * s * m + s * s)
        assert s > 0.0 and ref[f"{stage.label}|correlation"] == pytest.approx(c, abs=1e-11)


def test_tanh_map_is_meanfield_trajectory_and_mpmath() -> None:
    net = build_network("6*(linear tanh)", (64,), input_correlation=RHO)
    ref = correlation_limit(net)
    sigma_w2 = weight_factors(net.items[0])[0]
    points = MeanField(make_layer("tanh"), sigma_w2, 0.0).trajectory(sigma_w2 * 1.0, RHO, 6)
    for layer, point in enumerate(points[:6]):  # the (q, c) of linear layer `layer + 1`'s output
        assert ref[f"{2 * layer + 1}|correlation"] == pytest.approx(point.c, abs=1e-12)
        if layer:
            assert ref[f"{2 * layer}|correlation"] == pytest.approx(point.c, abs=1e-12)
    # An independent value of the first tanh's cosine at q = sigma_w^2 = 1, c = 0.5 (80 s, so not run here):
    #   import mpmath as mp; mp.mp.dps = 20; q, c = 1.0, 0.5; s = mp.sqrt(1 - c*c); r = mp.sqrt(q)
    #   phi = lambda z: mp.exp(-z*z/2) / mp.sqrt(2*mp.pi)
    #   cross = mp.quad(lambda z1, z2: phi(z1)*phi(z2)*mp.tanh(r*z1)*mp.tanh(r*(c*z1 + s*z2)),
    #                   [-mp.inf, 0, mp.inf], [-mp.inf, 0, mp.inf])
    #   m2 = mp.quad(lambda z: phi(z)*mp.tanh(r*z)**2, [-mp.inf, 0, mp.inf])
    #   cross / m2  ->  0.47255139937524281003
    assert sigma_w2 == 1.0
    assert ref["2|correlation"] == pytest.approx(0.47255139937524281003, abs=1e-13)


def test_dropout_masks_both_inputs_alike() -> None:
    """``linear dropout(p) relu`` under ``--normprop fp``: with ``v = k u`` (``k`` dropout's scale, times its
    NormProp scale) kept with probability ``p`` and 0 otherwise, and relu's shift ``s``, the cosine is ``[p (K(c) -
    2 s m + s^2) + (1 - p) s^2] / [p (k^2 q / 2 - 2 s m + s^2) + (1 - p) s^2]``, with the arc-cosine kernel
    ``K(c) = k^2 q (sin theta + (pi - theta) c) / (2 pi)`` and ``m = E[relu(v)] = sqrt(k^2 q / (2 pi))``; the
    dropout layer itself keeps the cosine of its input."""
    for p in (0.5, 0.8):
        net = build_network(f"linear dropout(p={p}) relu", (64,), input_correlation=RHO, normprop="fp")
        ref = correlation_limit(net)
        linear, drop, relu = net.items
        q = weight_factors(linear)[0]
        k2q = (drop.layer.scale * drop.fwd_scale) ** 2 * q
        s, m, theta = relu.shift, math.sqrt(k2q / (2 * math.pi)), math.acos(RHO)
        kernel = k2q * (math.sin(theta) + (math.pi - theta) * RHO) / (2 * math.pi)
        want = (p * (kernel - 2 * s * m + s * s) + (1 - p) * s * s) / (p * (k2q / 2 - 2 * s * m + s * s) + (1 - p) * s * s)
        assert s > 0 and ref["2|correlation"] == pytest.approx(RHO, abs=1e-14)
        assert ref["3|correlation"] == pytest.approx(want, abs=1e-11)


def test_a_residual_block_adds_independent_parts() -> None:
    """``linear 2*res(relu linear, alpha=A, beta=B)``: the branch sees ``x / B`` (variance ``q / B^2``); relu then a
    linear layer of ``sigma_w^2 = 1`` give ``E[F^2] = q / (2 B^2)`` and ``E[F1 F2] = K(c) / B^2`` (the arc-cosine
    kernel at variance ``q``); the block's ``E[y^2] = q + A^2 E[F^2]``, ``E[y1 y2] = c q + A^2 E[F1 F2]``."""
    a, b = 0.5, 1.5
    net = build_network(f"linear 2*res(relu linear, alpha={a}, beta={b})", (64,), input_correlation=RHO)
    ref = correlation_limit(net)
    q, c = weight_factors(net.items[0])[0], RHO
    for label in ("2", "3"):
        theta = math.acos(c)
        kernel = q * (math.sin(theta) + (math.pi - theta) * c) / (2 * math.pi)
        m2, cross = q + a * a * q / (2 * b * b), c * q + a * a * kernel / (b * b)
        assert ref[f"{label}.1|correlation"] == pytest.approx(_relu_c_map(c), abs=1e-12)
        assert ref[f"{label}.2|correlation"] == pytest.approx(_relu_c_map(c), abs=1e-12)
        assert ref[f"{label}|correlation"] == pytest.approx(cross / m2, abs=1e-12)
        q, c = m2, cross / m2


def test_layer_norm_centres_and_rms_norm_keeps_the_cosine() -> None:
    """At infinite width a norm over the features is an affine map with the population's mean and variance:
    after relu, layer norm gives the centred cosine ``(K(c) - m^2) / (q / 2 - m^2)``, ``m = sqrt(q / (2 pi))``;
    RMS norm leaves the cosine as it is."""
    net = build_network("linear relu layernorm linear relu rmsnorm", (64,), input_correlation=RHO)
    ref = correlation_limit(net)
    theta = math.acos(RHO)
    kernel = (math.sin(theta) + (math.pi - theta) * RHO) / (2 * math.pi)  # at q = 1
    centred = (kernel - 1 / (2 * math.pi)) / (0.5 - 1 / (2 * math.pi))
    assert ref["3|correlation"] == pytest.approx(centred, abs=1e-12)
    assert ref["4|correlation"] == pytest.approx(centred, abs=1e-12)
    assert ref["5|correlation"] == pytest.approx(_relu_c_map(centred), abs=1e-12)
    assert ref["6|correlation"] == pytest.approx(ref["5|correlation"], rel=1e-15)


def test_no_reference_where_the_theory_does_not_hold() -> None:
    ref = correlation_limit(build_network("linear softmax linear tanh", (16,), input_correlation=RHO))
    assert ref["1|correlation"] == RHO and all(ref[f"{i}|correlation"] is None for i in (2, 3, 4))
    ref = correlation_limit(build_network("linear batchnorm(batch=4) relu", (16,), input_correlation=RHO))
    assert ref["1|correlation"] == RHO and ref["2|correlation"] is None and ref["3|correlation"] is None
    ref = correlation_limit(build_network("res(relu) linear", (16,), input_correlation=RHO))
    assert all(v is None for v in ref.values())  # a branch without weights is not independent of x
    ref = correlation_limit(build_network("linear relu res(linear) linear", (16,), input_correlation=RHO))
    assert ref["2|correlation"] is not None and ref["3|correlation"] is None  # a block on an uncentred input
    ref = correlation_limit(build_network("linear res(linear relu) linear", (16,), input_correlation=RHO))
    assert ref["2|correlation"] is not None and ref["3|correlation"] is None  # a sum that is not normal
    assert correlation_limit(build_network("linear relu", (16,))) == {}  # no pair


def test_a_kink_behind_a_nonlinear_layer_is_found() -> None:
    """relu behind tanh has its kink where tanh crosses 0 (found, so the rule converges); with relu(v) = (v +
    |v|) / 2 its cosine is (E[t1 t2] + E[|t1| |t2|]) / 4 over E[t^2] / 2 (t = tanh(u)), two integrals of smooth or
    singly kinked functions computed apart."""
    net = build_network("linear tanh relu", (16,), input_correlation=RHO)
    ref = correlation_limit(net)
    tanh = MeanField(make_layer("tanh"), 1.0, 0.0)
    # relu(t1) relu(t2) = (t1 t2 + |t1| |t2| + t1 |t2| + |t1| t2) / 4; the last two have expectation 0 (the pair is
    # symmetric under (u1, u2) -> (-u1, -u2), which flips the sign of t1 |t2|), and E[relu(t)^2] = E[t^2] / 2.
    from normstats.exact.bivariate import bivariate_expectation

    abs_cross = bivariate_expectation(lambda u: np.abs(np.tanh(u)), lambda u: np.abs(np.tanh(u)), 1.0, 1.0, RHO,
                                      (0.0,), (0.0,))
    expected = (tanh.cross(1.0, RHO) + abs_cross) / 4.0 / (tanh.second_moment(1.0) / 2.0)
    assert ref["3|correlation"] == pytest.approx(expected, abs=1e-12)


# -- the measurement ---------------------------------------------------------------------------------------------
def test_partner_input_has_correlation_rho_and_depends_on_its_row_only() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4000, 8))
    y = partner(x, RHO)
    # every coordinate: mean 0, variance 1, correlation RHO with x, within 4 se over the 32,000 values
    for values, mean in ((y, 0.0), (y * y, 1.0), (x * y, RHO)):
        v = values.ravel()
        assert abs(v.mean() - mean) < 4 * v.std() / math.sqrt(v.size)
    assert np.array_equal(partner(x[1000:1003], RHO), y[1000:1003])  # the same draw, the same partner
    # e = (y - RHO x) / sqrt(1 - RHO^2): uncorrelated with x, with its neighbour in the row and in the next row,
    # and with a normal's fourth moment 3 (each within 4 se of its products over the values)
    e = (y - RHO * x) / math.sqrt(1 - RHO**2)
    for values, mean in ((x * e, 0.0), (e[:, 1:] * e[:, :-1], 0.0), (e[1:] * e[:-1], 0.0), (e**4, 3.0)):
        v = values.ravel()
        assert abs(v.mean() - mean) < 4 * v.std() / math.sqrt(v.size)
    c = pair_cosine(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[1.0, 1.0], [1.0, 0.0]]))
    assert c[0] == pytest.approx(1 / math.sqrt(2)) and c[1] == 0.0


def test_every_fp_and_bp_number_is_the_run_without_the_pair() -> None:
    spec = "linear relu dropout(p=0.8) linear tanh"
    one = normstats.network(spec, input=24, samples=400, seed=5, workers=1, inits=2)
    two = normstats.network(spec, input=24, samples=400, seed=5, workers=1, inits=2, input_correlation=0.3)
    for a, b in zip(one.layers, two.layers):
        assert set(b.stats) == set(a.stats) | {"correlation"}
        for name, stat in a.stats.items():
            assert (b.stats[name].estimate, b.stats[name].se) == (stat.estimate, stat.se)


def _fit(widths: list[int], gaps: list[float], ses: list[float]) -> tuple[float, list[float]]:
    """Weighted least squares of ``gap = a / width``: ``a`` and the residuals in se."""
    w = np.array(widths, float)
    d, s = np.array(gaps), np.array(ses)
    a = float(np.sum(d / w / s**2) / np.sum(1 / w**2 / s**2))
    return a, list((d - a / w) / s)


@pytest.mark.parametrize("activation, draws, inits", [("tanh", 2000, 8), ("relu", 320, 16)])
def test_measured_correlation_converges_to_the_map_as_the_width_grows(activation: str, draws: int,
                                                                       inits: int) -> None:
    """``6*(linear ACT)`` at RHO = 0.5, widths 32, 128, 512 (input N = width), the last layer's cosine. Its gap to
    the map is a finite-width bias of order 1/width (the cosine is a ratio, and the layers' kernels are sums of
    width terms) plus noise: the fit ``gap = a / width`` must leave every residual within the two-sided 0.1%
    Student t quantile of the se (K - 1 degrees of freedom: the se is the spread of K networks; Bonferroni over
    the three widths). The same check against RHO (a map that did nothing, 0.05 away for tanh) fails: the test
    can tell. (One map step fewer is only 0.0016 away at layer 12 for tanh, under the se; relu's se is the
    init-to-init spread, which shrinks like 1/sqrt(width), and hides its 1/width bias.)"""
    widths, gaps, ses, wrong = [32, 128, 512], [], [], []
    for width in widths:
        result = normstats.network(f"6*(linear {activation})", input=width, input_correlation=RHO, samples=draws,
                                   seed=11, workers=2, inits=inits)
        last = result.layers[-1].stats["correlation"]
        assert last.reference_kind == "mean_field" and last.z is None  # a limit, never a test
        gaps.append(last.estimate - last.reference)
        ses.append(last.se)
        wrong.append(last.estimate - RHO)  # a map that did nothing
    bound = float(special.stdtrit(inits - 1, 1 - 0.001 / 2 / 3))
    a, residuals = _fit(widths, gaps, ses)
    assert all(abs(r) <= bound for r in residuals), (a, gaps, ses, residuals)
    assert abs(gaps[-1]) <= abs(a) / widths[-1] + bound * ses[-1]
    assert ses[-1] < ses[0]  # more width, less spread
    if activation == "tanh":
        _, off = _fit(widths, wrong, ses)
        assert max(abs(r) for r in off) > bound, off


# -- the outputs ---------------------------------------------------------------------------------------------
def test_outputs_show_the_correlation_beside_its_limit() -> None:
    import jsonschema
    from rich.console import Console

    from normstats.output.files.network import to_csv, to_markdown
    from normstats.output.files.schema import schema
    from normstats.output.terminal.network import network_table

    result = normstats.network("linear tanh softmax", input=16, input_correlation=0.5, samples=64, seed=1,
                               workers=1)
    doc = json.loads(json.dumps(result.to_dict()))
    jsonschema.Draft202012Validator(schema()).validate(doc)
    assert doc["input_correlation"] == 0.5
    first, _, norm = doc["layers"]
    assert first["correlation"]["reference"] == 0.5 and first["correlation"]["reference_kind"] == "mean_field"
    assert first["correlation"]["z"] is None and norm["correlation"]["reference"] is None
    markdown = to_markdown(result)
    assert "| # | layer | correlation | limit (width -> inf) |" in markdown and "| 3 | softmax |" in markdown
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(network_table(result, "t"))
    text = console.export_text()
    assert "Correlation of two inputs" in text and "limit (width -> inf)" in text
    rows = [line.split(",") for line in to_csv(result).splitlines() if ",correlation," in line]
    assert len(rows) == 3 and rows[0][-6] == "0.5" and rows[2][-6] == ""


def test_a_map_input_is_refused_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "normstats.cli", "network", "conv", "--input", "3x8x8",
                           "--input-correlation", "0.5"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("normstats: error: --input-correlation needs --input N")


def test_the_plot_has_a_correlation_panel(tmp_path) -> None:
    """A third panel: the correlation per layer in its colour (the only curve of that colour on a vector network,
    which has no token panel)."""
    from matplotlib import image

    from normstats.output.figures.signal import COSINE_COLOUR, plot_signal_propagation

    result = normstats.network("3*(linear tanh)", input=16, input_correlation=0.5, samples=64, seed=1, workers=1)
    path = tmp_path / "pairs.png"
    plot_signal_propagation(result, str(path))
    img = image.imread(str(path))
    pixels = (img[..., :3].reshape(-1, 3) * 255).round()
    rgb = np.array([int(COSINE_COLOUR[i:i + 2], 16) for i in (1, 3, 5)])
    assert (np.abs(pixels - rgb).sum(axis=1) < 30).sum() > 50
