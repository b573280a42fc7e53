"""Custom activations from a formula over ``x``, e.g. ``x * tanh(log1p(exp(x)))``.

The formula is parsed with :mod:`ast` and checked against an explicit allow-list (numbers, the names ``x``,
``pi`` and ``e``, ``+ - * / **``, unary minus, comparisons, and calls of the functions in :data:`FUNCTIONS`);
anything else (attribute access, subscripts, strings, lambdas, keywords, unknown names) is refused with one
line naming what was found. Nothing is ever passed to ``eval`` or ``exec``: the checked tree is walked by a
small interpreter over *dual numbers* (value, derivative) of numpy arrays, so the derivative is exact
forward-mode automatic differentiation, not a finite difference.

Kinks come from ``abs``, ``maximum``, ``minimum``, ``where`` and comparisons: each records a *switch*
(``abs(u)``: ``u``; ``maximum(a, b)``: ``a - b``; ``a < b``: ``a - b``) whose sign changes are the kinks.
They are found by scanning ``[-SCAN, SCAN]`` on a fine grid and refining each sign change with ``brentq``;
the quadrature is split there (and at 0). A kink narrower than the grid step can be missed; quadrature
then still converges, only more slowly.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from normstats.errors import NormstatsError
from normstats.layers.base import Elementwise
from normstats.lazy import optimize, special

#: Longest formula accepted, and most syntax-tree nodes.
MAX_LENGTH = 1000
MAX_NODES = 400
#: Half-width of the interval scanned for kinks, and its grid step.
SCAN = 40.0
SCAN_STEP = 1e-3
#: Largest |f| and |f'| accepted on [-8, 8]: the engine sums fourth powers of up to 1e12 draws, and
#: (1e50)^4 * 1e12 = 1e212 stays far below the float maximum 1.8e308; a formula beyond it would overflow them.
VALUE_BOUND = 1e50
#: Beyond this |x| the Gaussian weight underflows (phi(38) ~ 1e-314), so quadrature treats the integrand as
#: 0 there; a formula that overflows to inf or nan that far out does not spoil the integral.
CUTOFF = 38.0


@dataclass(frozen=True)
class Dual:
    """A value and its derivative with respect to x."""

    v: Any
    d: Any


def _sqrt_deriv(v: Any) -> Any:
    return 0.5 / np.sqrt(v)


#: name -> (value function, derivative of the value function) for one-argument functions.
_UNARY: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "exp": (np.exp, np.exp),
    "expm1": (np.expm1, np.exp),
    "log": (np.log, lambda v: 1.0 / v),
    "log1p": (np.log1p, lambda v: 1.0 / (1.0 + v)),
    "log2": (np.log2, lambda v: 1.0 / (v * math.log(2.0))),
    "log10": (np.log10, lambda v: 1.0 / (v * math.log(10.0))),
    "sqrt": (np.sqrt, _sqrt_deriv),
    "square": (np.square, lambda v: 2.0 * v),
    "sin": (np.sin, np.cos),
    "cos": (np.cos, lambda v: -np.sin(v)),
    "tan": (np.tan, lambda v: 1.0 / np.cos(v) ** 2),
    "arctan": (np.arctan, lambda v: 1.0 / (1.0 + v * v)),
    "sinh": (np.sinh, np.cosh),
    "cosh": (np.cosh, np.sinh),
    "tanh": (np.tanh, lambda v: 1.0 - np.tanh(v) ** 2),
    "arcsinh": (np.arcsinh, lambda v: 1.0 / np.sqrt(v * v + 1.0)),
    "erf": (special.erf, lambda v: 2.0 / math.sqrt(math.pi) * np.exp(-v * v)),
    "erfc": (special.erfc, lambda v: -2.0 / math.sqrt(math.pi) * np.exp(-v * v)),
    "ndtr": (special.ndtr, lambda v: np.exp(-0.5 * v * v) / math.sqrt(2.0 * math.pi)),
    "log_ndtr": (special.log_ndtr, lambda v: np.exp(-0.5 * v * v - special.log_ndtr(v)) / math.sqrt(2 * math.pi)),
    "expit": (special.expit, lambda v: special.expit(v) * special.expit(-v)),
    "sigmoid": (special.expit, lambda v: special.expit(v) * special.expit(-v)),
    "softplus": (lambda v: np.logaddexp(0.0, v), special.expit),
    "log_sigmoid": (lambda v: -np.logaddexp(0.0, -v), lambda v: special.expit(-v)),
}
#: Functions with kinks or more than one argument, and their arity.
_SPECIAL = {"abs": 1, "maximum": 2, "minimum": 2, "where": 3}
#: Every function a formula may call.
FUNCTIONS: tuple[str, ...] = tuple(sorted([*_UNARY, *_SPECIAL]))
NAMES = {"pi": math.pi, "e": math.e}

_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)
_CMPOPS = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_OP_TEXT = {ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.FloorDiv: "//", ast.Mod: "%",
            ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>", ast.Eq: "==", ast.NotEq: "!=",
            ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.Not: "not",
            ast.Invert: "~"}


#: A refused syntax element in words (not Python's node names), with its verb, and what to write instead.
_CONSTRUCTS: dict[type, tuple[str, str]] = {
    ast.IfExp: ("'a if condition else b' is", "write where(condition, a, b), e.g. where(x > 0, x, 0)"),
    ast.BoolOp: ("'and' and 'or' are",
                 "combine conditions with where(...), or multiply comparisons: (x > 0) * (x < 1)"),
    ast.Tuple: ("tuples (commas outside a call) are", ""),
    ast.List: ("lists are", ""),
    ast.Set: ("sets are", ""),
    ast.Dict: ("dicts are", ""),
    ast.ListComp: ("comprehensions are", ""),
    ast.SetComp: ("comprehensions are", ""),
    ast.DictComp: ("comprehensions are", ""),
    ast.GeneratorExp: ("comprehensions are", ""),
    ast.Attribute: ("attribute access is", ""),
    ast.Subscript: ("subscripts are", ""),
    ast.Slice: ("slices are", ""),
    ast.Lambda: ("lambdas are", ""),
    ast.JoinedStr: ("strings are", ""),
    ast.FormattedValue: ("strings are", ""),
    ast.Starred: ("'*' unpacking is", ""),
    ast.NamedExpr: ("assignments (':=') are", ""),
    ast.Await: ("'await' is", ""),
}


def _refuse(text: str, reason: str) -> NormstatsError:
    return NormstatsError(f"--expr {text!r}: {reason}")


def _allowed_help() -> str:
    return "use x, numbers, pi, e, + - * / **, comparisons and " + ", ".join(FUNCTIONS)


def parse(text: str) -> ast.Expression:
    """The checked syntax tree of ``text``; raises :class:`NormstatsError` (one line) if it is not a
    formula of the allowed form."""
    if not isinstance(text, str) or not text.strip():
        raise NormstatsError(f"--expr must be a formula over x such as 'x * tanh(x)'; got {text!r}")
    if len(text) > MAX_LENGTH:
        raise _refuse(text[:40] + "...", f"longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise _refuse(text, f"not a formula (syntax error at column {exc.offset}: {exc.msg})") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise _refuse(text, f"more than {MAX_NODES} syntax elements")
    for node in nodes:
        _check(node, text)
    return tree


def _check(node: ast.AST, text: str) -> None:
    if isinstance(node, (ast.Expression, ast.Load)) or isinstance(node, _BINOPS + _CMPOPS):
        return
    if isinstance(node, (ast.UAdd, ast.USub)):
        return
    if isinstance(node, ast.BinOp):
        if not isinstance(node.op, _BINOPS):
            raise _refuse(text, f"operator {_OP_TEXT.get(type(node.op), type(node.op).__name__)} is not "
                          "allowed; use + - * / **")
        return
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.UAdd, ast.USub)):
            raise _refuse(text, f"operator {_OP_TEXT.get(type(node.op), '?')} is not allowed")
        return
    if isinstance(node, ast.Compare):
        for op in node.ops:
            if not isinstance(op, _CMPOPS):
                raise _refuse(text, f"comparison {_OP_TEXT.get(type(op), '?')} is not allowed; use < <= > >=")
        return
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _refuse(text, f"constant {value!r} is not a real number")
        return
    if isinstance(node, ast.Name):
        if node.id != "x" and node.id not in NAMES and node.id not in FUNCTIONS:
            raise _refuse(text, f"name {node.id!r} is not allowed; {_allowed_help()}")
        return
    if isinstance(node, ast.Call):
        func = node.func
        if not isinstance(func, ast.Name):
            raise _refuse(text, "only the listed functions may be called, by name; " + _allowed_help())
        if func.id not in FUNCTIONS:
            raise _refuse(text, f"function {func.id!r} is not allowed; {_allowed_help()}")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise _refuse(text, f"{func.id}() takes positional arguments only")
        arity = _SPECIAL.get(func.id, 1)
        if len(node.args) != arity:
            raise _refuse(text, f"{func.id}() takes {arity} argument{'s' * (arity > 1)}; got {len(node.args)}")
        return
    kind, advice = _CONSTRUCTS.get(type(node), ("this construct is", ""))
    segment = ast.get_source_segment(text.strip(), node)
    where = f" (here: {segment})" if segment and segment != text.strip() else ""
    raise _refuse(text, f"{kind} not allowed{where}; {advice or _allowed_help()}")


class _Interpreter:
    """Walks a checked tree over dual numbers; ``switches`` collects the functions whose sign changes are
    kinks, in a fixed order."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = Dual(x, np.ones_like(x))
        self.switches: list[np.ndarray] = []

    def run(self, node: ast.AST) -> Dual:
        method = getattr(self, "_" + type(node).__name__)
        return method(node)

    def _Expression(self, node: ast.Expression) -> Dual:
        return self.run(node.body)

    def _Constant(self, node: ast.Constant) -> Dual:
        return Dual(np.float64(node.value), np.float64(0.0))

    def _Name(self, node: ast.Name) -> Dual:
        if node.id == "x":
            return self.x
        if node.id in NAMES:
            return Dual(np.float64(NAMES[node.id]), np.float64(0.0))
        raise NormstatsError(f"--expr: {node.id!r} is a function; call it, e.g. {node.id}(x)")

    def _UnaryOp(self, node: ast.UnaryOp) -> Dual:
        a = self.run(node.operand)
        return Dual(-a.v, -a.d) if isinstance(node.op, ast.USub) else a

    def _BinOp(self, node: ast.BinOp) -> Dual:
        a, b = self.run(node.left), self.run(node.right)
        op = node.op
        if isinstance(op, ast.Add):
            return Dual(a.v + b.v, a.d + b.d)
        if isinstance(op, ast.Sub):
            return Dual(a.v - b.v, a.d - b.d)
        if isinstance(op, ast.Mult):
            return Dual(a.v * b.v, a.d * b.v + a.v * b.d)
        if isinstance(op, ast.Div):
            return Dual(a.v / b.v, (a.d * b.v - a.v * b.d) / (b.v * b.v))
        value = np.power(a.v, b.v)
        if not np.any(b.d):  # constant exponent: d(u^c) = c u^(c-1) u'; avoids log(u) for u <= 0
            return Dual(value, np.where(b.v == 0, 0.0, b.v * np.power(a.v, b.v - 1.0) * a.d))
        return Dual(value, value * (b.d * np.log(a.v) + b.v * a.d / a.v))

    def _Compare(self, node: ast.Compare) -> Dual:
        left = self.run(node.left)
        truth: Any = True
        for op, right_node in zip(node.ops, node.comparators):
            right = self.run(right_node)
            self.switches.append(np.asarray(left.v - right.v, dtype=float))
            fn = {ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal}
            truth = truth & fn[type(op)](left.v, right.v)
            left = right
        return Dual(np.asarray(truth, dtype=float), np.float64(0.0))

    def _Call(self, node: ast.Call) -> Dual:
        name = node.func.id  # type: ignore[attr-defined]
        if name == "where":
            cond = self.run(node.args[0])
            a, b = self.run(node.args[1]), self.run(node.args[2])
            on = np.asarray(cond.v) != 0
            return Dual(np.where(on, a.v, b.v), np.where(on, a.d, b.d))
        args = [self.run(a) for a in node.args]
        if name in ("maximum", "minimum"):
            a, b = args
            self.switches.append(np.asarray(a.v - b.v, dtype=float))
            pick = (a.v > b.v) if name == "maximum" else (a.v < b.v)
            return Dual(np.where(pick, a.v, b.v), np.where(pick, a.d, b.d))
        (a,) = args
        if name == "abs":
            self.switches.append(np.asarray(a.v, dtype=float))
            return Dual(np.abs(a.v), np.sign(a.v) * a.d)
        fn, deriv = _UNARY[name]
        return Dual(fn(a.v), deriv(a.v) * a.d)


