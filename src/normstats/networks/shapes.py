"""How each layer fits the shape that reaches it in a network: which of its parameters the incoming shape fixes,
how the network hands it its values, and the shape it passes on.

A network's values travel as ``(rows, values)`` arrays, one row per input (``rows = draws * batch``), the values
of one input in framework order (``C x H x W`` row-major for a map). A layer is *fitted* to the incoming shape:
its shape parameters are filled in (a linear layer's ``fan_in``, a convolution's ``in_channels`` and map
``size``), and its *kind* says how the network calls its passes:

* ``pointwise``: one value in, one out (activations, dropout), called on the whole array;
* ``direct``: the layer takes all values of one input (linear, conv, per-example normalizations, softmax);
* ``per_channel``: the layer sees one channel's map (pooling), so the rows are ``rows * C``;
* ``batch``: one draw of the layer is the whole batch (batch norm), so the rows are ``draws``;
* ``per_token``: the layer sees one token of a sequence (linear, layer norm, RMS norm), so the rows are
  ``rows * T``.

A token sequence (``--input TxD``, a shape of two numbers) is ``T`` tokens of ``D`` features, token after token
(``T x D`` row-major). Linear layers act on every token's ``D`` features, layer and RMS norm normalize each token
over its ``D`` features, activations and dropout act on every value; attention takes the whole sequence; ``mean``
(over the tokens) and ``token`` (one token) end it with a vector of ``D`` values.

Maps run as a framework runs them: a finite map with the padding given, every position counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from normstats.networks.spec import SpecError

Shape = tuple[int, ...]

POINTWISE, DIRECT, PER_CHANNEL, BATCH, PER_TOKEN = "pointwise", "direct", "per_channel", "batch", "per_token"

#: Layers whose weights NormProp normalizes (by rows for fp, by columns for bp) instead of shifting and scaling.
WEIGHTED = ("linear", "conv")
#: Layers that normalize their own output; NormProp leaves them as they are.
NORMALIZERS = ("batchnorm", "layernorm", "rmsnorm", "groupnorm")
#: Layers with weights that are not a linear or conv layer's (attention's four projections): NormProp normalizes
#: them as it does a linear layer's, and leaves their passes unscaled.
PROJECTED = ("attention",)
#: Layers that take a whole token sequence.
SEQUENCE_LAYERS = ("attention", "mean", "token")


@dataclass(frozen=True)
class Fit:
    """A layer fitted to its input: the parameters to build it with, how it is called, its output shape."""

    params: dict[str, Any]
    kind: str
    out_shape: Shape | None  # None: ask the built layer (its width, or maps through windows)


def parse_input(text: str | int | tuple[int, ...]) -> Shape:
    """``512`` -> ``(512,)``; ``"64x256"`` -> ``(64, 256)``; ``"3x32x32"`` -> ``(3, 32, 32)``: a vector, a
    sequence of ``T`` tokens of ``D`` features or a ``C x H x W`` map."""
    if isinstance(text, int) and not isinstance(text, bool):
        parts: list[Any] = [text]
    elif isinstance(text, tuple):
        parts = list(text)
    else:
        parts = str(text).lower().replace(" ", "").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) not in (1, 2, 3) or any(d < 1 for d in shape) or math.prod(shape) > 1 << 20:
        raise SpecError(
            "--input must be N (a vector of N values), TxD (T tokens of D features) or CxHxW (C channels of "
            "H x W), each >= 1 and at most "
            f"{1 << 20:,} values; got {text!r}"
        )
    return shape


def describe_shape(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def fit(name: str, given: dict[str, str], shape: Shape, width: int | None, pos: int, pointwise: bool,
        spans_batch: bool) -> Fit:
    """The parameters and kind of layer ``name`` (its spec parameters ``given``) on input ``shape``."""
    values = math.prod(shape)
    where = f"network spec, position {pos} ('{name}')"

    def set_auto(params: dict[str, Any], key: str, value: Any) -> None:
        if key in given and given[key] != str(value) and _as_int(given[key]) != value:
            raise SpecError(
                f"{where}: {key}={given[key]} does not fit the incoming {describe_shape(shape)}; "
                f"leave it out (it is {value})"
            )
        params[key] = value

    params: dict[str, Any] = dict(given)
    if pointwise:
        return Fit(params, POINTWISE, shape)
    if len(shape) == 2:
        return _fit_sequence(name, given, params, shape, width, where, set_auto)
    if name in SEQUENCE_LAYERS:
        raise SpecError(f"{where}: needs a token sequence input (TxD: use --input TxD, and put it before any "
                        f"'mean' or 'token'); got {describe_shape(shape)}")
    if name == "linear":
        set_auto(params, "fan_in", values)
        params.setdefault("fan_out", str(width or values))
        return Fit(params, DIRECT, None)
    if name in ("conv",):
        c, h, w = _map(shape, where)
        set_auto(params, "in_channels", c)
        params.setdefault("out_channels", str(width or c))
        set_auto(params, "size", f"{h}x{w}")
        return Fit(params, DIRECT, None)
    if name in ("maxpool", "avgpool"):
        c, h, w = _map(shape, where)
        set_auto(params, "size", f"{h}x{w}")
        return Fit(params, PER_CHANNEL, None)
    if name == "batchnorm":
        c, p = (shape[0], math.prod(shape[1:])) if len(shape) == 3 else (values, 1)
        set_auto(params, "features", c)
        set_auto(params, "positions", p)
        return Fit(params, BATCH, shape)
    if name in ("layernorm", "rmsnorm"):
        set_auto(params, "features", values)
        return Fit(params, DIRECT, shape)
    if name == "groupnorm":
        c, h, w = _map(shape, where)
        set_auto(params, "channels", c)
        set_auto(params, "positions", h * w)
        return Fit(params, DIRECT, shape)
    if name == "softmax":
        set_auto(params, "n", values)
        return Fit(params, DIRECT, shape)
    if spans_batch:
        raise SpecError(f"{where}: this layer spans a batch and has no network shape rule yet")
    raise SpecError(f"{where}: this layer has no network shape rule (it cannot take a {describe_shape(shape)} "
                    "input)")


def _fit_sequence(name: str, given: dict[str, str], params: dict[str, Any], shape: Shape, width: int | None,
                  where: str, set_auto: Any) -> Fit:
    """The fit of a layer on a sequence of ``T`` tokens of ``D`` features (the module docstring)."""
    t, d = shape
    if name == "linear":
        set_auto(params, "fan_in", d)
        params.setdefault("fan_out", str(width or d))
        return Fit(params, PER_TOKEN, None)
    if name in ("layernorm", "rmsnorm"):
        set_auto(params, "features", d)
        return Fit(params, PER_TOKEN, shape)
    if name in SEQUENCE_LAYERS:
        set_auto(params, "tokens", t)
        set_auto(params, "features", d)
        if name == "token":
            index = _as_int(given.get("index", "0"))
            if index is not None and not -t <= index < t:
                raise SpecError(f"{where}: index={given['index']} is out of range for a sequence of {t} tokens "
                                f"(0 to {t - 1}, or -{t} to -1 from the end)")
        return Fit(params, DIRECT, shape if name == "attention" else (d,))
    raise SpecError(f"{where}: this layer has no rule for a token sequence (TxD; {describe_shape(shape)} here): "
                    "on a sequence, use linear, layernorm, rmsnorm, attention, activations, dropout, then mean or "
                    "token")


def _map(shape: Shape, where: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise SpecError(f"{where}: needs a map input (CxHxW); got {describe_shape(shape)} (use --input CxHxW, or "
                        "put it before any linear layer)")
    return shape  # type: ignore[return-value]


def _as_int(text: Any) -> int | None:
    try:
        return int(str(text).replace("_", ""))
    except ValueError:
        return None
