"""Comparing texts full of floats up to rounding: for committed outputs (tables/, the README's figures) that
another machine reproduces in all but the last bits."""

from __future__ import annotations

import math
import re

#: Numbers in text: integers, decimals and exponents (``-1.5e-05``), not parts of words (``x1``, ``k=3`` keeps 3).
NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
#: How far a regenerated number may sit from the committed one: float rounding, amplified. The power sums are
#: BLAS dot products, and OpenBLAS picks its kernel by CPU (or by ``OPENBLAS_CORETYPE``), so two machines can
#: sum in a different order and differ in the last bits of a moment; ``z = (estimate - reference) / se`` turns a
#: 1e-16 difference in the estimate into about 1e-12 of z, and far more where the se is tiny: batch norm's fp std
#: (eps = 1e-5, batch 8) varies so little from draw to draw that its se is 6.5e-9, so one ulp of the estimate
#: moves z by 1.5e-8 (measured on an Intel Xeon, Haswell kernel: z 1.3914699357 against 1.3914699187 from
#: the machine that committed it). Any real change (a new seed, sample count, layer or reference) moves most
#: numbers of a table by far more than this.
RTOL = 1e-7
#: Numbers this close in absolute terms are the same: a statistic that is exact in every draw (a normalized
#: output's mean, a softmax's 1/n) has an estimate and an se made of rounding errors alone (about 1e-19), whose
#: digits change with the summation order; no figure the tables report is that small otherwise.
ATOL = 1e-15


def same_up_to_rounding(fresh: str, committed: str) -> str | None:
    """None when the two texts are equal but for numbers that agree to ``RTOL``; else the first difference."""
    a, b = NUMBER.sub("#", fresh), NUMBER.sub("#", committed)
    if a != b:
        a, b = a.splitlines(), b.splitlines()
        line = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        return f"text differs at line {line + 1}"
    for x, y in zip(NUMBER.findall(fresh), NUMBER.findall(committed)):
        if not math.isclose(float(x), float(y), rel_tol=RTOL, abs_tol=ATOL):
            return f"{x} != {y}"
    return None
