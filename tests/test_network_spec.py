"""Network specs: parsing round-trips, and every class of bad spec gets one line naming its position, through the
API and through the CLI (exit 2)."""

from __future__ import annotations

import pytest

from normstats.networks.build import build_network
from normstats.networks.spec import (
    LayerNode,
    Repeat,
    Residual,
    SpecError,
    format_spec,
    parse_spec,
)
from tests.test_cli import run_bad

SPECS = [
    "linear relu linear relu",
    "20*(linear relu)",
    "3*relu",
    "conv(out_channels=64,k=3,padding=1) relu maxpool(k=3,stride=2)",
    "linear(fan_out=256)",
    "res(linear relu linear, alpha=0.2, beta=auto)",
    "16*res(linear relu linear, alpha=0.2, beta=auto)",
    "2*res(res(relu linear, alpha=0.5) linear, beta=2)",
    "(linear relu) 2*(3*relu dropout(p=0.9))",
]


@pytest.mark.parametrize("text", SPECS)
def test_a_spec_round_trips_through_its_canonical_text(text: str) -> None:
    tree = parse_spec(text)
    canonical = format_spec(tree)
    assert parse_spec(canonical) == tree
    assert format_spec(parse_spec(canonical)) == canonical


def test_the_tree_is_what_the_spec_says() -> None:
    assert parse_spec("20*(linear relu) linear(fan_out=8)") == (
        Repeat(20, (LayerNode("linear"), LayerNode("relu"))),
        LayerNode("linear", (("fan_out", "8"),)),
    )
    (block,) = parse_spec("16*res(linear relu linear, alpha=0.2, beta=auto)")
    assert block.count == 16
    (res,) = block.body
    assert res == Residual((LayerNode("linear"), LayerNode("relu"), LayerNode("linear")), 0.2, "auto")
    assert parse_spec("res(relu)")[0] == Residual((LayerNode("relu"),), 1.0, 1.0)


def test_spacing_does_not_matter() -> None:
    assert parse_spec(" 2 * ( linear  relu ) ") == parse_spec("2*(linear relu)")
    assert parse_spec("linear( fan_out = 8 , init = kaiming )") == parse_spec("linear(fan_out=8,init=kaiming)")


BAD_SPECS = [
    # (spec, input, the message must contain)
    ("linaer relu", "16", "position 1 ('linaer'): unknown layer 'linaer'"),
    ("linear relu maxpol", "16", "did you mean maxpool"),
    ("linear(fan_ot=8)", "16", "position 1 ('linear'): layer 'linear' has no parameter 'fan_ot'"),
    ("linear(fan_out=0)", "16", "parameter --fan-out of layer 'linear' must be an integer in [1, 16384]; got '0'"),
    ("dropout(p=1.5)", "16", "position 1 ('dropout')"),
    ("20*(linear relu", "16", "unbalanced parentheses: the '(' at position 4 is never closed"),
    ("linear relu)", "16", "position 12 (')'): unbalanced parentheses"),
    ("linear(fan_out=)", "16", "expected a value for parameter 'fan_out'"),
    ("0*relu", "16", "a repeat count must be an integer in [1, 1000]"),
    ("maxpool(k=5)", "1x4x4", "position 1 ('maxpool')"),
    ("maxpool(k=2)", "16", "needs a map input (CxHxW); got 16"),
    ("res(linear(fan_out=8))", "16", "a residual branch must keep the shape; it maps 16 to 8"),
    ("linear(fan_in=3)", "16", "fan_in=3 does not fit the incoming 16"),
    ("res(linear, gamma=1)", "16", "a residual block has the parameters alpha and beta; got 'gamma'"),
    ("res(linear, beta=0)", "16", "beta must be auto or a number in [1e-100, 1e+100]; got '0'"),
    ("", "16", "network spec must name at least one layer"),
    ("1000*(linear(fan_out=4096))", "4096", "network spec: this network holds 16,777,216,000 weights"),
    ("600*relu", "32768", "network spec: one draw of this network holds 39,321,600 values"),
]


@pytest.mark.parametrize("spec, shape, message", BAD_SPECS, ids=[b[0] or "empty" for b in BAD_SPECS])
def test_a_bad_spec_gets_one_line_with_its_position_and_exit_2(spec: str, shape: str, message: str) -> None:
    line = run_bad("network", spec, "--input", shape, "-n", "10")
    assert message in line


def test_pooling_window_larger_than_the_map_names_the_map() -> None:
    with pytest.raises(SpecError, match=r"position 1 \('maxpool'\).*4x4"):
        build_network("maxpool(k=5)", (1, 4, 4))


def test_the_memory_bounds_say_how_much_the_network_would_need() -> None:
    with pytest.raises(SpecError, match=r"holds 39,321,600 values \(300 MiB.*the bound is 33,554,432 values \(256 MiB\)"):
        build_network("600*relu", (32768,))
    with pytest.raises(SpecError, match=r"holds 33,558,528 weights \(256 MiB.*the bound is 33,554,432 weights"):
        build_network("linear(fan_out=4096) linear(fan_out=4096) linear(fan_out=1)", (4096,))


@pytest.mark.parametrize("args, message", [
    (("linear", "--input", "0"), "--input must be N (a vector of N values), TxD (T tokens of D features) or CxHxW"),
    (("linear", "--input", "3x4x5x6"), "--input must be N"),
    (("linear", "--input", "16", "--normprop", "half"), "'half' is not one of"),
    (("linear", "--input", "16", "--width", "0"), "--width must be an integer in [1, 16384]; got 0"),
    (("linear", "--input", "16", "--inits", "0"), "--inits must be an integer in [1, 1000]; got 0"),
    (("linear", "--input", "16", "--inits", "2", "--target-se", "1e-3"), "--target-se stops one network's run"),
    (("linear", "--input", "16", "--plot", "out.jpg"), "--plot must name a .png file; got 'out.jpg'"),
    (("sigmoid", "--input", "16", "--inits", "3", "-n", "4"), "--samples must give every one of the 3 networks"),
])
def test_bad_network_options_get_one_line(args: tuple[str, ...], message: str) -> None:
    assert message in run_bad("network", *args)
