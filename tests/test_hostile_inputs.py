"""Hostile inputs through the CLI (issue 23): each gets one line on stderr naming the bound it breaks, with exit
code 2, or a finite answer that says in words what float64 could not hold; never a traceback, a Python warning
(pytest turns every warning into an error) or a cut number."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

import normstats
from normstats.cli import main
from normstats.errors import NormstatsError
from normstats.exact.quadrature import chi2_expectation
from normstats.networks.build import build_network
from normstats.networks.propagate import NetworkSampler, weight_rng
from normstats.networks.spec import MAX_NESTING, MAX_REPEAT, LayerNode, Repeat, count_layers, format_spec
from normstats.output.files.schema import schema
from normstats.output.results import numbers as fmt
from normstats.theory.jacobian import MAX_DRAWS

VALIDATOR = jsonschema.Draft202012Validator(schema())


def _run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback (or a warning, an error here) is a failure, shown as such
    return result.exit_code, result.stdout, result.stderr.strip()


def _refused(args: list[str]) -> str:
    code, _, err = _run(args)
    assert code == 2, err
    assert "\n" not in err and err.startswith("normstats: error: "), err
    return err


# -- 1. the spec grammar's bounds ------------------------------------------------------------------------------
def test_a_repeat_count_of_5000_digits_is_refused_with_its_bound_and_position() -> None:
    err = _refused(["network", "1" * 5000 + "*relu", "--input", "8"])
    assert f"a repeat count must be an integer in [1, {MAX_REPEAT}]" in err
    assert "position 1" in err and "'1111" in err and "(5,000 characters)" in err
    assert len(err) < 300  # the count is quoted cut, with its length, not in full


@pytest.mark.parametrize(("spec", "position", "found"), [
    ("(" * 250 + "relu" + ")" * 250, 33, "'('"),
    ("res(" * 400 + "linear" + ")" * 400, 4 * 32 + 1, "'res'"),
    ("(" * 5000, 33, "'('"),
    ("(res(" * 20 + "linear" + "))" * 20, 5 * 16 + 1, "'('"),
], ids=["250 parentheses", "400 res(", "5000 open parentheses", "groups and blocks together"])
def test_nesting_beyond_the_bound_is_refused_at_the_level_that_breaks_it(spec: str, position: int, found: str) -> None:
    err = _refused(["network", spec, "--input", "8"])
    assert err == (f"normstats: error: network spec, position {position} ({found}): groups and residual blocks "
                   f"nest at most {MAX_NESTING} deep; this one opens level {MAX_NESTING + 1}")


def test_nesting_at_the_bound_builds_and_runs() -> None:
    spec = "res(" * MAX_NESTING + "linear" + ")" * MAX_NESTING
    code, out, err = _run(["network", spec, "--input", "4", "-n", "20", "--format", "json"])
    assert code == 0, err
    assert len(json.loads(out)["layers"]) == MAX_NESTING + 1  # the blocks and the linear layer


def test_format_spec_and_count_layers_do_not_recurse_on_a_tree_built_in_python() -> None:
    """A tree 5,000 deep (far past Python's recursion limit), which the parser would refuse, written and counted."""
    tree: tuple = (LayerNode("relu"),)
    for _ in range(5000):
        tree = (Repeat(2, tree) if len(tree) == 1 and isinstance(tree[0], LayerNode) else Repeat(1, tree),)
    text = format_spec(tree)
    assert text == "(" * 4999 + "2*relu" + ")" * 4999
    assert count_layers(tree) == 2


# -- 2. Jacobians beyond float64 -------------------------------------------------------------------------------
def test_a_jacobian_that_overflows_float64_is_said_in_words() -> None:
    """200 layers of weights of variance 10^6 / N: J's entries pass 1.8e308 near depth 103."""
    args = ["jacobian", "200*linear", "--input", "8", "--sigma-w2", "1e6", "-n", "4", "--depths", "50,200"]
    code, out, err = _run([*args, "--format", "json"])
    assert code == 0, err
    doc = json.loads(out)
    VALIDATOR.validate(doc)
    shallow, deep = doc["depths"]
    assert shallow["overflow_draws"] == 0 and shallow["statistics"]["mean"]["estimate"] > 1e290
    assert deep["overflow_draws"] == 4
    for name in ("mean", "variance", "largest"):
        stat = deep["statistics"][name]
        assert stat["estimate"] is None and stat["status"] == "infinite" and "overflow" in stat["reason"]
        assert stat["reference"] is None  # the limit 10^1200 is beyond float64: said, not compared with
    assert deep["statistics"]["log10_condition"] is None
    assert "J overflowed float64" in deep["range_note"] and "10^1200" in deep["range_note"]
    code, table, err = _run(args)
    assert code == 0, err
    assert "overflow (> 1.8e+308)" in table and "depth 200: J overflowed float64" in " ".join(table.split())


def test_a_jacobian_that_underflows_float64_is_said_in_words() -> None:
    """Weights of variance 10^-300 / N: J is 0 in float64 after a few layers (the limit's mean λ is 10^-60000)."""
    args = ["jacobian", "200*linear", "--input", "8", "--sigma-w2", "1e-300", "-n", "4"]
    code, out, err = _run([*args, "--format", "json"])
    assert code == 0, err
    doc = json.loads(out)
    VALIDATOR.validate(doc)
    (deep,) = doc["depths"]
    assert deep["underflow_draws"] == 4 and deep["overflow_draws"] == 0
    assert "below float64's smallest normal number" in deep["range_note"] and "10^-60000" in deep["range_note"]
    code, table, err = _run(args)
    assert code == 0, err
    assert table.count("underflow (< 2.23e-308)") == 3  # mean, var and max λ; var/mean² not divided by 0


# -- 3. the jacobian's own sample bound ------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["1", "200000", "1e12"])
def test_jacobian_samples_states_its_own_bound(value: str) -> None:
    err = _refused(["jacobian", "2*linear", "--input", "4", "-n", value])
    assert err == f"normstats: error: --samples must be a whole number in [2, {MAX_DRAWS:,}] (e.g. 1000, 1e4, 10k); " \
                  f"got '{value}'"


def test_jacobian_samples_bound_is_the_same_through_the_api() -> None:
    with pytest.raises(NormstatsError, match=re.escape(f"[2, {MAX_DRAWS:,}]")):
        normstats.jacobian("2*linear", input=4, samples=1)


# -- 4. no Python warning on stderr ----------------------------------------------------------------------------
def test_layernorm_over_four_million_features_has_its_reference_without_a_warning() -> None:
    code, out, err = _run(["simulate", "--layer", "layernorm", "--features", "4194304", "-n", "2", "--format",
                           "json"])
    assert code == 0, err
    (row,) = json.loads(out)["rows"]
    # 1 - 1e-5 (k + 1) / (k - 2) + ... for S ~ chi^2_k, k = 4194303: the reference equals mpmath's (below)
    assert row["fp_std"]["reference"] == pytest.approx(math.sqrt(0.99999000009284663), rel=1e-15)
    assert row["fp_std"]["reference_kind"] == "quadrature"


@pytest.mark.parametrize(("k", "expected"), [
    (1, 0.99441495286674352), (3, 0.99996031547250386), (10, 0.9999862502520764), (767, 0.99998996088536274),
    (4194303, 0.99999000009284663),
])
def test_chi2_expectation_agrees_with_mpmath(k: int, expected: float) -> None:
    """E[S / (S + n eps)], S ~ chi^2_k, n = k + 1, eps = 1e-5 (a layer norm's fp variance). The values, from mpmath
    at 40 digits on the density of S itself (another variable than the code's log S)::

        mp.mp.dps = 40; m = mp.mpf(k) / 2
        d = lambda s: mp.exp((m - 1) * mp.log(s) - s / 2 - m * mp.log(2) - mp.loggamma(m))
        mp.quad(lambda s: s / (s + (k + 1) * 1e-5) * d(s), points)
    with ``points`` [0, k/4, k/2, k, 2k, 4k, 8k + 60, inf] for k < 200, else k + j sqrt(2k), j = -8..8, between
    k -/+ 60 sqrt(2k) (clipped at 0)."""
    n = k + 1
    assert chi2_expectation(lambda s: s / (s + n * 1e-5), k) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("temperature", ["1e-10", "1e-300", "0.000999"])
def test_softmax_below_its_smallest_temperature_is_refused(temperature: str) -> None:
    """Below 1e-3 Monte Carlo misses the near-ties that carry softmax's bp variance and would print bp std
    ``0 ± 0`` where it is about sqrt((n-1) I_n / (3T)) (1.6e4 at T = 1e-10): refused, naming the bound."""
    for args in (["simulate", "--layer", "softmax", "--temperature", temperature, "-n", "1000"],
                 ["network", f"softmax(temperature={temperature})", "--input", "4", "-n", "10"]):
        err = _refused(args)
        assert "--temperature" in err and "[0.001, " in err and temperature in err, err


def test_softmax_at_its_smallest_temperature_agrees_with_the_small_t_asymptote() -> None:
    """At T = 1e-3, n = 2 the bp variance is (n - 1) I_2 / (3T) + O(1), I_2 = int phi^2 = 1/(2 sqrt(pi))
    (softmax's module docstring): the 1e6 draws see about 560 near-ties and agree within 4 se. The O(1) term
    (about -0.04 in the variance at n = 16, T = 0.01) is far below that se (about 1.2 in the variance)."""
    code, out, err = _run(["simulate", "--layer", "softmax", "--n", "2", "--temperature", "1e-3", "-q",
                           "--format", "json"])
    assert code == 0, err
    bp = json.loads(out)["rows"][0]["bp_std"]
    leading = math.sqrt(1 / (2 * math.sqrt(math.pi)) / (3 * 1e-3))  # 9.697
    assert bp["se"] > 0 and abs(bp["estimate"] - leading) < 4 * bp["se"], bp


def test_a_residual_block_of_huge_alpha_runs_without_a_warning() -> None:
    code, out, err = _run(["network", "res(linear, alpha=1e100)", "--input", "8", "-n", "100", "--format", "json"])
    assert code == 0, err
    assert "1e+100" in out or "1e100" in out.replace("+", "")


def test_propagation_beyond_float64_gives_inf_without_a_warning() -> None:
    """alpha = 1e100 (the largest taken) makes the fourth block's output and gradient overflow: inf, the answer,
    with no numpy warning."""
    net = build_network("4*res(linear, alpha=1e100)", (8,))
    sampler = NetworkSampler(net, weight_rng(0, 0))
    x = np.random.default_rng(0).standard_normal((4, 8))
    y, dx = sampler.ends(x, np.ones((4, 8)), np.zeros((4, 0)))
    assert not np.isfinite(y).all() and not np.isfinite(dx).all()


# -- 5. no number cut on a narrow terminal ---------------------------------------------------------------------
def _on_a_terminal(args: list[str], columns: int) -> str:
    """What the CLI prints on a terminal ``columns`` wide (a pseudo-terminal: rich takes its width from
    COLUMNS)."""
    master, slave = os.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "normstats.cli", *args, "-q"], stdout=slave,
                            stderr=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    text = b"".join(chunks).decode("utf-8").replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def _shown_numbers(doc: dict) -> list[str]:
    """Every number of the JSON rows as the table must show it whole: each estimate ± se, and each reference to 10
    significant digits."""
    out = []
    for row in doc["rows"]:
        for name in ("fp_mean", "fp_std", "bp_mean", "bp_std"):
            stat = row[name]
            if stat["estimate"] is not None:
                out.append(fmt.pm(stat["estimate"], stat["se"]))
            if stat["reference"] is not None:
                out.append("0" if stat["reference"] == 0 else f"{stat['reference']:.10g}")
    return out


