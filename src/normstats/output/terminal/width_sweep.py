"""The width sweep for the terminal: a line per layer and scale statistic, its estimate ± se at every width and
the slope of its log against log width ± se; a stacked list where that is wider than the terminal."""

from __future__ import annotations

from typing import Any

from normstats.output.results.numbers import stat_cell
from normstats.output.results.width_sweep import STAT_LABELS, WidthSweepResult, slope_text, sweep_lines, title_text


def sweep_table(result: WidthSweepResult, width: int | None = None) -> Any:
    """The sweep's table and its closing lines (``width``: a terminal's columns; None: any width)."""
    from rich.console import Group
    from rich.text import Text

    from normstats.output.terminal.layers import natural_width

    table = _table(result)
    if width is not None and natural_width(table) > width:  # no cell of it may wrap or be cut
        table = _stacked(result)
    return Group(table, Text("\n".join(sweep_lines(result))))


def _lines(result: WidthSweepResult) -> list[tuple[int, str, Any]]:
    """``(position, statistic, slope)`` for every layer's fitted statistics, in spec order."""
    return [(i, name, slope) for i, layer in enumerate(result.layers) for name, slope in layer.slopes.items()]


def _table(result: WidthSweepResult) -> Any:
    from rich.table import Table as RichTable

    t = RichTable(title=title_text(result), title_justify="left", header_style="bold", pad_edge=False)
    for col in ("#", "layer", ""):
        t.add_column(col, justify="left", overflow="fold")
    for w in result.run_widths:
        t.add_column(f"width {w}", justify="right", no_wrap=True)
    t.add_column("slope ± se", justify="right", no_wrap=True)
    last = None
    for position, name, slope in _lines(result):
        layer = result.layers[position]
        first = position != last
        last = position
        t.add_row(layer.index if first else "", layer.layer if first else "", STAT_LABELS[name],
                  *(stat_cell(s) for s in result.stat(position, name)), slope_text(slope))
    return t


def _stacked(result: WidthSweepResult) -> Any:
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    t = RichTable(title=title_text(result), title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                  padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
    t.add_column("layer", overflow="fold")
    t.add_column("value", overflow="fold")
    for position, name, slope in _lines(result):
        layer = result.layers[position]
        t.add_row(Text(f"{layer.index} {layer.layer} {STAT_LABELS[name]}", style="bold"), "")
        for w, s in zip(result.run_widths, result.stat(position, name)):
            t.add_row(f"  width {w}", stat_cell(s))
        t.add_row("  slope ± se", slope_text(slope), end_section=True)
    return t
