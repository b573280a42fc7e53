"""Number formatting shared by the terminal tables and the text exports."""

from __future__ import annotations

import math
from typing import Any, Iterable

from normstats.output.results.table import Stat


#: What a statistic exact in every draw shows in place of ``± se``.
EXACT_WORDS = "exact in every draw"
#: What a model's statistic found the same in every draw to float rounding shows in place of ``± se``
#: (:func:`normstats.models.run.rounding_exact`).
ROUNDING_WORDS = "exact to rounding"


def estimate(stat: Stat) -> str:
    """A statistic's estimate as shown: ``estimate ± se``; ``value (exact in every draw)`` for a statistic that
    has no sampling error (:attr:`Stat.exact`); or the word ``infinite`` / ``undefined`` (never a number with an
    se) where the moment is not finite (:attr:`Stat.status`)."""
    if stat.status != "finite":
        return stat.status
    if stat.exact:
        return f"{ref(stat.estimate)} ({EXACT_WORDS})"
    return pm(stat.estimate, stat.se)


#: Decimals beyond which an estimate near 0 is written in scientific notation.
MAX_DECIMALS = 10
#: Magnitude (of the estimate or its se) from which ``estimate ± se`` is written in scientific notation: fixed
#: notation would print every digit of a number like 1e150 (a residual branch scaled by ``alpha=1e150``).
SCIENTIFIC_FROM = 1e12


def pm(estimate: float, se: float) -> str:
    """``estimate ± se`` with the se to two significant digits and the estimate to the same place; an
    estimate without Monte Carlo error (se 0: the conditional estimator knows it exactly) to 10 digits; in
    scientific notation from :data:`SCIENTIFIC_FROM` on (an estimate or se that large)."""
    if se == 0.0:
        return f"{estimate:.10g} ± 0"
    if not math.isfinite(se) or se < 0.0:  # an se beyond float64 (estimates near 1e300): said in words
        return f"{estimate:.6g} ± {ref(se) if se >= 0.0 or math.isnan(se) else 'undefined'}"
    if max(abs(estimate), se) >= SCIENTIFIC_FROM:
        return _pm_scientific(estimate, se)
    decimals = max(0, 1 - math.floor(math.log10(se)))
    if decimals > MAX_DECIMALS:
        # an se at the level of float rounding (a normalized output's mean, exact in every draw): the se in
        # scientific notation, and the estimate to 10 digits (or also in scientific notation near 0)
        if abs(estimate) < 10.0 ** -MAX_DECIMALS:
            return f"{estimate:.1e} ± {se:.1e}"
        return f"{estimate:.10g} ± {se:.1e}"
    return f"{estimate:.{decimals}f} ± {se:.{decimals}f}"


def _pm_scientific(estimate: float, se: float) -> str:
    """A huge ``estimate ± se`` in scientific notation: the se to two significant digits and the estimate to the
    same place (at most 10 significant digits), e.g. ``-6.6e+148 ± 9.2e+148``."""
    if not math.isfinite(estimate):
        return f"{estimate:.6g} ± {se:.1e}"
    place = math.floor(math.log10(se)) - 1  # the se's second significant digit
    if abs(estimate) < 10.0**place:  # below that place: rounds to 0
        return f"{0.0:.1e} ± {se:.1e}"
    digits = math.floor(math.log10(abs(estimate))) - place
    return f"{estimate:.{min(digits, 9)}e} ± {se:.1e}"


def ref(value: float | None) -> str:
    """A reference to 10 significant digits."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return "undefined" if math.isnan(value) else "infinite" if value > 0 else "-infinite"
    if value == 0.0:
        return "0"
    return f"{value:.10g}"


def z(value: float | None) -> str:
    """A z-score to two decimals; in scientific notation from :data:`SCIENTIFIC_FROM` on."""
    if value is None:
        return "—"
    return f"{value:+.2e}" if abs(value) >= SCIENTIFIC_FROM else f"{value:+.2f}"


def published(stat: Stat) -> str:
    if stat.figure is None:
        return "—"
    mark = {True: " ✓", False: " ✗", None: ""}[stat.published_agrees]
    return stat.figure.text + mark


def constant(value: float | None) -> str:
    return ref(value) if value is not None and not math.isfinite(value) else "—" if value is None else f"{value:.10g}"


def not_finite_lines(rows: Iterable[Any]) -> list[str]:
    """One line per statistic that is infinite or undefined, saying which and why."""
    lines = []
    for row in rows:
        label = " ".join(filter(None, (row.layer, row.describe_params())))
        for name, stat in row.stats().items():
            if stat.status != "finite":
                lines.append(f"{label}: {stat_label(name)} is {stat.status}: {stat.reason}")
    return lines


def stat_label(name: str) -> str:
    return name.replace("_", " ")


def stat_cell(stat: Stat | None) -> str:
    """A network or model statistic as shown: ``estimate ± se``, ``undefined`` where it is not finite, ``—``
    where the layer has none; ``value (exact in every draw)`` for a statistic a network's layer declares exact,
    ``value (exact to rounding)`` for a model's statistic found the same in every draw to float rounding."""
    if stat is None:
        return "—"
    if not math.isfinite(stat.estimate):
        return "undefined"
    if stat.exact:
        return f"{ref(stat.estimate)} ({ROUNDING_WORDS if stat.exact_by == 'rounding' else EXACT_WORDS})"
    return pm(stat.estimate, stat.se)


def limit_cell(stat: Stat | None) -> str:
    """A statistic's infinite-width limit as shown, ``—`` where none is computed."""
    if stat is None or stat.reference is None:
        return "—"
    if not math.isfinite(stat.reference):  # a limit beyond float64: the word, never "nan"
        return ref(stat.reference)
    return "0" if abs(stat.reference) < 1e-12 else f"{stat.reference:.6g}"


def difference_cell(stat: Stat | None) -> str:
    """The estimate's difference from its limit, ``—`` where there is none."""
    if stat is None or stat.difference is None:
        return "—"
    if not math.isfinite(stat.difference):
        return ref(stat.difference)
    return f"{stat.difference:+.2g}"
