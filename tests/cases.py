"""The one table of test parameters: for every registered layer, the parameter sets the tests run.

``tests/test_registry.py`` fails if a registered layer has no entry here, so a new layer cannot land without
test cases. Keep the cases cheap: every one is simulated in several tests.
"""

from __future__ import annotations

from typing import Any

LAYER_CASES: dict[str, list[dict[str, Any]]] = {
    "relu": [{}],
    "sigmoid": [{}],
    "identity": [{}],
    "leaky_relu": [{}, {"slope": 0.2}],
    "elu": [{}, {"alpha": 0.5}],
    "celu": [{"alpha": 2.0}],
    "selu": [{}],
    "gelu": [{}, {"approximate": "tanh"}],
    "silu": [{}, {"beta": 1.702}],
    "mish": [{}],
    "softplus": [{}, {"beta": 2.0, "threshold": 1.0}],
    "softsign": [{}],
    "tanh": [{}],
    "hardtanh": [{}, {"min_val": -0.5, "max_val": 2.0}],
    "relu6": [{}],
    "hardsigmoid": [{}],
    "hardswish": [{}],
    "log_sigmoid": [{}],
    "maxpool": [
        {"k": 1},
        {"k": 2},
        {"k": 3},
        {"k": 5},
        {"k": 3, "stride": 2},
        {"k": 3, "stride": 1},
        {"k": 2, "stride": 3},
        {"kh": 2, "kw": 3, "stride": 2},
        {"k": 3, "stride": 2, "padding": 1, "size": "7"},
        {"k": 2, "size": "5x6"},
    ],
    "avgpool": [
        {"k": 2},
        {"k": 3},
        {"k": 3, "stride": 2},
        {"k": 3, "stride": 1},
        {"k": 3, "stride": 2, "padding": 1, "size": "6x5"},
    ],
    "dropout": [{"p": 0.5}, {"p": 0.5, "convention": "inverted"}, {"p": 0.9, "convention": "inverted"}, {"p": 1.0}],
    "linear": [
        {"fan_in": 16, "fan_out": 8, "normalize": "fan-in"},
        {"fan_in": 16, "fan_out": 8, "normalize": "fan-out"},
        {"fan_in": 16, "fan_out": 8, "init": "kaiming", "normalize": "none"},
        {"fan_in": 8, "fan_out": 16, "init": "orthogonal", "normalize": "none"},
        {"fan_in": 8, "fan_out": 16, "init": "orthogonal", "normalize": "none", "gain": 1.5},
        {"fan_in": 16, "fan_out": 8, "init": "normal", "normalize": "none", "gain": 0.25},
        {"fan_in": 16, "fan_out": 8, "normalize": "ws"},
        {"fan_in": 5, "fan_out": 3, "init": "kaiming", "normalize": "ws", "gain": 1.7},
    ],
    "conv": [
        {"in_channels": 2, "out_channels": 3, "k": 3},
        {"in_channels": 2, "out_channels": 3, "k": 3, "stride": 2, "normalize": "fan-out"},
        {"in_channels": 2, "out_channels": 3, "k": 3, "size": "5", "init": "xavier", "normalize": "none"},
        {"in_channels": 3, "out_channels": 2, "k": 2, "stride": 2, "padding": 1, "size": "5x4"},
        {"in_channels": 2, "out_channels": 3, "k": 2, "init": "orthogonal", "normalize": "none"},
        {"in_channels": 2, "out_channels": 3, "k": 2, "init": "orthogonal", "normalize": "none", "gain": 0.7},
        {"in_channels": 2, "out_channels": 3, "k": 3, "normalize": "ws", "gain": 0.5},
    ],
    "batchnorm": [
        {"batch": 8, "eps": 0.0},
        {"batch": 4, "features": 2, "positions": 3},
        {"batch": 3, "features": 2, "eps": 0.5},
    ],
    "layernorm": [{"features": 16, "eps": 0.0}, {"features": 6, "eps": 0.3}],
    "rmsnorm": [{"features": 16, "eps": 0.0}, {"features": 2, "eps": 0.2}, {"features": 5}],
    "groupnorm": [{"groups": 2, "channels": 4, "positions": 3}, {"groups": 3, "channels": 3, "positions": 2, "eps": 0.4}],
    "softmax": [{"n": 4}, {"n": 5, "temperature": 2.0}, {"n": 3, "temperature": 0.5}],
    "attention": [
        {"tokens": 3, "features": 4, "heads": 2},
        {"tokens": 4, "features": 4, "heads": 1, "causal": "true", "logit_scale": "mup"},
        {"tokens": 3, "features": 6, "heads": 3, "logit_scale": "2.5", "normalize": "fan-out"},
        {"tokens": 3, "features": 4, "q_init": "zeros", "init": "orthogonal", "normalize": "none"},
        {"tokens": 4, "features": 4, "heads": 2, "causal": "true", "q_init": "zeros", "init": "orthogonal",
         "normalize": "none", "gain": 1.2},
    ],
    "mean": [{"tokens": 4, "features": 3}, {"tokens": 1, "features": 2}],
    "token": [{"tokens": 4, "features": 3, "index": 2}, {"tokens": 3, "features": 2, "index": -1}],
}


def all_cases() -> list[tuple[str, dict[str, Any]]]:
    return [(name, params) for name, cases in LAYER_CASES.items() for params in cases]


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    name, params = case
    return name + "".join(f"-{k}={v}" for k, v in params.items())
