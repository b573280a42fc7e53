"""The network spec: one string, the same on the command line and in the Python API, parsed into a tree.

Grammar (whitespace separates items; names and values are case-sensitive)::

    spec   := item*
    item   := [COUNT '*'] unit
    unit   := NAME ['(' args ')']                    a registered layer with its parameters
            | 'res' '(' spec (',' kwarg)* ')'          x + alpha * branch(x / beta)
            | '(' spec ')'                             a group (to repeat)
    args   := (VALUE | kwarg) (',' kwarg)*
    kwarg  := NAME '=' VALUE

``"20*(linear relu)"``, ``"3*relu"``, ``"conv(out_channels=64,k=3,padding=1) relu maxpool(k=3,stride=2)"``,
``"16*res(linear relu linear, alpha=0.2, beta=auto)"``. Parameters are named as in the Python API
(``fan_out``, not ``--fan-out``) and given as text; the layer's own :class:`~normstats.params.Param` checks
them when the network is built. A residual block takes ``alpha`` (a number, default 1) and ``beta`` (a
positive number or ``auto``, default 1). A layer that declares a positional parameter
(:attr:`~normstats.layers.base.Layer.positional`: ``token``'s ``index``) takes its value first without the name,
``token(3)`` or ``token(-1)``: the parser names it (``token(index=3)``, the canonical form); any other layer given
an unnamed value is a :class:`SpecError` at the value's position.

Bounds: a repeat count is at most :data:`MAX_REPEAT`, the spec expands to at most :data:`MAX_LAYERS` layers, and
groups and residual blocks nest at most :data:`MAX_NESTING` deep (``((relu))`` nests 2 deep, ``res(res(relu))``
too). Every error is a :class:`SpecError`: one line with the 1-based position in the spec and what was found
there. :func:`format_spec` writes a tree back as a canonical string that parses to the same tree; neither it nor
the parser recurses deeper than the nesting bound (and :func:`format_spec` and :func:`count_layers` not at all).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator, Union

from normstats.errors import NormstatsError
from normstats.registry import get_layer

#: Largest repeat count of one item, and largest number of layers a spec may expand to.
MAX_REPEAT = 1000
MAX_LAYERS = 2000
#: Deepest nesting of groups and residual blocks: far beyond any network written by hand, and far below Python's
#: recursion limit in the parser and in the builders that walk the tree.
MAX_NESTING = 32
#: The longest piece of the spec an error message quotes; a longer token is cut, with its length said.
QUOTE = 40
RESIDUAL = "res"


class SpecError(NormstatsError):
    """A network spec that cannot be parsed or built; the message names the position."""


@dataclass(frozen=True)
class LayerNode:
    """A registered layer with the parameters the spec gives it (as text)."""

    name: str
    params: tuple[tuple[str, str], ...] = ()
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Repeat:
    """``count`` copies of ``body``."""

    count: int
    body: tuple[Node, ...]
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Residual:
    """``x + alpha * branch(x / beta)``; ``beta`` is a number or ``"auto"``."""

    branch: tuple[Node, ...]
    alpha: float = 1.0
    beta: float | str = 1.0
    pos: int = field(default=0, compare=False)


Node = Union[LayerNode, Repeat, Residual]

_TOKEN = re.compile(r"\s*(?:(?P<count>\d+)\s*\*|(?P<punct>[(),=])|(?P<word>[^\s(),=*]+)|(?P<bad>\S))")


@dataclass(frozen=True)
class _Token:
    kind: str  # count, punct, word, end
    text: str
    pos: int  # 1-based


def _tokens(text: str) -> list[_Token]:
    out, i = [], 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:  # only trailing whitespace is left
            break
        kind = m.lastgroup or "bad"
        value = m.group(kind)
        pos = m.start(kind) + 1
        if kind == "bad":
            raise SpecError(f"network spec, position {pos}: unexpected {value!r}")
        out.append(_Token(kind, value, pos))
        i = m.end()
    out.append(_Token("end", "", len(text) + 1))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0  # groups and residual blocks open here

    def enter(self, tok: _Token) -> None:
        """One level deeper, at the ``(`` or ``res`` of ``tok``; a :class:`SpecError` beyond :data:`MAX_NESTING`."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.fail(f"groups and residual blocks nest at most {MAX_NESTING} deep; this one opens level "
                            f"{self.depth}", tok)

    @property
    def tok(self) -> _Token:
        return self.toks[self.i]

    def fail(self, what: str, tok: _Token | None = None) -> SpecError:
        tok = tok or self.tok
        found = "the end of the spec" if tok.kind == "end" else _quote(tok.text)
        return SpecError(f"network spec, position {tok.pos} ({found}): {what}")

    def take(self, kind: str, text: str | None = None) -> _Token:
        tok = self.tok
        if tok.kind != kind or (text is not None and tok.text != text):
            raise self.fail(f"expected {text!r}" if text else f"expected a {kind}")
        self.i += 1
        return tok

    def spec(self, stop: tuple[str, ...]) -> tuple[Node, ...]:
        items: list[Node] = []
        while not (self.tok.kind == "end" or (self.tok.kind == "punct" and self.tok.text in stop)):
            items.append(self.item())
        return tuple(items)

    def item(self) -> Node:
        tok = self.tok
        if tok.kind == "count":
            self.i += 1
            digits = tok.text.rstrip("* \t").lstrip("0") or "0"
            # a count of more digits than MAX_REPEAT is out of range: never converted (Python refuses to
            # convert more than 4300 digits, and a bound needs none of them)
            count = int(digits) if len(digits) <= len(str(MAX_REPEAT)) else MAX_REPEAT + 1
            if not 1 <= count <= MAX_REPEAT:
                raise self.fail(f"a repeat count must be an integer in [1, {MAX_REPEAT}]", tok)
            unit = self.unit()
            body = unit.body if isinstance(unit, Repeat) and unit.count == 1 else (unit,)
            return Repeat(count, body, tok.pos)
        return self.unit()

    def unit(self) -> Node:
        tok = self.tok
        if tok.kind == "punct" and tok.text == "(":
            self.enter(tok)
            self.i += 1
            body = self.spec(stop=(")",))
            if self.tok.kind != "punct" or self.tok.text != ")":
                raise self.fail(f"unbalanced parentheses: the '(' at position {tok.pos} is never closed")
            self.i += 1
            if not body:
                raise self.fail("an empty group '()'", tok)
            self.depth -= 1
            return Repeat(1, body, tok.pos)
        if tok.kind != "word":
            if tok.kind == "punct" and tok.text == ")":
                raise self.fail("unbalanced parentheses: a ')' that closes nothing")
            if tok.kind == "end":
                raise self.fail("expected a layer")
            raise self.fail("expected a layer name")
        self.i += 1
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", tok.text):
            raise self.fail("expected a layer name", tok)
        if tok.text == RESIDUAL:
            return self.residual(tok)
        params: tuple[tuple[str, str], ...] = ()
        if self.tok.kind == "punct" and self.tok.text == "(":
            open_tok = self.take("punct", "(")
            params = self.kwargs(open_tok, first=True, layer=tok)
        return LayerNode(tok.text, params, tok.pos)

    def positional(self, layer: _Token) -> tuple[str, str]:
        """The unnamed value at the parser's token, named by ``layer``'s positional parameter (consumed)."""
        value = self.tok
        try:
            cls = get_layer(layer.text)
        except NormstatsError as exc:
            raise SpecError(f"network spec, position {layer.pos} ({_quote(layer.text)}): {exc}") from None
        name = getattr(cls, "positional", None)
        if any(p.name == value.text for p in cls.params):
            raise self.fail(f"expected a value for parameter {value.text!r}: {value.text}=VALUE", value)
        if name is None:
            raise self.fail(f"layer '{cls.name}' takes no unnamed value: name the parameter, "
                            f"{cls.name}(NAME={value.text})")
        self.i += 1
        return name, value.text

    def kwargs(self, open_tok: _Token, first: bool, layer: _Token | None = None) -> tuple[tuple[str, str], ...]:
        """``name=value`` pairs up to the closing ``)`` (consumed); ``first``: no comma before the first. With
        ``layer`` (a layer's parameters, not a block's), the first may be an unnamed value (:meth:`positional`)."""
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        if layer is not None and self.tok.kind == "word" and not (
                self.toks[self.i + 1].kind == "punct" and self.toks[self.i + 1].text == "="):
            out.append(self.positional(layer))
            seen.add(out[0][0])
            first = False
        while True:
            if self.tok.kind == "punct" and self.tok.text == ")":
                self.i += 1
                return tuple(out)
            if self.tok.kind == "end":
                raise self.fail(f"unbalanced parentheses: the '(' at position {open_tok.pos} is never closed")
            if not (first and not out):
                self.take("punct", ",")
            key = self.tok
            if key.kind != "word" or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.text):
                raise self.fail("expected a parameter name=value")
            self.i += 1
            self.take("punct", "=")
            value = self.tok
            if value.kind != "word":
                raise self.fail(f"expected a value for parameter {key.text!r}")
            self.i += 1
            if key.text in seen:
                raise self.fail(f"parameter {key.text!r} is given twice", key)
            seen.add(key.text)
            out.append((key.text, value.text))

    def residual(self, tok: _Token) -> Residual:
        if not (self.tok.kind == "punct" and self.tok.text == "("):
            raise self.fail("a residual block is written res(LAYERS, alpha=A, beta=B)")
        self.enter(tok)
        open_tok = self.take("punct", "(")
        branch = self.spec(stop=(")", ","))
        if not branch:
            raise self.fail("a residual block needs at least one layer in its branch")
        extra: tuple[tuple[str, str], ...] = ()
        if self.tok.kind == "punct" and self.tok.text == ",":
            self.i += 1
            extra = self.kwargs(open_tok, first=True)
        else:
            if self.tok.kind == "end":
                raise self.fail(f"unbalanced parentheses: the '(' at position {open_tok.pos} is never closed")
            self.take("punct", ")")
        alpha, beta = 1.0, 1.0
        for key, value in extra:
            if key == "alpha":
                lo, hi = RESIDUAL_RANGE
                alpha = _number(value, "alpha", tok, f"0 or a number with |alpha| in [{lo:g}, {hi:g}]",
                                lambda v: v == 0.0 or lo <= abs(v) <= hi)
            elif key == "beta":
                beta = "auto" if value == "auto" else _number(
                    value, "beta", tok, f"auto or a number in [{RESIDUAL_RANGE[0]:g}, {RESIDUAL_RANGE[1]:g}]",
                    lambda v: RESIDUAL_RANGE[0] <= v <= RESIDUAL_RANGE[1])
            else:
                raise SpecError(
                    f"network spec, position {tok.pos} ('res'): a residual block has the parameters alpha and "
                    f"beta; got {key!r}"
                )
        self.depth -= 1
        return Residual(branch, alpha, beta, tok.pos)


