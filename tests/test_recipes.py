"""The published residual-scaling recipes (``--recipe``): their constants against independent computations, the
spec they write for a small depth, the weights that spec draws, a statistical check, and every bad input."""

from __future__ import annotations

import json
import math

import mpmath
import numpy as np
import pytest
from click.testing import CliRunner

import normstats
from normstats.cli import main
from normstats.errors import NormstatsError
from normstats.networks.build import build_network
from normstats.networks.recipes import apply_recipe, find_recipe
from normstats.networks.spec import parse_spec
from normstats.published import recipes as published
from normstats.registry import make_layer

PRE_LN = "2*(res(layernorm attention(heads=4)) res(layernorm linear gelu linear))"
POST_LN = "2*(res(attention(heads=4)) layernorm res(linear gelu linear) layernorm)"
NO_LN = "2*(res(attention(heads=4)) res(linear gelu linear))"


@pytest.mark.parametrize("n", [1, 2, 12, 48, 1000])
def test_each_recipes_constants_against_an_independent_computation(n: int) -> None:
    """Each constant from its defining relation, in mpmath at 40 digits (not the module's own formula)."""
    mpmath.mp.dps = 40
    c = published.deepnorm(n)
    assert c["alpha"] ** 4 == pytest.approx(2 * n, rel=1e-14)  # DeepNet: alpha = (2N)^(1/4)
    assert c["beta"] ** -4 == pytest.approx(8 * n, rel=1e-14)  # beta = (8N)^(-1/4)
    g = published.gpt2(n)
    assert g["std"] == 0.02 and g["out_std"] ** 2 * 2 * n == pytest.approx(0.0004, rel=1e-14)  # nanoGPT
    omega = published.admin(n)["omega"]
    m = 2 * n + 1  # admin-torch: omega^2 = (n + 1) / ln(n + 1) - 1 with n = 2N residual layers
    assert omega == pytest.approx(float(mpmath.sqrt(mpmath.mpf(m) / mpmath.log(m) - 1)), rel=1e-14)
    assert published.tfixup(n)["scale"] == pytest.approx(float(mpmath.mpf("0.67") / mpmath.root(n, 4)), rel=1e-14)
    assert published.tfixup_decoder(n)["scale"] ** -4 == pytest.approx(9 * n, rel=1e-13)
    assert published.depth_mup(n)["branch"] ** 2 * 2 * n == pytest.approx(1.0, rel=1e-14)


def test_deepnorm_encoder_decoder_constants_match_torchscale() -> None:
    """DeepNet figure 2: encoder alpha = 0.81 (N^4 M)^(1/16), beta = 0.87 (N^4 M)^(-1/16); torchscale encoder.py
    divides the weights by (N^4 M)^(1/16) / 1.15 instead; decoder.py: alpha = (3M)^(1/4), weights divided by
    (12M)^(1/4). N = 6 encoder and M = 6 decoder blocks, in mpmath."""
    c = published.deepnorm_encoder_decoder(6, 6)
    root = mpmath.power(mpmath.mpf(6) ** 4 * 6, mpmath.mpf(1) / 16)
    assert c["encoder_alpha"] == pytest.approx(float(root * mpmath.mpf("0.81")), rel=1e-14)
    assert c["encoder_beta"] == pytest.approx(float(mpmath.mpf("0.87") / root), rel=1e-14)
    assert c["encoder_beta_torchscale"] == pytest.approx(float(1 / (root / mpmath.mpf("1.15"))), rel=1e-14)
    assert c["decoder_alpha"] ** 4 == pytest.approx(18, rel=1e-14)
    assert c["decoder_beta"] ** -4 == pytest.approx(72, rel=1e-14)


