"""``normstats jacobian``: the Jacobian from the network's passes against finite differences, the free-probability
moments (S-transform series against the closed forms and the Fuss-Catalan numbers), the q-trajectory against
the mean-field q-map, Monte Carlo against the predictions (exact at any width for the mean of a linear chain;
extrapolated in width for the variance), exact isometry of orthogonal chains, the figure, JSON and bad input."""

from __future__ import annotations

import json
import math
from math import comb
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import normstats
from normstats.networks.propagate import FP, NetworkSampler, weight_rng
from normstats.output.files import schema as export
from normstats.registry import make_layer
from normstats.theory import free_probability as fprob
from normstats.theory.jacobian import build
from normstats.theory.meanfield import MeanField
from tests.test_cli import run, run_bad


def _jacobian(spec: str, n: int, seed: int = 0) -> tuple[np.ndarray, NetworkSampler, np.ndarray]:
    net = build(spec, n, "normal", None, "none")
    sampler = NetworkSampler(net, weight_rng(seed, 0))
    x = np.random.default_rng(seed).standard_normal(n)
    m = int(np.prod(net.output))
    _, jac = sampler.ends(np.tile(x, (m, 1)), np.eye(m), np.zeros((m, 0)))
    return jac, sampler, x


def test_the_jacobian_of_the_passes_matches_finite_differences() -> None:
    """A non-square chain of smooth activations: J from the backward pass on the identity against central
    differences of the forward pass (error O(h^2) ~ 1e-10 of the entries)."""
    jac, sampler, x = _jacobian("linear(fan_out=7) tanh linear(fan_out=5) softplus linear(fan_out=6) gelu", 4)
    assert jac.shape == (6, 4)
    h = 1e-5
    rows = np.concatenate([x + h * np.eye(4), x - h * np.eye(4)])
    y, _ = sampler.ends(rows, np.zeros((8, 6)), np.zeros((8, 0)))
    numeric = ((y[:4] - y[4:]) / (2 * h)).T
    assert np.max(np.abs(jac - numeric)) < 1e-8 * max(1.0, np.max(np.abs(jac)))


def test_a_prefix_shares_the_weights() -> None:
    """The prefix sampler's output is the full network's output of that item (same weights, same draw)."""
    net = build("3*(linear tanh)", 6, "normal", 1.3, "none")
    full = NetworkSampler(net, weight_rng(5, 0))
    x = np.random.default_rng(1).standard_normal((3, 6))
    out = full(x, np.zeros((3, 6)), np.zeros((3, 0)))
    for d in (1, 2, 4):
        y, _ = full.prefix(d).ends(x, np.zeros((3, 6)), np.zeros((3, 0)))
        np.testing.assert_array_equal(y, out[full.index[(str(d), FP)]])


def test_weights_follow_init_and_sigma_w2() -> None:
    """--sigma-w2 W gives weights of variance W / fan_in (normal) or sqrt(W) times an orthogonal matrix."""
    for init, w2 in (("normal", 1.7), ("orthogonal", 0.6)):
        net = build("linear", 400, init, w2, "none")
        weight = net.items[0].layer.passes(weight_rng(0, 0)).weight
        if init == "orthogonal":
            np.testing.assert_allclose(weight @ weight.T, w2 * np.eye(400), atol=1e-12)
        else:
            values = weight.ravel() * math.sqrt(400)  # N(0, w2): z-test of the mean square over 160,000 values
            se = math.sqrt(2.0) * w2 / math.sqrt(values.size)
            assert abs(np.mean(values**2) - w2) < 4 * se