def evaluate(tree: ast.Expression, x: Any) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """``(f(x), f'(x), switches)`` for an array ``x`` (numpy floating-point warnings silenced)."""
    x = np.asarray(x, dtype=float)
    interp = _Interpreter(x)
    with np.errstate(all="ignore"):
        out = interp.run(tree)
        value = np.broadcast_to(np.asarray(out.v, dtype=float), x.shape).copy()
        deriv = np.broadcast_to(np.asarray(out.d, dtype=float), x.shape).copy()
    return value, deriv, interp.switches


def find_kinks(tree: ast.Expression) -> tuple[float, ...]:
    """Roots of every switch on ``[-SCAN, SCAN]``: sign changes on a grid, refined by ``brentq``."""
    grid = np.linspace(-SCAN, SCAN, int(round(2 * SCAN / SCAN_STEP)) + 1)
    _, _, switches = evaluate(tree, grid)
    roots: set[float] = set()
    for i, s in enumerate(switches):
        s = np.broadcast_to(s, grid.shape)
        sign = np.sign(s)
        roots.update(float(g) for g in grid[(sign == 0)])
        change = np.nonzero((sign[:-1] * sign[1:]) < 0)[0]
        for j in change:
            def g(t: float, i: int = i) -> float:
                return float(np.broadcast_to(evaluate(tree, np.array([t]))[2][i], (1,))[0])

            try:
                roots.add(float(optimize.brentq(g, grid[j], grid[j + 1], xtol=1e-15, rtol=4 * np.finfo(float).eps)))
            except ValueError:  # not a continuous sign change (a pole); split there anyway
                roots.add(float(0.5 * (grid[j] + grid[j + 1])))
    return tuple(sorted(roots))


