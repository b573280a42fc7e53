"""The file formats of a network's result (CSV in long form, Markdown; JSON is its ``to_dict``), and the depth
table that ``normstats export --depth`` writes."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Iterable

from normstats.output.files.atomic import check_directory, write_files
from normstats.output.files.layers import csv_cell
from normstats.output.files.schema import dumps
from normstats.output.results.network import BAND, LayerStats, NetworkResult, params_text, shape_text, summary_lines
from normstats.output.results.numbers import limit_cell, stat_cell
from normstats.output.results.table import _num

CSV_COLUMNS = (
    "network", "input", "index", "layer", "params", "shape", "statistic", "estimate", "se", "ci95_lo", "ci95_hi", "mean_field",
    "difference", "draws", "inits", "normprop", "seed",
)


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
                result.spec, "x".join(map(str, result.input)), row.index, row.layer, params_text(row), shape_text(row), name, d["estimate"], d["se"], d["ci95"][0],
                d["ci95"][1], d["reference"], _num(stat.difference), result.draws,
                result.inits, result.normprop, result.seed,
            )])


def to_markdown(result: NetworkResult, band: tuple[float, float] = BAND) -> str:
    """The network table in Markdown, with the closing lines against ``band``."""
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
            f"| {row.index} | {row.layer} | {shape_text(row)} | {stat_cell(s.get('fp_mean'))} | {stat_cell(s.get('fp_std'))} | "
            f"{limit_cell(s.get('fp_std'))} | {stat_cell(s.get('bp_mean'))} | {stat_cell(s.get('bp_std'))} | "
            f"{limit_cell(s.get('bp_std'))} |"
        )
    pairs = [row for row in result.layers if "correlation" in row.stats]
    if pairs:
        lines += ["", f"Correlation of two inputs (input correlation {result.input_correlation:g}; per draw: the cosine "
                  "of their outputs; limit: width -> inf, the mean-field correlation map, not a test)", "",
                  "| # | layer | correlation | limit (width -> inf) |", "|---|---|---:|---:|"]
        lines += [f"| {row.index} | {row.layer} | {stat_cell(row.stats['correlation'])} | "
                  f"{limit_cell(row.stats['correlation'])} |" for row in pairs]
    lines += ["", *summary_lines(result, band)]
    return "\n".join(lines) + "\n"


#: Files of ``normstats export --depth``: one JSON network document per run, and all runs in CSV and Markdown.
DEPTH_CSV, DEPTH_MARKDOWN = "depth.csv", "depth.md"


def depth_json_name(result: Any) -> str:
    return _depth_json_name(result.spec, result.normprop)


def _depth_json_name(spec: str, normprop: str) -> str:
    return f"depth_{'res' if 'res(' in spec else 'dense'}_{normprop}.json"


def depth_file_names(runs: Iterable[tuple[str, int, str]]) -> list[str]:
    """The files ``normstats export --depth`` writes for ``runs`` (``(spec, width, normprop)``), known before
    the runs, so that the folder is checked first."""
    return [*(_depth_json_name(spec, mode) for spec, _, mode in runs), DEPTH_CSV, DEPTH_MARKDOWN]


def write_depth(results: list[Any], directory: str | os.PathLike[str]) -> list[Path]:
    """Write the depth table into ``directory`` (see :data:`DEPTH_CSV`): every file rendered first, then all
    written as one set, whole or not at all (:func:`~normstats.output.files.atomic.write_files`). A partial
    result is refused: an interrupted run writes no file."""
    if any(r.partial for r in results):
        raise ValueError("write_depth: a partial depth table is never written")
    names = {depth_json_name(r): dumps(r.to_dict()) for r in results}
    folder = check_directory(directory, [*names, DEPTH_CSV, DEPTH_MARKDOWN])
    texts = {folder / name: text for name, text in names.items()}
    texts[folder / DEPTH_CSV] = to_csv(list(results))
    texts[folder / DEPTH_MARKDOWN] = "\n".join(to_markdown(r) for r in results)
    return write_files(texts, "--output-dir")
