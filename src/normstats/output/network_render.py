"""The network table for the terminal and its text exports (CSV in long form, Markdown), and the closing line
that says where the forward or backward std first leaves [1/2, 2]."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from normstats.output import formatting as fmt
from normstats.output.export import csv_cell
from normstats.output.network_results import BAND, LayerStats, NetworkResult
from normstats.output.results import Stat, _num

CSV_COLUMNS = (
    "network", "input", "index", "layer", "params", "shape", "statistic", "estimate", "se", "ci95_lo", "ci95_hi", "mean_field",
    "difference", "draws", "inits", "normprop", "seed",
)


def _params(row: LayerStats) -> str:
    return ";".join(f"{k}={v}" for k, v in row.params.items())


def _block_name(row: LayerStats) -> str:
    p = row.params
    beta = f"auto: {p['beta_value']:.4g}" if p.get("beta") == "auto" else p["beta"]
    return f"res(alpha={p['alpha']:g}, beta={beta})"


def _shape(row: LayerStats) -> str:
    return "x".join(str(d) for d in row.shape)


def _stat(stat: Stat | None) -> str:
    if stat is None:
        return "—"
    if not math.isfinite(stat.estimate):
        return "undefined"
    return fmt.pm(stat.estimate, stat.se)


def _limit(stat: Stat | None) -> str:
    if stat is None or stat.reference is None:
        return "—"
    return "0" if abs(stat.reference) < 1e-12 else f"{stat.reference:.6g}"


def _diff(stat: Stat | None) -> str:
    if stat is None or stat.difference is None:
        return "—"
    return f"{stat.difference:+.2g}"


def summary_lines(result: NetworkResult) -> list[str]:
    """The closing lines: where each pass leaves the band first (or that it never does), and for ``split`` that
    the backward pass is not the true gradient."""
    exits = result.first_exits()
    lo, hi = BAND
    lines = []
    fp, bp = exits["fp_std"], exits["bp_std"]
    lines.append(
        f"fp std stays within [{lo:g}, {hi:g}] at every layer" if fp is None
        else f"fp std leaves [{lo:g}, {hi:g}] first at layer {fp[0]} ({fp[1]:.4g}), counting from the input"
    )
    lines.append(
        f"bp std stays within [{lo:g}, {hi:g}] at every layer" if bp is None
        else f"bp std leaves [{lo:g}, {hi:g}] first at layer {bp[0]} ({bp[1]:.4g}), counting back from the output"
    )
    if not result.true_gradient:
        lines.append("--normprop split divides the backward pass by each layer's bp std: it is no longer the "
                     "gradient of the forward pass")
    return lines


def network_table(result: NetworkResult, title: str) -> Any:
    """Two lines per layer, fp (its output) then bp (the gradient at its input): mean and std with their se,
    each beside its wide limit, and the std's difference from it."""
    from rich.console import Group
    from rich.table import Table as RichTable
    from rich.text import Text

    t = RichTable(title=title, title_justify="left", header_style="bold", pad_edge=False)
    cols = ("#", "layer", "shape", "", "mean ± se", "limit", "std ± se", "limit", "Δ std")
    for i, col in enumerate(cols):
        t.add_column(col, justify="left" if i < 4 else "right", no_wrap=i >= 3,
                     overflow="fold" if i < 3 else "ellipsis")
    for row in result.layers:
        s = row.stats
        name = "  " * row.depth + (_block_name(row) if row.layer == "res" else row.layer)
        for p in ("fp", "bp"):
            mean, std = s.get(f"{p}_mean"), s.get(f"{p}_std")
            first = p == "fp"
            t.add_row(row.index if first else "", name if first else "", _shape(row) if first else "", p,
                      _stat(mean), _limit(mean), _stat(std), _limit(std), _diff(std))
    extras = _extras_table(result)
    legend = Text(
        "fp: the layer's output; bp: the gradient at its input. limit: the infinite-width (mean-field) value, a "
        "limit and not a test (Δ = estimate - limit); — where none is computed.",
        style="dim",
    )
    parts = [t] + ([extras] if extras is not None else []) + [legend, Text("\n".join(summary_lines(result)))]
    return Group(*parts)


def _extras_table(result: NetworkResult) -> Any:
    """The NF-ResNet figures (maps) and the residual branches' variance, where any layer has them."""
    from rich.table import Table as RichTable

    names = ("channel_mean_sq", "channel_var", "branch_var")
    rows = [r for r in result.layers if any(n in r.stats for n in names)]
    if not rows:
        return None
    t = RichTable(title="Signal propagation (per input: channel figures over positions)", title_justify="left",
                  header_style="bold")
    for col in ("#", "layer", "avg squared channel mean", "avg channel variance", "branch variance",
                "branch wide limit"):
        t.add_column(col, justify="left" if col in ("#", "layer") else "right")
    for row in rows:
        s = row.stats
        t.add_row(row.index, row.layer, _stat(s.get("channel_mean_sq")), _stat(s.get("channel_var")),
                  _stat(s.get("branch_var")), _limit(s.get("branch_var")))
    return t


def to_csv(result: NetworkResult | list[NetworkResult]) -> str:
    """Long form: one line per layer x statistic (of every run, for a list)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for result in result if isinstance(result, list) else [result]:
        _csv_rows(writer, result)
    return buf.getvalue()


def _csv_rows(writer: Any, result: NetworkResult) -> None:
    for row in result.layers:
        for name, stat in row.stats.items():
            d = stat.to_dict()
            writer.writerow([csv_cell(c) for c in (
                result.spec, "x".join(map(str, result.input)), row.index, row.layer, _params(row), _shape(row), name, d["estimate"], d["se"], d["ci95"][0],
                d["ci95"][1], d["reference"], _num(stat.difference), result.draws,
                result.inits, result.normprop, result.seed,
            )])


def to_markdown(result: NetworkResult) -> str:
    lines = [
        f"normstats {result.version} · network `{result.spec}` · input {'x'.join(map(str, result.input))} · "
        f"normprop {result.normprop} · {result.draws:,} draws · seed {result.seed}",
        "",
        "| # | layer | shape | fp mean | fp std | fp std, wide limit | bp mean | bp std | bp std, wide limit |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result.layers:
        s = row.stats
        lines.append(
            f"| {row.index} | {row.layer} | {_shape(row)} | {_stat(s.get('fp_mean'))} | {_stat(s.get('fp_std'))} | "
            f"{_limit(s.get('fp_std'))} | {_stat(s.get('bp_mean'))} | {_stat(s.get('bp_std'))} | "
            f"{_limit(s.get('bp_std'))} |"
        )
    lines += ["", *summary_lines(result)]
    return "\n".join(lines) + "\n"
