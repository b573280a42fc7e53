"""Self-attention and the transformer blocks built from it: the backward pass against central finite
differences, forward and backward against torch (``torch.nn.MultiheadAttention`` and torch's layer norm, GELU
and linear layers with the same weights), a pre-LN stack's per-layer figures against a torch loop over the same
distribution of inits, and zero-query attention against its closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

import normstats
from normstats.errors import NormstatsError
from normstats.layers.attention import harmonic
from normstats.networks.build import Block, build_network
from normstats.networks.propagate import NetworkSampler, weight_rng

torch = pytest.importorskip("torch")

PRE_LN = "res(layernorm attention(heads=2)) res(layernorm linear gelu linear)"
POST_LN = "res(attention(heads=2)) layernorm res(linear gelu linear) layernorm"


def _sampler(spec: str, shape: tuple[int, ...], seed: int = 3) -> NetworkSampler:
    return NetworkSampler(build_network(spec, shape), weight_rng(seed, 0))


def _directional_check(sampler: NetworkSampler, draws: int, seed: int) -> None:
    """``<dy, (f(x + h v) - f(x - h v)) / 2h>`` against ``<dx, v>`` with ``dx = J^T dy`` from the backward pass.
    The central difference errs by ``h^2 |f'''| / 6`` (truncation) plus about ``eps |f| / h`` (rounding): with
    ``h = 1e-5`` in float64, ``1e-10`` and ``2e-11`` of the terms' scale, so a relative error above
    ``1e3 (h^2 + eps / h) ~ 1e-7`` is a wrong gradient (a missing term of the Jacobian is O(1))."""
    rng = np.random.default_rng(seed)
    n_in = math.prod(sampler.net.input)
    n_out = math.prod(sampler.net.output)
    x = rng.standard_normal((draws, n_in))
    v = rng.standard_normal((draws, n_in))
    dy = rng.standard_normal((draws, n_out))
    u = np.empty((draws, 0))
    h = 1e-5
    _, dx = sampler.ends(x, dy, u)
    y_plus, _ = sampler.ends(x + h * v, dy, u)
    y_minus, _ = sampler.ends(x - h * v, dy, u)
    numeric = np.sum(dy * (y_plus - y_minus), axis=1) / (2 * h)
    analytic = np.sum(dx * v, axis=1)
    scale = np.sqrt(np.sum(dy * dy, axis=1) * np.sum(v * v, axis=1))  # |<dy, J v>| <= |dy| |J| |v|
    tol = 1e3 * (h * h + np.finfo(float).eps / h)
    assert np.all(np.abs(numeric - analytic) <= tol * scale), np.max(np.abs(numeric - analytic) / scale)


@pytest.mark.parametrize("spec", [
    "attention(heads=2)",
    "attention(heads=4, causal=true, logit_scale=mup)",
    "attention(heads=1, logit_scale=3)",
    PRE_LN,
    POST_LN,
    "2*(res(layernorm attention(heads=2, causal=true)) res(layernorm linear(fan_out=12) gelu linear(fan_out=8)))",
])
def test_the_backward_pass_matches_central_differences(spec: str) -> None:
    _directional_check(_sampler(spec, (5, 8)), draws=6, seed=11)


def test_a_wrong_gradient_fails_the_finite_difference_check() -> None:
    """The check can fail: the same network with the softmax's gradient left out (``dS = dP``) does."""
    sampler = _sampler("attention(heads=2)", (5, 8))
    passes = sampler.passes["1"]

    def broken_backward(state, dy):  # noqa: ANN001, ANN202
        q, k, v, p = state
        rows, t, d_model = len(dy), passes.tokens, passes.w_o.shape[0]
        d_o = passes._split((dy.reshape(rows * t, d_model) @ passes.w_o).reshape(rows, t, d_model))
        d_v = p.transpose(0, 1, 3, 2) @ d_o
        d_s = (d_o @ v.transpose(0, 1, 3, 2)) * passes.scale  # no softmax Jacobian
        d_q, d_k = d_s @ k, d_s.transpose(0, 1, 3, 2) @ q
        d_qkv = np.stack([passes._merge(d_q), passes._merge(d_k), passes._merge(d_v)], axis=2)
        return (d_qkv.reshape(rows * t, 3 * d_model) @ passes.w_qkv).reshape(rows, -1)

    passes.backward = broken_backward
    with pytest.raises(AssertionError):
        _directional_check(sampler, draws=6, seed=11)


# -- torch: two independent implementations ---------------------------------------------------------------------

def _torch_block(sampler: NetworkSampler, pre_ln: bool, causal: bool):  # noqa: ANN202
    """``x -> y``: the spec's two blocks built from torch modules holding normstats' weights (float64)."""
    nn = torch.nn
    passes = sampler.passes
    attn_passes = passes["1.2" if pre_ln else "1.1"]
    d = attn_passes.w_o.shape[0]
    mha = nn.MultiheadAttention(d, attn_passes.heads, bias=False, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.from_numpy(attn_passes.w_qkv))  # W_q, W_k, W_v stacked, as torch has them
        mha.out_proj.weight.copy_(torch.from_numpy(attn_passes.w_o))
    mlp_labels = ("2.2", "2.4") if pre_ln else ("3.1", "3.3")
    lin = []
    for label in mlp_labels:
        w = passes[label].weight
        layer = nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=torch.float64)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w))
        lin.append(layer)
    ln = nn.LayerNorm(d, eps=1e-5, elementwise_affine=False, dtype=torch.float64)
    t = sampler.net.input[0]
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1) if causal else None

    def attend(h):  # noqa: ANN001, ANN202
        return mha(h, h, h, need_weights=False, attn_mask=mask)[0]

    def mlp(h):  # noqa: ANN001, ANN202
        return lin[1](torch.nn.functional.gelu(lin[0](h)))

    def block(x):  # noqa: ANN001, ANN202
        if pre_ln:
            x = x + attend(ln(x))
            return x + mlp(ln(x))
        x = ln(x + attend(x))
        return ln(x + mlp(x))

    return block


@pytest.mark.parametrize("pre_ln, causal", [(True, False), (False, False), (True, True)])
def test_the_blocks_agree_with_torch_forward_and_backward(pre_ln: bool, causal: bool) -> None:
    flag = ", causal=true" if causal else ""
    spec = (f"res(layernorm attention(heads=2{flag})) res(layernorm linear(fan_out=12) gelu linear(fan_out=8))"
            if pre_ln else f"res(attention(heads=2{flag})) layernorm res(linear(fan_out=12) gelu linear(fan_out=8)) "
            "layernorm")
    t, d, draws = 5, 8, 7
    sampler = _sampler(spec, (t, d), seed=5)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((draws, t * d))
    dy = rng.standard_normal((draws, t * d))
    y, dx = sampler.ends(x, dy, np.empty((draws, 0)))

    xt = torch.tensor(x.reshape(draws, t, d), requires_grad=True)
    yt = _torch_block(sampler, pre_ln, causal)(xt)
    yt.backward(torch.from_numpy(dy.reshape(draws, t, d)))
    np.testing.assert_allclose(y, yt.detach().numpy().reshape(draws, -1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy().reshape(draws, -1), rtol=1e-11, atol=1e-12)


def _torch_prenorm_figures(inits: int, draws: int, t: int, d: int, seed: int) -> dict[str, np.ndarray]:
    """Per init, the pooled std of each layer's output (fp) and input gradient (bp) of ``PRE_LN`` at width d,
    torch drawing everything itself: weights with N(0, 1) entries scaled to unit-norm rows (the network's
    default ``linear`` and ``attention`` weights), inputs and upstream gradients N(0, I)."""
    nn = torch.nn
    fn = torch.nn.functional
    gen = torch.Generator().manual_seed(seed)

    def unit_rows(rows: int, cols: int):  # noqa: ANN202
        w = torch.randn(rows, cols, generator=gen, dtype=torch.float64)
        return w / w.norm(dim=1, keepdim=True)

    def node(h):  # noqa: ANN001, ANN202
        """A layer's input of its own, whose gradient is the one that layer passes back."""
        h = h * 1.0
        h.retain_grad()
        return h

    out: dict[str, list[float]] = {}
    for _ in range(inits):
        mha = nn.MultiheadAttention(d, 2, bias=False, batch_first=True, dtype=torch.float64)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([unit_rows(d, d) for _ in range(3)]))
            mha.out_proj.weight.copy_(unit_rows(d, d))
        w1, w2 = unit_rows(d, d), unit_rows(d, d)
        x = node(torch.randn(draws, t, d, generator=gen, dtype=torch.float64, requires_grad=True))
        b1 = node(x)
        a_in = node(fn.layer_norm(b1, (d,)))
        a_out = mha(a_in, a_in, a_in, need_weights=False)[0]
        r1 = node(x + a_out)
        b2 = node(r1)
        m_in = node(fn.layer_norm(b2, (d,)))
        h1 = node(m_in @ w1.T)
        g = node(fn.gelu(h1))
        h2 = g @ w2.T
        r2 = r1 + h2
        r2.backward(torch.randn(draws, t, d, generator=gen, dtype=torch.float64))
        # fp: the layer's output; bp: the gradient at its input
        fp = {"1": r1, "1.1": a_in, "1.2": a_out, "2": r2, "2.1": m_in, "2.2": h1, "2.3": g, "2.4": h2}
        bp = {"1": x, "1.1": b1, "1.2": a_in, "2": r1, "2.1": b2, "2.2": m_in, "2.3": h1, "2.4": g}
        for label, h in fp.items():
            out.setdefault(f"{label}|fp_std", []).append(float(h.detach().std(unbiased=False)))
        for label, h in bp.items():
            out.setdefault(f"{label}|bp_std", []).append(float(h.grad.std(unbiased=False)))
    return {k: np.array(v) for k, v in out.items()}


def test_a_prenorm_block_agrees_with_a_torch_loop_over_inits() -> None:
    """The same population from two implementations: over independent inits (the network's default weights),
    the mean of each layer's pooled fp and bp std, normstats against torch drawing its own weights and inputs;
    each se is the spread over inits (over sqrt(K)), and they agree within 4 combined se at every layer."""
    inits, draws, t, d = 40, 64, 4, 8
    result = normstats.network(PRE_LN, input=f"{t}x{d}",
                               inits=inits, samples=inits * draws, seed=7, workers=1)
    ours = {f"{row.index}|{name}": row.stats[name] for row in result.layers for name in ("fp_std", "bp_std")}
    theirs = _torch_prenorm_figures(inits, draws, t, d, seed=8)
    assert set(theirs) <= set(ours)
    for key, values in theirs.items():
        mine = ours[key]
        se = math.hypot(mine.se, values.std(ddof=1) / math.sqrt(inits))
        assert abs(mine.estimate - values.mean()) < 4 * se, (key, mine.estimate, values.mean(), se)
        assert se < 0.05 * values.mean()  # a test with teeth: the se is small against the figure


# -- zero-query attention: closed forms ----------------------------------------------------------------------------

@pytest.mark.parametrize("causal", [False, True])
def test_zero_query_attention_matches_its_closed_forms(causal: bool) -> None:
    """``q_init=zeros``: uniform attention, ``Y_t = W_o W_v mean_{s in keys(t)} X_s``; with a raw orthogonal
    init (``|W_o W_v|^2 = D`` for every draw of the weights), fp and bp std are ``sqrt(1 / T)`` (causal:
    ``sqrt(H_T / T)``, the attention layer's module docstring) and both means 0: exact for every init, so one
    network's se (over its draws) is the test's."""
    t, d = 6, 8
    flag = "true" if causal else "false"
    spec = f"attention(heads=2, q_init=zeros, init=orthogonal, normalize=none, causal={flag})"
    result = normstats.network(spec, input=f"{t}x{d}", samples=4000, seed=3, workers=1)
    (row,) = result.layers
    share = harmonic(t) / t if causal else 1.0 / t
    # harmonic(6) = 49/20 (1 + 1/2 + 1/3 + 1/4 + 1/5 + 1/6), by hand
    assert harmonic(6) == pytest.approx(49 / 20, rel=1e-15)
    for name, value in (("fp_mean", 0.0), ("bp_mean", 0.0), ("fp_std", math.sqrt(share)),
                        ("bp_std", math.sqrt(share))):
        stat = row.stats[name]
        assert abs(stat.estimate - value) < 4 * stat.se, (name, stat.estimate, value, stat.se)
        assert stat.se < 0.05 * math.sqrt(share)


def test_zero_query_attention_outputs_one_token_in_every_draw() -> None:
    """Uniform attention over all keys gives every token the same output: cosine 1 in every draw, exactly."""
    sampler = _sampler("attention(heads=2, q_init=zeros)", (5, 8))
    x = np.random.default_rng(0).standard_normal((9, 40))
    y, _ = sampler.ends(x, np.zeros((9, 40)), np.empty((9, 0)))
    tokens = y.reshape(9, 5, 8)
    np.testing.assert_allclose(tokens, np.broadcast_to(tokens[:, :1], tokens.shape), rtol=1e-13, atol=1e-14)


# -- bad input -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, shape, message", [
    ("attention(heads=3)", (4, 8), "position 1 ('attention'): parameter --heads of layer 'attention' must divide "
                                   "the features D = 8; got 3"),
    ("linear attention", (16,), "position 8 ('attention'): needs a token sequence input (TxD"),
    ("mean", (3, 8, 8), "position 1 ('mean'): needs a token sequence input"),
    ("linear token(index=2)", (32,), "position 8 ('token'): needs a token sequence input"),
    ("mean token", (4, 8), "position 6 ('token'): needs a token sequence input"),
    ("linear token(index=4)", (4, 8), "position 8 ('token'): index=4 is out of range for a sequence of 4 tokens"),
    ("token(index=-5)", (4, 8), "index=-5 is out of range"),
    ("attention(heads=4)", (2048, 8), "position 1 ('attention'): layer 'attention' holds H T^2 = 4 * 2048^2"),
    ("conv", (4, 8), "position 1 ('conv'): this layer has no rule for a token sequence"),
    ("8*(attention(heads=2))", (1024, 64), "holds 37,748,736 values (288 MiB: every layer's input and output, and "
                                           "the arrays attention holds over a batch of 1)"),
])
def test_bad_sequence_specs_name_the_position(spec: str, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(NormstatsError) as info:
        build_network(spec, shape)
    assert message in str(info.value)


def test_a_bad_sequence_spec_is_one_line_on_the_command_line() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "normstats.cli", "network", "res(attention(heads=3))",
                           "--input", "4x8"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("normstats: error: network spec, position 5 ('attention')")
    assert done.stderr.count("\n") == 1


def test_blocks_keep_the_sequence_shape() -> None:
    net = build_network("4*(res(layernorm attention(heads=4)) res(layernorm linear gelu linear))", (64, 256))
    blocks = [item for item in net.items if isinstance(item, Block)]
    assert len(blocks) == 8 and all(b.shape == (64, 256) for b in blocks)
    assert net.output == (64, 256)


def test_prenorm_stream_second_moment_is_one_plus_the_branches_over_inits() -> None:
    """Pre-LN: block k adds ``f_k(x_k)`` to the stream, and ``f_k`` is linear in its last weight (``W_o`` or the
    MLP's second linear), drawn independently of ``x_k`` and symmetric (``W -> -W`` equally likely), so over
    inits ``E[x_k . f_k] = 0`` and ``E|x_{k+1}|^2 = E|x_k|^2 + E|f_k|^2``: the stream's second moment is
    ``1 + sum of the branches' second moments``. Per init, the difference between the two sides (pooled over
    draws and values) has mean 0 over inits; checked within 4 se of its spread over 60 inits, and each side
    is far from the other's value without the branches (the test can fail)."""
    spec = "3*(res(layernorm attention(heads=2)) res(layernorm linear gelu linear))"
    net = build_network(spec, (4, 8))
    blocks = [item.label for item in net.items]
    gaps, totals = [], []
    rng = np.random.default_rng(12)
    for init in range(60):
        sampler = NetworkSampler(net, weight_rng(5, init + 1))
        x = rng.standard_normal((200, 32))
        out = sampler(x, np.zeros((200, 32)), np.empty((200, 0)))
        stream = np.mean(out[sampler.index[(blocks[-1], "fp")]] ** 2)
        branches = sum(np.mean(out[sampler.index[(label, "branch")]] ** 2) for label in blocks)
        gaps.append(stream - 1.0 - branches)
        totals.append(branches)
    gaps_a, totals_a = np.array(gaps), np.array(totals)
    se = gaps_a.std(ddof=1) / math.sqrt(len(gaps_a))
    assert abs(gaps_a.mean()) < 4 * se, (gaps_a.mean(), se)
    assert totals_a.mean() > 20 * se  # the branches add far more than the test's resolution
