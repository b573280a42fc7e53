"""Conventions, published third-party constants and their audit, and self-normalizing solutions."""

from __future__ import annotations

import json
import math

import pytest

import normstats
from normstats.published import conventions
from normstats.published.constants import PUBLISHED_CONSTANTS
from tests.test_cli import run, run_bad

#: Klambauer et al. 2017 (as printed in PyTorch's SELU documentation).
SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717

NFNET_NAMES = {"identity", "celu", "elu", "gelu", "glu", "leaky_relu", "log_sigmoid", "log_softmax", "relu",
               "relu6", "selu", "sigmoid", "silu", "soft_sign", "softplus", "tanh"}
PYTORCH_GAINS = {"linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu"}


def test_conventions_of_relu() -> None:
    row = normstats.simulate("relu", samples=1000)
    c = conventions.constants(row)
    std = math.sqrt(0.5 - 1 / (2 * math.pi))
    assert c["gain"] == pytest.approx(math.sqrt(2), rel=1e-15)
    assert c["nfnet_gamma"] == pytest.approx(1 / std, rel=1e-15) == c["fp_scale"]
    assert c["fp_shift"] == pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-15)
    assert c["bp_scale"] == pytest.approx(math.sqrt(2), rel=1e-15)
    assert row.constants() == {k: c[k] for k in ("fp_shift", "fp_scale", "bp_scale")}


def test_constants_table_columns_follow_the_convention() -> None:
    def header(*extra: str) -> str:
        out = run("simulate", "-l", "tanh", "-n", "100", *extra).stdout
        return next(line for line in out.splitlines() if "params" in line)

    assert all(k in header() for k in ("fp shift", "fp scale", "bp scale", "NFNet γ", "gain"))
    assert "NFNet γ" not in header("--constants", "gain") and "gain" in header("--constants", "gain")
    assert "'bogus' is not one of" in run_bad("table", "--constants", "bogus")


def test_audit_lists_every_nfnet_gamma_and_pytorch_gain() -> None:
    entries = normstats.audit()
    assert {e.constant.name for e in entries if e.constant.convention == "nfnet_gamma"} == NFNET_NAMES
    assert {e.constant.name for e in entries if e.constant.convention == "gain"} == PYTORCH_GAINS
    assert all(e.constant.figure.source for e in entries)
    by = {(e.constant.convention, e.constant.label()): e for e in entries}
    # exact expressions that are right: relu and leaky_relu gains (He et al.)
    assert by["gain", "relu"].exceeds_precision is False
    assert by["gain", "leaky_relu(slope=0.01)"].exceeds_precision is False
    # heuristics: tanh 5/3 vs 1/sqrt(E tanh^2) = 1.5925..., selu 3/4 vs 1
    assert by["gain", "tanh"].reference == pytest.approx(1.5925374197228315, rel=1e-9)
    assert by["gain", "selu"].deviation == pytest.approx(-0.25, abs=1e-12)
    # NFNet gammas are Monte Carlo estimates printed to 16 decimals: about 3-4 correct digits
    relu = by["nfnet_gamma", "relu"]
    assert relu.reference == pytest.approx(1 / math.sqrt(0.5 - 1 / (2 * math.pi)), rel=1e-14)
    assert relu.exceeds_precision is True and 1e-4 < abs(relu.deviation) < 1e-3
    assert by["nfnet_gamma", "log_softmax"].reference is None


def test_audit_json() -> None:
    doc = json.loads(run("audit", "--format", "json").stdout)
    assert len(doc) == len(PUBLISHED_CONSTANTS)
    assert {"published", "reference", "relative_deviation", "exceeds_printed_precision", "source"} <= set(doc[0])
    assert "Published constants against exact references" in run("audit").stdout


def test_solve_elu_recovers_selu() -> None:
    sol = normstats.solve("elu", free="alpha")
    assert sol.scale == pytest.approx(SELU_LAMBDA, abs=1e-10)
    assert sol.params["alpha"] == pytest.approx(SELU_ALPHA, abs=1e-10)
    assert abs(sol.fp_mean) < 1e-12 and sol.fp_std == pytest.approx(1.0, abs=1e-12)


def test_solve_cli_json_shape() -> None:
    doc = json.loads(run("solve", "--layer", "elu", "--free", "alpha", "--format", "json").stdout)
    assert set(doc) == {"layer", "scale", "kaiming_gain", "params", "fp_mean", "fp_std"}
    assert doc["scale"] == pytest.approx(SELU_LAMBDA, abs=1e-10)
    assert doc["params"]["alpha"] == pytest.approx(SELU_ALPHA, abs=1e-10)


def test_solve_scale_only() -> None:
    relu = normstats.solve("relu")
    assert relu.scale == pytest.approx(math.sqrt(2), rel=1e-14)  # unit second moment: He's gain
    assert relu.fp_std**2 + relu.fp_mean**2 == pytest.approx(1.0, rel=1e-14)
    assert normstats.solve("relu", target="std").fp_std == pytest.approx(1.0, rel=1e-14)
    slope = normstats.solve("leaky_relu", free="slope")
    assert slope.params["slope"] == pytest.approx(1.0, abs=1e-12)  # only the identity has mean 0


def test_solve_bad_input() -> None:
    assert "--free must name a numeric parameter of layer 'relu'" in run_bad("solve", "-l", "relu", "--free", "alpha")
    assert "no value of --alpha" in run_bad("solve", "-l", "celu", "--free", "alpha")
    assert "cannot also be given a value" in run_bad("solve", "-l", "elu", "--free", "alpha", "--alpha", "2")
    assert "'x' is not one of" in run_bad("solve", "-l", "relu", "--target", "x")
