"""Statistics exact in every draw under the conditional estimator only (issue 23): with ``dy`` integrated out a
draw contributes ``g_j = E[dx_j^2 | x] = sum_w J_wj^2``, and where the pooled mean of ``g`` is the same for every
``x`` (a linear layer's or average pooling's Jacobian does not depend on ``x``; max pooling routes each window
to one input) bp std is exact: declared by :meth:`Layer.conditional_exact_statistics`, checked here draw by draw
against the Jacobian the layer's own pass gives, one upstream unit vector at a time."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from normstats.cli import main
from normstats.engine.exactness import ROUNDING, exact_statistics
from normstats.registry import make_layer

#: (layer, params, the bp std it must declare under the conditional estimator, or None: nothing declared)
DECLARED = [
    ("linear", {}, math.sqrt(64 / 128)),
    ("linear", {"fan_in": 12, "fan_out": 20, "normalize": "fan-out"}, 1.0),
    ("linear", {"fan_in": 20, "fan_out": 12, "init": "orthogonal", "normalize": "none"}, math.sqrt(12 / 20)),
    ("linear", {"fan_in": 10, "fan_out": 6, "normalize": "ws", "gain": 2.0}, 2.0 * math.sqrt(6 / 10)),
    ("linear", {"fan_in": 10, "fan_out": 6, "normalize": "none"}, None),  # the value is the W drawn's
    ("maxpool", {}, 0.5),
    ("maxpool", {"k": 3, "stride": 2}, 0.5),  # overlapping windows: still one routed g per window
    ("maxpool", {"k": 3, "stride": 2, "size": "7", "padding": 1}, math.sqrt(16 / 49)),  # 4x4 windows
    ("maxpool", {"kh": 2, "kw": 3, "size": "5x7"}, math.sqrt(2 * 2 / 35)),
    ("avgpool", {}, 0.25),
    ("avgpool", {"k": 3, "stride": 2}, math.sqrt(1 / 36)),  # 1 / (n sh sw)
    ("avgpool", {"k": 3, "stride": 2, "size": "7", "padding": 1}, None),  # the formula's value, checked below
]


def _g_by_jacobian(layer, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """``g_j = sum_w J_wj^2`` for each draw of ``x``, from the layer's own forward-backward pass run on each
    upstream unit vector ``dy = e_w`` (the weights drawn by the same rng as every run of seed 7)."""
    run = layer.sampler(np.random.default_rng(7))
    u = np.zeros((len(x), layer.n_uniform))
    g = 0.0
    for w in range(layer.out_dim):
        dy = np.zeros((len(x), layer.out_dim))
        dy[:, w] = 1.0
        g = g + np.square(run(x, dy, u)[1])
    return np.asarray(g)


@pytest.mark.parametrize("name, params, value", DECLARED)
def test_each_declared_bp_std_is_the_same_in_every_draw(name: str, params: dict, value: float | None) -> None:
    """Over 200 draws: the row mean of ``g`` is the declared bp variance in every draw, up to float rounding, by
    the Jacobian and by the layer's conditional sampler alike; the declaration holds under the conditional
    estimator only (a sampled ``dy`` makes bp std vary)."""
    layer = make_layer(name, **params)
    declared = layer.conditional_exact_statistics()
    if value is None and name == "avgpool":
        value = layer.formula()["bp_std"]
    assert declared == ({} if value is None else {"bp_std": pytest.approx(value, rel=1e-12)})
    assert "bp_std" not in exact_statistics(layer, "sampled")
    if value is not None:
        assert exact_statistics(layer, "conditional")["bp_std"] == declared["bp_std"]
    x = np.random.default_rng(3).standard_normal((200, layer.in_dim))
    by_jacobian = np.sqrt(_g_by_jacobian(layer, x).mean(axis=1))
    _, g = layer.conditional_sampler(np.random.default_rng(7))(x, np.zeros((200, layer.n_uniform)))
    by_sampler = np.sqrt(np.asarray(g).mean(axis=1))
    reference = by_jacobian[0] if value is None else value  # undeclared: still the same in every draw
    for per_draw in (by_jacobian, by_sampler):
        assert np.abs(per_draw - reference).max() <= ROUNDING * max(1.0, reference)


def test_an_elementwise_layer_declares_nothing_more() -> None:
    """relu's bp std varies from draw to draw (how many inputs are positive): nothing declared."""
    assert make_layer("relu").conditional_exact_statistics() == {}
    assert exact_statistics(make_layer("relu"), "conditional") == {"bp_mean": 0.0}


@pytest.mark.parametrize("layer", ["linear", "maxpool", "avgpool"])
def test_the_cli_reports_the_bp_std_as_exact_under_the_conditional_estimator_only(layer: str) -> None:
    """``normstats simulate``: exact (se 0, z null, ``"exact": true``, in words in the table) by default, an
    estimate with a positive se under ``--estimator sampled``."""
    runner = CliRunner()
    conditional = runner.invoke(main, ["simulate", "--layer", layer, "-n", "2000", "-q", "--format", "json"])
    assert conditional.exit_code == 0, conditional.output
    bp = json.loads(conditional.stdout)["rows"][0]["bp_std"]
    assert bp["exact"] is True and bp["se"] == 0.0 and bp["z"] is None and bp["estimate"] == bp["reference"]
    terminal = runner.invoke(main, ["simulate", "--layer", layer, "-n", "2000", "-q"]).stdout
    assert any("bp std" in line and "(exact in every draw)" in line for line in terminal.splitlines())
    sampled = runner.invoke(main, ["simulate", "--layer", layer, "-n", "2000", "-q", "--estimator", "sampled",
                                   "--format", "json"])
    assert sampled.exit_code == 0, sampled.output
    bp = json.loads(sampled.stdout)["rows"][0]["bp_std"]
    assert bp.get("exact") is not True and bp["se"] > 0
