"""Figures published elsewhere, each with its source, and the test of whether a figure agrees with a reference.

A figure printed to ``d`` decimals agrees with a reference when they differ by at most half a unit in the last
printed place (``0.5 * 10**-d``); a figure given as an exact expression (``sqrt(1/(2 pi))``, ``1/k``) agrees
when it matches to float rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from normstats.layers.base import Layer

#: The constants table of Normalization Propagation and its two follow-up write-ups, as quoted in
#: normstats issue #2.
NORMPROP = (
    "Arpit et al., Normalization Propagation, arXiv:1603.01431 (2016); "
    "'Normalizing All Layers' I and II (2016)"
)


@dataclass(frozen=True)
class Figure:
    """A published value: the number, the text as printed, its printed precision and its source."""

    value: float
    text: str
    decimals: int | None  # None: an exact expression
    source: str = NORMPROP

    def tolerance(self) -> float:
        if self.decimals is None:
            return 1e-12 * max(1.0, abs(self.value))
        return 0.5 * 10.0 ** (-self.decimals) * (1 + 1e-9)

    def agrees(self, reference: float) -> bool:
        return abs(self.value - reference) <= self.tolerance()


def _exact(value: float, text: str) -> Figure:
    return Figure(value, text, None)


def _printed(text: str) -> Figure:
    return Figure(float(text), text, len(text.split(".")[1]) if "." in text else 0)


def published_figures(layer: Layer) -> dict[str, Figure]:
    """The published figures for ``layer`` with its parameters (empty where nothing was published)."""
    v = layer.values
    name = layer.name
    if name == "relu":
        return {
            "fp_mean": _exact(math.sqrt(1 / (2 * math.pi)), "sqrt(1/(2 pi))"),
            "fp_std": _exact(math.sqrt(0.5 - 1 / (2 * math.pi)), "sqrt(1/2 - 1/(2 pi))"),
            "bp_std": _exact(math.sqrt(0.5), "sqrt(1/2)"),
        }
    if name == "sigmoid":
        return {"fp_mean": _exact(0.5, "1/2"), "fp_std": _printed("0.2083"), "bp_std": _printed("0.2123")}
    # Pooling figures were published for one window per draw: square, stride = k, no padding, interior.
    one_window = "k" in v and v.get("stride") == v["k"] and not v.get("padding") and v.get("size") == "interior"
    if name == "maxpool" and one_window and v["k"] in (2, 3):
        table = {3: ("1.4850", "0.5978", "1/3"), 2: ("1.0291", "0.7010", "1/2")}[v["k"]]
        return {
            "fp_mean": _printed(table[0]),
            "fp_std": _printed(table[1]),
            "bp_std": _exact(1 / v["k"], table[2]),
        }
    if name == "avgpool" and one_window:
        k = v["k"]
        return {
            "fp_mean": _exact(0.0, "0"),
            "fp_std": _exact(1 / k, f"1/k = 1/{k}"),
            "bp_std": _exact(1 / k**2, f"1/k^2 = 1/{k * k}"),
        }
    if name == "dropout" and v.get("convention") == "sqrt":
        return {"fp_mean": _exact(0.0, "0"), "fp_std": _exact(1.0, "1"), "bp_std": _exact(1.0, "1")}
    if name == "linear" and v.get("normalize") == "fan-in":
        return {"fp_mean": _exact(0.0, "0"), "fp_std": _exact(1.0, "1 (l2 over fan-in)")}
    if name == "linear" and v.get("normalize") == "fan-out":
        return {"fp_mean": _exact(0.0, "0"), "bp_std": _exact(1.0, "1 (l2 over fan-out)")}
    return {}
