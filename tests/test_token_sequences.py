"""Token sequences (``--input TxD``): how layers act on them (linear and layer norm per token, activations per
value), the layers that end them (``mean``, ``token``), and runs through the engine and the command line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest

import normstats
from normstats.networks.build import build_network
from normstats.networks.propagate import NetworkSampler, weight_rng
from normstats.networks.sequences import correlate_tokens, token_cosine
from normstats.networks.shapes import PER_TOKEN, parse_input
from normstats.networks.spec import SpecError


def test_parse_input_reads_a_sequence() -> None:
    assert parse_input("64x256") == (64, 256)
    assert parse_input((4, 8)) == (4, 8)
    with pytest.raises(SpecError, match="TxD"):
        parse_input("4x0")


def _run(spec: str, shape: tuple[int, ...], x: np.ndarray, seed: int = 1) -> tuple[NetworkSampler, list[np.ndarray]]:
    sampler = NetworkSampler(build_network(spec, shape), weight_rng(seed, 0))
    out = sampler(x, np.zeros((len(x), math.prod(sampler.net.output))), np.empty((len(x), 0)))
    return sampler, out


def test_linear_and_layer_norm_act_on_every_token() -> None:
    t, d = 5, 6
    x = np.random.default_rng(0).standard_normal((3, t * d))
    sampler, out = _run("linear(fan_out=4) layernorm relu", (t, d), x)
    stages = sampler.net.items
    assert [s.kind for s in stages[:2]] == [PER_TOKEN, PER_TOKEN]
    assert stages[0].out_shape == (t, 4) and stages[1].layer.values["features"] == 4
    w = sampler.passes["1"].weight
    assert w.shape == (4, d)
    tokens = x.reshape(3, t, d) @ w.T  # the same W on every token
    np.testing.assert_allclose(out[sampler.index[("1", "fp")]], tokens.reshape(3, -1), rtol=1e-13)
    centred = tokens - tokens.mean(axis=2, keepdims=True)
    normed = centred / np.sqrt(np.mean(centred**2, axis=2, keepdims=True) + 1e-5)  # over D, per token
    np.testing.assert_allclose(out[sampler.index[("2", "fp")]], normed.reshape(3, -1), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out[sampler.index[("3", "fp")]], np.maximum(normed, 0).reshape(3, -1), atol=1e-14)


def test_mean_and_token_end_a_sequence() -> None:
    t, d = 4, 3
    x = np.random.default_rng(1).standard_normal((2, t * d))
    dy = np.random.default_rng(2).standard_normal((2, d))
    for spec, want_y, want_dx in (
        ("mean", x.reshape(2, t, d).mean(axis=1), np.repeat(dy[:, None] / t, t, axis=1).reshape(2, -1)),
        ("token(index=-1)", x[:, -d:], np.concatenate([np.zeros((2, (t - 1) * d)), dy], axis=1)),
    ):
        sampler = NetworkSampler(build_network(spec, (t, d)), weight_rng(0, 0))
        assert sampler.net.output == (d,)
        y, dx = sampler.ends(x, dy, np.empty((2, 0)))
        np.testing.assert_allclose(y, want_y, rtol=1e-14)
        np.testing.assert_allclose(dx, want_dx, rtol=1e-14)


def test_token_takes_its_index_unnamed() -> None:
    """``token(3)`` and ``token(-1)`` are ``token(index=3)`` and ``token(index=-1)`` (the canonical text names it);
    the same network, the same numbers."""
    x = np.random.default_rng(3).standard_normal((2, 4 * 3))
    dy = np.random.default_rng(4).standard_normal((2, 3))
    for short, named in (("token(3)", "token(index=3)"), ("linear token(-1)", "linear token(index=-1)"),
                         ("token(-2, features=3)", "token(index=-2,features=3)")):
        a, b = build_network(short, (4, 3)), build_network(named, (4, 3))
        assert a.spec == b.spec == named
        ya, dxa = NetworkSampler(a, weight_rng(0, 0)).ends(x, dy, np.empty((2, 0)))
        yb, dxb = NetworkSampler(b, weight_rng(0, 0)).ends(x, dy, np.empty((2, 0)))
        assert np.array_equal(ya, yb) and np.array_equal(dxa, dxb)


@pytest.mark.parametrize("spec, message", [
    ("linear(3)", "network spec, position 8 ('3'): layer 'linear' takes no unnamed value: name the parameter, "
                  "linear(NAME=3)"),
    ("token relu(1)", "network spec, position 12 ('1'): layer 'relu' takes no unnamed value"),
    ("linear(fan_out)", "network spec, position 8 ('fan_out'): expected a value for parameter 'fan_out': "
                        "fan_out=VALUE"),
    ("token(1, index=2)", "network spec, position 10 ('index'): parameter 'index' is given twice"),
    ("token(1, 2)", "network spec, position 10 ('2'): expected a parameter name=value"),
    ("res(relu, 2)", "network spec, position 11 ('2'): expected a parameter name=value"),
    ("tokn(1)", "network spec, position 1 ('tokn'): unknown layer 'tokn'"),
    ("token(4)", "position 1 ('token'): index=4 is out of range for a sequence of 4 tokens"),
])
def test_an_unnamed_value_elsewhere_is_one_line(spec: str, message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "normstats.cli", "network", spec, "--input", "4x8", "-n", "4"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("normstats: error: ") and message in done.stderr


def _gelu_std() -> float:
    """sd of GELU(X) = X Phi(X), X ~ N(0, 1), by mpmath quadrature (independent of normstats' own)."""
    mpmath.mp.dps = 30
    pdf = lambda z: mpmath.npdf(z)  # noqa: E731
    gelu = lambda z: z * mpmath.ncdf(z)  # noqa: E731
    m1 = mpmath.quad(lambda z: gelu(z) * pdf(z), [-mpmath.inf, 0, mpmath.inf])
    m2 = mpmath.quad(lambda z: gelu(z) ** 2 * pdf(z), [-mpmath.inf, 0, mpmath.inf])
    return float(mpmath.sqrt(m2 - m1 * m1))


def test_a_mean_over_independent_tokens_divides_the_variance_by_t() -> None:
    """After a per-token linear layer (unit-norm rows: every value N(0, 1), tokens independent) and GELU, the
    tokens are i.i.d., so their mean has the GELU's variance over T: fp std ``sd(GELU) / sqrt(T)``. The bp std
    of ``mean`` is ``1 / T`` (``dx_t = dy / T``); a ``token`` passes one token's gradient, ``1 / sqrt(T)``
    pooled over the sequence."""
    t, d = 16, 8
    result = normstats.network("linear gelu mean", input=f"{t}x{d}", samples=20000, seed=4, workers=1)
    gelu_row, mean_row = result.layers[1], result.layers[2]
    sd = _gelu_std()
    # two methods agree: mpmath here, normstats' own Gaussian quadrature of the layer
    assert sd == pytest.approx(normstats.make_layer("gelu").quadrature()["fp_std"], rel=1e-10)
    for stat, value in ((gelu_row.stats["fp_std"], sd), (mean_row.stats["fp_std"], sd / math.sqrt(t)),
                        (mean_row.stats["bp_std"], 1.0 / t)):
        assert abs(stat.estimate - value) < 4 * stat.se, (stat.estimate, value, stat.se)
        assert stat.se < 0.02 * value
    # against the same figure without the mean: the variance ratio is T within its se
    ratio = (gelu_row.stats["fp_std"].estimate / mean_row.stats["fp_std"].estimate) ** 2
    assert abs(ratio - t) < 0.1 * t

    result = normstats.network("token(index=3)", input=f"{t}x{d}", samples=4000, seed=4, workers=1)
    stat = result.layers[0].stats["bp_std"]
    assert abs(stat.estimate - 1 / math.sqrt(t)) < 4 * stat.se


def test_dropout_and_activations_run_per_value_on_a_sequence() -> None:
    net = build_network("dropout(p=0.5) gelu layernorm", (4, 8))
    assert net.items[0].n_uniform == 32 and net.output == (4, 8)


def test_width_sets_the_token_features() -> None:
    net = build_network("linear relu linear(fan_out=8)", (4, 8), width=16)
    assert [s.out_shape for s in net.items] == [(4, 16), (4, 16), (4, 8)]


def test_normprop_normalizes_attention_like_a_linear_layer() -> None:
    net = build_network("attention linear", (4, 8), normprop="bp")
    assert net.items[0].layer.values["normalize"] == "fan-out" == net.items[1].layer.values["normalize"]
    assert not net.items[0].scaled


def test_the_transformer_of_the_issue_runs_on_the_command_line(tmp_path: Path) -> None:
    """The issue's example at a smaller size, through the CLI to a JSON file: every layer has fp and bp rows
    with a standard error, and no mean-field reference (none exists for attention: shown as absent)."""
    out = tmp_path / "run.json"
    done = subprocess.run(
        [sys.executable, "-m", "normstats.cli", "network",
         "2*(res(layernorm attention(heads=2)) res(layernorm linear gelu linear)) mean", "--input", "6x8",
         "-n", "400", "-q", "--format", "json", "-o", str(out)],
        capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    text = json.dumps(data)
    assert '"attention"' in text and '"mean"' in text
    layers = data["layers"]
    assert len(layers) == 2 * (3 + 5) + 1  # per repeat: res, layernorm, attention; res, layernorm, linear, gelu, linear
    for layer in layers:
        for name in ("fp_std", "bp_std"):
            stat = layer[name]
            assert stat["se"] > 0 and stat["estimate"] > 0
        if layer["layer"] == "attention":
            assert layer["fp_std"]["reference"] is None and layer["bp_std"]["reference"] is None


# -- token geometry: --input-correlation, token cosine, attention entropy --------------------------------------------

def test_correlated_tokens_have_unit_variance_and_correlation_rho_exactly() -> None:
    """The map of :func:`correlate_tokens` is linear, ``x = M e`` over the tokens of each feature; its covariance
    ``M M^T`` (applied to the identity: the exact law, no sampling) has 1 on the diagonal and rho elsewhere."""
    t, rho = 5, 0.3
    basis = np.eye(t)  # row j: e = the j-th unit token pattern, one feature
    m = correlate_tokens(basis, t, rho).T  # column j: the tokens that e_j maps to
    cov = m @ m.T
    np.testing.assert_allclose(cov, rho + (1 - rho) * np.eye(t), rtol=1e-14, atol=1e-15)
    assert np.array_equal(correlate_tokens(basis, t, 0.0), basis)


def test_token_cosine_and_attention_entropy_equal_their_definitions() -> None:
    from scipy.special import entr, softmax

    rng = np.random.default_rng(5)
    y = rng.standard_normal((4, 6 * 3))
    y[0, :3] = 0.0  # a token of norm 0: no direction, counts as cosine 0 with every other token
    seq = y.reshape(4, 6, 3)
    want = []
    for row in seq:
        units = [v / np.linalg.norm(v) if np.linalg.norm(v) > 0 else np.zeros(3) for v in row]
        want.append(np.mean([units[s] @ units[t] for s in range(6) for t in range(6) if s != t]))
    np.testing.assert_allclose(token_cosine(y, 6), want, rtol=1e-12)

    sampler = NetworkSampler(build_network("attention(heads=2, causal=true)", (5, 4)), weight_rng(2, 0))
    x = rng.standard_normal((3, 20))
    out = sampler(x, np.zeros((3, 20)), np.empty((3, 0)))
    passes = sampler.passes["1"]
    w_q, w_k = passes.w_qkv[:4], passes.w_qkv[4:8]
    tokens = x.reshape(3, 5, 4)
    logits = np.stack([(tokens @ w_q[h * 2:(h + 1) * 2].T) @ (tokens @ w_k[h * 2:(h + 1) * 2].T).transpose(0, 2, 1)
                       for h in range(2)], axis=1) / math.sqrt(2)
    logits[:, :, np.triu(np.ones((5, 5), dtype=bool), 1)] = -np.inf
    p = softmax(logits, axis=-1)
    want = entr(p).sum(axis=-1).mean(axis=(1, 2)) / math.log(5)
    np.testing.assert_allclose(out[sampler.index[("1", "attention_entropy")]][:, 0], want, rtol=1e-12)


def test_input_correlation_gives_the_tokens_the_law_of_a_shared_direction() -> None:
    """``identity`` on correlated tokens: its mean token cosine against numpy drawing ``sqrt(rho) z +
    sqrt(1 - rho) e_t`` itself (a shared z, its own e_t), independent draws, within 4 combined se."""
    t, d, rho, draws = 4, 8, 0.3, 8000
    result = normstats.network("identity", input=f"{t}x{d}", input_correlation=rho, samples=draws, seed=6,
                               workers=1)
    (row,) = result.layers
    rng = np.random.default_rng(60)
    x = math.sqrt(rho) * rng.standard_normal((draws, 1, d)) + math.sqrt(1 - rho) * rng.standard_normal((draws, t, d))
    theirs = token_cosine(x.reshape(draws, -1), t)
    ours = row.stats["token_cosine"]
    se = math.hypot(ours.se, theirs.std(ddof=1) / math.sqrt(draws))
    assert abs(ours.estimate - theirs.mean()) < 4 * se and se < 0.01
    assert abs(ours.estimate - rho) < 0.1  # about rho (the mean cosine of Gaussian vectors is not rho exactly)
    stat = row.stats["fp_std"]
    assert abs(stat.estimate - 1.0) < 4 * stat.se
    assert result.input_correlation == rho and result.to_dict()["input_correlation"] == rho


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_zero_query_attention_on_correlated_tokens(rho: float) -> None:
    """Uniform attention (``q_init=zeros``, raw orthogonal weights): ``Y_t = W_o W_v mean_s X_s`` with
    ``|W_o W_v|^2 = D``, so fp std ``sqrt(rho + (1 - rho) / T)`` (the variance of a mean of T tokens of
    correlation rho); ``dX_s = W_v^T W_o^T mean_t dY_t``, bp std ``sqrt(1 / T)`` whatever rho; every output token
    is the same vector (token cosine 1) and the attention uniform (entropy / log T = 1), in every draw."""
    t, d = 6, 8
    result = normstats.network("attention(heads=2, q_init=zeros, init=orthogonal, normalize=none)",
                               input=f"{t}x{d}", input_correlation=rho, samples=4000, seed=9, workers=1)
    (row,) = result.layers
    for name, value in (("fp_std", math.sqrt(rho + (1 - rho) / t)), ("bp_std", math.sqrt(1 / t)),
                        ("fp_mean", 0.0)):
        stat = row.stats[name]
        assert abs(stat.estimate - value) < 4 * stat.se, (name, stat.estimate, value, stat.se)
        assert stat.se < 0.03
    for name in ("token_cosine", "attention_entropy"):
        assert row.stats[name].estimate == pytest.approx(1.0, abs=1e-12) and row.stats[name].se < 1e-12


@pytest.mark.parametrize("args, message", [
    (["identity", "--input", "4x8", "--input-correlation", "1"], "--input-correlation must be a number in [0, 1); "
                                                                 "got '1'"),
    (["identity", "--input", "4x8", "--input-correlation", "-0.1"], "--input-correlation must be a number in [0, 1)"),
    (["identity", "--input", "4x8", "--input-correlation", "half"], "got 'half'"),
    (["conv", "--input", "3x8x8", "--input-correlation", "0.2"], "needs --input N (two correlated inputs a draw) "
                                                                "or --input TxD (correlated tokens); got 3x8x8"),
])
def test_bad_input_correlation_is_one_line(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "normstats.cli", "network", *args], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("normstats: error: ") and done.stderr.count("\n") == 1
    assert message in done.stderr


def test_a_sequence_run_validates_against_the_json_schema() -> None:
    import jsonschema

    from normstats.output.files.schema import schema

    result = normstats.network("res(layernorm attention(heads=2)) mean", input="4x8", input_correlation=0.2,
                               samples=200, seed=1, workers=1)
    doc = result.to_dict()
    jsonschema.Draft202012Validator(schema()).validate(doc)
    assert doc["input"] == [4, 8] and doc["input_correlation"] == 0.2
    assert {"token_cosine", "attention_entropy"} <= set(doc["layers"][2])


def test_the_wide_limit_has_no_reference_for_the_sequence_layers() -> None:
    """No mean-field limit is computed for attention, mean or token (nor for what follows them): ``None``, shown
    as "—"; a per-token linear layer and an activation at the input keep theirs (every value is N(0, 1) there)."""
    from normstats.networks.wide_limit import mean_field

    ref = mean_field(build_network("linear relu attention linear mean", (4, 8)))
    assert ref["1|fp_std"] == 1.0 and ref["2|fp_std"] == pytest.approx(math.sqrt(0.5 - 1 / (2 * math.pi)))
    for label in ("3", "4", "5"):
        assert ref[f"{label}|fp_std"] is None and ref[f"{label}|bp_std"] is None
    for label in ("1", "2"):  # the gradient comes back through attention: no limit below it either
        assert ref[f"{label}|bp_std"] is None
    ref = mean_field(build_network("linear relu token(index=1)", (4, 8)))
    assert ref["3|fp_std"] is None and ref["1|fp_std"] == 1.0


def test_the_plot_has_a_token_geometry_panel(tmp_path: Path) -> None:
    from matplotlib import image

    from normstats.output.figures.signal import BP_COLOUR, COSINE_COLOUR, FP_COLOUR

    path = tmp_path / "tokens.png"
    done = subprocess.run([sys.executable, "-m", "normstats.cli", "network",
                           "2*(res(layernorm attention(heads=2)) res(layernorm linear gelu linear))", "--input", "6x8",
                           "--input-correlation", "0.2", "-n", "200", "-q", "--plot", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    img = image.imread(str(path))
    assert img.shape[1] > 800  # two panels side by side
    pixels = (img[..., :3].reshape(-1, 3) * 255).round()
    for colour in (FP_COLOUR, BP_COLOUR, COSINE_COLOUR):
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).sum(axis=1) < 30).sum() > 50, colour


def test_a_transformer_run_is_the_same_on_any_number_of_workers_and_stops_at_a_target_se() -> None:
    spec = "res(layernorm attention(heads=2, causal=true)) res(layernorm linear gelu linear) mean"
    one = normstats.network(spec, input="5x8", input_correlation=0.3, samples=600, seed=2, workers=1)
    two = normstats.network(spec, input="5x8", input_correlation=0.3, samples=600, seed=2, workers=2)
    for a, b in zip(one.layers, two.layers):
        for name, stat in a.stats.items():
            assert stat.estimate == pytest.approx(b.stats[name].estimate, rel=1e-12, abs=1e-15), (a.index, name)
    stopped = normstats.network(spec, input="5x8", target_se=0.02, seed=2, workers=1)
    assert stopped.stop == "target-se"
    assert max(s.se for row in stopped.layers for s in row.stats.values()) <= 0.02
