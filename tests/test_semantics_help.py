"""What ``normstats network --help`` says about NormProp, --inits and --band (issue 23, item 6), and that each
statement is what the code does: checked on the built network (its shifts, scales and weights) and, where it is a
statistical claim, on a run within its se."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import normstats
from normstats.exact.references import reference_moments
from normstats.networks.build import build_network
from normstats.networks.propagate import NetworkModel, NetworkSampler, draw_seed
from normstats.networks.shapes import NORMALIZERS
from normstats.registry import make_layer
from tests.test_cli import run

#: Key phrases of each statement, as --help prints them (up to line wrapping).
STATEMENTS = (
    "shift each layer by its exact fp mean",  # --normprop
    "shifted by its exact fp mean and divided by its exact fp or bp std",
    "unit-norm rows (normalize=fan-in) under fp and split, unit-norm columns (normalize=fan-out) under bp",
    "under split a weighted layer's gradient is also divided by its own bp std (sqrt(fan_out/fan_in) for unit rows",
    "Normalization layers (batchnorm, layernorm, rmsnorm, groupnorm) are left unscaled",
    "Pooling on a finite map (and conv under split) uses the constants of the map's interior, without padding",
    "each for ceil(n/K) draws",
    "each statistic is the mean of the K networks' own estimates",
    "--band LO,HI is the pass band of the closing lines: the std range a layer's output (fp) or input gradient (bp) "
    "may reach before the closing line flags it",
)


def _unwrapped(text: str) -> str:
    """The help as one line: wrapped lines joined, and a word click broke at its hyphen ('unit-' / 'norm')
    made whole again."""
    text = re.sub(r"\s+", " ", text)
    return re.sub(r"(?<=[A-Za-z])- (?=[a-z])", "-", text)


def test_network_help_states_what_the_code_does() -> None:
    text = _unwrapped(run("network", "--help").stdout)
    for phrase in STATEMENTS:
        assert phrase in text, phrase


def _exact(name: str, **params: object) -> dict[str, float]:
    refs = reference_moments(make_layer(name, **params))
    return {k: refs[k].value for k in ("fp_mean", "fp_std", "bp_std")}  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["fp", "bp", "split"])
def test_the_shift_is_the_exact_fp_mean_and_the_scales_the_exact_stds(mode: str) -> None:
    relu = _exact("relu")
    stage = build_network("linear relu", (8,), normprop=mode).items[1]
    divide = {"fp": (relu["fp_std"], relu["fp_std"]), "bp": (relu["bp_std"], relu["bp_std"]),
              "split": (relu["fp_std"], relu["bp_std"])}[mode]
    assert stage.shift == relu["fp_mean"]
    assert (stage.fwd_scale, stage.grad_scale) == pytest.approx((1 / divide[0], 1 / divide[1]), rel=1e-15)


def test_under_fp_a_relu_output_has_mean_zero_within_its_se() -> None:
    result = normstats.network("linear relu linear relu", input=64, normprop="fp", samples=2000, seed=3,
                               workers=1)
    for row in result.layers:
        if row.layer == "relu":
            mean = row.stats["fp_mean"]
            assert abs(mean.estimate) <= 4 * mean.se, (row.index, mean.estimate, mean.se)
            # and without the shift the mean would be the exact sqrt(1/(2 pi)) / fp std, hundreds of se away
            assert 4 * mean.se < math.sqrt(1 / (2 * math.pi)) / _exact("relu")["fp_std"]


@pytest.mark.parametrize(("mode", "unit_axes"), [("fp", (1, 2, 3)), ("split", (1, 2, 3)), ("bp", (0, 2, 3))])
def test_weights_get_unit_norm_rows_or_columns(mode: str, unit_axes: tuple[int, ...]) -> None:
    """Rows (per output channel, over in_channels k^2) under fp and split, columns (per input channel, over
    out_channels k^2) under bp: linear (W of shape fan_out x fan_in) and conv alike."""
    for spec, shape in (("linear(fan_out=24) relu linear(fan_out=8)", (16,)),
                        ("conv(out_channels=5,k=3,padding=1) relu", (3, 6, 6))):
        net = build_network(spec, shape, normprop=mode)
        sampler = NetworkSampler(net, np.random.default_rng(0))
        for stage in net.items:
            if stage.name not in ("linear", "conv"):
                continue
            passes = sampler.passes[stage.label]
            w = passes.conv.weight if stage.name == "conv" else passes.weight
            w = w.reshape(w.shape[0], -1, 1, 1) if w.ndim == 2 else w
            norms = np.sqrt(np.sum(w * w, axis=unit_axes))
            np.testing.assert_allclose(norms, 1.0, rtol=1e-12)
            other = (0, 2, 3) if unit_axes == (1, 2, 3) else (1, 2, 3)
            assert np.ptp(np.sqrt(np.sum(w * w, axis=other))) > 0.01  # the other way round they are not


def test_a_layers_own_normalize_wins_over_the_mode() -> None:
    stage = build_network("linear(normalize=none) relu", (8,), normprop="bp").items[0]
    assert stage.params["normalize"] == "none"


def test_split_divides_a_weighted_layers_gradient_by_its_own_bp_std() -> None:
    fan_in, fan_out = 8, 32
    linear = build_network(f"linear(fan_out={fan_out}) relu", (fan_in,), normprop="split").items[0]
    assert linear.params["normalize"] == "fan-in"
    assert linear.fwd_scale == pytest.approx(1.0, rel=1e-14)  # unit rows: fp std 1
    assert linear.grad_scale == pytest.approx(1 / math.sqrt(fan_out / fan_in), rel=1e-14)
    # fp and bp leave the weights unscaled (they are normalized instead)
    for mode in ("fp", "bp"):
        assert not build_network(f"linear(fan_out={fan_out}) relu", (fan_in,), normprop=mode).items[0].scaled


@pytest.mark.parametrize("mode", ["fp", "bp", "split"])
def test_normalization_layers_are_left_unscaled(mode: str) -> None:
    net = build_network("linear batchnorm(batch=4) relu layernorm rmsnorm", (8,), normprop=mode)
    assert {s.name for s in net.items} >= {"batchnorm", "layernorm", "rmsnorm"}
    for stage in net.items:
        assert stage.scaled == (stage.name not in NORMALIZERS and stage.name != "linear"), stage.name
    groupnorm = build_network("conv(out_channels=4,k=1) groupnorm(groups=2)", (4, 4, 4), normprop=mode).items[1]
    assert groupnorm.name == "groupnorm" and not groupnorm.scaled


@pytest.mark.parametrize("name", ["maxpool", "avgpool"])
def test_pooling_on_a_padded_finite_map_takes_the_interiors_constants(name: str) -> None:
    stage = build_network(f"{name}(k=3,padding=1)", (2, 6, 6), normprop="fp").items[0]
    interior = _exact(name, k=3)
    padded = _exact(name, k=3, padding=1, size=stage.params["size"])
    assert (stage.shift, stage.fwd_scale) == pytest.approx((interior["fp_mean"], 1 / interior["fp_std"]),
                                                          rel=1e-14)
    assert padded["fp_std"] != pytest.approx(interior["fp_std"], rel=1e-3)  # a real difference, not a no-op


def test_inits_average_the_networks_own_estimates_over_ceil_n_over_k_draws() -> None:
    from normstats.engine import blocks as engine

    spec, k, n = "linear relu", 3, 100
    result = normstats.network(spec, input=8, inits=k, samples=n, seed=5, workers=1)
    per_net = math.ceil(n / k)
    assert result.inits == k and result.draws == k * per_net == 102
    net = build_network(spec, (8,))
    own = [engine.execute(NetworkModel(net, i, 5), per_net, draw_seed(5, i), estimator="sampled").estimates
           for i in range(k)]
    for row in result.layers:
        for name, stat in row.stats.items():
            values = np.array([o[f"{row.index}|{name}"][0] for o in own])
            assert stat.estimate == pytest.approx(values.mean(), rel=1e-12, abs=1e-15)
            assert stat.se == pytest.approx(values.std(ddof=1) / math.sqrt(k), rel=1e-12, abs=1e-15)
