"""The width sweep's plot: per top-level layer, the fp std and the bp std (and, with attention, the logits' std),
one curve per width on a log axis with its 95% band, so a layer whose curves part with width stands out; and a
last panel of each layer's slope of log std against log width with its 95% interval, beside the 0 that means
"does not depend on width"."""

from __future__ import annotations

from typing import Any

import numpy as np

from normstats.output.figures.backend import pyplot, save
from normstats.output.results.table import Z95
from normstats.output.results.width_sweep import STAT_LABELS, WidthSweepResult

#: The panels of per-width curves, when any layer has the statistic.
CURVE_PANELS = (
    ("fp_std", "fp std: the layer's output"),
    ("bp_std", "bp std: the gradient at the layer's input"),
    ("attention_logit_std", "attention logits' std (c Q K^T)"),
)
#: The slope panel's markers, by statistic.
SLOPE_STYLES = {"fp_std": ("#1f77b4", "o"), "bp_std": ("#d62728", "s"), "attention_logit_std": ("#2ca02c", "^")}


def plot_width_sweep(result: WidthSweepResult, path: str) -> None:
    """Write the sweep's plot to ``path`` (PNG)."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    top = [i for i, layer in enumerate(result.layers) if "." not in layer.index]
    panels = [(name, title) for name, title in CURVE_PANELS
              if any(name in result.layers[i].slopes for i in top)]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(5.2 * (len(panels) + 1), 4.2), squeeze=False)
    depth = np.arange(1, len(top) + 1)
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(result.runs)))
    for ax, (name, title) in zip(axes[0], panels):
        # a statistic only some layers have (attention's logits) as points: a line would join distant layers
        every = all(name in result.layers[i].slopes for i in top)
        for k, (w, colour) in enumerate(zip(result.run_widths, colours)):
            stats = [result.stat(i, name)[k] for i in top]
            est = np.array([np.nan if s is None else s.estimate for s in stats])
            se = np.array([np.nan if s is None else s.se for s in stats])
            ok = np.isfinite(est) & (est > 0)
            if not every:
                ax.errorbar(depth[ok], est[ok], yerr=Z95 * se[ok], color=colour, marker="o", markersize=5,
                            linestyle="none", capsize=2, label=f"width {w}")
                continue
            ax.plot(depth[ok], est[ok], color=colour, marker="o", markersize=3, linewidth=1.4, label=f"width {w}")
            ax.fill_between(depth[ok], np.clip(est[ok] - Z95 * se[ok], 1e-300, None), est[ok] + Z95 * se[ok],
                            color=colour, alpha=0.2, linewidth=0)
        ax.set_yscale("log")
        ax.set_xlabel("layer (top level)")
        ax.set_ylabel(STAT_LABELS[name])
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    ax = axes[0][-1]
    offsets = np.linspace(-0.15, 0.15, len(panels))
    for offset, (name, _) in zip(offsets, panels):
        colour, marker = SLOPE_STYLES[name]
        slopes = [result.layers[i].slopes.get(name) for i in top]
        est = np.array([np.nan if s is None or s.estimate is None else s.estimate for s in slopes])
        se = np.array([np.nan if s is None or s.se is None else s.se for s in slopes])
        ok = np.isfinite(est)
        ax.errorbar(depth[ok] + offset, est[ok], yerr=Z95 * np.nan_to_num(se[ok]), color=colour, marker=marker,
                    markersize=4, linestyle="none", capsize=2, label=STAT_LABELS[name])
    ax.axhline(0.0, color="0.5", linewidth=0.8, linestyle=":")
    ax.set_xlabel("layer (top level)")
    ax.set_ylabel("slope of log std against log width")
    ax.set_title("slope ± 95% interval (0: independent of width)", fontsize=10)
    ax.legend(fontsize=8)
    for ax in axes[0]:
        ax.set_xlim(0.5, len(top) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    first = result.first
    spec = first.spec if len(first.spec) <= 70 else first.spec[:67] + "..."
    fig.suptitle(f"{spec} · input {'x'.join(map(str, first.input))} · widths "
                 f"{','.join(map(str, result.widths))} · {first.draws:,} draws a width · 95% bands", fontsize=10)
    fig.tight_layout()
    save(fig, path)
