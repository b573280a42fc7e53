"""The signal-propagation plot of a network run: per layer (top level, in order), the fp std and the bp std on a
log axis with their 95% bands and the infinite-width (mean-field) values dashed, as the plots people check
normalizer-free networks with (Brock et al. 2021) but with error bars and the backward pass. For maps, a
second panel shows the NF-ResNet figures: the average squared channel mean and the average channel variance;
for a token sequence, the mean cosine between two tokens of each layer's output (rank collapse drives it to 1).
"""

from __future__ import annotations

import numpy as np

from normstats.output.results.network import NetworkResult
from normstats.output.figures.backend import pyplot, save
from normstats.output.results.table import Z95

#: Line colours (matplotlib's default cycle): forward, backward; the NF-ResNet figures.
FP_COLOUR, BP_COLOUR = "#1f77b4", "#d62728"
MEAN_SQ_COLOUR, VAR_COLOUR = "#2ca02c", "#9467bd"
#: The token cosine of a sequence.
COSINE_COLOUR = "#ff7f0e"


def _series(result: NetworkResult, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = result.top_level()
    est = np.array([r.stats[name].estimate if name in r.stats else np.nan for r in rows])
    se = np.array([r.stats[name].se if name in r.stats else np.nan for r in rows])
    ref = np.array([r.stats[name].reference if name in r.stats and r.stats[name].reference is not None
                    else np.nan for r in rows])
    return est, se, ref


def plot_signal_propagation(result: NetworkResult, path: str) -> None:
    """Write the plot of ``result`` to ``path`` (PNG)."""
    plt = pyplot()
    rows = result.top_level()
    maps = any("channel_var" in r.stats for r in rows)
    tokens = any("token_cosine" in r.stats for r in rows)
    fig, axes = plt.subplots(1, 2 if maps or tokens else 1, figsize=(11 if maps or tokens else 7, 4.2),
                             squeeze=False)
    depth = np.arange(1, len(rows) + 1)
    ax = axes[0][0]
    for name, colour, label in (("fp_std", FP_COLOUR, "fp std (output)"), ("bp_std", BP_COLOUR,
                                                                         "bp std (gradient at the input)")):
        est, se, ref = _series(result, name)
        ax.plot(depth, est, color=colour, marker="o", markersize=3, linewidth=1.5, label=label)
        lo, hi = est - Z95 * se, est + Z95 * se
        ax.fill_between(depth, np.clip(lo, 1e-300, None), hi, color=colour, alpha=0.25, linewidth=0)
        if np.isfinite(ref).any():
            ax.plot(depth, ref, color="black", linestyle=(0, (4, 3)), linewidth=1.1, zorder=5,
                    label=f"{name.replace('_', ' ')}, infinite-width limit")
    ax.set_yscale("log")
    ax.axhline(1.0, color="0.5", linewidth=0.8, linestyle=":")
    ax.set_xlabel("layer (top level)")
    ax.set_ylabel("std")
    ax.set_title(f"normprop {result.normprop} · {result.draws:,} draws · 95% bands", fontsize=10)
    ax.legend(fontsize=8)
    if maps:
        ax2 = axes[0][1]
        for name, colour, label in (("channel_mean_sq", MEAN_SQ_COLOUR, "avg squared channel mean"),
                                    ("channel_var", VAR_COLOUR, "avg channel variance")):
            est, se, _ = _series(result, name)
            ok = np.isfinite(est)
            ax2.plot(depth[ok], est[ok], color=colour, marker="o", markersize=3, label=label)
            ax2.fill_between(depth[ok], np.clip(est[ok] - Z95 * se[ok], 1e-300, None), est[ok] + Z95 * se[ok],
                             color=colour, alpha=0.25, linewidth=0)
        ax2.set_yscale("log")
        ax2.set_xlabel("layer (top level)")
        ax2.set_title("NF-ResNet figures (per input, over positions)", fontsize=10)
        ax2.legend(fontsize=8)
    if tokens:
        ax2 = axes[0][1]
        est, se, _ = _series(result, "token_cosine")
        ok = np.isfinite(est)
        ax2.plot(depth[ok], est[ok], color=COSINE_COLOUR, marker="o", markersize=3, label="token cosine")
        ax2.fill_between(depth[ok], est[ok] - Z95 * se[ok], est[ok] + Z95 * se[ok], color=COSINE_COLOUR, alpha=0.25,
                         linewidth=0)
        ax2.set_ylim(min(0.0, float(np.nanmin(est - Z95 * se))) if ok.any() else 0.0, 1.02)
        ax2.axhline(1.0, color="0.5", linewidth=0.8, linestyle=":")
        ax2.set_xlabel("layer (top level)")
        ax2.set_title("token geometry (per input: mean cosine of two tokens)", fontsize=10)
        ax2.legend(fontsize=8)
    spec = result.spec if len(result.spec) <= 70 else result.spec[:67] + "..."
    fig.suptitle(f"{spec} · input {'x'.join(map(str, result.input))}", fontsize=10)
    fig.tight_layout()
    save(fig, path)
