"""Result types of ``normstats meanfield`` (:func:`normstats.meanfield`): the mean-field fixed point, the per-layer
trajectory with its optional finite-width check, the edge of chaos and the phase-diagram grid, and their dict
form (the JSON document, described by ``schema.json``).

Mean-field values are the infinite-width limit: they are labelled so and never z-tested against the finite
networks of the check, whose values differ from the limit by O(1/width). In the dict form an infinite value
(a depth scale at the edge of chaos, an unbounded ``q*``) is the string ``"inf"``, an undefined one ``null``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: What the mean-field values are, as the JSON document says it.
LIMIT = "infinite_width"


def num(x: float | None) -> float | str | None:
    """A number for JSON: ``"inf"`` for +infinity, ``null`` for undefined (None or nan)."""
    if x is None or math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return float(x)


@dataclass(frozen=True)
class QFixedPoint:
    """A fixed point ``q`` of the q-map (``inf``: the variance grows without bound above the last finite one) and
    whether it attracts the iterates near it."""

    q: float
    stable: bool

    def to_dict(self) -> dict[str, Any]:
        return {"q": num(self.q), "stable": self.stable}


@dataclass(frozen=True)
class FixedPoint:
    """The fixed point of the q-map and the C-map and the slopes and depth scales there (see
    :mod:`normstats.theory.meanfield`). ``phase`` is ``ordered`` (chi_1 < 1), ``chaotic`` (chi_1 > 1),
    ``critical`` (chi_1 = 1 to the quadrature's precision) or ``unbounded`` (no fixed point: q grows without
    bound)."""

    q_star: float
    c_star: float | None
    c_star_from_c0: float | None
    chi_1: float | None
    chi_c: float | None
    chi_q: float | None
    xi_q: float | None
    xi_c: float | None
    phase: str
    note: str | None = None
    #: Whether ``q_star`` attracts (False only for a ``q0`` exactly on an unstable fixed point).
    stable: bool | None = None
    #: Every fixed point of the q-map that was found (see :meth:`normstats.theory.meanfield.MeanField.fixed_points`).
    fixed_points: tuple[QFixedPoint, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "q_star": num(self.q_star),
            "stable": self.stable,
            "fixed_points": [p.to_dict() for p in self.fixed_points],
            "c_star": num(self.c_star),
            "c_star_from_c0": num(self.c_star_from_c0),
            "chi_1": num(self.chi_1),
            "chi_c": num(self.chi_c),
            "chi_q": num(self.chi_q),
            "xi_q": num(self.xi_q),
            "xi_c": num(self.xi_c),
            "phase": self.phase,
            "note": self.note,
        }


@dataclass(frozen=True)
class FiniteWidthPoint:
    """One layer of the finite-width check: the mean over ``networks`` random networks of width ``width`` of
    ``q = |h|^2 / width`` and of the correlation of the two inputs' pre-activations, with standard errors over
    the networks."""

    q: float
    q_se: float
    c: float
    c_se: float

    def to_dict(self) -> dict[str, Any]:
        return {"q": num(self.q), "q_se": num(self.q_se), "c": num(self.c), "c_se": num(self.c_se)}


@dataclass(frozen=True)
class LayerPoint:
    """Layer ``layer`` of the trajectory: the mean-field (infinite-width) ``q`` and ``c``, and the finite-width
    check where one was run."""

    layer: int
    q: float
    c: float | None
    finite: FiniteWidthPoint | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "q": num(self.q),
            "c": num(self.c),
            "finite_width": None if self.finite is None else self.finite.to_dict(),
        }


@dataclass(frozen=True)
class Jump:
    """A ``sigma_w^2`` where the fixed point that the q-map reaches from ``q0`` jumps (``q0`` lies on an unstable
    fixed point there, between two basins) and ``chi_1`` there leaps over 1 instead of passing through it: the
    values just below and just above (``sigma_w^2 (1 -+ 1e-9)``)."""

    sigma_w2: float
    q_below: float
    q_above: float
    chi_below: float
    chi_above: float

    def text(self) -> str:
        return (f"at sigma_w2 = {self.sigma_w2:.10g} q* jumps from {self.q_below:.6g} to {self.q_above:.6g} and "
                f"chi_1 from {self.chi_below:.6g} to {self.chi_above:.6g}")

    def to_dict(self) -> dict[str, Any]:
        return {"sigma_w2": self.sigma_w2, "q_below": num(self.q_below), "q_above": num(self.q_above),
                "chi_below": num(self.chi_below), "chi_above": num(self.chi_above)}


@dataclass(frozen=True)
class EdgeOfChaos:
    """The answer of ``--critical``: the ``sigma_w^2`` where ``chi_1`` passes through 1 at ``sigma_b^2`` and its
    ``q*``, or, where the searched range holds no edge, ``sigma_w2`` and ``q_star`` None and ``reason`` saying
    why; the range that was searched, and where (``analysed_sigma_w2``) and why (``analysed_at``) the fixed
    point of the result is analysed: the edge itself, or the stand-in that :func:`normstats.theory.meanfield.
    find_edge` chose."""

    sigma_b2: float
    sigma_w2: float | None
    q_star: float | None
    searched: tuple[float, float]
    #: Jumps of the attracting q* where chi_1 leaps over 1 (not an edge: see the README): below the edge, or the
    #: jump that stands where no edge is.
    jumps: tuple[Jump, ...] = ()
    #: Why there is no edge (None when there is one).
    reason: str | None = None
    analysed_sigma_w2: float | None = None
    analysed_at: str | None = None

    @property
    def found(self) -> bool:
        return self.sigma_w2 is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "reason": self.reason,
            "sigma_b2": self.sigma_b2,
            "sigma_w2": num(self.sigma_w2),
            "q_star": num(self.q_star),
            "searched": [self.searched[0], self.searched[1]],
            "jumps": [j.to_dict() for j in self.jumps],
            "analysed_at": {"sigma_w2": num(self.analysed_sigma_w2), "why": self.analysed_at},
        }


@dataclass(frozen=True, eq=False)
class PhaseDiagram:
    """The phase diagram's grid: ``chi_1`` (where ``q*`` is unbounded, its limit ``q -> inf``) and ``xi_c`` (nan
    where undefined, inf at the edge) on ``sigma_b2 x sigma_w2`` (rows: sigma_b2), and whether ``q*`` is unbounded
    there; computed by the coarse rule of :mod:`normstats.theory.phase`."""

    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    chi_1: np.ndarray
    xi_c: np.ndarray
    unbounded: np.ndarray


@dataclass(frozen=True, eq=False)
class MeanFieldResult:
    """Everything ``normstats meanfield`` reports; ``to_dict`` is its JSON document."""

    version: str
    layer: str
    params: dict[str, Any]
    sigma_w2: float
    sigma_b2: float
    q0: float
    c0: float | None
    depth: int
    fixed_point: FixedPoint
    trajectory: tuple[LayerPoint, ...]
    width: int | None = None
    networks: int | None = None
    seed: int | None = None
    edge: EdgeOfChaos | None = None
    phase_diagram: PhaseDiagram | None = None

    @property
    def label(self) -> str:
        """The activation as a user named it: ``tanh``, ``leaky_relu slope=0.2`` or ``expr x * tanh(x)``."""
        if self.layer == "expr":
            return f"expr {self.params['expr']}"
        return " ".join([self.layer, *(f"{k}={v}" for k, v in self.params.items())])

    def to_dict(self) -> dict[str, Any]:
        return {
            "normstats": self.version,
            "command": "meanfield",
            "limit": LIMIT,
            "inputs": {
                "layer": self.layer,
                "params": dict(self.params),
                "sigma_w2": self.sigma_w2,
                "sigma_b2": self.sigma_b2,
                "q0": self.q0,
                "c0": self.c0,
                "depth": self.depth,
                "width": self.width,
                "networks": self.networks,
                "seed": self.seed,
                "critical": self.edge is not None,
            },
            "fixed_point": self.fixed_point.to_dict(),
            "edge_of_chaos": None if self.edge is None else self.edge.to_dict(),
            "trajectory": [p.to_dict() for p in self.trajectory],
        }
