"""The file formats of a model's result: CSV in long form (one line per module x statistic), Markdown; JSON is
its ``to_dict``."""

from __future__ import annotations

import csv
import io

from normstats.output.files.layers import csv_cell
from normstats.output.results.model import MODEL_STATS, ModelResult, shape_text, summary_lines
from normstats.output.results.numbers import stat_cell

CSV_COLUMNS = (
    "model", "input", "batch", "mode", "name", "module", "depth", "shape", "statistic", "estimate", "se",
    "ci95_lo", "ci95_hi", "draws", "inits", "seed",
)


def to_csv(result: ModelResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in result.modules:
        for name in MODEL_STATS:
            if name not in row.stats:
                continue
            d = row.stats[name].to_dict()
            writer.writerow([csv_cell(c) for c in (
                result.source, result.input_text, result.batch, result.mode, row.name, row.module, row.depth,
                shape_text(row), name, d["estimate"], d["se"], d["ci95"][0], d["ci95"][1], result.draws,
                result.inits, result.seed,
            )])
    return buf.getvalue()


def to_markdown(result: ModelResult) -> str:
    lines = [
        f"normstats {result.version} · model `{result.source}` · input {result.input_text} · batch {result.batch} · "
        f"{result.mode} mode · output {result.output_key} · {result.draws:,} draws · {result.inits} inits · "
        f"seed {result.seed}",
        "",
        "| module | class | shape | fp mean | fp std | bp mean | bp std |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for row in result.modules:
        s = row.stats
        lines.append(f"| {'&nbsp;&nbsp;' * row.depth}{row.label} | {row.module} | {shape_text(row)} | "
                     f"{stat_cell(s.get('fp_mean'))} | {stat_cell(s.get('fp_std'))} | {stat_cell(s.get('bp_mean'))} | "
                     f"{stat_cell(s.get('bp_std'))} |")
    lines += ["", f"se {result.se_population}.", "", *summary_lines(result)]
    return "\n".join(lines) + "\n"
