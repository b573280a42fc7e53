"""Weights of linear and convolution layers: a named initialization, then an optional l2 normalization.

A weight has the shape ``(out_channels, in_channels, k, k)`` (a linear layer is the case ``k = 1``), with
PyTorch's fans ``fan_in = in_channels k^2`` and ``fan_out = out_channels k^2``.

Initializations (the ``*_normal_`` variants of ``torch.nn.init``, default gains):

* ``normal``: N(0, 1) entries;
* ``kaiming``: N(0, 2 / fan_in) (He et al. 2015, ReLU gain sqrt(2), mode fan_in);
* ``xavier``: N(0, 2 / (fan_in + fan_out)) (Glorot and Bengio 2010);
* ``orthogonal``: the ``(out_channels, in_channels k^2)`` matrix has orthonormal rows, or orthonormal columns
  when it is tall (QR of a Gaussian matrix with the signs of R's diagonal, as ``torch.nn.init.orthogonal_``).

Normalizations scale to unit l2 norm the weights of each output channel (``fan-in``: over
``in_channels k^2``, the rows of a linear layer's W) or of each input channel (``fan-out``: over
``out_channels k^2``, the columns of W); ``none`` keeps the raw initialization. ``ws`` is the scaled weight
standardization of NF-ResNets (Brock, De and Smith 2021, "Characterizing signal propagation to close the
performance gap in unnormalized ResNets", eq. 3): each output channel's weights are centred and scaled over the
fan-in, ``W_hat_i = gain (W_i - mean(W_i)) / (std(W_i) sqrt(fan_in))`` with the biased std, so every row has
sum 0 and squared norm ``gain^2`` whatever was drawn. (timm's ``ScaledStdConv2d`` adds an ``eps`` to the
variance for training; at initialization we take the paper's formula.) ``--gain`` (ws only, default 1) is the
paper's gain, e.g. the nonlinearity-specific gamma that makes ``gamma f(X)`` unit-variance. With ``none``,
``--gain`` (default 1) multiplies the raw initialization: ``init=normal, normalize=none, gain=sqrt(sigma_w^2 /
fan_in)`` is the mean-field convention of weights of variance ``sigma_w^2 / fan_in``, and ``init=orthogonal,
normalize=none, gain=sigma_w`` an orthogonal matrix times ``sigma_w`` (what ``normstats jacobian`` builds).

What the references need is the squared Frobenius norm ``|W|^2``, and it is fixed for every W a setting can
produce only in these cases: ``fan-in`` gives ``out_channels``, ``ws`` gives ``gain^2 out_channels``, ``fan-out`` gives ``in_channels``, and a raw
``orthogonal`` init gives ``min(out_channels, in_channels k^2)`` (times ``gain^2``). For a raw Gaussian init ``|W|^2`` is random
(about ``fan_in fan_out / k^2`` times the init variance, relative spread ``sqrt(2 / (number of entries))``),
so a run's statistics belong to the W it drew and there is no reference that holds for every W.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from normstats.errors import ParameterError
from normstats.params import Param

INITS = ("normal", "kaiming", "xavier", "orthogonal")
NORMALIZATIONS = ("none", "fan-in", "fan-out", "ws")


def weight_params(default_normalize: str) -> tuple[Param, Param, Param]:
    return (
        Param("init", str, "normal", "weight initialization", choices=INITS),
        Param(
            "normalize", str, default_normalize,
            "unit l2 norm per output (fan-in) or per input (fan-out); ws: scaled weight standardization "
            "(NF-ResNets); none: the raw init",
            choices=NORMALIZATIONS,
        ),
        Param("gain", float, None, "ws: rows scaled to l2 norm gain; none: the raw init times gain", low=0.0,
              high=1e6, low_open=True, default_text="1 with --normalize ws or none"),
    )


def resolve_weight_params(layer: str, values: dict[str, Any], fan_in: int) -> dict[str, Any]:
    """``gain`` exists only with ``ws`` (default 1) and ``none`` (kept only when given); it is dropped from the
    values otherwise, so other settings keep their names. ``ws`` needs a fan-in of at least 2 (one weight has
    std 0)."""
    if values["normalize"] == "none" and values.get("gain") is not None:
        return values
    if values["normalize"] != "ws":
        if values.get("gain") is not None:
            raise ParameterError(
                f"parameter --gain of layer '{layer}' applies only with --normalize ws or none; got --normalize "
                f"{values['normalize']}"
            )
        values.pop("gain", None)
        return values
    if fan_in < 2:
        raise ParameterError(
            f"--normalize ws of layer '{layer}' needs a fan-in of at least 2 (the std of one weight is 0); got "
            f"fan-in {fan_in}"
        )
    if values.get("gain") is None:
        values["gain"] = 1.0
    return values


def draw_weight(
    rng: np.random.Generator, out_channels: int, in_channels: int, k: int, init: str, normalize: str,
    gain: float = 1.0,
) -> np.ndarray:
    """A weight ``(out_channels, in_channels, k, k)`` drawn from ``rng``."""
    shape = (out_channels, in_channels, k, k)
    fan_in, fan_out = in_channels * k * k, out_channels * k * k
    if init == "orthogonal":
        w = _orthogonal(rng, out_channels, fan_in).reshape(shape)
    else:
        w = rng.standard_normal(shape) * np.sqrt(init_variance(init, fan_in, fan_out))
    if normalize == "ws":
        axes = (1, 2, 3)
        centred = w - w.mean(axis=axes, keepdims=True)
        std = np.sqrt(np.mean(centred * centred, axis=axes, keepdims=True))
        return gain * centred / (std * np.sqrt(fan_in))
    if normalize != "none":
        axes = (1, 2, 3) if normalize == "fan-in" else (0, 2, 3)
        w /= np.sqrt(np.sum(w * w, axis=axes, keepdims=True))
    elif gain != 1.0:
        w *= gain
    return w


def init_variance(init: str, fan_in: int, fan_out: int) -> float:
    """The entries' variance of a Gaussian ``init`` (``normal``, ``kaiming`` or ``xavier``)."""
    return {"normal": 1.0, "kaiming": 2.0 / fan_in, "xavier": 2.0 / (fan_in + fan_out)}[init]


def _orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    flat = rng.standard_normal((rows, cols))
    tall = rows >= cols
    q, r = np.linalg.qr(flat if tall else flat.T)
    q *= np.sign(np.diag(r))
    return q if tall else q.T


def squared_norm(
    out_channels: int, in_channels: int, k: int, init: str, normalize: str, gain: float = 1.0
) -> float | None:
    """``|W|^2`` when every weight the setting can produce has the same one; ``None`` otherwise."""
    if normalize == "ws":  # each row: sum of (W - mean)^2 / (n std^2) = 1, times gain^2
        return gain * gain * out_channels
    if normalize == "fan-in":
        return float(out_channels)
    if normalize == "fan-out":
        return float(in_channels)
    if init == "orthogonal":
        return gain * gain * min(out_channels, in_channels * k * k)
    return None