def test_the_rewritten_specs_for_two_blocks() -> None:
    """N = 2: every constant written into the spec, repeats kept."""
    r = repr
    gpt2 = apply_recipe("gpt2", parse_spec(PRE_LN + " layernorm"))
    assert gpt2.blocks == 2 and gpt2.spec == (
        "2*(res(layernorm attention(heads=4,init=normal,normalize=none,gain=0.02,out_gain=0.5)) "
        "res(layernorm linear(init=normal,normalize=none,gain=0.02) gelu linear(init=normal,normalize=none,gain=0.01)))"
        " layernorm")
    a, b = 4 ** 0.25, 16 ** -0.25  # (2N)^(1/4), (8N)^(-1/4)
    eps = r(1e-5 / a ** 2)
    assert apply_recipe("deepnorm", parse_spec(POST_LN)).spec == (
        f"2*(res(attention(heads=4,init=xavier,normalize=none,value_gain={r(b)},out_gain={r(b)}), alpha={r(1 / a)}) "
        f"layernorm(eps={eps}) res(linear(init=xavier,normalize=none,gain={r(b)}) gelu "
        f"linear(init=xavier,normalize=none,gain={r(b)}), alpha={r(1 / a)}) layernorm(eps={eps}))")
    assert apply_recipe("depth-mup", parse_spec(PRE_LN)).spec == (
        "2*(res(layernorm attention(heads=4), alpha=0.5) res(layernorm linear gelu linear, alpha=0.5))")
    s = 0.67 * 2 ** -0.25
    assert apply_recipe("tfixup", parse_spec(NO_LN)).spec == (
        f"2*(res(attention(heads=4,init=xavier,normalize=none,value_gain={r(s)},out_gain={r(s)})) "
        f"res(linear(init=xavier,normalize=none,gain={r(s)}) gelu linear(init=xavier,normalize=none,gain={r(s)})))")
    omega = math.sqrt(5 / math.log(5) - 1)
    admin = apply_recipe("admin", parse_spec("res(attention) layernorm(eps=0.001) res(linear relu linear) layernorm "
                                             "res(attention) layernorm res(linear relu linear) layernorm"))
    assert admin.blocks == 2 and f"layernorm(eps={r(0.001 / omega ** 2)})" in admin.spec
    assert admin.spec.count(f"alpha={r(1 / omega)}") == 4
    for applied in (gpt2, admin):  # the rewritten spec parses back to itself and builds
        assert build_network(applied.spec, (8, 16)).spec == applied.spec


def test_the_layer_norm_rescaling_is_deepnets_sum_exactly() -> None:
    """``LN_eps(a x + g) = LN_{eps/a^2}(x + g/a)``: the rewrite of DeepNorm and Admin, checked on numbers."""
    rng = np.random.default_rng(3)
    x, g, a = rng.standard_normal(64), rng.standard_normal(64), 3.3

    def ln(v: np.ndarray, eps: float) -> np.ndarray:
        return (v - v.mean()) / np.sqrt(v.var() + eps)

    np.testing.assert_allclose(ln(a * x + g, 1e-5), ln(x + g / a, 1e-5 / a ** 2), rtol=1e-12)
    assert not np.allclose(ln(a * x + g, 1e-1), ln(x + g / a, 1e-1), rtol=1e-6)  # eps matters, so it is rescaled


@pytest.mark.parametrize("recipe, spec, which, std", [
    ("gpt2", PRE_LN, 3, 0.02 / 2.0),  # W_o: 0.02 / sqrt(2N), N = 2
    ("gpt2", PRE_LN, 0, 0.02),  # W_q: 0.02
    ("deepnorm", POST_LN, 2, 16 ** -0.25 / math.sqrt(256)),  # W_v: Xavier 1/sqrt(D) times beta
    ("deepnorm", POST_LN, 1, 1 / math.sqrt(256)),  # W_k: Xavier, gain 1
])
def test_the_rewritten_attention_draws_the_recipes_weights(recipe: str, spec: str, which: int, std: float) -> None:
    """The attention of the rewritten spec (at D = 256) draws W with the recipe's std: the sample variance of its
    65,536 entries within 4 se of std^2 (se of a sample variance of Gaussians: std^2 sqrt(2/n))."""
    applied = apply_recipe(recipe, parse_spec(spec))
    node = next(n for n in _layers(applied.nodes) if n.name == "attention")
    params = {k: v for k, v in node.params if k != "heads"}
    layer = make_layer("attention", features=256, tokens=4, heads=4, **params)
    w = layer.weights(np.random.default_rng(1))[which]
    n = w.size
    assert abs(w.var() - std ** 2) < 4 * std ** 2 * math.sqrt(2 / n), (w.var(), std ** 2)


