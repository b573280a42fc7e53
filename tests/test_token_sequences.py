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
