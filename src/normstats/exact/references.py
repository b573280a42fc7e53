"""The dispatch that picks a reference for each statistic of a layer, and the :class:`Reference` it returns.

For each statistic the dispatch tries the layer's closed form first, then its quadrature, the way
``scipy.stats`` tries ``formula -> quadrature``. A caller can force one path with ``method=``; forcing a path
the layer does not have for a statistic raises instead of guessing. The dispatch needs only the two hooks of
:class:`~normstats.layers.base.Layer` (``formula`` and ``quadrature``) and its ``name``; it imports nothing
from :mod:`normstats.layers`, which sits above this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from normstats.errors import NormstatsError
from normstats.stats import STATS

#: Reference kinds as they appear in the JSON document.
CLOSED_FORM = "closed_form"
QUADRATURE = "quadrature"
METHODS = ("auto", "formula", "quadrature")


@dataclass(frozen=True)
class Reference:
    """An exact value of a statistic and how it was obtained (``closed_form`` or ``quadrature``)."""

    value: float
    kind: str


class HasReferences(Protocol):
    """What the dispatch needs of a layer: its name and its two reference hooks."""

    name: str

    def formula(self) -> dict[str, Any]: ...

    def quadrature(self) -> dict[str, Any]: ...


def reference_moments(layer: HasReferences, method: str = "auto") -> dict[str, Reference | None]:
    """The reference for each statistic of ``layer``: ``None`` where the layer has none.

    ``method="auto"`` takes the closed form where there is one and quadrature otherwise;
    ``"formula"`` or ``"quadrature"`` forces that path: statistics the path does not cover get no
    reference, and a path that covers none of the layer's statistics raises.
    """
    if method not in METHODS:
        raise NormstatsError(f"--reference must be one of: {', '.join(METHODS)}; got {method!r}")
    paths = {"formula": (layer.formula(), CLOSED_FORM), "quadrature": (layer.quadrature(), QUADRATURE)}
    order = ["formula", "quadrature"] if method == "auto" else [method]
    out: dict[str, Reference | None] = {}
    for stat in STATS:
        found = [Reference(float(paths[p][0][stat]), paths[p][1]) for p in order if stat in paths[p][0]]
        out[stat] = found[0] if found else None
    if method != "auto" and all(r is None for r in out.values()):
        other = "quadrature" if method == "formula" else "formula"
        raise NormstatsError(
            f"--reference {method}: layer '{layer.name}' has no {method} reference; "
            f"use --reference auto or {other}"
        )
    return out
