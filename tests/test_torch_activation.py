"""Any elementwise PyTorch activation as a layer (``simulate --torch``, ``normstats.simulate(module)``): its
references, computed by quadrature of PyTorch's own float64 function and autograd derivative, equal the
registered activations' (themselves checked against mpmath in ``test_activations.py``); its Monte Carlo run
agrees with the registered layer's on the same draws; and whatever is not an elementwise activation is refused
in one line."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys

import numpy as np
import pytest

import normstats
from normstats.exact.references import reference_moments
from tests.test_cli import run, run_bad

torch = pytest.importorskip("torch")
from normstats.layers.torch_activation import TorchActivation  # noqa: E402  (needs torch to mean anything)

nn = torch.nn
STATS = ("fp_mean", "fp_std", "bp_mean", "bp_std")

#: (the PyTorch module, the registered layer, its parameters) that compute the same function.
SAME = [
    (lambda: nn.GELU(), "gelu", {}),
    (lambda: nn.GELU(approximate="tanh"), "gelu", {"approximate": "tanh"}),
    (lambda: nn.SiLU(), "silu", {}),
    (lambda: nn.Mish(), "mish", {}),
    (lambda: nn.Tanh(), "tanh", {}),
    (lambda: nn.Sigmoid(), "sigmoid", {}),
    (lambda: nn.ELU(alpha=0.5), "elu", {"alpha": 0.5}),
    (lambda: nn.CELU(alpha=0.5), "celu", {"alpha": 0.5}),
    (lambda: nn.SELU(), "selu", {}),
    (lambda: nn.ReLU(), "relu", {}),
    (lambda: nn.ReLU(inplace=True), "relu", {}),
    (lambda: nn.LeakyReLU(0.2), "leaky_relu", {"slope": 0.2}),
    (lambda: nn.Hardtanh(-0.5, 2.0), "hardtanh", {"min_val": -0.5, "max_val": 2.0}),
    (lambda: nn.ReLU6(), "relu6", {}),
    (lambda: nn.Hardswish(), "hardswish", {}),
    (lambda: nn.Softplus(beta=2.0), "softplus", {"beta": 2.0}),
    (lambda: nn.Softsign(), "softsign", {}),
    (lambda: nn.LogSigmoid(), "log_sigmoid", {}),
    (lambda: nn.Identity(), "identity", {}),
]


def _close(a: float, b: float, scale: float) -> bool:
    """Equal to 1e-10 relative (a mean of about 0, SELU's, to 1e-10 of the std)."""
    return abs(a - b) <= 1e-10 * max(abs(b), scale)


@pytest.mark.parametrize(("make", "name", "params"), SAME, ids=[f"{n}{p or ''}" for _, n, p in SAME])
def test_references_equal_the_registered_activations(make, name, params) -> None:  # type: ignore[no-untyped-def]
    ours = reference_moments(TorchActivation.from_module(make()))
    theirs = reference_moments(normstats.make_layer(name, **params))
    for stat in STATS:
        assert _close(ours[stat].value, theirs[stat].value, theirs["fp_std"].value), (stat, ours[stat], theirs[stat])
    assert ours["fp_std"].kind == "quadrature" and ours["bp_mean"].kind == "closed_form"


def test_hardsigmoid_backward_is_pytorchs_float32_sixth() -> None:
    """PyTorch's float64 hardsigmoid backward multiplies by 1/6 rounded to float32 (0.16666667163...), so its bp
    std is that constant times sqrt(P(|X| < 3)), not 1/6 times it: the layer reports PyTorch's own derivative."""
    sixth32 = float(np.float32(1.0 / 6.0))
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    nn.functional.hardsigmoid(x).backward()
    assert x.grad.item() == sixth32
    ours = reference_moments(TorchActivation.from_module(nn.Hardsigmoid()))
    theirs = reference_moments(normstats.make_layer("hardsigmoid"))
    assert ours["bp_std"].value == pytest.approx(sixth32 * math.sqrt(math.erf(3 / math.sqrt(2))), rel=1e-13)
    for stat in ("fp_mean", "fp_std"):
        assert _close(ours[stat].value, theirs[stat].value, theirs["fp_std"].value), stat


def test_kinks_are_found_where_the_function_breaks() -> None:
    assert TorchActivation.from_module(nn.Hardtanh(-0.5, 2.0)).breakpoints == pytest.approx((-0.5, 0.0, 2.0),
                                                                                              abs=1e-12)
    assert TorchActivation.from_module(nn.Hardshrink(0.3)).breakpoints == pytest.approx((-0.3, 0.0, 0.3), abs=1e-12)
    assert TorchActivation.from_module(nn.GELU()).breakpoints == (0.0,)  # smooth: no kink but the split at 0


@pytest.mark.parametrize("estimator", ["conditional", "sampled"])
def test_monte_carlo_agrees_with_the_registered_layer_on_the_same_draws(estimator: str) -> None:
    ours = normstats.simulate(nn.SiLU(), samples=50_000, seed=3, estimator=estimator)
    theirs = normstats.simulate("silu", samples=50_000, seed=3, estimator=estimator)
    assert ours.layer == "torch" and ours.params == {"torch": "SiLU()"}
    for stat in STATS:
        a, b = getattr(ours, stat), getattr(theirs, stat)
        if a.exact:  # exact in every draw (the conditional bp mean): the exact value, no z
            assert b.exact and a.estimate == a.reference == b.estimate and a.se == 0.0 and a.z is None, (stat, a)
            continue
        assert abs(a.z) < 4, (stat, a)
        # the same x and dy: the estimates differ only by the rounding of two float64 implementations
        assert abs(a.estimate - b.estimate) <= 1e-9 * max(a.se, 1e-300) or a.se == b.se == 0.0, (stat, a, b)


def test_the_users_module_is_left_as_it_was() -> None:
    module = nn.PReLU(init=0.2)
    layer = TorchActivation.from_module(module)
    assert module.weight.dtype == torch.float32 and module.weight.requires_grad
    slope = float(np.float32(0.2))  # the module's own float32 weight, as float64 sees it
    x = np.linspace(-2, 2, 9)
    np.testing.assert_array_equal(layer.f(x), np.where(x > 0, x, slope * x))
    np.testing.assert_array_equal(layer.df(x), np.where(x > 0, 1.0, slope))
    kept = x.copy()
    TorchActivation.from_module(nn.ReLU(inplace=True)).forward_backward(x, np.ones_like(x), np.empty((9, 0)))
    np.testing.assert_array_equal(x, kept)  # an in-place module never writes over the engine's draws


def test_a_layer_survives_pickling() -> None:  # worker processes and Dask receive the layer pickled
    layer = TorchActivation.from_source("torch.nn.functional:gelu", {"approximate": "tanh"})
    copy = pickle.loads(pickle.dumps(layer))
    x = np.linspace(-3, 3, 13)
    np.testing.assert_array_equal(copy.f(x), layer.f(x))
    np.testing.assert_array_equal(copy.df(x), layer.df(x))
    np.testing.assert_allclose(copy.df(x), normstats.make_layer("gelu", approximate="tanh").df(x), rtol=1e-13,
                               atol=1e-15)


def test_cli_torch_source_with_args_gives_the_registered_references() -> None:
    import json

    doc = json.loads(run("simulate", "--torch", "torch.nn:GELU", "--arg", "approximate=tanh", "-n", "2000", "-q",
                         "--format", "json").stdout)
    row = doc["rows"][0]
    assert row["layer"] == "torch" and row["params"] == {"torch": "torch.nn:GELU(approximate='tanh')"}
    theirs = reference_moments(normstats.make_layer("gelu", approximate="tanh"))
    for stat in STATS:
        assert _close(row[stat]["reference"], theirs[stat].value, theirs["fp_std"].value), stat
    out = run("simulate", "--torch", "torch:tanh", "-n", "2000", "-q").stdout
    assert "torch torch:tanh" in out and "NFNet" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--torch", "torch.nn:Softmax", "--arg", "dim=-1"], "not elementwise: at x = -6"),
        (["--torch", "torch.nn:Softmax", "--arg", "dim=0"], "each output must depend on its own input only"),
        (["--torch", "torch.nn:Softmax"], "not elementwise"),  # its implicit-dim warning is no second line
        (["--torch", "torch.nn:Dropout"], "gives different outputs for the same input"),
        (["--torch", "torch.nn:Linear", "--arg", "in_features=2", "--arg", "out_features=2"],
         "calling it on a 1-D float64 tensor raised RuntimeError"),
        (["--torch", "torch.nn:GELUU"], "'torch.nn' has no attribute 'GELUU'; close matches: GELU"),
        (["--torch", "torch.nn.GELU"], "--torch must be MODULE:NAME"),
        (["--torch", "no_such_module_xyz:f"], "cannot import 'no_such_module_xyz'"),
        (["--torch", "torch.nn:Parameter"], "is a class but not a torch.nn.Module"),
        (["--torch", "torch.nn:ELU", "--arg", "bogus=1"], "--torch torch.nn:ELU(bogus=1) raised TypeError"),
        (["--torch", "torch.nn:GELU", "--layer", "relu"], "give exactly one of --layer NAME, --expr FORMULA and --torch"),
        (["--torch", "torch.nn:GELU", "--expr", "x"], "give exactly one of --layer NAME, --expr FORMULA and --torch"),
        (["--torch", "torch.nn:GELU", "--slope", "2"], "--torch takes no layer parameters; got --slope 2"),
        (["--layer", "relu", "--arg", "k=3"], "--arg is for --torch"),
        (["--torch", "torch.nn:GELU", "--arg", "approximate"], "--arg must be KEY=VALUE"),
    ],
)
def test_what_is_not_an_elementwise_activation_is_refused_in_one_line(args: list[str], message: str) -> None:
    assert message in run_bad("simulate", *args, "-n", "100", "-q")


def test_a_module_is_taken_only_alone() -> None:
    with pytest.raises(normstats.NormstatsError, match="takes no layer parameters"):
        normstats.simulate(nn.SiLU(), beta=2.0, samples=100)
    with pytest.raises(normstats.NormstatsError, match="a layer name, a Layer or a torch.nn.Module"):
        normstats.simulate(math.tanh, samples=100)  # type: ignore[arg-type]


def test_without_torch_one_line_says_how_to_install_it() -> None:
    code = ("import sys; sys.modules['torch'] = None; from normstats.cli.main import main; "
            "main(['simulate', '--torch', 'torch.nn:GELU', '-n', '100'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == ("normstats: error: --torch needs PyTorch, which is not installed; install it "
                                   "with pip install 'normstats[torch]'")
    assert done.stdout == ""


def test_meanfield_takes_a_module_as_it_takes_a_registered_activation() -> None:
    ours = normstats.meanfield(nn.Tanh(), sigma_w2=1.5, depth=3).to_dict()["fixed_point"]
    theirs = normstats.meanfield("tanh", sigma_w2=1.5, depth=3).to_dict()["fixed_point"]
    for key in ("q_star", "chi_1", "chi_c", "xi_q"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-10), key
