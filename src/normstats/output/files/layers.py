"""The file formats of a layer table (:class:`~normstats.output.results.table.Table`): JSON (with its schema), CSV
in long form, Markdown and LaTeX tables, and a Python module of constants that imports without normstats; all
written atomically."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Callable

from normstats.output.files.atomic import check_directory, write_files
from normstats.output.files.schema import dumps
from normstats.output.results import numbers as fmt
from normstats.output.results.table import Table
from normstats.published import conventions
from normstats.published.figures import NORMPROP

CSV_COLUMNS = (
    "layer", "params", "statistic", "estimate", "se", "ci95_lo", "ci95_hi", "reference", "reference_kind",
    "published", "published_text", "published_agrees", "z", "samples", "seed", "exact",
)


def to_json(table: Table) -> str:
    return dumps(table.to_dict())


def to_csv(table: Table) -> str:
    """Long form: one line per layer x parameters x statistic."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in table.rows:
        for name, stat in row.stats().items():
            d = stat.to_dict()
            word = None if stat.status == "finite" else stat.status  # the word in place of the number
            reference = d["reference"] if stat.reference is None or d["reference"] is not None else fmt.ref(
                stat.reference)
            cells = [
                row.layer, row.describe_params(), name, d["estimate"] if word is None else word, d["se"],
                d["ci95"][0], d["ci95"][1], reference, d["reference_kind"], d["published"], d["published_text"],
                d["published_agrees"], d["z"], row.samples, table.seed, stat.exact,
            ]
            writer.writerow([csv_cell(c) for c in cells])
    return buf.getvalue()


def csv_cell(value: Any) -> Any:
    """CSV cells: empty for null, JSON spelling for booleans, full precision for floats."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else value


def to_markdown(table: Table) -> str:
    lines = [
        f"normstats {table.version}, seed {table.seed}",
        "",
        "| layer | params | statistic | estimate ± se | reference | kind | z | published |",
        "|---|---|---|---:|---:|---|---:|---|",
    ]
    for row in table.rows:
        for name, stat in row.stats().items():
            lines.append(
                f"| {row.layer} | {row.describe_params()} | {fmt.stat_label(name)} | "
                f"{fmt.estimate(stat)} | {fmt.ref(stat.reference)} | "
                f"{(stat.reference_kind or '—').replace('_', ' ')} | {fmt.z(stat.z)} | {fmt.published(stat)} |"
            )
    keys = conventions.columns("all")
    lines += [
        "",
        "| layer | params | " + " | ".join(conventions.LABELS[k] for k in keys) + " |",
        "|---|---|" + "---:|" * len(keys),
    ]
    for row in table.rows:
        c = conventions.constants(row)
        lines.append(
            f"| {row.layer} | {row.describe_params()} | " + " | ".join(fmt.constant(c[k]) for k in keys) + " |"
        )
    lines += [
        "",
        f"Samples per row: {', '.join(sorted({f'{r.samples:,}' for r in table.rows}))}. "
        "z = (estimate - reference) / se. published: ✓ agrees with the reference to its printed precision, "
        f"✗ does not. Published figures: {NORMPROP}.",
    ]
    return "\n".join(lines) + "\n"


def to_latex(table: Table) -> str:
    """A booktabs ``tabular`` a person can paste into a paper (needs ``\\usepackage{booktabs}``)."""
    lines = [
        f"% normstats {table.version}, seed {table.seed}; needs \\usepackage{{booktabs}}",
        "\\begin{tabular}{lllrrl}",
        "\\toprule",
        "Layer & Parameters & Statistic & Estimate $\\pm$ se & Reference & Published \\\\",
        "\\midrule",
    ]
    for i, row in enumerate(table.rows):
        if i:
            lines.append("\\addlinespace")
        for j, (name, stat) in enumerate(row.stats().items()):
            est = fmt.estimate(stat).replace(" ± ", " \\pm ")
            est = f"${est}$" if stat.status == "finite" and not stat.exact else est
            published = "---" if stat.figure is None else _tex(stat.figure.text)
            if stat.published_agrees is False:
                published += " (differs)"
            lines.append(
                f"{_tex(row.layer) if j == 0 else ''} & {_tex(row.describe_params()) if j == 0 else ''} & "
                f"{fmt.stat_label(name)} & {est} & {_tex(fmt.ref(stat.reference)).replace('—', '---')} & "
                f"{published} \\\\"
            )
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
}


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def row_key(layer: str, params: str) -> str:
    """The key of a row in the constants module: ``relu`` or ``maxpool:k=3;stride=3``."""
    return f"{layer}:{params}" if params else layer


def to_python(table: Table) -> str:
    """A module with plain dicts of constants per row, importable without normstats."""
    constants, sources = {}, {}
    for row in table.rows:
        key = row_key(row.layer, row.describe_params())
        constants[key] = conventions.constants(row)
        sources[key] = conventions.sources(row)
    meta = table.metadata
    header = [
        '"""Normalizing constants for neural-network layers.',
        "",
        "For input x ~ N(0, I) and upstream gradient dy ~ N(0, I), independent of x:",
        "- NormProp: (y - fp_shift) * fp_scale has mean 0 and std 1; dx * bp_scale has std 1.",
        "- NFNet: nfnet_gamma * y has std 1 (nfnet_gamma = 1/std y).",
        "- He-style gain: gain = 1/sqrt(E y^2) keeps unit variance through a following zero-mean linear layer.",
        "Each value comes from the exact references where they exist (closed form or quadrature), else from",
        "the Monte Carlo estimates; SOURCES says which. Keys are 'layer' or 'layer:param=value;param=value'.",
        "",
        f"Generated by normstats {table.version} (seed {table.seed}, {meta.get('samples', '?')} draws per row,",
        f"{meta.get('generator', '?')}, numpy {meta.get('numpy', '?')}). Plain Python: no import needed. Do not edit.",
        '"""',
        "",
    ]
    body = ["CONSTANTS = {"]
    for key, values in constants.items():
        inner = ", ".join(f"{k!r}: {_py(v)}" for k, v in values.items())
        body.append(f"    {key!r}: {{{inner}}},")
    body += ["}", "", "SOURCES = {"]
    for key, values in sources.items():
        inner = ", ".join(f"{k!r}: {v!r}" for k, v in values.items())
        body.append(f"    {key!r}: {{{inner}}},")
    body.append("}")
    return "\n".join(header + body) + "\n"


def _py(value: float | None) -> str:
    """A Python literal that imports: ``float("inf")`` where ``repr`` would give the bare name ``inf``."""
    if value is None:
        return "None"
    return repr(float(value)) if math.isfinite(value) else f'float("{float(value)!r}")'


#: Formats and their writers.
WRITERS: dict[str, Callable[[Table], str]] = {
    "json": to_json, "csv": to_csv, "markdown": to_markdown, "latex": to_latex, "python": to_python,
}

#: File names ``normstats export --all`` writes, per format.
FILE_NAMES = {
    "csv": "table.csv", "json": "table.json", "markdown": "table.md", "latex": "table.tex",
    "python": "normstats_constants.py",
}


def write_all(table: Table, directory: str | os.PathLike[str]) -> list[Path]:
    """Write every format into ``directory``: every file rendered first, then all written as one set, whole or
    not at all (:func:`~normstats.output.files.atomic.write_files`). A partial table is refused: an interrupted
    run writes no file."""
    if table.partial:
        raise ValueError("write_all: a partial table is never written")
    folder = check_directory(directory, FILE_NAMES.values())
    texts = {folder / name: WRITERS[fmt_](table) for fmt_, name in FILE_NAMES.items()}
    return write_files(texts, "--output-dir")


