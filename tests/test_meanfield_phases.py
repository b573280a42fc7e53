"""The mean-field answers checked by what they claim (issue 23, item 1), through the CLI: every elementwise
activation's ``--critical`` (chi_1 = 1 at the returned point, ordered just below and chaotic or unbounded just
above; or no edge, exit 0, with its reason in words and in the JSON, the jump it names checked on both sides),
the phase at extreme sigma_w^2 against independent computations (30-digit mpmath and the large-q asymptotics),
valid input that once failed, and the fixed points of the q-map with their stability."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

import normstats
from normstats.layers.base import Elementwise
from normstats.output.files import schema
from normstats.registry import list_layers, make_layer
from normstats.theory.meanfield import MeanField
from normstats.theory.phase import phase_diagram
from tests.test_cli import run

ELEMENTWISE = [n for n in list_layers() if isinstance(make_layer(n), Elementwise)]
VALIDATOR = jsonschema.Draft202012Validator(schema.schema())


def _meanfield(*args: str) -> dict:
    return json.loads(run("meanfield", *args, "--depth", "1", "--format", "json").stdout)


def _at(name: str, w: float) -> dict:
    return _meanfield("--layer", name, "--sigma-w2", repr(w))["fixed_point"]


def test_every_elementwise_activation_is_checked() -> None:
    assert len(ELEMENTWISE) >= 18 and {"gelu", "silu", "tanh", "relu"} <= set(ELEMENTWISE)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_critical_claims_what_it_finds(name: str) -> None:
    """An edge, or (a valid question answered, exit 0) no edge with its reason, each checked by what it claims."""
    data = _meanfield("--layer", name, "--critical")
    VALIDATOR.validate(data)
    edge = data["edge_of_chaos"]
    assert data["inputs"]["critical"] and data["inputs"]["sigma_w2"] == edge["analysed_at"]["sigma_w2"]
    if edge["found"]:
        w = edge["sigma_w2"]
        assert edge["reason"] is None and edge["analysed_at"]["why"] == "the edge of chaos"
        assert abs(data["fixed_point"]["chi_1"] - 1.0) <= 1e-8, data["fixed_point"]
        below, above = _at(name, w * (1 - 1e-3)), _at(name, w * (1 + 1e-3))
        assert below["phase"] == "ordered" and below["chi_1"] < 1.0, below
        assert above["phase"] in ("chaotic", "unbounded") and above["chi_1"] > 1.0, above
        return
    assert edge["sigma_w2"] is None and edge["q_star"] is None and edge["reason"], edge
    _check_no_edge(name, data)


def _check_no_edge(name: str, data: dict) -> None:
    """No edge: the jump it names is one (the stable q* below, chi_1 < 1; above it chi_1 > 1, another q*), with
    the values it gives, and the fixed point is analysed at the jump; without a jump, chi_1 at the ends of the
    range is what the reason says and the point analysed is the end nearer 1, and a point of the critical line
    it names outside the range has chi_1 = 1."""
    edge = data["edge_of_chaos"]
    analysed = edge["analysed_at"]["sigma_w2"]
    if edge["jumps"]:
        (jump,) = edge["jumps"]
        w = jump["sigma_w2"]
        assert analysed == w and "the jump" in edge["analysed_at"]["why"] and f"{w:.10g}" in edge["reason"]
        below, above = _at(name, w * (1 - 1e-6)), _at(name, w * (1 + 1e-6))
        assert below["chi_1"] < 1.0 and below["stable"] and above["chi_1"] > 1.0 and above["stable"], (below, above)
        assert below["q_star"] != above["q_star"]
        assert (below["q_star"], above["q_star"]) == (jump["q_below"], jump["q_above"])
        assert below["chi_1"] == pytest.approx(jump["chi_below"], rel=1e-5)
        assert above["chi_1"] == pytest.approx(jump["chi_above"], rel=1e-5)
        return
    ends = [_at(name, w)["chi_1"] for w in data["edge_of_chaos"]["searched"]]
    side = ("is below 1 at both ends" if max(ends) < 1.0 else "is above 1 at both ends" if min(ends) > 1.0
            else "changes side of 1")
    assert side in edge["reason"] and "passes through 1 continuously nowhere" in edge["reason"], (ends, edge)
    nearer = min(zip(ends, edge["searched"]), key=lambda e: abs(math.log(e[0])))[1]
    assert analysed == nearer and "nearest 1" in edge["analysed_at"]["why"]
    point = re.search(r"nearest point: sigma_w2 = ([0-9.e+-]+)\)", edge["reason"])
    if point:  # chi_1 at the fixed point reached from q0 there (its c* would cost minutes of 2-D integrals)
        theory = MeanField(make_layer(name), float(point.group(1)), data["inputs"]["sigma_b2"])
        assert abs(theory.chi_1(theory.q_star(data["inputs"]["q0"])) - 1.0) < 1e-5


def test_no_edge_is_an_answer_in_words_and_json() -> None:
    """gelu and silu once returned a jump as the edge, with chi_1 = 1.07 there; then they exited 2 as if the input
    were bad. Now: exit 0, the table says there is no edge and why in words, the JSON says found false with the
    jump, and the fixed point is that of the jump, where q0 = 1 is an unstable fixed point."""
    for name, w in (("gelu", 2.351715614), ("silu", 2.810761124)):
        out = run("meanfield", "--layer", name, "--critical", "--depth", "2").stdout
        assert "no edge of chaos for σw² in [0.01, 100] at σb² = 0, q0 = 1" in out
        assert f"at sigma_w2 = {w} q* jumps from 0 to inf" in out and "leaps over 1" in out
        assert "σw² analysed" in out and "UNSTABLE" in out
        data = _meanfield("--layer", name, "--critical")
        VALIDATOR.validate(data)
        edge = data["edge_of_chaos"]
        assert edge["found"] is False and edge["sigma_w2"] is None and edge["jumps"][0]["sigma_w2"] == pytest.approx(w)
        assert data["fixed_point"]["stable"] is False and data["fixed_point"]["q_star"] == pytest.approx(1.0)
    sigmoid = _meanfield("--layer", "sigmoid", "--critical")
    VALIDATOR.validate(sigmoid)
    assert "is below 1 at both ends of the range" in sigmoid["edge_of_chaos"]["reason"]
    assert sigmoid["inputs"]["sigma_w2"] == 100.0 and sigmoid["edge_of_chaos"]["jumps"] == []
    with pytest.raises(jsonschema.ValidationError):  # no edge but an edge's sigma_w2: the schema refuses it
        VALIDATOR.validate({**sigmoid, "edge_of_chaos": {**sigmoid["edge_of_chaos"], "sigma_w2": 2.0}})


def test_no_edge_plot_draws_no_edge_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--plot with no edge: the phase diagram is drawn, with no edge-of-chaos marker, and the point analysed is
    labelled as the stand-in it is."""
    from normstats.output.figures import phase as phase_plot

    drawn, save = [], phase_plot.save
    monkeypatch.setattr(phase_plot, "save", lambda fig, path: (drawn.append(fig), save(fig, path)))
    result = normstats.meanfield("gelu", critical=True, depth=1)
    result = replace(result, phase_diagram=phase_diagram(make_layer("gelu"), result.sigma_w2, 0.0, grid=(3, 4)))
    phase_plot.plot_phase_diagram(result, str(tmp_path / "phase.png"))
    assert (tmp_path / "phase.png").read_bytes().startswith(b"\x89PNG")
    labels = [line.get_label() for line in drawn[0].axes[0].lines]
    assert "edge of chaos" not in labels
    assert any("no edge of chaos: at the jump of q*" in label for label in labels), labels


