"""References against independent high-precision values, and every closed form against quadrature.

The hard-coded values were computed with mpmath at 30 digits, by this snippet:

    import mpmath as mp
    mp.mp.dps = 30
    phi = lambda x: mp.exp(-x * x / 2) / mp.sqrt(2 * mp.pi)
    E = lambda g: mp.quad(lambda x: g(x) * phi(x), [-mp.inf, 0, mp.inf])
    sig = lambda x: 1 / (1 + mp.exp(-x))
    mp.sqrt(E(lambda x: sig(x) ** 2) - mp.mpf(1) / 4)          # sigmoid fp std
    mp.sqrt(E(lambda x: (sig(x) * (1 - sig(x))) ** 2))          # sigmoid bp std
    relu = lambda x: x if x > 0 else 0
    m = E(relu); mp.sqrt(E(lambda x: (relu(x) - m) ** 2))       # relu fp mean, fp std
    for n in (1, 2, 3, 4, 9, 16, 25, 36, 100):                  # max of n normals
        f = lambda x: n * phi(x) * mp.ncdf(x) ** (n - 1)
        m1 = mp.quad(lambda x: x * f(x), [-mp.inf, 0, 2, mp.inf])
        sd = mp.sqrt(mp.quad(lambda x: (x - m1) ** 2 * f(x), [-mp.inf, 0, 2, mp.inf]))
"""

from __future__ import annotations

import math

import pytest

import normstats
from normstats.errors import NormstatsError
from normstats.exact.order_statistics import max_normal_moments
from normstats.exact.quadrature import gaussian_expectation
from normstats.exact.references import reference_moments
from tests.cases import all_cases, case_id

TOL = 1e-9

MAX_OF_N = {
    # n: (mean, std) of the largest of n iid N(0, 1), mpmath (see module docstring)
    1: (0.0, 1.0),
    2: (0.564189583547756286948079451561, 0.825645271176556384243530849484),
    3: (0.846284375321634430422119177341, 0.747975403203452281675025537612),
    4: (1.02937537300396413205698664698, 0.701224098897593336756713409324),
    9: (1.48501316220923700627821511814, 0.597790369910567682551180763973),
    16: (1.76599139305478796728147305937, 0.543148054410875891408667643649),
    25: (1.96531460975355658075760769021, 0.508439551477080649680462492347),
    36: (2.11812328675649153672500983194, 0.483989456338980401697089806476),
    100: (2.50759363644168437251799389208, 0.429423815811169687009236979824),
}


@pytest.mark.parametrize("n", sorted(MAX_OF_N))
def test_max_of_normals_matches_mpmath(n: int) -> None:
    mean, std = max_normal_moments(n)
    assert mean == pytest.approx(MAX_OF_N[n][0], abs=TOL)
    assert std == pytest.approx(MAX_OF_N[n][1], abs=TOL)


def test_max_of_two_and_three_normals_closed_forms() -> None:
    """A second, analytic check: E max(X1, X2) = 1/sqrt(pi), Var = 1 - 1/pi; E max of 3 = 3/(2 sqrt(pi))."""
    assert max_normal_moments(2)[0] == pytest.approx(1 / math.sqrt(math.pi), abs=TOL)
    assert max_normal_moments(2)[1] == pytest.approx(math.sqrt(1 - 1 / math.pi), abs=TOL)
    assert max_normal_moments(3)[0] == pytest.approx(3 / (2 * math.sqrt(math.pi)), abs=TOL)


def test_sigmoid_references_match_mpmath() -> None:
    refs = reference_moments(normstats.make_layer("sigmoid"))
    assert refs["fp_mean"].value == 0.5
    assert refs["fp_std"].value == pytest.approx(0.208276344931662757316437429667, abs=TOL)
    assert refs["bp_std"].value == pytest.approx(0.211745699720665807415581679222, abs=TOL)
    assert refs["fp_std"].kind == "quadrature"


