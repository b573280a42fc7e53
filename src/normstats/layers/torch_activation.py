"""Any elementwise PyTorch activation as a layer: ``normstats simulate --torch torch.nn:GELU --arg
approximate=tanh`` or ``normstats.simulate(torch.nn.SiLU())``.

The function is PyTorch's own: ``f`` is the module called on a float64 tensor, ``f'`` is what autograd's backward
gives for it (at a kink, the value PyTorch's backward takes there). The references come the way they come for a
registered activation without closed forms: quadrature of ``f`` and ``f'^2`` against the Gaussian weight
(:meth:`~normstats.layers.base.Elementwise.quadrature`), split at the kinks, which are found numerically
(:func:`find_kinks`); the constants (NormProp shift and scales, NFNet gamma, gain) follow from those references
exactly as for a registered layer.

Before any run the callable is checked to be an elementwise activation: on a 1-D float64 tensor it must return
a float64 tensor of the same shape, the same output twice (no dropout, no RReLU in training mode), and each
output must equal the output for its input alone (a softmax or a cumulative sum is refused); ``f`` and ``f'``
must be finite on [-8, 8]. Anything else is one line naming what failed.

torch is optional (``pip install 'normstats[torch]'``) and imported only here, inside the functions that need it.
"""

from __future__ import annotations

import copy
import functools
import importlib
import math
import sys
from typing import Any, Callable

import numpy as np

from normstats.errors import NormstatsError
from normstats.layers.base import Elementwise
from normstats.layers.expr import CUTOFF, VALUE_BOUND

#: How to install torch, as the one line without it says.
INSTALL = "pip install 'normstats[torch]'"
#: Half-width of the interval scanned for kinks, and its grid step. A kink beyond |x| = 12, where the Gaussian
#: weight is below 1e-31 of its peak, moves no reference by a relative 1e-16; quadrature still integrates
#: across it (more slowly), so a kink missed here costs time, not accuracy.
SCAN = 12.0
SCAN_STEP = 1e-3
#: A grid point is a kink candidate where the second difference of ``f`` or ``f'`` exceeds this multiple of its
#: neighbours' two steps away (a smooth function's second differences change by a factor near 1 from one grid
#: step to the next; at a jump or a kink they stand out by about 1/step), plus a floor relative to the largest
#: value on the grid, below which a kink cannot move a reference by 1e-10.
KINK_RATIO = 16.0
KINK_FLOOR = 1e-9
#: Probe points for the elementwise check (97 of them, 0 among them).
_PROBE = np.linspace(-6.0, 6.0, 97)
#: How closely an output computed in a vector must equal the output for its input alone (vectorised and scalar
#: code paths of one float64 function differ by a few ulp).
_ELEMENTWISE_RTOL = 1e-12


def import_torch(what: str = "--torch") -> Any:
    """The torch module, or one line saying that ``what`` needs it and how to install it."""
    try:
        import torch
    except ImportError:
        raise NormstatsError(f"{what} needs PyTorch, which is not installed; install it with {INSTALL}") from None
    return torch