def _tanh_mp(w: float) -> tuple[float, float]:
    """q* and chi_1 of tanh without bias at sigma_w^2 = w by 30-digit mpmath, integrating over u = sqrt(q) z (so
    that the width-1 features of tanh are resolved at any q)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30
    w = mpmath.mpf(w)

    def expect(g, q):  # type: ignore[no-untyped-def]
        s = mpmath.sqrt(q)
        pts = [-mpmath.inf, -20 * s, -40, -4, 0, 4, 40, 20 * s, mpmath.inf]
        pts = sorted(set(pts), key=lambda t: float(t))
        return mpmath.quad(lambda u: g(u) * mpmath.npdf(u / s) / s, pts)

    qs = mpmath.findroot(lambda q: w * expect(lambda u: mpmath.tanh(u) ** 2, q) - q, w * 0.99)
    return float(qs), float(w * expect(lambda u: mpmath.sech(u) ** 4, qs))


@pytest.mark.parametrize("w", [300.0, 1e4, 1e8])
def test_tanh_deep_in_the_chaotic_phase(w: float) -> None:
    """tanh at sigma_w^2 = 300, 1e4 (once 'did not converge', exit 2) and 1e8 (once 'ordered', chi_1 = 3e-9): q*
    and chi_1 against mpmath, and chi_1 against the asymptotics q* -> inf: E[tanh'(sqrt(q) z)^2] =
    phi(0) / sqrt(q) int sech^4 (1 + O(1/q)) = (4/3) phi(0) / sqrt(q), so chi_1 ~ sigma_w^2 (4/3) / sqrt(2 pi q*)."""
    fp = _meanfield("--layer", "tanh", "--sigma-w2", repr(w))["fixed_point"]
    q_ref, chi_ref = _tanh_mp(w)
    assert fp["phase"] == "chaotic" and fp["stable"]
    assert fp["q_star"] == pytest.approx(q_ref, rel=1e-9) and fp["chi_1"] == pytest.approx(chi_ref, rel=1e-8)
    asymptotic = w * 4 / 3 / math.sqrt(2 * math.pi * fp["q_star"])
    assert fp["chi_1"] == pytest.approx(asymptotic, rel=2.0 / fp["q_star"])  # the O(1/q) correction
    assert abs(fp["c_star"]) < 1e-12  # odd, no bias: C(0) = 0 is the attracting fixed point of the C-map


def test_extreme_sigma_w2_against_the_limits() -> None:
    """sigma_w^2 = 1e-6: q* = 0 and chi_1 = sigma_w^2 f'(0)^2 (tanh: 1e-6; relu: its limit 0+ is sigma_w^2 / 2).
    relu at 1e8: q grows without bound and chi_1 = sigma_w^2 / 2 at every q."""
    for name, chi in (("tanh", 1e-6), ("relu", 5e-7)):
        fp = _at(name, 1e-6)
        assert fp["phase"] == "ordered" and fp["q_star"] == 0.0 and fp["chi_1"] == pytest.approx(chi, rel=1e-12)
    fp = _at("relu", 1e8)
    assert fp["phase"] == "unbounded" and fp["q_star"] == "inf" and fp["chi_1"] == pytest.approx(5e7, rel=1e-12)


def test_the_fixed_points_of_gelu_and_their_stability() -> None:
    """gelu, no bias: 0 is stable while sigma_w^2 / 4 < 1, an unstable fixed point separates its basin from
    the unbounded growth of relu-like tails (E[gelu^2] / q -> 1/2); at sigma_w^2 = E[gelu(z)^2]^-1 that
    unstable point is q0 = 1 itself."""
    fp = _at("gelu", 2.351715)
    assert fp["q_star"] == 0.0 and fp["phase"] == "ordered" and fp["stable"] is True
    points = fp["fixed_points"]
    assert [p["stable"] for p in points] == [True, False, True]
    assert points[0]["q"] == 0.0 and points[2]["q"] == "inf" and points[1]["q"] == pytest.approx(1.0, rel=1e-4)
    from normstats.exact.quadrature import gaussian_expectation

    gelu = make_layer("gelu")
    w = 1.0 / gaussian_expectation(lambda z: gelu.f(z) ** 2)  # q0 = 1 is a fixed point here
    at = _meanfield("--layer", "gelu", "--sigma-w2", repr(w))
    assert at["fixed_point"]["q_star"] == pytest.approx(1.0, rel=1e-9) and at["fixed_point"]["stable"] is False
    assert "unstable" in at["fixed_point"]["note"]
    table = run("meanfield", "--layer", "gelu", "--sigma-w2", repr(w), "--depth", "1").stdout
    assert "UNSTABLE" in table and "fixed points" in table


def test_the_phase_grid_at_huge_variances() -> None:
    """The --plot grid at sigma_w^2 up to 1.5e8 (tanh): chi_1 and xi_c against the accurate path (it once coloured
    the whole grid ordered, chi_1 = 0, missing tanh's spike at q* = 1e8)."""
    from normstats.theory.meanfield import MeanField
    from normstats.theory.phase import phase_diagram

    layer = make_layer("tanh")
    grid = phase_diagram(layer, 1e8, 0.0, grid=(3, 2))
    for j in (1, 2):
        w = float(grid.sigma_w2[j])
        fp = MeanField(layer, w, 0.0).fixed_point(1.0, None)
        assert grid.chi_1[0, j] == pytest.approx(fp.chi_1, rel=1e-6) and fp.chi_1 > 1000
        assert grid.xi_c[0, j] == pytest.approx(fp.xi_c, rel=1e-5)


@pytest.mark.parametrize("w", [1e100, 1e300])
def test_tanh_at_the_top_of_double_precision(w: float) -> None:
    """q* = sigma_w^2 (1 - E[sech^2]) = sigma_w^2 (1 - 2 / sqrt(2 pi q*) + ...) and chi_1 = sigma_w^2 (4/3) /
    sqrt(2 pi q*) (1 + O(1/q*)): at these q* the corrections are below double precision."""
    fp = _at("tanh", w)
    assert fp["phase"] == "chaotic" and fp["q_star"] == pytest.approx(w, rel=1e-14)
    assert fp["chi_1"] == pytest.approx(w * 4 / 3 / math.sqrt(2 * math.pi * fp["q_star"]), rel=1e-12)


def test_extreme_starts_and_slopes_get_answers() -> None:
    fp = _at("relu", 1e300)  # q grows without bound; chi_1 = sigma_w^2 / 2 at every q
    assert fp["phase"] == "unbounded" and fp["chi_1"] == pytest.approx(5e299, rel=1e-12)
    fp = _meanfield("--layer", "tanh", "--sigma-w2", "0.5", "--q0", "1e300")["fixed_point"]
    assert fp["phase"] == "ordered" and fp["q_star"] == 0.0 and fp["chi_1"] == pytest.approx(0.5, rel=1e-12)
