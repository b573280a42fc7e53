"""Max and average pooling over one k x k window per draw (stride = k: windows do not overlap)."""

from __future__ import annotations

from typing import Any

import numpy as np

from normstats.errors import ParameterError
from normstats.layers.base import Layer
from normstats.params import Param
from normstats.reference import max_normal_moments
from normstats.registry import register_layer

_POOL_PARAMS = (
    Param("k", int, 2, "window size: k x k inputs per window", low=1, high=32),
    Param("stride", int, None, "step between windows", low=1, high=32, default_text="k"),
)


class _Pool(Layer):
    params = _POOL_PARAMS

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        if values["stride"] is None:
            values["stride"] = values["k"]
        if values["stride"] != values["k"]:
            raise ParameterError(
                f"parameter --stride of layer '{self.name}' must equal --k ({values['k']}): "
                f"only non-overlapping windows are modelled; got {values['stride']}"
            )
        return values

    @property
    def in_dim(self) -> int:
        return self.values["k"] ** 2

    out_dim = 1  # type: ignore[assignment]



@register_layer("maxpool", aliases=("max_pool", "maxpool2d"))
class MaxPool(_Pool):
    """The largest of the k*k inputs of a window; backward routes dy to the window's argmax (first on ties)."""

    summary = "max over a k x k window"

    def forward_backward(self, x, dy, u):  # type: ignore[no-untyped-def]
        rows = np.arange(x.shape[0])
        arg = np.argmax(x, axis=1)
        dx = np.zeros_like(x)
        dx[rows, arg] = dy[:, 0]
        return x[rows, arg][:, None], dx

    def formula(self) -> dict[str, float]:
        # dx holds dy at one of the n = k^2 positions and 0 elsewhere: mean 0, E dx^2 = 1/n.
        return {"bp_mean": 0.0, "bp_std": 1.0 / self.values["k"]}

    def quadrature(self) -> dict[str, float]:
        mean, std = max_normal_moments(self.values["k"] ** 2)
        return {"fp_mean": mean, "fp_std": std}


@register_layer("avgpool", aliases=("avg_pool", "avgpool2d"))
class AvgPool(_Pool):
    """The mean of the k*k inputs of a window; backward spreads dy / k^2 over the window."""

    summary = "mean over a k x k window"

    def forward_backward(self, x, dy, u):  # type: ignore[no-untyped-def]
        n = x.shape[1]
        return x.mean(axis=1, keepdims=True), np.repeat(dy / n, n, axis=1)

    def formula(self) -> dict[str, float]:
        # y = mean of n = k^2 iid N(0,1): sd 1/k. dx_j = dy / n: sd 1/n = 1/k^2.
        k = self.values["k"]
        return {"fp_mean": 0.0, "fp_std": 1.0 / k, "bp_mean": 0.0, "bp_std": 1.0 / k**2}


__all__ = ["AvgPool", "MaxPool"]