def is_torch_module(obj: Any) -> bool:
    """Whether ``obj`` is a ``torch.nn.Module`` (without importing torch: if torch is not loaded, it is not)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _call_text(source: str, args: dict[str, Any]) -> str:
    """``torch.nn:GELU(approximate='tanh')``: the source with its keyword arguments, as the output names it."""
    return f"{source}({', '.join(f'{k}={v!r}' for k, v in args.items())})" if args else source


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def resolve(source: str, args: dict[str, Any] | None = None) -> Callable[..., Any]:
    """The callable that ``MODULE:NAME`` names: a ``torch.nn.Module`` class is instantiated with ``args``
    (``torch.nn:GELU``), a module instance is taken as it is, and a function (``torch:tanh``,
    ``torch.nn.functional:gelu``) is applied with ``args`` as keywords."""
    args = dict(args or {})
    module_name, colon, attr = str(source).partition(":")
    if not colon or not module_name.strip() or not attr.strip():
        raise NormstatsError(f"--torch must be MODULE:NAME, e.g. torch.nn:GELU or torch.nn.functional:silu; "
                             f"got {source!r}")
    torch = import_torch()
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may raise anything while it is imported
        raise NormstatsError(f"--torch {source}: cannot import {module_name!r} ({_first_line(exc)})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            import difflib

            near = difflib.get_close_matches(part, [n for n in dir(obj) if not n.startswith("_")], n=3)
            hint = f"; close matches: {', '.join(near)}" if near else ""
            raise NormstatsError(f"--torch {source}: {getattr(obj, '__name__', module_name)!r} has no attribute "
                                 f"{part!r}{hint}")
        obj = getattr(obj, part)
    call = _call_text(source, args)
    if isinstance(obj, type):
        if not issubclass(obj, torch.nn.Module):
            raise NormstatsError(f"--torch {source}: {obj.__name__} is a class but not a torch.nn.Module")
        try:
            return obj(**args)
        except Exception as exc:  # the constructor's own complaint, quoted
            raise NormstatsError(f"--torch {call} raised {_first_line(exc)}") from None
    if isinstance(obj, torch.nn.Module):
        if args:
            raise NormstatsError(f"--torch {source} is a module instance: it takes no --arg; got {', '.join(args)}")
        return obj
    if callable(obj):
        return functools.partial(obj, **args) if args else obj
    raise NormstatsError(f"--torch {source} is a {type(obj).__name__}, not a module class or a function")


def _float64(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A float64 copy of a module with parameters or buffers (``PReLU``'s weight), frozen (no gradient for the
    weights) and left apart from the user's own; anything else as it is."""
    torch = import_torch()
    if isinstance(fn, torch.nn.Module) and any(True for _ in [*fn.parameters(), *fn.buffers()]):
        fn = copy.deepcopy(fn).double()
        for p in fn.parameters():
            p.requires_grad_(False)
    return fn


