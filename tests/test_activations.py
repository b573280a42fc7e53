"""Every activation's references against independent high-precision quadrature, and the closed forms that
only hold at particular parameters.

The hard-coded values (fp mean, fp std, bp std) were computed with mpmath at 30 digits from the PyTorch
definitions, independently of normstats' code, by this snippet (``cases`` holds each activation's ``f``,
derivative and kinks written out in mpmath; derivatives of the smooth non-elementary ones by ``mp.diff``):

    import mpmath as mp
    mp.mp.dps = 30
    phi = lambda x: mp.exp(-x * x / 2) / mp.sqrt(2 * mp.pi)
    def E(g, kinks=()):
        pts = [-mp.inf] + sorted(set([mp.mpf(0)] + [mp.mpf(k) for k in kinks])) + [mp.inf]
        return mp.quad(lambda x: g(x) * phi(x), pts)
    def stats(f, df, kinks=()):
        m = E(f, kinks)
        return m, mp.sqrt(E(lambda x: (f(x) - m) ** 2, kinks)), mp.sqrt(E(lambda x: df(x) ** 2, kinks))
    sig = lambda x: 1 / (1 + mp.exp(-x))
    sp = lambda x: mp.log(1 + mp.exp(x))
    A = mp.mpf('1.6732632423543772848170429916717'); L = mp.mpf('1.0507009873554804934193349852946')
    def elu(a, w=1, s=1):   # elu: w = 1; celu: w = a; selu: a = A, s = L
        return (lambda x: s * (x if x > 0 else a * (mp.exp(x / w) - 1)),
                lambda x: s * (1 if x > 0 else a / w * mp.exp(x / w)))
    def htanh(lo, hi): return (lambda x: min(max(x, lo), hi)), (lambda x: 1 if lo < x < hi else 0)
    def softplus(b, th):
        return ((lambda x: x if b * x > th else mp.log(1 + mp.exp(b * x)) / b),
                (lambda x: 1 if b * x > th else sig(b * x)))
    gtanh = lambda x: x / 2 * (1 + mp.tanh(mp.sqrt(2 / mp.pi) * (x + mp.mpf('0.044715') * x ** 3)))
    cases = {"mish": (lambda x: x * mp.tanh(sp(x)), lambda x: mp.diff(lambda t: t * mp.tanh(sp(t)), x), ()),
             "relu6": (*htanh(0, 6), (6,)), "selu": (*elu(A, 1, L), ()), ...}
    for name, (f, df, kinks) in cases.items():
        print(name, *(mp.nstr(v, 20) for v in stats(f, df, kinks)))
"""

from __future__ import annotations

import math

import pytest

import normstats
from normstats.exact.references import reference_moments
from normstats.layers.activations import ACTIVATIONS, SELU_ALPHA, SELU_SCALE
from tests.cases import LAYER_CASES, all_cases, case_id

TOL = 1e-9

#: case id -> (fp mean, fp std, bp std), mpmath at 30 digits (see the module docstring).
MPMATH = {
    "identity": ("0.0", "1.0", "1.0"),
    "relu": ("0.39894228040143267794", "0.5838193701035489489", "0.7071067811865475244"),
    "leaky_relu": ("0.39495285759741835116", "0.58656818893938783169", "0.70714213564176756671"),
    "leaky_relu-slope=0.2": ("0.31915382432114614235", "0.64663810313125454199", "0.72111025509279785862"),
    "elu": ("0.16052057226655604962", "0.78687900173542642317", "0.81737506765448296639"),
    "elu-alpha=0.5": ("0.27973142633399436378", "0.67674713408656563763", "0.73622381128688893528"),
    "celu-alpha=2.0": ("0.098179949842228817595", "0.86007161745187613282", "0.87268453169809499705"),
    "selu": ("-1.5340953594615378243e-32", "1.0", "1.035169064672915763"),
    "gelu": ("0.28209479177387814347", "0.58791496921268385666", "0.6751672871587360327"),
    "gelu-approximate=tanh": ("0.28203858807878871175", "0.58791831564225211946", "0.67514283374923754298"),
    "silu": ("0.20662096414190703726", "0.55953846784150678494", "0.61602138894102476529"),
    "silu-beta=1.702": ("0.28233055281278527394", "0.5850147569467011946", "0.67048430293266528307"),
    "mish": ("0.24040388837479144371", "0.62813068929177754834", "0.69215876673922853277"),
    "softplus": ("0.80605918334743978453", "0.52107053438143931556", "0.54164475060512952666"),
    "softplus-beta=2.0-threshold=1.0": ("0.51308373387785059445", "0.53152945758695702347", "0.64633423599010982569"),
    "softsign": ("0.0", "0.42780138062721057456", "0.47714918046894149486"),
    "tanh": ("0.0", "0.62792873034910671653", "0.68147113104537909103"),
    "hardtanh": ("2.3509887016445750159e-38", "0.71837215352609075113", "0.82625025999214420651"),
    "hardtanh-min_val=-0.5-max_val=2.0": ("0.18930585478447639204", "0.71902429634598603267", "0.81774832884319237625"),
    "relu6": ("0.39894228024507569834", "0.58381936856199791685", "0.70710678048892471002"),
    "hardsigmoid": ("0.5", "0.16625008588422622638", "0.16644153160400566613"),
    "hardswish": ("0.16621670065612330182", "0.55130697760948064579", "0.59877501382289261628"),
    "log_sigmoid": ("-0.80605918334743978453", "0.52107053438143931556", "0.54164475060512952666"),
    "sigmoid": ("0.5", "0.20827634493166275732", "0.21174569972066580742"),
}