class CustomActivation(Elementwise):
    """An activation given by a formula over ``x`` (``normstats simulate --expr``); not in the registry."""

    name = "expr"  # type: ignore[misc]
    summary = "custom formula over x"

    def __init__(self, expr: str) -> None:
        self._tree = parse(expr)
        self.values = {"expr": expr.strip()}
        self._kinks = find_kinks(self._tree)
        self._check_finite()

    @property
    def breakpoints(self) -> tuple[float, ...]:  # type: ignore[override]
        return tuple(sorted({0.0, *self._kinks}))

    def _check_finite(self) -> None:
        grid = np.linspace(-8.0, 8.0, 1601)
        value, deriv, _ = evaluate(self._tree, grid)
        for label, arr in (("value", value), ("derivative", deriv)):
            bad = ~np.isfinite(arr)
            if bad.any():
                at = float(grid[np.argmax(bad)])
                raise NormstatsError(
                    f"--expr {self.expr!r}: the {label} is not finite at x = {at:g} ({arr[np.argmax(bad)]}); "
                    "the formula must be finite for every x in [-8, 8]"
                )
            big = np.abs(arr) > VALUE_BOUND
            if big.any():
                at = float(grid[np.argmax(big)])
                raise NormstatsError(
                    f"--expr {self.expr!r}: the {label} is too large at x = {at:g} ({arr[np.argmax(big)]:.3g}); "
                    f"the formula and its derivative must stay within {VALUE_BOUND:g} in magnitude "
                    "for x in [-8, 8] (their fourth powers are summed)"
                )

    def f(self, x: np.ndarray) -> np.ndarray:
        return evaluate(self._tree, x)[0]

    def df(self, x: np.ndarray) -> np.ndarray:
        return evaluate(self._tree, x)[1]

    def forward_backward(self, x, dy, u):  # type: ignore[no-untyped-def]
        value, deriv, _ = evaluate(self._tree, x)
        return value, deriv * dy

    def quadrature(self) -> dict[str, float]:
        """Quadrature cut at ``|x| = CUTOFF``, checked for divergence: a moment whose integrand has not died out
        by ``|x| = 28`` (``exp(x**2/2)``) is infinite or undefined, never a finite-looking number
        (:func:`normstats.exact.quadrature.gaussian_expectation_checked`)."""
        from normstats.exact.quadrature import (
            gaussian_expectation_checked,
            gaussian_mean_std_checked,
        )

        mean, std = gaussian_mean_std_checked(self.f, self.breakpoints, CUTOFF)
        bp_var = gaussian_expectation_checked(lambda t: self.df(t) ** 2, self.breakpoints, CUTOFF)
        return {"fp_mean": mean, "fp_std": std, "bp_std": math.sqrt(bp_var) if bp_var >= 0 else math.nan}
