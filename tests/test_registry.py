"""The registry and the invariants every registered layer must satisfy."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import normstats
from normstats.engine import blocks as engine
from normstats.errors import ParameterError, UnknownLayerError
from normstats.layers.base import Layer
from normstats.registry import register_layer
from tests.cases import LAYER_CASES, all_cases, case_id


def test_every_registered_layer_has_test_cases() -> None:
    assert set(normstats.list_layers()) == set(LAYER_CASES)


def test_core_layers_are_registered() -> None:
    assert {"linear", "relu", "sigmoid", "maxpool", "avgpool", "dropout"} <= set(normstats.list_layers())


def test_list_layers_pattern_and_natural_order() -> None:
    names = normstats.list_layers()
    assert names == sorted(names)
    assert normstats.list_layers("*pool") == ["avgpool", "maxpool"]


def test_unknown_layer_suggests_close_names() -> None:
    with pytest.raises(UnknownLayerError, match="did you mean maxpool"):
        normstats.get_layer("maxpoool")


def test_alias_resolves() -> None:
    assert normstats.get_layer("fc") is normstats.get_layer("linear")


def test_duplicate_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_layer("relu")
        class Again(Layer):
            pass


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("maxpool", {"k": 0}, r"--k of layer 'maxpool' must be an integer in \[1, 32\]; got 0"),
        ("maxpool", {"k": "three"}, r"must be an integer in \[1, 32\]; got 'three'"),
        ("maxpool", {"k": 2.5}, r"must be an integer"),
        ("dropout", {"p": 0}, r"--p of layer 'dropout' must be a number in \(0, 1\]; got 0"),
        ("dropout", {"p": "nan"}, r"must be a number in \(0, 1\]; got 'nan'"),
        ("dropout", {"convention": "half"}, r"must be one of: sqrt, inverted; got 'half'"),
        ("relu", {"k": 3}, r"layer 'relu' has no parameter --k; its parameters: none"),
        ("linear", {"fan_in": 16384, "fan_out": 2048}, r"within 16,777,216 weights .*; got 16384 \* 2048"),
        ("maxpool", {"p": 0.5}, r"has no parameter --p; its parameters: --k, --stride"),
    ],
)
def test_bad_parameters_name_the_parameter_range_and_value(name: str, params: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        normstats.make_layer(name, **params)


def test_parameters_accept_strings_from_the_command_line() -> None:
    layer = normstats.make_layer("linear", fan_in="1_024", fan_out="16")
    assert layer.values["fan_in"] == 1024 and layer.fan_out == 16


@pytest.mark.parametrize("case", all_cases(), ids=case_id)
def test_sampler_shapes_and_finiteness(case: tuple[str, dict]) -> None:
    name, params = case
    layer = normstats.make_layer(name, **params)
    rng = np.random.default_rng(0)
    draws = 7
    x = rng.standard_normal((draws, layer.in_dim))
    dy = rng.standard_normal((draws, layer.out_dim))
    u = rng.random((draws, layer.n_uniform))
    y, dx = layer.sampler(engine.setup_rng(0))(x, dy, u)
    assert y.shape == (draws, layer.fp_width)
    assert dx.shape == (draws, layer.bp_width)
    assert np.isfinite(y).all() and np.isfinite(dx).all()


@pytest.mark.parametrize("case", all_cases(), ids=case_id)
def test_backward_is_the_transpose_of_the_forward_jacobian(case: tuple[str, dict]) -> None:
    """<dy, J dx_dir> = <J^T dy, dx_dir>: checked with a central difference of the forward pass along a
    random direction, at a point away from kinks and ties (a different computation from the backward). The
    direction moves only the inputs whose gradients the sampler returns (``bp_columns``)."""
    name, params = case
    layer = normstats.make_layer(name, **params)
    rng = np.random.default_rng(1)
    sampler = layer.sampler(engine.setup_rng(0))
    x = rng.standard_normal((1, layer.in_dim))
    dy = rng.standard_normal((1, layer.out_dim))
    u = rng.random((1, layer.n_uniform))
    v = np.zeros((1, layer.in_dim))
    v[:, layer.bp_columns()] = rng.standard_normal((1, layer.bp_width))
    h = 1e-6
    jv = (sampler(x + h * v, dy, u)[0] - sampler(x - h * v, dy, u)[0]) / (2 * h)
    _, dx = sampler(x, dy, u)
    expected = float((dx * v[:, layer.bp_columns()]).sum())
    assert float((dy[:, : jv.shape[1]] * jv).sum()) == pytest.approx(expected, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("case", all_cases(), ids=case_id)
def test_layers_pickle(case: tuple[str, dict]) -> None:
    """Layers travel to worker processes."""
    name, params = case
    layer = normstats.make_layer(name, **params)
    assert pickle.loads(pickle.dumps(layer)) == layer


@pytest.mark.parametrize("case", all_cases(), ids=case_id)
def test_layers_listing_shows_every_reference_kind(case: tuple[str, dict]) -> None:
    infos = {i.name: i for i in normstats.layers()}
    info = infos[case[0]]
    assert set(info.reference_kinds) == {"fp_mean", "fp_std", "bp_mean", "bp_std"}
    assert [p.name for p in info.params] == [p.name for p in normstats.get_layer(case[0]).params]
