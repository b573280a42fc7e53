"""Two correlated inputs a draw through a vector network (``--input N --input-correlation RHO``).

Every draw's input ``x1`` is the engine's (so every fp and bp statistic is the one the run without the option
gives, number for number); its partner is ``x2 = RHO x1 + sqrt(1 - RHO^2) e`` with ``e ~ N(0, I)`` independent of
``x1``, so ``x2 ~ N(0, I)`` and every pair of coordinates ``(x1_i, x2_i)`` has correlation ``RHO``. Both go
forward through the same weights (and the same dropout masks: the draw's uniforms); only ``x1`` goes back.

``e`` is not one of the engine's streams (adding one would move the blocks, hence every draw, of the run): it
comes from a generator seeded by a hash of the draw's own ``x1`` (blake2b of its bytes), so it is the same
however the draws are chunked or shared between workers, and independent of ``x1`` for every purpose short of
inverting the hash. Under ``--method qmc`` ``x1`` is a quasi-random point and ``e`` pseudo-random.

Per draw and layer, the tallied figure is the cosine of the two outputs, ``sum(y1 y2) / sqrt(sum y1^2 sum
y2^2)`` (not centred): at infinite width it tends to ``E[y1 y2] / E[y^2]``, which for the output of a linear
layer (centred) is the mean-field correlation ``c^l`` of Poole et al. (2016) and for an activation's output is
the ``c`` the next linear layer inherits (a linear layer maps the uncentred second moments ``E[y1 y2]`` and
``E[y^2]`` by the same factor), so the figures along the network follow the C-map layer by layer. The centred
version would differ from ``c^l`` at every activation with a non-zero mean (relu). A draw whose output is 0
(no direction) counts as cosine 0.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

#: The bit generator of ``e`` (the engine's Monte Carlo streams use the same).
_BITS = np.random.SFC64


def partner(x: np.ndarray, rho: float) -> np.ndarray:
    """``RHO x + sqrt(1 - RHO^2) e`` per row of ``x`` (a draw), ``e`` from a generator seeded by the row's bytes.
    A new array."""
    rows = np.ascontiguousarray(x, dtype=np.float64)
    e = np.empty_like(rows)
    for i, row in enumerate(rows):
        seed = int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=16).digest(), "little")
        np.random.Generator(_BITS(seed)).standard_normal(out=e[i])
    e *= math.sqrt((1.0 - rho) * (1.0 + rho))
    e += rho * rows
    return e


def pair_cosine(y1: np.ndarray, y2: np.ndarray) -> np.ndarray:
    """Per row, ``sum(y1 y2) / sqrt(sum y1^2 sum y2^2)`` (0 where either is 0)."""
    a = np.einsum("rd,rd->r", y1, y2)
    norms = np.sqrt(np.einsum("rd,rd->r", y1, y1) * np.einsum("rd,rd->r", y2, y2))
    return np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)