@pytest.mark.parametrize(("args", "columns"), [
    (["simulate", "--layer", "maxpool", "--k", "3", "-n", "1000"], 40),
    (["simulate", "--layer", "maxpool", "--k", "3", "-n", "1000"], 60),
    (["table", "-n", "1000"], 40),
], ids=["maxpool at 40", "maxpool at 60", "table at 40"])
def test_a_narrow_terminal_shows_every_number_whole(args: list[str], columns: int) -> None:
    text = _on_a_terminal(args, columns)
    assert "…" not in text and "..." not in text
    assert max(len(line) for line in text.splitlines()) <= columns
    code, out, err = _run([*args, "--format", "json"])
    assert code == 0, err
    numbers = _shown_numbers(json.loads(out))
    assert "1.485013162" in numbers or args[0] == "table"  # maxpool k=3's fp mean reference, in full
    tokens = set(re.findall(r"\S+", text))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    for number in numbers:
        if " ± " in number:  # may wrap at its spaces, never inside a number
            est, se = number.split(" ± ")
            assert any(number in line for line in lines) or {est, se} <= tokens, number
        else:
            assert number in tokens, number


def test_a_narrow_terminal_shows_every_number_of_the_jacobian_whole() -> None:
    """At 40 columns the Jacobian's figures are stacked: every number of the 120-column table is there, whole."""
    args = ["jacobian", "4*(linear tanh)", "--input", "16", "-n", "20"]
    narrow, wide = _on_a_terminal(args, 40), _on_a_terminal(args, 120)
    assert "…" not in narrow and "…" not in wide
    assert max(len(line) for line in narrow.splitlines()) <= 40
    table = wide.split("λ: squared singular values")[0]
    numbers = re.findall(r"[-+]?\d+\.\d+(?:e[-+]?\d+)?", table)
    assert len(numbers) >= 10
    tokens = set(re.findall(r"\S+", narrow))
    assert all(n in tokens for n in numbers), [n for n in numbers if n not in tokens]