def test_relu_references_match_mpmath() -> None:
    refs = reference_moments(normstats.make_layer("relu"))
    assert refs["fp_mean"].value == pytest.approx(0.398942280401432677939946059934, abs=TOL)
    assert refs["fp_std"].value == pytest.approx(0.583819370103548948898692631429, abs=TOL)
    assert refs["bp_std"].value == pytest.approx(0.707106781186547524400844362105, abs=TOL)


def test_gaussian_expectation_of_polynomials() -> None:
    """E X^2 = 1, E X^4 = 3, E |X| = sqrt(2/pi): exact values, not quadrature's."""
    assert gaussian_expectation(lambda t: t**2) == pytest.approx(1.0, abs=1e-12)
    assert gaussian_expectation(lambda t: t**4) == pytest.approx(3.0, abs=1e-12)
    assert gaussian_expectation(abs, (0.0,)) == pytest.approx(math.sqrt(2 / math.pi), abs=1e-12)


@pytest.mark.parametrize("case", all_cases(), ids=case_id)
def test_closed_forms_agree_with_quadrature(case: tuple[str, dict]) -> None:
    """Where a layer has both paths for a statistic, they agree to 1e-9."""
    name, params = case
    layer = normstats.make_layer(name, **params)
    formula, quadrature = layer.formula(), layer.quadrature()
    for stat in set(formula) & set(quadrature):
        assert formula[stat] == pytest.approx(quadrature[stat], abs=TOL), stat


def test_relu_has_both_paths() -> None:
    """ReLU is the layer whose closed forms are checked against the generic elementwise quadrature."""
    layer = normstats.make_layer("relu")
    assert set(layer.formula()) == {"fp_mean", "fp_std", "bp_mean", "bp_std"}
    assert {"fp_mean", "fp_std", "bp_std"} <= set(layer.quadrature())


def test_forced_method_uses_only_that_path() -> None:
    sigmoid = reference_moments(normstats.make_layer("sigmoid"), "formula")
    assert sigmoid["fp_mean"].kind == "closed_form" and sigmoid["fp_std"] is None
    relu = reference_moments(normstats.make_layer("relu"), "quadrature")
    assert relu["fp_mean"].kind == "quadrature" and relu["bp_mean"] is None


def test_forced_method_raises_when_the_layer_has_no_such_path() -> None:
    with pytest.raises(NormstatsError, match="layer 'avgpool' has no quadrature reference"):
        reference_moments(normstats.make_layer("avgpool"), "quadrature")


def test_unknown_method_is_refused() -> None:
    with pytest.raises(NormstatsError, match="--reference must be one of"):
        reference_moments(normstats.make_layer("relu"), "guess")


def test_fixed_rule_gives_the_fast_answer_and_hands_a_hidden_kink_to_adaptive_quadrature(monkeypatch) -> None:
    """The numpy Gauss-Legendre rule answers for a smooth integrand (sigmoid: scipy's quad is never called);
    a kink it was not told of (|x - 0.3|) makes its two panel widths disagree, and the adaptive quadrature
    takes over and still gets the exact value E|X - a| = 2 phi(a) + a (2 Phi(a) - 1)."""
    from normstats.exact import quadrature as reference

    calls = []
    adaptive = reference._adaptive
    monkeypatch.setattr(reference, "_adaptive", lambda h, edges: calls.append(edges) or adaptive(h, edges))
    refs = reference_moments(normstats.make_layer("sigmoid"), "quadrature")
    assert refs["fp_std"].value == pytest.approx(0.208276344931662757316437429667, abs=1e-14)
    assert calls == []
    a = 0.3
    exact = 2 * math.exp(-a * a / 2) / math.sqrt(2 * math.pi) + a * math.erf(a / math.sqrt(2))
    assert gaussian_expectation(lambda t: abs(t - a)) == pytest.approx(exact, abs=1e-12)
    assert len(calls) == 1