def _layers(nodes):
    for node in nodes:
        for attr in ("body", "branch"):
            if hasattr(node, attr):
                yield from _layers(getattr(node, attr))
                break
        else:
            yield node


def test_depth_mup_stream_variance_is_one_plus_the_branch_variances() -> None:
    """Pre-LN under depth-muP: the stream's second moment is ``1 +`` the sum of the branches' (alpha-scaled)
    second moments over inits (each branch is odd in its last weight). normstats' rows: ``fp_std^2 + fp_mean^2``
    of the last block against ``1 + alpha^2 sum of branch_var`` (the residual rows' branch variance), within 4 se
    (the se of the two sides combined as if independent; they are positively correlated, so this is on the wide
    side); the branches' sum is far from 0 (the test can fail)."""
    res = normstats.network(PRE_LN, input="4x16", recipe="depth-mup", samples=2400, inits=40, seed=2)
    assert res.recipe["name"] == "depth-mup" and res.recipe["constants"]["branch"] == 0.5
    rows = res.top_level()
    assert all(r.params["alpha"] == 0.5 for r in rows)
    last = rows[-1].stats
    stream = last["fp_std"].estimate ** 2 + last["fp_mean"].estimate ** 2
    alpha2 = 0.25  # branch_var is the branch's own variance, before alpha
    branches = sum(alpha2 * r.stats["branch_var"].estimate for r in rows)
    se = math.sqrt(sum((alpha2 * r.stats["branch_var"].se) ** 2 for r in rows) + (2 * last["fp_std"].estimate *
                                                                                   last["fp_std"].se) ** 2)
    assert abs(stream - 1 - branches) < 4 * se, (stream, 1 + branches, se)
    assert branches > 10 * se


def test_the_json_names_the_recipe() -> None:
    res = normstats.network(NO_LN, input="4x8", recipe="tfixup-decoder", samples=16, inits=2)
    doc = res.to_dict()
    assert doc["recipe"]["name"] == "tfixup-decoder" and doc["recipe"]["blocks"] == 2
    assert doc["recipe"]["constants"]["scale"] == pytest.approx(18 ** -0.25)
    assert "T-Fixup" in doc["recipe"]["source"] and doc["network"] == res.spec and "value_gain" in res.spec
    import jsonschema

    from normstats.output.files.schema import schema
    jsonschema.validate(doc, schema())
    assert "recipe" not in normstats.network(NO_LN, input="4x8", samples=16, inits=2).to_dict()


def test_find_recipe_knows_every_published_recipe() -> None:
    assert set(published.RECIPES) == {"gpt2", "deepnorm", "admin", "tfixup", "tfixup-decoder", "depth-mup"}
    assert all(find_recipe(name).source for name in published.RECIPES)
    with pytest.raises(NormstatsError, match="did you mean depth-mup"):
        find_recipe("depth_mup")


@pytest.mark.parametrize("args, message", [
    (["--recipe", "deepnrom"], "got 'deepnrom' (did you mean deepnorm?)"),
    (["--recipe", "gpt2"], "--recipe gpt2 expects pre-LN blocks"),  # a post-LN spec
    (["--recipe", "tfixup"], "at position 25: found 'layernorm'"),  # a layer norm where there is none
    (["--recipe", "deepnorm", "--normprop", "fp"], "takes --normprop none; got --normprop fp"),
    (["--recipe", "x" * 5000], "'... (5,000 characters)"),  # a long name is cut, its length said
    (["--recipe", "deepnorm", "--width", "8,16"], "--recipe takes one width; got --width 8,16"),  # not in a sweep
])
def test_bad_recipes_are_one_line(args: list[str], message: str) -> None:
    _bad([POST_LN.replace("2*", "", 1).strip("()"), "--input", "4x8", *args], message)