#: The range of a residual block's ``|alpha|`` (or 0) and ``beta``: beyond it the squares of the values and of
#: their gradients (``alpha^2``, ``(alpha / beta)^2`` times a variance) leave double precision (1e200 squared
#: raised OverflowError in the wide limit, 1e-320 squared is 0: a division by zero, not an answer). Signals
#: beyond float64 over several blocks still propagate, as inf.
RESIDUAL_RANGE = (1e-100, 1e100)


def _number(text: str, name: str, tok: _Token, allowed: str, ok: Callable[[float], bool]) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not ok(value):
        raise SpecError(f"network spec, position {tok.pos} ('res'): {name} must be {allowed}; got {_quote(text)}")
    return value


def _quote(text: str) -> str:
    """``repr(text)``, cut to :data:`QUOTE` characters with its length said (a 5,000-digit count)."""
    if len(text) <= QUOTE:
        return repr(text)
    return f"{text[:QUOTE]!r}... ({len(text):,} characters)"


def parse_spec(text: str) -> tuple[Node, ...]:
    """The tree of ``text``; a :class:`SpecError` (one line, with the position) where it is malformed."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError("network spec must name at least one layer, e.g. '20*(linear relu)'; got an empty spec")
    parser = _Parser(text)
    nodes = parser.spec(stop=(")",))
    if parser.tok.kind != "end":
        raise parser.fail("unbalanced parentheses: a ')' that closes nothing")
    layers = count_layers(nodes)
    if layers > MAX_LAYERS:
        raise SpecError(f"network spec must expand to at most {MAX_LAYERS} layers; got {layers:,}")
    return nodes


def count_layers(nodes: tuple[Node, ...]) -> int:
    """Layers the tree expands to (a residual block counts its branch's layers). Walks the tree with a stack of
    its own, so a tree built in Python, nested without the parser's bound, cannot exhaust the recursion limit."""
    total = 0
    stack: list[tuple[tuple[Node, ...], int]] = [(nodes, 1)]  # (nodes, copies of them)
    while stack:
        items, copies = stack.pop()
        for node in items:
            if isinstance(node, LayerNode):
                total += copies
            elif isinstance(node, Repeat):
                stack.append((node.body, copies * node.count))
            else:
                stack.append((node.branch, copies))
    return total


def format_spec(nodes: tuple[Node, ...]) -> str:
    """The canonical text of a tree (it parses back to the same tree). Iterative, as :func:`count_layers`: each
    open group or block is a frame holding its children's texts until the last is done."""
    frames: list[tuple[Node | None, Iterator[Node], list[str]]] = [(None, iter(nodes), [])]
    while True:
        owner, children, texts = frames[-1]
        node = next(children, None)
        if node is None:
            frames.pop()
            inner = " ".join(texts)
            if owner is None:
                return inner
            frames[-1][2].append(_wrap(owner, inner))
        elif isinstance(node, LayerNode):
            texts.append(_layer_text(node))
        else:
            frames.append((node, iter(node.body if isinstance(node, Repeat) else node.branch), []))


def _layer_text(node: LayerNode) -> str:
    if not node.params:
        return node.name
    return f"{node.name}({','.join(f'{k}={v}' for k, v in node.params)})"


def _wrap(node: Node, inner: str) -> str:
    """The text of a repeat or residual block around its children's text ``inner``."""
    if isinstance(node, Repeat):
        if node.count == 1:
            return f"({inner})"
        if len(node.body) == 1 and not isinstance(node.body[0], Repeat):
            return f"{node.count}*{inner}"
        return f"{node.count}*({inner})"
    assert isinstance(node, Residual)
    extras = []
    if node.alpha != 1.0:
        extras.append(f"alpha={node.alpha:g}" if _exact_g(node.alpha) else f"alpha={node.alpha!r}")
    if node.beta != 1.0:
        beta = node.beta
        extras.append(f"beta={beta}" if isinstance(beta, str) else
                      (f"beta={beta:g}" if _exact_g(beta) else f"beta={beta!r}"))
    return f"res({', '.join([inner, *extras])})"


def _exact_g(x: float) -> bool:
    return float(f"{x:g}") == x
