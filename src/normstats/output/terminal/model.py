"""The model table for the terminal: two lines per module call (fp: its output; bp: the gradient at its input),
modules deeper than ``--depth`` folded into their container, the NF-ResNet figures of 4-D maps, and the closing
lines that say where the forward or backward std first leaves [1/2, 2] and where a value is first not finite."""

from __future__ import annotations

from typing import Any

from normstats.output.results.model import ModelResult, ModuleStats, shape_text, summary_lines
from normstats.output.results.numbers import stat_cell


def shown(result: ModelResult, depth: int | None) -> list[ModuleStats]:
    """The rows at ``depth`` or above (all with None)."""
    return [m for m in result.modules if depth is None or m.depth <= depth]


def model_table(result: ModelResult, title: str, depth: int | None = None) -> Any:
    """Two lines per module, fp then bp: mean and std with their se."""
    from rich.console import Group
    from rich.table import Table as RichTable
    from rich.text import Text

    rows = shown(result, depth)
    t = RichTable(title=title, title_justify="left", header_style="bold", pad_edge=False)
    for i, col in enumerate(("module", "class", "shape", "", "mean ± se", "std ± se")):
        t.add_column(col, justify="left" if i < 4 else "right", no_wrap=i >= 3, overflow="fold" if i < 3 else "ellipsis")
    for row in rows:
        name = "  " * row.depth + row.label
        for p in ("fp", "bp"):
            first = p == "fp"
            t.add_row(name if first else "", row.module if first else "", shape_text(row) if first else "", p,
                      stat_cell(row.stats.get(f"{p}_mean")), stat_cell(row.stats.get(f"{p}_std")))
    parts: list[Any] = [t]
    maps = [r for r in rows if "channel_var" in r.stats]
    if maps:
        m = RichTable(title="Signal propagation of the 4-D maps (per input: channel figures over positions)",
                      title_justify="left", header_style="bold")
        for col in ("module", "avg squared channel mean", "avg channel variance"):
            m.add_column(col, justify="left" if col == "module" else "right")
        for row in maps:
            m.add_row(row.label, stat_cell(row.stats.get("channel_mean_sq")), stat_cell(row.stats.get("channel_var")))
        parts.append(m)
    folded = len(result.modules) - len(rows)
    legend = (f"fp: the module's output; bp: the gradient at its input (— where none reaches it). se {result.se_population}."
              + (f" {folded} modules deeper than --depth {depth} are folded into their containers." if folded else ""))
    parts += [Text(legend, style="dim"), Text("\n".join(summary_lines(result)))]
    return Group(*parts)


def model_title(result: ModelResult) -> str:
    inits = f"{result.inits} init{'s' if result.inits > 1 else ''}"
    ids = f" (token ids uniform over {result.vocabulary})" if result.input_kind == "ids" else ""
    return (f"model {result.source} · input {result.input_text}{ids} · batch {result.batch} · {result.mode} mode · "
            f"output {result.output_key} · {result.draws:,} draws · {inits} · {result.device} · seed {result.seed}")