@pytest.mark.parametrize("spec, recipe, message", [
    ("res(layernorm attention) res(layernorm linear gelu linear, alpha=0.5)", "depth-mup",
     "at position 26 the block has alpha=0.5"),
    ("res(layernorm attention(init=xavier)) res(layernorm linear gelu linear)", "gpt2",
     "at position 15 'attention' gives init"),
    ("res(layernorm attention) res(layernorm linear gelu)", "gpt2", "position 26: found 'res(layernorm linear gelu)'"),
    ("res(attention) layernorm res(linear gelu linear)", "admin", "the end of the spec (block 1 is not complete)"),
    ("relu", "depth-mup", "position 1: found 'relu'"),
])
def test_specs_a_recipe_does_not_fit_name_the_position(spec: str, recipe: str, message: str) -> None:
    _bad([spec, "--input", "4x8", "--recipe", recipe], message)


def _bad(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["network", *args, "-n", "8"])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("normstats: error: "), result.stderr
    assert message in lines[0], lines[0]


def test_value_and_out_gain_scale_only_w_v_and_w_o() -> None:
    """Same seed, same draws: ``value_gain`` and ``out_gain`` multiply W_v and W_o and leave W_q, W_k alone."""
    plain = make_layer("attention", features=16, tokens=4, heads=2).weights(np.random.default_rng(7))
    scaled = make_layer("attention", features=16, tokens=4, heads=2, value_gain=0.3,
                        out_gain=2.5).weights(np.random.default_rng(7))
    for a, b, factor in zip(plain, scaled, (1.0, 1.0, 0.3, 2.5)):
        np.testing.assert_array_equal(a * factor, b)


def test_zero_query_attention_with_gains_matches_its_closed_form() -> None:
    """``q_init=zeros`` with a raw orthogonal init: fp and bp std ``value_gain out_gain sqrt(1/T)`` (uniform
    averaging of T tokens through ``W_o W_v``, ``|W_o W_v|^2 = (g_v g_o)^2 D``): the layer's formula, and its
    passes on 4,000 sequences, the fp second moment within 4 se of the reference's square (se over the draws)."""
    layer = make_layer("attention", q_init="zeros", init="orthogonal", normalize="none", value_gain=2.0,
                       out_gain=0.3, tokens=8, features=16)
    ref = 0.6 * math.sqrt(1 / 8)
    assert layer.formula()["fp_std"] == pytest.approx(ref, rel=1e-12)
    rng = np.random.default_rng(3)
    passes = layer.passes(rng)
    x, dy = rng.standard_normal((4000, 128)), rng.standard_normal((4000, 128))
    y, state = passes.forward(x, np.empty((4000, 0)))
    dx = passes.backward(state, dy)
    for out in (y, dx):
        per_draw = np.mean(out ** 2, axis=1)
        se = per_draw.std(ddof=1) / math.sqrt(len(per_draw))
        assert abs(per_draw.mean() - ref ** 2) < 4 * se
        assert abs(per_draw.mean() - 1 / 8) > 20 * se  # without the gains it would be 1/T: the test can fail


def test_the_command_line_title_shows_the_recipe_and_the_spec_run() -> None:
    result = CliRunner().invoke(main, ["network", PRE_LN, "--input", "4x8", "--recipe", "depth-mup", "-n", "16",
                                       "-q", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["recipe"]["constants"] == {"branch": 0.5} and "alpha=0.5" in doc["network"]
    result = CliRunner().invoke(main, ["network", PRE_LN, "--input", "4x8", "--recipe", "depth-mup", "-n", "16", "-q"])
    assert "recipe depth-mup (N=2: branch=0.5)" in " ".join(result.stdout.split())
