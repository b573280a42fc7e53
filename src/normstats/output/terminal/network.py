"""The network table for the terminal: two lines per layer (fp, bp) beside the wide limit, the signal-propagation
figures, and the closing lines that say where the forward or backward std first leaves the pass band
(``--band``, default [1/2, 2]: the std range a layer's signal may reach before the closing line flags it)."""

from __future__ import annotations

from typing import Any

from normstats.output.results.network import BAND, NetworkResult, block_name, shape_text, summary_lines
from normstats.output.results.numbers import difference_cell, limit_cell, stat_cell


def network_table(result: NetworkResult, title: str, band: tuple[float, float] = BAND, width: int | None = None
                  ) -> Any:
    """Two lines per layer, fp (its output) then bp (the gradient at its input): mean and std with their se,
    each beside its wide limit, and the std's difference from it; then the closing lines against ``band``.
    Where that table is wider than ``width`` columns (a terminal's; None: any width), a stacked list, a line per
    figure, whose values wrap rather than being cut."""
    from rich.console import Group
    from rich.text import Text

    from normstats.output.terminal.layers import min_width

    t = _layers_table(result, title)
    if width is not None and min_width(t) > width:
        t = _stacked(result, title)
    extras = _extras_table(result)
    if extras is not None and width is not None and min_width(extras) > width:
        extras = _extras_table(result, stacked=True)
    legend = Text(
        "fp: the layer's output; bp: the gradient at its input. limit: the infinite-width (mean-field) value, a "
        "limit and not a test (Δ = estimate - limit); — where none is computed.",
        style="dim",
    )
    tokens = _token_table(result)
    pairs = _correlation_table(result)
    parts = [t] + [x for x in (extras, tokens, pairs) if x is not None] + [legend, Text("\n".join(summary_lines(result, band)))]
    return Group(*parts)


def _stacked(result: NetworkResult, title: str) -> Any:
    """Per layer its index, name and shape, then per pass its mean and std, each with its limit under it."""
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    t = RichTable(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0),
                  pad_edge=False, show_edge=False)
    t.add_column("layer", overflow="fold")
    t.add_column("value", overflow="fold")
    for row in result.layers:
        s = row.stats
        name = block_name(row) if row.layer == "res" else row.layer
        t.add_row(Text(f"{row.index} {name}", style="bold"), shape_text(row), end_section=True)
        for p in ("fp", "bp"):
            mean, std = s.get(f"{p}_mean"), s.get(f"{p}_std")
            t.add_row(f"{p} mean", stat_cell(mean))
            t.add_row("  limit", limit_cell(mean))
            t.add_row(f"{p} std", stat_cell(std))
            t.add_row("  limit", limit_cell(std))
            t.add_row("  Δ std", difference_cell(std), end_section=p == "bp")
    return t


def _layers_table(result: NetworkResult, title: str) -> Any:
    from rich.table import Table as RichTable

    t = RichTable(title=title, title_justify="left", header_style="bold", pad_edge=False)
    cols = ("#", "layer", "shape", "", "mean ± se", "limit", "std ± se", "limit", "Δ std")
    for i, col in enumerate(cols):
        t.add_column(col, justify="left" if i < 4 else "right", no_wrap=i >= 3,
                     overflow="fold" if i < 3 else "ellipsis")
    for row in result.layers:
        s = row.stats
        name = "  " * row.depth + (block_name(row) if row.layer == "res" else row.layer)
        for p in ("fp", "bp"):
            mean, std = s.get(f"{p}_mean"), s.get(f"{p}_std")
            first = p == "fp"
            t.add_row(row.index if first else "", name if first else "", shape_text(row) if first else "", p,
                      stat_cell(mean), limit_cell(mean), stat_cell(std), limit_cell(std), difference_cell(std))
    return t


def _token_table(result: NetworkResult) -> Any:
    """A token sequence's geometry per layer: the mean cosine between two tokens of its output and, for
    attention, the mean attention entropy over log T and the std of its scaled logits (each per input, with its se
    over inputs)."""
    from rich.table import Table as RichTable

    rows = [r for r in result.layers if "token_cosine" in r.stats or "attention_entropy" in r.stats]
    logits = any("attention_logit_std" in r.stats for r in rows)
    if not rows:
        return None
    t = RichTable(title="Token geometry (per input: over pairs of tokens; attention over heads and queries)",
                  title_justify="left", header_style="bold")
    for col in ("#", "layer", "token cosine", "attention entropy / log T", *(("logit std",) if logits else ())):
        t.add_column(col, justify="left" if col in ("#", "layer") else "right")
    for row in rows:
        s = row.stats
        t.add_row(row.index, row.layer, stat_cell(s.get("token_cosine")), stat_cell(s.get("attention_entropy")),
                  *((stat_cell(s.get("attention_logit_std")),) if logits else ()))
    return t


def _correlation_table(result: NetworkResult) -> Any:
    """Two correlated inputs a draw (a vector network with --input-correlation): per layer the cosine of their
    outputs with its se over draws, beside its mean-field limit (a limit, not a test; — where none)."""
    from rich.table import Table as RichTable

    rows = [r for r in result.layers if "correlation" in r.stats]
    if not rows:
        return None
    t = RichTable(title=f"Correlation of two inputs (correlation {result.input_correlation:g}; per draw: the cosine "
                  "of their outputs)", title_justify="left", header_style="bold")
    for col in ("#", "layer", "correlation ± se", "limit (width -> inf)", "Δ"):
        t.add_column(col, justify="left" if col in ("#", "layer") else "right")
    for row in rows:
        c = row.stats["correlation"]
        t.add_row(row.index, row.layer, stat_cell(c), limit_cell(c), difference_cell(c))
    return t


def _extras_table(result: NetworkResult, stacked: bool = False) -> Any:
    """The NF-ResNet figures (maps) and the residual branches' variance, where any layer has them; ``stacked``: a
    line per figure (a narrow terminal)."""
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    names = ("channel_mean_sq", "channel_var", "branch_var")
    rows = [r for r in result.layers if any(n in r.stats for n in names)]
    if not rows:
        return None
    title = "Signal propagation (per input: channel figures over positions)"
    if stacked:
        t = RichTable(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                      padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
        t.add_column("layer", overflow="fold")
        t.add_column("value", overflow="fold")
        for row in rows:
            s = row.stats
            t.add_row(Text(f"{row.index} {row.layer}", style="bold"), "", end_section=True)
            t.add_row("avg squared channel mean", stat_cell(s.get("channel_mean_sq")))
            t.add_row("avg channel variance", stat_cell(s.get("channel_var")))
            t.add_row("branch variance", stat_cell(s.get("branch_var")))
            t.add_row("  wide limit", limit_cell(s.get("branch_var")), end_section=True)
        return t
    t = RichTable(title=title, title_justify="left", header_style="bold")
    for col in ("#", "layer", "avg squared channel mean", "avg channel variance", "branch variance",
                "branch wide limit"):
        t.add_column(col, justify="left" if col in ("#", "layer") else "right")
    for row in rows:
        s = row.stats
        t.add_row(row.index, row.layer, stat_cell(s.get("channel_mean_sq")), stat_cell(s.get("channel_var")),
                  stat_cell(s.get("branch_var")), limit_cell(s.get("branch_var")))
    return t


