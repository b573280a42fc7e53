"""Comparing texts full of floats up to rounding: for committed outputs (tables/, the README's figures) that
another machine reproduces in all but the last bits."""

from __future__ import annotations

import csv
import io
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


#: How far a full-precision z may move. ``z = (estimate - reference) / se`` divides a rounding difference of the
#: estimate by the se, and where the se is tiny one ulp of the estimate moves z by far more than RTOL: layer
#: norm's fp std at 768 features (se under 1e-9) moved z by 1.4e-6 relative when the power sums went from BLAS
#: dot products to one compiled pass (``engine/_power_sums.c``), and a machine without a C compiler sums as
#: the former. z says nothing that the estimate, the reference and the se, each compared to RTOL, do not, so
#: its full-precision copies (the JSON's ``"z"``, the CSV's ``z`` column; the markdown prints two decimals)
#: are compared to this, absolute.
ZTOL = 1e-4
_JSON_Z = re.compile(r'("z": )(' + NUMBER.pattern + ")")


def _split_z(text: str) -> tuple[str, list[str]]:
    """``text`` with every full-precision z replaced by ``Z``, and the z's."""
    found: list[str] = []
    if text.lstrip().startswith("{"):
        def keep(match: re.Match[str]) -> str:
            found.append(match.group(2))
            return match.group(1) + "Z"

        return _JSON_Z.sub(keep, text), found
    header = text.split("\n", 1)[0].split(",")
    if "z" in header and len(header) > 2:
        rows = list(csv.reader(io.StringIO(text, newline="")))
        column = header.index("z")
        for row in rows[1:]:
            if len(row) > column and row[column]:
                found.append(row[column])
                row[column] = "Z"
        out = io.StringIO(newline="")
        csv.writer(out, lineterminator="\n" if "\r\n" not in text else "\r\n").writerows(rows)
        return out.getvalue(), found
    return text, found


def same_up_to_rounding(fresh: str, committed: str) -> str | None:
    """None when the two texts are equal but for numbers that agree to ``RTOL`` (full-precision z's to
    ``ZTOL``); else the first difference."""
    (fresh, fresh_z), (committed, committed_z) = _split_z(fresh), _split_z(committed)
    if len(fresh_z) != len(committed_z):
        return f"{len(fresh_z)} z values against {len(committed_z)}"
    for x, y in zip(fresh_z, committed_z):
        if x != y and not math.isclose(float(x), float(y), rel_tol=0.0, abs_tol=ZTOL):
            return f"z {x} != {y}"
    a, b = NUMBER.sub("#", fresh), NUMBER.sub("#", committed)
    if a != b:
        a, b = a.splitlines(), b.splitlines()
        line = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        return f"text differs at line {line + 1}"
    for x, y in zip(NUMBER.findall(fresh), NUMBER.findall(committed)):
        if not math.isclose(float(x), float(y), rel_tol=RTOL, abs_tol=ATOL):
            return f"{x} != {y}"
    return None
