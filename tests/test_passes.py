"""Every layer's forward and backward pass run apart (``Layer.passes``, what a network runs) give exactly what
its combined sampler gives, for every registered case whose draw counts every output and every input (a finite
map or no map at all: a network never runs the periodic interior)."""

from __future__ import annotations

import numpy as np
import pytest

import normstats
from normstats.engine import blocks as engine
from normstats.layers.base import Passes
from tests.cases import all_cases, case_id


def _counts_everything(layer: normstats.Layer) -> bool:
    return layer.fp_width == layer.out_dim and layer.bp_width == layer.in_dim


CASES = [c for c in all_cases() if _counts_everything(normstats.make_layer(c[0], **c[1]))]


def test_the_cases_include_maps() -> None:
    names = {name for name, _ in CASES}
    assert {"maxpool", "avgpool", "conv", "linear", "relu", "dropout"} <= names


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_split_passes_equal_the_combined_sampler(case: tuple[str, dict]) -> None:
    name, params = case
    layer = normstats.make_layer(name, **params)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((29, layer.in_dim))
    dy = rng.standard_normal((29, layer.out_dim))
    u = rng.random((29, layer.n_uniform))
    y_ref, dx_ref = layer.sampler(engine.setup_rng(5))(x, dy, u)
    passes = layer.passes(engine.setup_rng(5))
    y, state = passes.forward(x, u)
    dx = passes.backward(state, dy)
    np.testing.assert_allclose(y, y_ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("maxpool", "avgpool")], ids=case_id)
def test_the_generic_split_runs_the_combined_sampler_twice(case: tuple[str, dict]) -> None:
    """Average pooling has no split of its own (max pooling keeps its argmax: tests/test_network_passes.py
    checks it against this generic one bit for bit): the generic one gives the same ``dx`` for a ``dy`` it never
    saw in the forward pass (it keeps x and u, not the output), and so does max pooling's."""
    name, params = case
    layer = normstats.make_layer(name, **params)
    passes = layer.passes(engine.setup_rng(0))
    assert (type(passes) is Passes) == (name == "avgpool")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, layer.in_dim))
    u = rng.random((5, layer.n_uniform))
    _, state = passes.forward(x, u)
    dy1, dy2 = rng.standard_normal((2, 5, layer.out_dim))
    np.testing.assert_allclose(passes.backward(state, dy1 + dy2),
                               passes.backward(state, dy1) + passes.backward(state, dy2), rtol=1e-12, atol=1e-14)
