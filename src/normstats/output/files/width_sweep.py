"""The file formats of a width sweep: CSV in long form (a line per layer, statistic and width, with the layer's
slope), Markdown; JSON is its ``to_dict``."""

from __future__ import annotations

import csv
import io

from normstats.output.files.layers import csv_cell
from normstats.output.results.numbers import stat_cell
from normstats.output.results.table import _num
from normstats.output.results.width_sweep import STAT_LABELS, WidthSweepResult, slope_text, sweep_lines, title_text

CSV_COLUMNS = ("network", "input", "index", "layer", "statistic", "width", "estimate", "se", "slope", "slope_se",
               "slope_chi2", "slope_dof", "draws", "inits", "normprop", "seed")


def to_csv(result: WidthSweepResult) -> str:
    """Long form: one line per layer x fitted statistic x width; the slope repeats on its widths' lines."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for position, layer in enumerate(result.layers):
        for name, slope in layer.slopes.items():
            for run, w, stat in zip(result.runs, result.run_widths, result.stat(position, name)):
                writer.writerow([csv_cell(c) for c in (
                    run.spec, "x".join(map(str, run.input)), layer.index, layer.layer, name, w, _num(stat.estimate),
                    _num(stat.se), _num(slope.estimate), _num(slope.se), _num(slope.chi2), slope.dof, run.draws,
                    run.inits, run.normprop, run.seed,
                )])
    return buf.getvalue()


def to_markdown(result: WidthSweepResult) -> str:
    """The sweep's table in Markdown, with its closing lines."""
    widths = result.run_widths
    lines = [
        f"normstats {result.first.version} · {title_text(result)}",
        "",
        "| # | layer | statistic | " + " | ".join(f"width {w}" for w in widths) + " | slope ± se |",
        "|---|---|---|" + "---:|" * (len(widths) + 1),
    ]
    for position, layer in enumerate(result.layers):
        for name, slope in layer.slopes.items():
            cells = " | ".join(stat_cell(s) for s in result.stat(position, name))
            lines.append(f"| {layer.index} | {layer.layer} | {STAT_LABELS[name]} | {cells} | {slope_text(slope)} |")
    lines += ["", *sweep_lines(result)]
    return "\n".join(lines) + "\n"
