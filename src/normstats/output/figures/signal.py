"""The signal-propagation plot of a network run, a panel per pass: per layer (top level, in order), the fp std
(the layer's output) in one panel and the bp std (the gradient at the layer's input) in the next, each on a log
axis with its 95% band, the infinite-width (mean-field) value dashed where there is one, and the closing lines'
pass band dotted; as the plots people check normalizer-free networks with (Brock et al. 2021) but with error bars
and the backward pass. The two passes get an axis each because they may be orders of magnitude apart (fp
NormProp keeps fp at 1 while bp grows to 46 at depth 40). For maps, a third panel shows the NF-ResNet figures:
the average squared channel mean and the average channel variance; for a token sequence, a panel of the mean
cosine between two tokens of each layer's output (rank collapse drives it to 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from normstats.output.figures.backend import pyplot, save
from normstats.output.results.network import BAND, NetworkResult, check_band
from normstats.output.results.table import Z95

#: Line colours (matplotlib's default cycle): forward, backward; the NF-ResNet figures.
FP_COLOUR, BP_COLOUR = "#1f77b4", "#d62728"
MEAN_SQ_COLOUR, VAR_COLOUR = "#2ca02c", "#9467bd"
#: The token cosine of a sequence.
COSINE_COLOUR = "#ff7f0e"
#: The panels in order, left to right: the two passes, then (maps only) the NF-ResNet figures.
PASS_PANELS = (
    ("fp_std", FP_COLOUR, "fp std: the layer's output"),
    ("bp_std", BP_COLOUR, "bp std: the gradient at the layer's input"),
)


def _series(result: NetworkResult, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = result.top_level()
    est = np.array([r.stats[name].estimate if name in r.stats else np.nan for r in rows])
    se = np.array([r.stats[name].se if name in r.stats else np.nan for r in rows])
    ref = np.array([r.stats[name].reference if name in r.stats and r.stats[name].reference is not None
                    else np.nan for r in rows])
    return est, se, ref


def _band_of_estimate(ax: Any, depth: np.ndarray, est: np.ndarray, se: np.ndarray, colour: str) -> None:
    """The estimate's 95% band (clipped above 0 for the log axis)."""
    ok = np.isfinite(est)
    lo, hi = est - Z95 * se, est + Z95 * se
    ax.fill_between(depth[ok], np.clip(lo[ok], 1e-300, None), hi[ok], color=colour, alpha=0.25, linewidth=0)


def plot_signal_propagation(result: NetworkResult, path: str, band: tuple[float, float] = BAND) -> None:
    """Write the plot of ``result`` to ``path`` (PNG); ``band`` is the closing lines' pass band, drawn dotted."""
    lo_band, hi_band = check_band(band)
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    rows = result.top_level()
    maps = any("channel_var" in r.stats for r in rows)
    tokens = any("token_cosine" in r.stats for r in rows)
    pairs = any("correlation" in r.stats for r in rows)
    panels = 2 + maps + tokens + pairs
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2), squeeze=False)
    depth = np.arange(1, len(rows) + 1)
    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax, (name, colour, title) in zip(axes[0], PASS_PANELS):
        est, se, ref = _series(result, name)
        label = name.replace("_", " ")
        ax.plot(depth, est, color=colour, marker="o", markersize=3, linewidth=1.5, label=f"{label} ± 95% band")
        _band_of_estimate(ax, depth, est, se, colour)
        if np.isfinite(ref).any():
            ax.plot(depth, ref, color="black", linestyle=(0, (4, 3)), linewidth=1.1, zorder=5,
                    label="infinite-width limit")
        ax.axhline(1.0, color="0.5", linewidth=0.8, linestyle=":")
        for edge in (lo_band, hi_band):
            ax.axhline(edge, color="0.65", linewidth=0.8, linestyle=(0, (1, 3)))
        ax.plot([], [], color="0.65", linewidth=0.8, linestyle=(0, (1, 3)),
                label=f"pass band [{lo_band:g}, {hi_band:g}] (--band)")
        ax.set_yscale("log")
        ax.set_xlabel("layer (top level)")
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    if maps:
        ax = axes[0][2]
        for name, colour, label in (("channel_mean_sq", MEAN_SQ_COLOUR, "avg squared channel mean"),
                                    ("channel_var", VAR_COLOUR, "avg channel variance")):
            est, se, _ = _series(result, name)
            ok = np.isfinite(est)
            ax.plot(depth[ok], est[ok], color=colour, marker="o", markersize=3, label=label)
            _band_of_estimate(ax, depth, est, se, colour)
        ax.set_yscale("log")
        ax.set_xlabel("layer (top level)")
        ax.set_title("NF-ResNet figures (per input, over positions)", fontsize=10)
        ax.legend(fontsize=8)
    if tokens:
        ax = axes[0][2 + maps]
        est, se, _ = _series(result, "token_cosine")
        ok = np.isfinite(est)
        ax.plot(depth[ok], est[ok], color=COSINE_COLOUR, marker="o", markersize=3, label="token cosine ± 95% band")
        ax.fill_between(depth[ok], est[ok] - Z95 * se[ok], est[ok] + Z95 * se[ok], color=COSINE_COLOUR, alpha=0.25,
                        linewidth=0)
        ax.set_ylim(min(0.0, float(np.nanmin(est - Z95 * se))) if ok.any() else 0.0, 1.02)
        ax.axhline(1.0, color="0.5", linewidth=0.8, linestyle=":")
        ax.set_xlabel("layer (top level)")
        ax.set_title("token geometry (per input: mean cosine of two tokens)", fontsize=10)
        ax.legend(fontsize=8)
    if pairs:
        ax = axes[0][2 + maps + tokens]
        est, se, ref = _series(result, "correlation")
        ok = np.isfinite(est)
        ax.plot(depth[ok], est[ok], color=COSINE_COLOUR, marker="o", markersize=3, label="correlation ± 95% band")
        ax.fill_between(depth[ok], est[ok] - Z95 * se[ok], est[ok] + Z95 * se[ok], color=COSINE_COLOUR, alpha=0.25,
                        linewidth=0)
        if np.isfinite(ref).any():
            ax.plot(depth, ref, color="black", linestyle=(0, (4, 3)), linewidth=1.1, zorder=5,
                    label="mean-field map (width -> inf)")
        ax.axhline(1.0, color="0.5", linewidth=0.8, linestyle=":")
        ax.set_xlabel("layer (top level)")
        ax.set_title(f"two inputs of correlation {result.input_correlation:g}: cosine of the outputs", fontsize=10)
        ax.legend(fontsize=8)
    spec = result.spec if len(result.spec) <= 70 else result.spec[:67] + "..."
    networks = f"{result.inits} network{'s' if result.inits > 1 else ''}"
    fig.suptitle(f"{spec} · input {'x'.join(map(str, result.input))} · normprop {result.normprop} · "
                 f"{result.draws:,} draws over {networks} · 95% bands", fontsize=10)
    fig.tight_layout()
    save(fig, path)
