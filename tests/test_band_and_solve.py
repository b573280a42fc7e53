"""Researchers' friction (issue 23, item 8): ``normstats network --band LO,HI`` (the closing lines' pass band)
and ``normstats solve``'s scale as the gain of He init on the next linear layer, checked through the CLI."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest

import normstats
from normstats.exact.selfnorm import KAIMING_NUMERATOR
from normstats.layers.weights import init_variance
from normstats.output.files import schema as export
from tests.test_cli import run, run_bad

#: A network whose bp std leaves the default band [0.5, 2] (it grows by 1.2112 per fp-NormProp ReLU: 1.2112^20 =
#: 46 at the input) while its fp std stays in it.
DEEP = ("network", "20*(linear relu)", "--input", "32", "--normprop", "fp", "-n", "300", "--inits", "1", "-q")


def test_the_default_band_is_half_to_two() -> None:
    out = run(*DEEP).stdout
    assert "fp std stays within [0.5, 2] at every layer" in out
    assert "bp std leaves [0.5, 2] first at layer" in out


def test_a_wider_band_moves_the_first_exit_and_is_named() -> None:
    out = run(*DEEP, "--band", "0.01,100").stdout
    assert "fp std stays within [0.01, 100] at every layer" in out
    assert "bp std stays within [0.01, 100] at every layer" in out  # 46 < 100
    narrow = run(*DEEP, "--band", "0.99,1.01").stdout
    assert "fp std leaves [0.99, 1.01] first at layer" in narrow


def test_json_and_markdown_follow_the_band() -> None:
    default = json.loads(run(*DEEP, "--format", "json").stdout)
    assert "band" not in default and default["first_exit"]["bp_std"] is not None
    doc = json.loads(run(*DEEP, "--format", "json", "--band", "0.01,100").stdout)
    jsonschema.Draft202012Validator(export.schema()).validate(doc)
    assert doc["band"] == [0.01, 100.0]
    assert doc["first_exit"] == {"fp_std": None, "bp_std": None}
    # the exit under the default band is the first layer from the output back whose bp std is above 2
    rows = [r for r in default["layers"] if "." not in r["index"]]
    first = next(r for r in reversed(rows) if not 0.5 <= r["bp_std"]["estimate"] <= 2)
    assert default["first_exit"]["bp_std"] == {"index": first["index"], "estimate": first["bp_std"]["estimate"]}
    md = run(*DEEP, "--format", "markdown", "--band", "0.25,4").stdout
    assert "fp std stays within [0.25, 4] at every layer" in md


@pytest.mark.parametrize("value", ["2,3", "0.5,1", "1,2", "0,2", "-1,2", "0.5", "0.5,2,3", "a,b", "0.5,inf",
                                   "nan,2"])
def test_a_bad_band_is_one_line_naming_the_option_the_rule_and_the_value(value: str) -> None:
    line = run_bad("network", "linear relu", "--input", "8", "-n", "10", "--band", value)
    assert "--band" in line and "0 < LO < 1 < HI" in line and repr(value) in line, line


def test_the_help_explains_the_band() -> None:
    text = " ".join(run("network", "--help").stdout.split())
    assert "--band LO,HI" in text and "[default: 0.5,2]" in text
    assert "the std range a layer's signal may reach before" in text


# -- solve: the scale as a kaiming gain ---------------------------------------------------------------------------


def test_the_kaiming_numerator_is_the_layers_convention() -> None:
    """solve's G = scale / sqrt(2) rests on He init being N(0, 2 / fan_in) in layers/weights.py."""
    for fan_in, fan_out in ((1, 1), (7, 3), (512, 64)):
        assert init_variance("kaiming", fan_in, fan_out) * fan_in == pytest.approx(KAIMING_NUMERATOR, rel=1e-15)


def test_solve_prints_the_scale_and_the_kaiming_gain() -> None:
    out = " ".join(run("solve", "--layer", "relu").stdout.split())
    assert "kaiming gain G = scale/√2" in out and "linear(init=kaiming,normalize=none,gain=G)" in out
    doc = json.loads(run("solve", "--layer", "gelu", "--format", "json").stdout)
    assert doc["kaiming_gain"] == pytest.approx(doc["scale"] / math.sqrt(2), rel=1e-15)
    assert normstats.solve("relu").kaiming_gain == pytest.approx(1.0, rel=1e-15)  # He init is ReLU's


@pytest.mark.parametrize(("layer", "free"), [("gelu", None), ("tanh", None), ("silu", None), ("elu", "alpha")])
def test_the_kaiming_gain_keeps_the_next_linear_layers_second_moment_at_one(layer: str, free: str | None) -> None:
    """``ACT linear(init=kaiming,normalize=none,gain=G)`` on N(0, I) inputs, G from solve: the linear layer's
    output has second moment 1 averaged over its weights. Eight networks, so the se holds the weights' spread;
    the second moment's se by the delta method, mean and std taken as fully correlated (the larger bound)."""
    sol = normstats.solve(layer, free=free)
    params = ",".join(f"{k}={v!r}" for k, v in sol.params.items() if free is not None and k == free)
    act = f"{layer}({params})" if params else layer
    spec = f"{act} linear(init=kaiming,normalize=none,gain={sol.kaiming_gain!r})"
    doc = json.loads(run("network", spec, "--input", "256", "--inits", "8", "-n", "1600", "--seed", "1",
                         "--format", "json", "-q").stdout)
    linear = next(r for r in doc["layers"] if r["layer"] == "linear")
    mean, std = linear["fp_mean"], linear["fp_std"]
    second = mean["estimate"] ** 2 + std["estimate"] ** 2
    se = 2 * abs(mean["estimate"]) * mean["se"] + 2 * std["estimate"] * std["se"]
    assert abs(second - 1.0) <= 4 * se, (second, se)
    # tight enough to tell the gain from leaving the activation unscaled:
    assert abs(1 / sol.scale ** 2 - 1.0) > 10 * se  # G = 1/sqrt(2) (weights of variance 1/fan_in) would fail
