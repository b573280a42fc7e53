"""A network's passes: the backward pass is the gradient of the forward pass (finite differences), the forward
pass is what a plain loop over the same layers computes, NormProp scales as documented, and the engine gives
the same numbers for any worker count."""

from __future__ import annotations

import json

import numpy as np
import pytest

import normstats
from normstats.networks.build import build_network
from normstats.networks.propagate import NetworkSampler, records, weight_rng
from tests.test_cli import run

NETWORKS = [
    ("3*(linear relu)", (6,)),
    ("linear(fan_out=5) tanh dropout(p=0.7) linear(fan_out=4) sigmoid", (6,)),
    ("res(linear relu linear, alpha=0.5, beta=auto) gelu res(linear tanh linear, alpha=0.3, beta=auto)", (5,)),
    ("conv(out_channels=3,k=3,padding=1) relu maxpool(k=2) conv(out_channels=2,k=3,padding=1) relu avgpool(k=2)",
     (2, 6, 6)),
    ("conv(out_channels=3,k=3,stride=2) elu maxpool(k=3,stride=1) linear(fan_out=4)", (2, 7, 7)),
    ("linear batchnorm(batch=4) relu linear layernorm softmax", (5,)),
    ("conv(out_channels=4,k=3,padding=1) groupnorm(groups=2) relu rmsnorm", (2, 4, 4)),
]


def _inputs(net, draws: int, seed: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    b = net.batch
    x = rng.standard_normal((draws, b * int(np.prod(net.input))))
    dy = rng.standard_normal((draws, b * int(np.prod(net.output))))
    u = rng.random((draws, b * net.uniforms_per_input))
    return x, dy, u


@pytest.mark.parametrize("normprop", ["none", "fp", "bp"])
@pytest.mark.parametrize("spec, shape", NETWORKS, ids=[n[0][:40] for n in NETWORKS])
def test_the_backward_pass_is_the_gradient_of_the_forward_pass(spec: str, shape: tuple[int, ...],
                                                               normprop: str) -> None:
    """``<dy, y(x + h e_j)> - <dy, y(x - h e_j)> / 2h`` against ``dx_j`` for every input coordinate (the dropout
    mask is held fixed through ``u``; central differences, error O(h^2))."""
    net = build_network(spec, shape, normprop=normprop)
    sampler = NetworkSampler(net, weight_rng(1, 0))
    x, dy, u = _inputs(net, 3, seed=2)
    y, dx = sampler.ends(x, dy, u)
    h = 1e-6
    fd = np.empty_like(x)
    for j in range(x.shape[1]):
        step = np.zeros_like(x)
        step[:, j] = h
        up = np.sum(sampler.ends(x + step, dy, u)[0] * dy, axis=1)
        down = np.sum(sampler.ends(x - step, dy, u)[0] * dy, axis=1)
        fd[:, j] = (up - down) / (2 * h)
    # max pooling is piecewise linear: a tie within h of a kink would break the check; random inputs have none
    np.testing.assert_allclose(dx, fd, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(fd).max())))