@pytest.mark.parametrize("order", [1, 2, 3, 5, 8])
def test_free_products_of_marchenko_pastur_are_fuss_catalan(order: int) -> None:
    """The S-transform series (free_product_moments) of ``order`` Marchenko-Pastur factors (moments: the
    Catalan numbers) against the Fuss-Catalan numbers; FC_1 is Catalan, FC_L(1) = 1 and FC_L(2) =
    binom(2L + 2, 2) / (2L + 1) = L + 1 (the variance L)."""
    catalan = [comb(2 * k, k) // (k + 1) for k in range(1, 7)]
    moments = fprob.free_product_moments([catalan] * order, 6)
    exact = [fprob.fuss_catalan(order, k) for k in range(1, 7)]
    np.testing.assert_allclose(moments, exact, rtol=1e-12)
    assert fprob.fuss_catalan(1, 6) == catalan[5] and fprob.fuss_catalan(order, 2) == order + 1
    assert fprob.fuss_catalan(order, 1) == 1


def test_the_closed_forms_match_the_s_transform_series() -> None:
    """Mean and variance of combine() against the series for mixed factors: scaled Marchenko-Pastur, a
    Bernoulli D^2 (ReLU: 0 or c^2 with probability p), an orthogonal factor (a point mass) and tanh's D^2."""
    a, p, c2, s = 1.7, 0.5, 2.0, 0.8
    mp = [a**k * comb(2 * k, k) / (k + 1) for k in range(1, 5)]
    bern = [p * c2**k for k in range(1, 5)]
    point = [s**k for k in range(1, 5)]
    tanh = make_layer("tanh")
    from normstats.exact.quadrature import gaussian_expectation

    q = 0.7
    th = [gaussian_expectation(lambda z, k=k: tanh.df(math.sqrt(q) * z) ** (2 * k), []) for k in range(1, 5)]
    series = fprob.free_product_moments([mp, bern, point, th, mp], 4)
    factors = [fprob.Factor("", kind, m[0], m[1] / m[0] ** 2 - 1, None)
               for kind, m in ((fprob.GAUSSIAN, mp), (fprob.DERIVATIVES, bern), (fprob.ORTHOGONAL, point),
                               (fprob.DERIVATIVES, th), (fprob.GAUSSIAN, mp))]
    pred = fprob.combine(factors)
    assert pred.mean == pytest.approx(series[0], rel=1e-12)
    assert pred.variance == pytest.approx(series[1] - series[0] ** 2, rel=1e-10)


def test_the_fuss_catalan_edge() -> None:
    """(L + 1)^(L + 1) / L^L is the limit of FC_L(k + 1) / FC_L(k): the ratio is edge * (1 - (3/2) / k + O(k^-2))
    (Stirling), so at k = 20,000 it matches edge * (1 - 1.5 / k) to O(k^-2)."""
    for order in (1, 2, 8):
        k = 20_000
        ratio = fprob.fuss_catalan(order, k + 1) / fprob.fuss_catalan(order, k)
        edge = fprob.fuss_catalan_edge(order)
        assert ratio < edge and ratio == pytest.approx(edge * (1 - 1.5 / k), rel=1e-7)
    assert fprob.fuss_catalan_edge(1) == 4.0


def test_the_q_trajectory_is_the_mean_field_q_map() -> None:
    """tanh at sigma_w^2 = 1.5: the factors' q follow MeanField's trajectory from q0 = sigma_w^2 (x ~ N(0, I)),
    and the derivative moments match mpmath."""
    mpmath = pytest.importorskip("mpmath")
    net = build("4*(linear tanh)", 8, "normal", 1.5, "none")
    pred = fprob.predict(net)[-1]
    qs = [f.q for f in pred.factors if f.kind == fprob.DERIVATIVES]
    path = MeanField(make_layer("tanh"), 1.5, 0.0).trajectory(1.5, 0.0, 3)
    np.testing.assert_allclose(qs, [p.q for p in path], rtol=1e-12)
    mpmath.mp.dps = 30
    q = mpmath.mpf(qs[1])

    def mu(k: int) -> mpmath.mpf:
        return mpmath.quad(lambda z: mpmath.sech(mpmath.sqrt(q) * z) ** (4 * k) * mpmath.npdf(z), [-mpmath.inf, 0,
                                                                                                   mpmath.inf])

    d = [f for f in pred.factors if f.kind == fprob.DERIVATIVES][1]
    assert d.mean == pytest.approx(float(mu(1)), rel=1e-10)
    assert d.relative_variance == pytest.approx(float(mu(2) / mu(1) ** 2 - 1), rel=1e-9)
    assert pred.mean == pytest.approx(math.prod(f.mean for f in pred.factors), rel=1e-14)


def test_predictions_for_relu_and_normprop_and_where_there_is_none() -> None:
    he = fprob.predict(build("3*(linear(init=kaiming,normalize=none) relu)", 8, "normal", None, "none"))
    assert [p.mean for p in he] == pytest.approx([2.0, 1.0, 2.0, 1.0, 2.0, 1.0])
    assert [p.variance for p in he[1::2]] == pytest.approx([2.0, 4.0, 6.0])  # 2 per layer: MP 1 + ReLU 1
    ortho = fprob.predict(build("3*(linear relu)", 8, "orthogonal", 2.0, "none"))[-1]
    assert ortho.mean == pytest.approx(1.0) and ortho.variance == pytest.approx(3.0)
    bp = fprob.predict(build("3*(linear relu)", 8, "normal", None, "bp"))[-1]  # unit columns, D / bp std
    assert bp.mean == pytest.approx(1.0, rel=1e-12) and bp.variance == pytest.approx(6.0, rel=1e-12)
    assert fprob.predict(build("linear dropout linear", 8, "normal", None, "none"))[1:] == [None, None]
    assert fprob.predict(build("res(linear relu)", 8, "normal", None, "none")) == [None]


def test_a_linear_gaussian_chain_mean_is_exact_and_its_variance_tends_to_fuss_catalan() -> None:
    """E[(1/N) tr J J^T] = sigma_w^(2L) at every width (E[W^T W] = sigma_w^2 I): a z-test. The variance has an
    O(1/N) bias: 2 m(2N) - m(N) removes it, and lands within 4 se of L sigma_w^(4L)."""
    w2, depth = 1.3, 3
    results = {n: normstats.jacobian("3*linear", input=n, sigma_w2=w2, samples=600, seed=n) for n in (16, 32)}
    for r in results.values():
        mean = r.depths[0].stats["mean"]
        assert mean.reference == pytest.approx(w2**depth) and mean.reference_kind == "free_probability"
        assert mean.z is None  # a limit kind is never z-tested in the output
        assert abs(mean.estimate - w2**depth) < 4 * mean.se
    v16, v32 = (results[n].depths[0].stats["variance"] for n in (16, 32))
    extrapolated = 2 * v32.estimate - v16.estimate
    se = math.sqrt(4 * v32.se**2 + v16.se**2)
    assert abs(extrapolated - depth * w2 ** (2 * depth)) < 4 * se
    assert v16.reference == pytest.approx(depth * w2 ** (2 * depth))


def test_a_relu_chain_variance_grows_with_depth_as_predicted() -> None:
    """He init: Var(lambda) = 2 L after L (linear relu) layers, at widths 32 and 64 extrapolated in 1/N."""
    spec = "3*(linear(init=kaiming,normalize=none) relu)"
    rs = {n: normstats.jacobian(spec, input=n, samples=300, seed=7, depths="2,4,6") for n in (32, 64)}
    for i, layers in enumerate((1, 2, 3)):
        a, b = (rs[n].depths[i].stats["variance"] for n in (32, 64))
        assert a.reference == pytest.approx(2.0 * layers)
        assert abs(2 * b.estimate - a.estimate - 2.0 * layers) < 4 * math.sqrt(4 * b.se**2 + a.se**2)
        assert rs[64].depths[i].singular_draws == 300  # a ReLU's zero derivatives: J is singular
        assert "log10_condition" not in rs[64].depths[i].stats


def test_an_orthogonal_linear_chain_is_exactly_isometric() -> None:
    r = normstats.jacobian("5*linear", input=64, init="orthogonal", sigma_w2=2.0, samples=4, depths="all")
    for d in r.depths:
        lam = d.eigenvalues.reshape(4, 64)
        np.testing.assert_allclose(lam, 2.0**d.depth, rtol=1e-12)
        assert d.stats["variance"].estimate < 1e-24 * 4.0**d.depth
        assert abs(d.stats["log10_condition"].estimate) < 1e-13
        assert d.prediction.variance == 0.0 and d.prediction.largest == pytest.approx(2.0**d.depth)


def test_one_network_for_every_input_and_the_se_over_networks() -> None:
    """--inits 1: a linear network's J does not depend on x, so every draw is the same (se 0 up to the SVD's
    rounding); --inits 4: the se is that of 4 networks' means."""
    one = normstats.jacobian("2*linear", input=16, inits=1, samples=5)
    assert one.depths[0].stats["mean"].se < 1e-15 and one.inits == 1
    four = normstats.jacobian("2*linear", input=16, inits=4, samples=8)
    lam = four.depths[0].eigenvalues.reshape(4, 2, 16).mean(axis=2).mean(axis=1)
    assert four.depths[0].stats["mean"].se == pytest.approx(lam.std(ddof=1) / 2.0, rel=1e-12)


def test_cli_table_json_schema_and_png(tmp_path: Path) -> None:
    import matplotlib.colors
    import matplotlib.image

    from normstats.output.figures import spectrum as spectrum_plot

    out = run("jacobian", "4*(linear relu)", "--input", "32", "-n", "6", "--normprop", "bp").stdout
    assert "free prob." in out and "var λ" in out and "singular" in out
    data = json.loads(run("jacobian", "2*(linear tanh)", "--input", "16", "-n", "4", "--depths", "2,4",
                          "--format", "json").stdout)
    jsonschema.Draft202012Validator(export.schema()).validate(data)
    assert data["command"] == "jacobian" and [d["depth"] for d in data["depths"]] == [2, 4]
    assert data["depths"][1]["statistics"]["mean"]["reference_kind"] == "free_probability"
    assert data["depths"][1]["statistics"]["mean"]["z"] is None
    target = tmp_path / "spectrum.png"
    run("jacobian", "4*(linear(init=kaiming,normalize=none) relu)", "--input", "32", "-n", "10", "--depths", "2,8",
        "--plot", str(target))
    img = matplotlib.image.imread(str(target))[..., :3]
    assert img.shape[0] > 400 and img.shape[1] > 700
    pixels = img.reshape(-1, 3)
    assert pixels.std(axis=0).max() > 0.05
    for colour in spectrum_plot.COLOURS[:2]:
        near = np.abs(pixels - np.asarray(matplotlib.colors.to_rgb(colour))).max(axis=1) < 0.03
        assert near.mean() > 1e-4, colour


@pytest.mark.parametrize(
    "args, words",
    [
        (("8*linear", "--input", "16", "--sigma-w2", "-1"), "--sigma-w2 must be a finite number in (0"),
        (("8*linear", "--input", "16", "--depths", "0"), "--depths must be integers in [1, 8]"),
        (("8*linear", "--input", "16", "--depths", "2,x"), "--depths must be integers"),
        (("linear(fan_out=8) relu", "--input", "16"), "not square"),
        (("linear", "--input", "0"), "--input must be an integer in [1"),
        (("linear", "--input", "8", "--inits", "0"), "--inits must be an integer in [1"),
        (("linear", "--input", "8", "--normprop", "fp", "--sigma-w2", "2"), "--sigma-w2 sets raw weights"),
        (("linear", "--input", "8", "--init", "xavier"), "--init"),
        (("linear", "--input", "8", "-n", "1"), "--samples must be a whole number in [2"),
        (("linaer", "--input", "8"), "unknown layer 'linaer'"),
        (("batchnorm(batch=4)", "--input", "8"), "spans a batch"),
        (("linear", "--input", "8", "--plot", "x.jpg"), "--plot must name a .png file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], words: str) -> None:
    assert words in run_bad("jacobian", *args)
