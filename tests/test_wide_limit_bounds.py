"""The wide (mean-field) limit of networks at hostile sizes (issue 23, items 3 and 4): residual parameters
beyond double precision get one line; a thousand-layer chain gets its references (once a RecursionError); a
chain of dropouts keeps a mixture of one component per dropout, not 2^L; and a chain of elementwise layers
costs work linear in its depth (counted in evaluations of the activation, never timed)."""

from __future__ import annotations

import math

import pytest

from normstats.networks import wide_limit
from normstats.networks.build import build_network
from normstats.networks.shapes import parse_input
from normstats.registry import make_layer
from tests.test_cli import run, run_bad


@pytest.mark.parametrize("spec, words", [
    ("res(linear, alpha=1e200)", "alpha must be 0 or a number with |alpha| in [1e-100, 1e+100]; got '1e200'"),
    ("res(linear, alpha=-1e-200)", "|alpha| in [1e-100, 1e+100]; got '-1e-200'"),
    ("res(linear, beta=1e-320)", "beta must be auto or a number in [1e-100, 1e+100]; got '1e-320'"),
    ("res(linear, beta=1e300)", "beta must be auto or a number in [1e-100, 1e+100]; got '1e300'"),
])
def test_residual_parameters_beyond_double_precision_get_one_line(spec: str, words: str) -> None:
    assert words in run_bad("network", spec, "--input", "8", "-n", "4")


def test_residual_parameters_at_the_bounds_run() -> None:
    run("network", "res(linear, alpha=0)", "--input", "4", "-n", "4")
    out = wide_limit.mean_field(build_network("res(linear relu linear, alpha=1e-100, beta=1e100)", parse_input("4")))
    assert all(v is None or math.isfinite(v) for v in out.values())


def _states(spec: str, width: str) -> list:
    net = build_network(spec, parse_input(width))
    x0 = (wide_limit._Component(1.0, lambda z: z, (1.0, 0.0), (), ()),)
    return wide_limit._forward(net.items, x0, wide_limit._Walk())


def test_a_dropout_chain_keeps_one_component_per_dropout() -> None:
    """Every dropped value is the same constant with a 0 in its gradient chain: the dropped parts merge, so 16
    dropouts leave 17 components (kept throughout, or last dropped at dropout k), not 2^16."""
    states = _states("16*dropout", "4")
    assert [len(s) for s in states] == list(range(2, 18))
    assert sum(c.weight for c in states[-1]) == pytest.approx(1.0, rel=1e-14)
    out = run("network", "16*dropout", "--input", "4", "-n", "4", "--format", "json").stdout
    assert '"mean_field"' in out


def test_a_dropout_chain_matches_its_closed_form() -> None:
    """Dropout (sqrt convention, p = 1/2: kept values times 1/sqrt(p)) keeps E[x^2] = 1 at every layer and the
    mean 0; backward E[dx^2] = 1 as well. The merged mixture gives exactly these."""
    out = wide_limit.mean_field(build_network("16*dropout", parse_input("4")))
    for i in range(1, 17):
        assert out[f"{i}|fp_std"] == pytest.approx(1.0, rel=1e-13) and abs(out[f"{i}|fp_mean"]) < 1e-15
        assert out[f"{i}|bp_std"] == pytest.approx(1.0, rel=1e-13)


def test_a_thousand_layer_chain_gets_its_references() -> None:
    """relu composed with itself is relu: every fp reference is that of relu(z) (mean phi(0), std
    sqrt(1/2 - 1/(2 pi))), and the gradient through k relus is 1{z > 0}: bp std sqrt(1/2)."""
    out = wide_limit.mean_field(build_network("1000*relu", parse_input("8")))
    mean, std = 1 / math.sqrt(2 * math.pi), math.sqrt(0.5 - 1 / (2 * math.pi))
    for i in (1, 500, 1000):
        assert out[f"{i}|fp_mean"] == pytest.approx(mean, rel=1e-13)
        assert out[f"{i}|fp_std"] == pytest.approx(std, rel=1e-12)
        assert out[f"{i}|bp_std"] == pytest.approx(math.sqrt(0.5), rel=1e-13)


def _tanh_calls(depth: int, monkeypatch: pytest.MonkeyPatch) -> int:
    tanh = type(make_layer("tanh"))
    calls = [0]
    f, df = tanh.f, tanh.df

    def count_f(self, x):  # type: ignore[no-untyped-def]
        calls[0] += 1
        return f(self, x)

    def count_df(self, x):  # type: ignore[no-untyped-def]
        calls[0] += 1
        return df(self, x)

    monkeypatch.setattr(tanh, "f", count_f)
    monkeypatch.setattr(tanh, "df", count_df)
    out = wide_limit.mean_field(build_network(f"linear {depth}*tanh", parse_input("8")))
    monkeypatch.undo()
    assert all(v is not None for v in out.values())
    return calls[0]


def test_an_elementwise_chain_costs_work_linear_in_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluations of tanh and tanh' for the whole reference (fp and bp of every layer) of chains of 50, 100
    and 200 layers: doubling the depth doubles them (once each layer re-evaluated the whole composition below
    it, and each backward moment the whole chain above: cubic)."""
    n50, n100, n200 = (_tanh_calls(d, monkeypatch) for d in (50, 100, 200))
    assert n100 <= 2.05 * n50 and n200 <= 2.05 * n100, (n50, n100, n200)
    assert n200 - n100 == pytest.approx(2 * (n100 - n50), rel=0.02)  # a constant cost per layer