def test_a_dense_chain_is_the_loop_a_user_would_write() -> None:
    """``linear relu linear`` with fp NormProp by hand: the same weights (drawn in layer order from the run's
    generator, unit-norm rows), shift and scale by the relu's exact mean and std."""
    net = build_network("linear(fan_out=7) relu linear(fan_out=3)", (5,), normprop="fp")
    sampler = NetworkSampler(net, weight_rng(4, 0))
    x, dy, u = _inputs(net, 11, seed=3)
    out = sampler(x, dy, u)
    rng = weight_rng(4, 0)
    w1 = rng.standard_normal((7, 5))
    w1 /= np.linalg.norm(w1, axis=1, keepdims=True)
    w2 = rng.standard_normal((3, 7))
    w2 /= np.linalg.norm(w2, axis=1, keepdims=True)
    mean, std = np.sqrt(1 / (2 * np.pi)), np.sqrt(0.5 - 1 / (2 * np.pi))
    h1 = x @ w1.T
    a1 = (np.maximum(h1, 0) - mean) / std
    y = a1 @ w2.T
    g_a1 = dy @ w2
    g_h1 = g_a1 * (h1 > 0) / std
    g_x = g_h1 @ w1
    index = {(r.label, r.what): i for i, r in enumerate(records(net))}
    for label, what, want in (("1", "fp", h1), ("2", "fp", a1), ("3", "fp", y), ("3", "bp", g_a1),
                              ("2", "bp", g_h1), ("1", "bp", g_x)):
        np.testing.assert_allclose(out[index[(label, what)]], want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("summed", [False, True], ids=["numpy-passes", "summed-passes"])
def test_the_engine_tallies_each_record_as_the_sampler_computed_it(summed: bool, monkeypatch) -> None:
    """The engine hands a network's chunk to its sums (``feed``), which tally every record as it comes: the same
    tallies as tallying the list the sampler returns, over residual, conv, pooling and normalization layers.
    With the numpy passes bit for bit; where ReLU sums its input and output in its compiled loops, the sums are
    added in another order, so equal to float rounding (relative 1e-12: the estimates are sums of 40 draws'
    summaries, each of at most 144 values, about 1e-15 apart)."""
    from normstats.engine import blocks as engine
    from normstats.layers import relu_kernels
    from normstats.networks import propagate

    if summed and not relu_kernels.AVAILABLE:
        pytest.skip("normstats was built without its compiled loops")
    monkeypatch.setattr(propagate, "_SUMMED", summed)
    from normstats.networks.propagate import NetworkModel

    net = build_network("conv(out_channels=4,k=3,padding=1) relu maxpool(k=2) res(conv(k=3,padding=1) relu, "
                        "alpha=0.5, beta=auto) groupnorm(groups=2)", (2, 6, 6), normprop="fp")
    model = NetworkModel(net, 0, 3)
    fed = engine.run_block(engine.Job(model, 3, "mc", 13, "sampled"), engine.Block(0, 40))
    sampler = model.make_sampler(3, "sampled")
    listed = model.chunk_sums(13, "sampled")
    from normstats.engine.sources import MonteCarloSource

    source = MonteCarloSource(3, 0)
    for m in (13, 13, 13, 1):
        x, dy, u = (np.empty((m, d)) for d in (model.in_dim, model.out_dim, model.n_uniform))
        source.fill(x, dy, u)
        listed.add(sampler(x, dy, u))
    got, want = fed.estimates(), listed.result().estimates()
    if not summed:
        assert got == want
    else:
        assert got.keys() == want.keys()
        np.testing.assert_allclose([got[k] for k in want], [want[k] for k in want], rtol=1e-12, atol=0)
        assert any(sampler.summed_by_next), "no record was summed by a ReLU's compiled loops"


def test_split_divides_the_backward_pass_by_each_layers_bp_std() -> None:
    """``split``: forward as ``fp``, backward divided by the bp std instead of the fp std (not the gradient)."""
    fp = build_network("relu", (4,), normprop="fp")
    split = build_network("relu", (4,), normprop="split")
    x, dy, u = _inputs(fp, 5, seed=1)
    y_fp, dx_fp = NetworkSampler(fp, weight_rng(0, 0)).ends(x, dy, u)
    y_split, dx_split = NetworkSampler(split, weight_rng(0, 0)).ends(x, dy, u)
    np.testing.assert_allclose(y_split, y_fp, rtol=1e-15)
    fp_std, bp_std = np.sqrt(0.5 - 1 / (2 * np.pi)), np.sqrt(0.5)
    np.testing.assert_allclose(dx_split, dx_fp * fp_std / bp_std, rtol=1e-13)


def test_beta_auto_tracks_the_expected_variance_block_by_block() -> None:
    net = build_network("4*res(linear relu linear, alpha=0.5, beta=auto)", (8,), normprop="fp")
    assert [b.beta for b in net.items] == pytest.approx([1.0, np.sqrt(1.25), np.sqrt(1.5), np.sqrt(1.75)],
                                                        rel=1e-15)


def test_explicit_parameters_win_over_the_normprop_mode() -> None:
    net = build_network("linear(normalize=none,init=kaiming) relu linear", (8,), normprop="bp")
    first, _, last = net.items
    assert first.layer.values["normalize"] == "none" and first.layer.values["init"] == "kaiming"
    assert last.layer.values["normalize"] == "fan-out"


def test_same_seed_same_numbers_for_any_worker_count() -> None:
    """Blocks go to 1 or 2 worker threads (the network is large enough to be sent to the pool): identical JSON."""
    args = ("network", "4*(linear relu)", "--input", "256", "--normprop", "fp", "-n", "12000", "--format",
            "json", "-q")
    one = json.loads(run(*args, "--workers", "1").stdout)
    two = json.loads(run(*args, "--workers", "2").stdout)
    assert one == two
    assert one["draws"] == 12000


def test_inits_average_independent_networks() -> None:
    """``--inits 3``: three networks of ``samples / 3`` draws each, network 0 being the default run's (its weights
    and draws); the estimate is their mean and the se their spread over sqrt(3)."""
    from normstats.engine import blocks as engine
    from normstats.networks.propagate import NetworkModel, draw_seed

    spec = "linear(init=normal,normalize=none) relu"
    several = normstats.network(spec, input=16, samples=900, seed=5, inits=3)
    single = normstats.network(spec, input=16, samples=300, seed=5, inits=1)
    net = build_network(spec, (16,))
    per = [engine.execute(NetworkModel(net, k, 5), 300, draw_seed(5, k), estimator="sampled").estimates["2|fp_std"][0]
           for k in range(3)]
    got = several.layers[1].stats["fp_std"]
    assert several.inits == 3 and several.draws == 900
    assert per[0] == single.layers[1].stats["fp_std"].estimate
    assert got.estimate == pytest.approx(np.mean(per), rel=1e-14)
    assert got.se == pytest.approx(np.std(per, ddof=1) / np.sqrt(3), rel=1e-12)
    assert len(set(per)) == 3  # three different networks


@pytest.mark.parametrize("name, params", [
    ("relu", {}), ("maxpool", {"k": 2, "size": "2x2"}), ("maxpool", {"k": 2, "size": "6x6"}),
    ("maxpool", {"k": 3, "stride": 2, "padding": 1, "size": "7x7"}), ("maxpool", {"k": 3, "stride": 1}),
    ("conv", {"in_channels": 3, "out_channels": 4, "k": 3, "padding": 1, "size": "6x6"}),
    ("conv", {"in_channels": 2, "out_channels": 3, "k": 5, "stride": 2, "padding": 2, "size": "9x6"}),
    ("conv", {"in_channels": 2, "out_channels": 3, "k": 2, "stride": 3, "padding": 1, "size": "8x8"}),
])
def test_the_cheaper_passes_give_the_generic_ones_bit_for_bit(name: str, params: dict) -> None:
    """Some layers run cheaper passes than the generic ones (ReLU keeps a mask instead of its input, max pooling
    its argmax instead of running its sampler twice, a convolution on a finite map sums its gradients
    channels-last instead of through ``Grid.scatter``): outputs, gradients and scaled gradients equal the
    generic path's bit for bit, zeros' signs included."""
    from normstats.layers.base import Passes, _ElementwisePasses
    from normstats.layers.conv import _ConvPasses
    from normstats.registry import make_layer

    layer = make_layer(name, **params)
    cheap = layer.passes(np.random.default_rng(0))
    if name == "relu":
        generic = _ElementwisePasses(layer)
    elif name == "maxpool":
        generic = Passes(layer.forward_backward, layer.out_dim)
    else:  # the same weight (the same generator), its gradients summed by Grid.scatter
        conv = layer.sampler(np.random.default_rng(0))
        out_ch, in_ch, kh, kw = conv.weight.shape

        class _Scattered(_ConvPasses):
            def backward(self, state: None, dy: np.ndarray) -> np.ndarray:
                g = conv.grid
                dys = dy.reshape(len(dy), out_ch, g.h.windows, g.w.windows).transpose(0, 2, 3, 1).reshape(-1, out_ch)
                dcols = (dys @ conv.matrix).reshape(len(dy), g.h.windows, g.w.windows, in_ch, kh, kw)
                return g.counted_values(g.scatter(dcols.transpose(0, 3, 1, 2, 4, 5)))

        generic = _Scattered(conv)
    assert type(cheap) is not type(generic)
    rng = np.random.default_rng(1)
    width = 1 if name == "relu" else layer.in_dim
    x = rng.standard_normal((23, 8 * width if name == "relu" else width))
    x[0, :3] = 0.0  # ReLU's kink: gradient 0
    dy = rng.standard_normal((23, x.shape[1] if name == "relu" else layer.out_dim))
    u = np.empty((23, 0))
    (y0, s0), (y1, s1) = generic.forward(x, u), cheap.forward(x, u)
    assert np.array_equal(y0, y1)
    x_over = x.copy()
    y2, s2 = cheap.forward_inplace(x_over, u)  # free to write over its input: the same numbers
    assert np.array_equal(y2, y0) and np.array_equal(np.signbit(y2), np.signbit(y0))
    assert cheap.writes_over_input == np.shares_memory(y2, x_over)
    for a, b, c in ((generic.backward(s0, dy), cheap.backward(s1, dy), cheap.backward_inplace(s2, dy.copy(), 1.0)),
                    (generic.backward_scaled(s0, dy, 1.7), cheap.backward_scaled(s1, dy, 1.7),
                     cheap.backward_inplace(s2, dy.copy(), 1.7))):
        for got in (b, c):
            assert np.array_equal(a, got) and np.array_equal(np.signbit(a), np.signbit(got))


@pytest.mark.parametrize("spec, shape", NETWORKS, ids=[n[0][:40] for n in NETWORKS])
def test_passes_that_write_over_their_input_change_no_record_and_no_input(spec: str, shape: tuple[int, ...]) -> None:
    """With ``reuse`` (what the engine's tallies run) a layer may write its output over an input no one needs
    any more (ReLU does, in both passes): every record handed to the sink is the one a run without reuse
    computes, bit for bit, and the caller's ``x`` and ``dy`` (the engine's buffers) are left as they were, over
    residual blocks (whose input the sum needs), convolutions, pooling and normalization layers."""
    net = build_network(spec, shape, normprop="fp")
    sampler = NetworkSampler(net, weight_rng(4, 0))
    x, dy, u = _inputs(net, 9, 5)
    kept = [x.copy(), dy.copy(), u.copy()]
    expected = sampler(x, dy, u)
    got: dict[int, np.ndarray] = {}

    def copy(index: int, values: np.ndarray) -> None:
        got[index] = values.copy()  # read before the sink returns, as the engine's tallies do

    sampler.run(x, dy, u, copy, reuse=True)
    assert sorted(got) == list(range(len(expected)))
    for index, values in got.items():
        assert np.array_equal(values, expected[index]), sampler.records[index]
    for before, after in zip(kept, (x, dy, u)):
        assert np.array_equal(before, after)


def test_a_relu_network_writes_over_its_own_arrays() -> None:
    """The reuse is real: in ``linear relu linear relu`` under the engine, each ReLU's output is its linear
    layer's output array (no new array), and each ReLU's input gradient the array the gradient came in."""
    net = build_network("2*(linear relu)", (6,), normprop="fp")
    sampler = NetworkSampler(net, weight_rng(4, 0))
    x, dy, u = _inputs(net, 5, 6)
    seen: dict[str, int] = {}

    def where(index: int, values: np.ndarray) -> None:
        rec = sampler.records[index]
        seen[f"{rec.label}|{rec.what}"] = values.__array_interface__["data"][0]

    sampler.run(x, dy, u, where, reuse=True)
    labels = [r.label for r in sampler.records if r.what == "fp"]
    lin0, relu0, lin1, relu1 = labels
    assert seen[f"{relu0}|fp"] == seen[f"{lin0}|fp"] and seen[f"{relu1}|fp"] == seen[f"{lin1}|fp"]
    assert seen[f"{relu0}|bp"] == seen[f"{lin1}|bp"]  # the gradient linear 1 handed back, masked in place
    sampler.run(x, dy, u, where, reuse=False)
    assert seen[f"{relu0}|fp"] != seen[f"{lin0}|fp"]
