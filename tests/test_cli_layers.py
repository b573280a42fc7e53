"""The command line on the layers networks run: bad geometry refused in one line with exit code 2, the new
parameters listed, and the issue's example commands reporting a reference for every statistic."""

from __future__ import annotations

import json

import pytest

import normstats
from normstats.cli import main
from tests.test_cli import run, run_bad


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--k", "3", "--size", "2"], "--size of layer 'maxpool' must be at least"),
        (["--k", "3", "--stride", "0"], "--stride of layer 'maxpool' must be an integer in [1, 32]; got '0'"),
        (["--k", "3", "--padding", "-1"], "--padding of layer 'maxpool' must be an integer in [0, 16]; got '-1'"),
        (["--k", "3", "--padding", "2"], "--padding of layer 'maxpool' must be an integer in [0, 1]"),
        (["--k", "3", "--size", "big"], "--size of layer 'maxpool' must be 'interior', H or HxW"),
    ],
)
def test_bad_geometry_exits_2_with_one_line(args: list[str], expected: str) -> None:
    assert expected in run_bad("simulate", "--layer", "maxpool", *args)


def test_bad_conv_geometry_exits_2_with_one_line() -> None:
    line = run_bad("simulate", "--layer", "conv", "--k", "5", "--padding", "1", "--size", "2x7")
    assert "--size of layer 'conv' must be at least the kernel minus twice the padding (3x3)" in line


def test_a_convolution_too_large_for_memory_is_refused() -> None:
    line = run_bad("simulate", "--layer", "conv", "--in-channels", "512", "--size", "1024")
    assert "--size of layer 'conv' must keep a draw within 4,194,304 values" in line and "got 1024x1024" in line


def test_list_shows_the_geometry_and_weight_parameters() -> None:
    data = {d["layer"]: d for d in json.loads(run("list", "--format", "json").stdout)}
    options = {name: [p["option"] for p in d["params"]] for name, d in data.items()}
    assert options["maxpool"] == ["--k", "--stride", "--padding", "--size", "--kh", "--kw"]
    assert {"--init", "--normalize", "--size", "--in-channels"} <= set(options["conv"])
    assert {"--init", "--normalize"} <= set(options["linear"])
    size = next(p for p in data["avgpool"]["params"] if p["name"] == "size")
    assert size["default"] == "interior" and "HxW" in size["allowed"]
    assert "interior" in data["maxpool"]["summary"] and "--size" in data["maxpool"]["summary"]


@pytest.mark.parametrize(
    "args",
    [
        ["--layer", "maxpool", "--k", "3", "--stride", "2"],
        ["--layer", "avgpool", "--k", "3", "--stride", "2"],
        ["--layer", "maxpool", "--k", "3", "--stride", "1"],
        ["--layer", "maxpool", "--k", "5"],
        ["--layer", "maxpool", "--k", "3", "--stride", "2", "--padding", "1", "--size", "7"],
    ],
    ids=" ".join,
)
def test_issue_examples_report_references_that_the_estimates_agree_with(args: list[str]) -> None:
    (row,) = json.loads(run("simulate", *args, "-n", "50000", "--seed", "3", "--format", "json").stdout)["rows"]
    for stat in ("fp_mean", "fp_std", "bp_mean", "bp_std"):
        assert row[stat]["reference"] is not None
        if row[stat].get("exact"):  # exact in every draw (the conditional bp mean): the reference, no z
            assert row[stat]["estimate"] == row[stat]["reference"] and row[stat]["z"] is None
            continue
        assert abs(row[stat]["z"]) < 4.5, (stat, row[stat])


@pytest.mark.parametrize("command", ["simulate", "table"])
def test_no_layer_parameter_is_shadowed_by_a_command_option(command: str) -> None:
    """A layer parameter spelled like an option of the command could never reach the layer (dropout's
    '--convention sqrt|inverted' once collided with the option that picks the constants to show, which is
    now '--constants')."""
    own = {opt for p in main.commands[command].params for opt in getattr(p, "opts", [])}
    for name in normstats.list_layers():
        shadowed = {p.option for p in normstats.get_layer(name).params} & own
        assert not shadowed, (name, shadowed)