def test_a_relu_network_whose_values_overflow_has_j_overflowed_not_zero() -> None:
    """Past the forward overflow relu'(nan) = 0 would give a J of 0 (an 'underflow'); the draw is an overflow.
    Near depth 2 the values are in range, and an se of λ near 1e-300 is not lost to squares that underflow."""
    code, out, err = _run(["jacobian", "200*(linear relu)", "--input", "8", "--sigma-w2", "1e6", "-n", "4",
                           "--depths", "2,400", "--format", "json"])
    assert code == 0, err
    shallow, deep = json.loads(out)["depths"]
    # one draw may have a layer whose 8 units are all dead: from there its values are 0, and its J truly 0
    assert shallow["overflow_draws"] == 0 and deep["overflow_draws"] >= 3
    assert deep["overflow_draws"] + deep["underflow_draws"] == 4
    assert deep["prediction"] is None  # the limit's q passes float64: not computed (no 0 * inf in it)
    code, out, err = _run(["jacobian", "200*(linear relu)", "--input", "8", "--sigma-w2", "1e-300", "-n", "4",
                           "--depths", "2,400", "--format", "json"])
    assert code == 0, err
    shallow, deep = json.loads(out)["depths"]
    mean = shallow["statistics"]["mean"]
    assert 1e-302 < mean["estimate"] < 1e-299 and 0 < mean["se"] < mean["estimate"]
    assert deep["underflow_draws"] == 4


def test_a_narrow_terminal_shows_every_number_of_a_network_whole() -> None:
    """At 40 columns a network's tables are stacked: every number of the 120-column tables is there, whole."""
    args = ["network", "res(conv(out_channels=2,k=3,padding=1) relu) relu", "--input", "2x4x4", "-n", "200"]
    narrow, wide = _on_a_terminal(args, 40), _on_a_terminal(args, 120)
    assert "…" not in narrow and "…" not in wide
    assert max(len(line) for line in narrow.splitlines()) <= 40
    numbers = re.findall(r"[-+]?\d+\.\d+(?:e[-+]?\d+)?", wide.split("fp: the layer's output")[0])
    assert len(numbers) >= 40
    tokens = set(re.findall(r"\S+", narrow))
    assert all(n in tokens for n in numbers), [n for n in numbers if n not in tokens]