class TorchActivation(Elementwise):
    """An elementwise PyTorch callable (``normstats simulate --torch``); not in the registry."""

    name = "torch"  # type: ignore[misc]
    summary = "an elementwise PyTorch activation"

    def __init__(self, fn: Callable[..., Any], label: str) -> None:
        self._fn = _float64(fn)
        self.values = {"torch": label}
        self._check()
        self._kinks = find_kinks(self)

    @classmethod
    def from_source(cls, source: str, args: dict[str, Any] | None = None) -> TorchActivation:
        """``MODULE:NAME`` with keyword arguments (see :func:`resolve`)."""
        return cls(resolve(source, args), _call_text(source, dict(args or {})))

    @classmethod
    def from_module(cls, module: Any) -> TorchActivation:
        """A ``torch.nn.Module`` instance, named by its repr on one line (``GELU(approximate='tanh')``)."""
        return cls(module, " ".join(repr(module).split()))

    @property
    def breakpoints(self) -> tuple[float, ...]:  # type: ignore[override]
        return tuple(sorted({0.0, *self._kinks}))

    # -- evaluation ------------------------------------------------------------------------------------------
    def _input(self, x: Any) -> Any:
        """A float64 tensor holding a copy of ``x``, flattened: the engine's arrays are never handed to the module
        (an in-place module would overwrite them)."""
        torch = import_torch()
        return torch.from_numpy(np.array(x, dtype=np.float64, copy=True).reshape(-1))

    def _run(self, x: Any, dy: Any = None, grad: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``(f(x), f'(x) dy)`` in ``x``'s shape (``dy`` defaults to ones), the product from autograd's backward;
        without ``grad`` only ``f(x)``."""
        torch = import_torch()
        shape = np.shape(x)
        t = self._input(x)
        if not grad:
            with torch.no_grad():
                y = self._fn(t)
            return np.array(y.detach().numpy(), dtype=np.float64).reshape(shape), None
        with torch.enable_grad():
            t.requires_grad_(True)
            y = self._fn(t.clone())  # a clone: an in-place module may write over it, not over the leaf
            upstream = torch.ones_like(y) if dy is None else self._input(np.broadcast_to(dy, shape))
            if y.requires_grad:
                (dx,) = torch.autograd.grad(y, t, grad_outputs=upstream, allow_unused=True)
            else:
                dx = None
        value = np.array(y.detach().numpy(), dtype=np.float64).reshape(shape)
        deriv = np.zeros(shape) if dx is None else np.array(dx.numpy(), dtype=np.float64).reshape(shape)
        return value, deriv

    def f(self, x: np.ndarray) -> np.ndarray:
        return self._run(x, grad=False)[0]

    def df(self, x: np.ndarray) -> np.ndarray:
        return self._run(x)[1]  # type: ignore[return-value]

    def forward_backward(self, x, dy, u):  # type: ignore[no-untyped-def]
        return self._run(x, dy)

    # -- checks ----------------------------------------------------------------------------------------------
    def _refuse(self, reason: str) -> NormstatsError:
        return NormstatsError(f"--torch {self.torch}: {reason}")

    def _call(self, t: Any) -> Any:
        """The callable on ``t`` during the checks; a warning it gives (softmax's "implicit dimension") is left
        out, since the check's own verdict follows in one line."""
        import warnings

        torch = import_torch()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y = self._fn(t)
        except Exception as exc:  # whatever the user's callable raises on a plain float64 vector
            raise self._refuse(f"calling it on a 1-D float64 tensor raised {_first_line(exc)}; it must be an "
                               "elementwise activation") from None
        if not isinstance(y, torch.Tensor):
            raise self._refuse(f"it returned a {type(y).__name__}, not a tensor; it must be an elementwise "
                               "activation")
        if tuple(y.shape) != tuple(t.shape):
            raise self._refuse(f"it maps a tensor of shape {tuple(t.shape)} to one of shape {tuple(y.shape)}; an "
                               "elementwise activation keeps the shape")
        if y.dtype != torch.float64:
            raise self._refuse(f"it returns {y.dtype} for a float64 input; the references need float64")
        return y.detach().numpy().copy()

    def _check(self) -> None:
        """Refuse, in one line, a callable that is not a deterministic elementwise map of float64 tensors with
        finite values and derivatives on [-8, 8]."""
        torch = import_torch()
        probe = torch.from_numpy(_PROBE.copy())
        y = self._call(probe.clone())
        if not np.array_equal(y, self._call(probe.clone()), equal_nan=True):
            raise self._refuse("it gives different outputs for the same input (random, as dropout or RReLU in "
                               "training mode are); it must be a deterministic function (call .eval() first?)")
        alone = np.concatenate([self._call(probe[i : i + 1].clone()) for i in range(len(_PROBE))])
        same = np.isclose(alone, y, rtol=_ELEMENTWISE_RTOL, atol=1e-300, equal_nan=True)
        if not same.all():
            i = int(np.argmin(same))
            raise self._refuse(
                f"not elementwise: at x = {_PROBE[i]:g} it gives {y[i]:.6g} inside a vector of {len(_PROBE)} "
                f"inputs but {alone[i]:.6g} alone (each output must depend on its own input only)"
            )
        grid = np.linspace(-8.0, 8.0, 1601)
        try:
            value, deriv = self._run(grid)
        except Exception as exc:  # autograd's complaint about the callable's backward
            raise self._refuse(f"autograd cannot differentiate it ({_first_line(exc)})") from None
        for label, arr in (("value", value), ("derivative", deriv)):
            bad = ~np.isfinite(arr) | (np.abs(arr) > VALUE_BOUND)
            if bad.any():
                at = int(np.argmax(bad))
                raise self._refuse(f"its {label} at x = {grid[at]:g} is {arr[at]:.3g}; it must be finite and "
                                   f"within {VALUE_BOUND:g} in magnitude for every x in [-8, 8]")

    # -- references ------------------------------------------------------------------------------------------
    def quadrature(self) -> dict[str, float]:
        """As :meth:`Elementwise.quadrature`, cut at ``|x| = CUTOFF`` and checked for divergence like a formula's
        (:mod:`normstats.layers.expr`): an infinite or undefined moment comes out as such, never as a number."""
        from normstats.exact.quadrature import gaussian_expectation_checked, gaussian_mean_std_checked

        mean, std = gaussian_mean_std_checked(self.f, self.breakpoints, CUTOFF)
        bp_var = gaussian_expectation_checked(lambda t: self.df(t) ** 2, self.breakpoints, CUTOFF)
        return {"fp_mean": mean, "fp_std": std, "bp_std": math.sqrt(bp_var) if bp_var >= 0 else math.nan}


def _candidates(v: np.ndarray) -> np.ndarray:
    """Grid cells where the second difference of ``v`` stands out from its neighbours' (see :data:`KINK_RATIO`):
    index ``i`` flags the points ``i .. i + 2``."""
    with np.errstate(all="ignore"):
        t = np.abs(np.diff(v, 2))
        neighbours = np.maximum(np.roll(t, 2), np.roll(t, -2))
        finite = v[np.isfinite(v)]
        floor = KINK_FLOOR * (1.0 + (np.max(np.abs(finite)) if finite.size else 0.0))
        hit = np.isfinite(t) & (t > KINK_RATIO * neighbours + floor)
    return np.nonzero(hit)[0]


def _refine(layer: TorchActivation, a: float, b: float) -> float:
    """The kink inside ``[a, b]``, by bisection: the midpoint lies on the left piece when ``f`` and ``f'`` there
    are closer to their straight extrapolation from the left of ``a`` than to that from the right of ``b``. The
    extrapolation errors shrink with the interval's square, the kink's deviation with the interval itself, so the
    test stays decisive down to a few ulp; a jump (in ``f`` or ``f'``) is found as exactly as a kink."""
    for _ in range(80):
        w = b - a
        if w <= 4 * np.finfo(float).eps * (1.0 + abs(a)):
            break
        m = a + w / 2
        x = np.array([a - w, a, m, b, b + w])
        value, deriv = layer._run(x)
        dl = dr = 0.0
        for v in (value, deriv):
            scale = 1.0 + float(np.max(np.abs(v)))
            left = v[1] + (v[1] - v[0]) / 2  # the left line at m
            right = v[3] - (v[4] - v[3]) / 2  # the right line at m
            dl += abs(v[2] - left) / scale
            dr += abs(v[2] - right) / scale
        if not math.isfinite(dl + dr):
            break
        if dl <= dr:
            a = m
        else:
            b = m
    return a + (b - a) / 2


def find_kinks(layer: TorchActivation) -> tuple[float, ...]:
    """The points in ``[-SCAN, SCAN]`` where ``f`` or ``f'`` jumps or has a kink: candidates from the grid's
    second differences (:func:`_candidates`), neighbouring candidates merged into one bracket, each refined by
    :func:`_refine`. Points within 1e-12 of one another (or of 0, always a split point) count once."""
    grid = np.linspace(-SCAN, SCAN, int(round(2 * SCAN / SCAN_STEP)) + 1)
    value, deriv = layer._run(grid)
    cells = np.union1d(_candidates(value), _candidates(deriv))
    brackets: list[list[int]] = []
    for i in cells.tolist():
        if brackets and i <= brackets[-1][1] + 3:
            brackets[-1][1] = i
        else:
            brackets.append([i, i])
    found: list[float] = [0.0]
    for lo, hi in brackets:
        a, b = grid[max(lo - 1, 0)], grid[min(hi + 3, len(grid) - 1)]
        k = _refine(layer, float(a), float(b))
        if all(abs(k - p) > 1e-12 * (1.0 + abs(p)) for p in found):
            found.append(k)
    return tuple(sorted(found[1:]))
