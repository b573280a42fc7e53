"""The spectrum plot of ``normstats jacobian --plot``: at each chosen depth, the histogram of the squared singular
values of the Jacobian (every draw's pooled) on a log axis, with the measured mean solid and the
free-probability (infinite-width) mean dashed. Values at 0 (a ReLU's zero derivatives) cannot sit on a log axis:
their share is said in the legend. An isometric spectrum (all values equal) is one bar."""

from __future__ import annotations

import numpy as np

from normstats.output.results.jacobian import JacobianResult
from normstats.output.figures.backend import pyplot, save

#: One colour per depth (matplotlib's default cycle).
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
#: Below this fraction of the largest value a squared singular value counts as 0 (float64 resolves no more).
ZERO = 1e-26


def plot_spectrum(result: JacobianResult, path: str) -> None:
    """Write the histogram of ``result``'s squared singular values per depth to ``path`` (PNG)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    pooled = [d.eigenvalues for d in result.depths]
    top = max(float(np.max(p)) for p in pooled)
    positive = np.concatenate([p[p > ZERO * top] for p in pooled])
    lo, hi = np.log10(positive.min()), np.log10(positive.max())
    if hi - lo < 1e-6:
        lo, hi = lo - 0.05, hi + 0.05
    bins = np.logspace(lo, hi, 61)
    for i, (d, lam) in enumerate(zip(result.depths, pooled)):
        colour = COLOURS[i % len(COLOURS)]
        zero = lam <= ZERO * top
        label = f"depth {d.depth} ({d.label} {d.layer})"
        if zero.any():
            label += f", {zero.mean():.0%} at 0"
        ax.hist(lam[~zero], bins=bins, histtype="step", linewidth=1.6, color=colour, label=label,
                weights=np.full((~zero).sum(), 1.0 / len(lam)))
        ax.axvline(d.stats["mean"].estimate, color=colour, linewidth=1.0)
        if d.prediction is not None:
            ax.axvline(d.prediction.mean, color=colour, linewidth=1.0, linestyle="--")
    ax.set_xscale("log")
    ax.set_xlabel("squared singular value λ of the Jacobian")
    ax.set_ylabel("fraction of values per bin")
    ax.set_title(f"{result.draws:,} draws · init {result.init} · normprop {result.normprop} · solid: measured mean, "
                 "dashed: free-probability mean (∞ width)", fontsize=8)
    ax.legend(fontsize=8)
    spec = result.spec if len(result.spec) <= 70 else result.spec[:67] + "..."
    fig.suptitle(f"{spec} · input {result.input}", fontsize=10)
    fig.tight_layout()
    save(fig, path)