def _case(case_name: str) -> tuple[str, dict]:
    (found,) = [c for c in all_cases() if case_id(c) == case_name]
    return found


def test_every_activation_is_registered_and_has_mpmath_values() -> None:
    assert set(ACTIVATIONS) <= set(normstats.list_layers())
    assert set(ACTIVATIONS) <= set(LAYER_CASES)
    covered = {_case(c)[0] for c in MPMATH}
    assert covered == set(ACTIVATIONS)


@pytest.mark.parametrize("case_name", sorted(MPMATH))
@pytest.mark.parametrize("method", ["auto", "quadrature"])
def test_references_match_mpmath(case_name: str, method: str) -> None:
    """Both the default reference (closed form first) and the generic quadrature agree with mpmath."""
    name, params = _case(case_name)
    layer = normstats.make_layer(name, **params)
    if method == "quadrature":
        refs = {k: v for k, v in layer.quadrature().items()}
    else:
        refs = {k: r.value for k, r in reference_moments(layer).items() if r is not None}
    expected = dict(zip(("fp_mean", "fp_std", "bp_std"), map(float, MPMATH[case_name])))
    for stat, value in expected.items():
        assert refs[stat] == pytest.approx(value, abs=TOL, rel=TOL), stat
    assert refs.get("bp_mean", 0.0) == 0.0


@pytest.mark.parametrize(
    "name", ["identity", "relu", "leaky_relu", "elu", "celu", "selu", "gelu", "hardtanh", "relu6",
             "hardsigmoid", "hardswish"],
)
def test_closed_forms_cover_all_four_statistics(name: str) -> None:
    assert set(normstats.make_layer(name).formula()) == {"fp_mean", "fp_std", "bp_mean", "bp_std"}


def test_selu_is_self_normalizing_and_elu_with_its_constants_is_selu() -> None:
    selu = normstats.make_layer("selu").formula()
    assert selu["fp_mean"] == pytest.approx(0.0, abs=1e-14)
    assert selu["fp_std"] == pytest.approx(1.0, abs=1e-14)
    elu = normstats.make_layer("elu", alpha=SELU_ALPHA).formula()
    assert elu["fp_std"] * SELU_SCALE == pytest.approx(selu["fp_std"], rel=1e-14)


def test_celu_with_alpha_1_is_elu() -> None:
    assert normstats.make_layer("celu", alpha=1.0).formula() == pytest.approx(normstats.make_layer("elu").formula())


def test_relu6_is_hardtanh_0_6_and_log_sigmoid_mirrors_softplus() -> None:
    a = normstats.make_layer("relu6").formula()
    b = normstats.make_layer("hardtanh", min_val=0, max_val=6).formula()
    assert a == pytest.approx(b, abs=1e-15)
    sp, ls = normstats.make_layer("softplus").quadrature(), normstats.make_layer("log_sigmoid").quadrature()
    assert ls["fp_mean"] == pytest.approx(-sp["fp_mean"], abs=TOL)
    assert ls["fp_std"] == pytest.approx(sp["fp_std"], abs=TOL)


def test_hardtanh_bounds_are_checked() -> None:
    with pytest.raises(normstats.ParameterError, match=r"--max-val of layer 'hardtanh' must be greater than"):
        normstats.make_layer("hardtanh", min_val=1, max_val=1)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_derivative_matches_a_central_difference_away_from_kinks(name: str) -> None:
    """A consistency check of each hand-written derivative (the references trust df)."""
    import numpy as np

    layer = normstats.make_layer(name)
    x = np.linspace(-5.3, 5.7, 47)
    x = x[np.min(np.abs(x[:, None] - np.array([*layer.breakpoints, 0.0, 99.0])[None, :]), axis=1) > 1e-3]
    h = 1e-6
    numeric = (layer.f(x + h) - layer.f(x - h)) / (2 * h)
    assert np.allclose(layer.df(x), numeric, rtol=1e-6, atol=1e-7)


def test_gelu_closed_form_constants() -> None:
    """Stein's lemma forms: E[X Phi(X)] = 1/(2 sqrt pi), E[(X Phi)^2] = 1/3 + 1/(2 pi sqrt 3)."""
    f = normstats.make_layer("gelu").formula()
    assert f["fp_mean"] == 1 / (2 * math.sqrt(math.pi))
    assert f["fp_std"] ** 2 + f["fp_mean"] ** 2 == pytest.approx(1 / 3 + 1 / (2 * math.pi * math.sqrt(3)), rel=1e-15)


def test_numpy_expit_is_scipys_to_a_few_ulp_and_never_overflows() -> None:
    """The numpy sigmoid that spares a run the import of scipy.special: within 3 ulp of scipy's expit wherever
    the result is a normal float, and finite (no overflow warning, which the suite turns into an error) far
    beyond."""
    import numpy as np
    from scipy.special import expit as scipy_expit

    from normstats.layers.activations import expit

    x = np.concatenate([np.linspace(-700.0, 700.0, 200_001), np.random.default_rng(0).standard_normal(10**5) * 8])
    ours, theirs = expit(x), scipy_expit(x)
    assert np.max(np.abs(ours - theirs) / np.spacing(theirs)) <= 3
    far = expit(np.array([-1e308, -800.0, 800.0, 1e308]))
    assert far.tolist() == [0.0, 0.0, 1.0, 1.0]
