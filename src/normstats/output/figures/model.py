"""The signal-propagation plot of a model run: every module call in the order its output was produced, the fp
std (its output) in one panel and the bp std (the gradient at its input) in another, on log axes with their 95%
bands; where the model has 4-D maps, a third panel with the NF-ResNet figures (Brock et al. 2021)."""

from __future__ import annotations

import numpy as np

from normstats.output.figures.backend import pyplot, save
from normstats.output.figures.signal import BP_COLOUR, FP_COLOUR, MEAN_SQ_COLOUR, VAR_COLOUR
from normstats.output.results.model import ModelResult


def _series(result: ModelResult, name: str) -> tuple[np.ndarray, np.ndarray]:
    rows = result.in_flow_order()
    est = np.array([r.stats[name].estimate if name in r.stats else np.nan for r in rows], dtype=float)
    q = np.array([r.stats[name].se * r.stats[name].quantile if name in r.stats else np.nan for r in rows], dtype=float)
    return est, q


def _band(ax: object, x: np.ndarray, est: np.ndarray, q: np.ndarray, colour: str, label: str) -> None:
    ok = np.isfinite(est) & (est > 0)
    lo = np.clip(est - np.nan_to_num(q), est * 1e-3, None)
    ax.plot(x[ok], est[ok], color=colour, marker="o", markersize=2.5, linewidth=1.2, label=label)  # type: ignore[attr-defined]
    ax.fill_between(x[ok], lo[ok], (est + np.nan_to_num(q))[ok], color=colour, alpha=0.25, linewidth=0)  # type: ignore[attr-defined]


def plot_model(result: ModelResult, path: str) -> None:
    """Write the plot of ``result`` to ``path`` (PNG)."""
    plt = pyplot()
    rows = result.in_flow_order()
    maps = any("channel_var" in r.stats for r in rows)
    panels = 3 if maps else 2
    fig, axes = plt.subplots(panels, 1, figsize=(10, 2.8 * panels + 0.6), sharex=True, squeeze=False)
    x = np.arange(len(rows))
    for ax, name, colour, label in ((axes[0][0], "fp_std", FP_COLOUR, "fp std (output)"),
                                    (axes[1][0], "bp_std", BP_COLOUR, "bp std (gradient at the input)")):
        est, q = _series(result, name)
        zeros = int(np.sum(est == 0))
        _band(ax, x, est, q, colour, label + (f"; {zeros} exact zeros not drawn (log axis)" if zeros else ""))
        ax.set_yscale("log")
        ax.axhline(1.0, color="0.5", linewidth=0.8, linestyle=":")
        for edge in (0.5, 2.0):
            ax.axhline(edge, color="0.75", linewidth=0.6, linestyle="--")
        ax.set_ylabel("std")
        ax.legend(fontsize=8, loc="best")
    if maps:
        ax = axes[2][0]
        for name, colour, label in (("channel_mean_sq", MEAN_SQ_COLOUR, "avg squared channel mean"),
                                    ("channel_var", VAR_COLOUR, "avg channel variance")):
            est, q = _series(result, name)
            _band(ax, x, est, q, colour, label)
        ax.set_yscale("log")
        ax.set_ylabel("NF-ResNet figures")
        ax.legend(fontsize=8, loc="best")
    bottom = axes[panels - 1][0]
    bottom.set_xlabel("module call, in the order its output was produced")
    if len(rows) <= 40:
        bottom.set_xticks(x)
        bottom.set_xticklabels([r.label for r in rows], rotation=90, fontsize=6)
    axes[0][0].set_title(f"{result.source} · input {result.input_text} · batch {result.batch} · {result.mode} · "
                         f"{result.draws:,} draws over {result.inits} init{'s' if result.inits > 1 else ''} · "
                         "95% bands", fontsize=9)
    fig.tight_layout()
    save(fig, path)
