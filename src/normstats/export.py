"""Text exports of a :class:`~normstats.results.Table` (JSON, CSV, Markdown) and atomic file writes."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from normstats import formatting as fmt
from normstats.errors import NormstatsError
from normstats.published import NORMPROP
from normstats.results import Table

CSV_COLUMNS = (
    "layer", "params", "statistic", "estimate", "se", "ci95_lo", "ci95_hi", "reference", "reference_kind",
    "published", "published_agrees", "z", "samples", "seed",
)


def to_json(table: Table) -> str:
    return json.dumps(table.to_dict(), indent=2, allow_nan=False) + "\n"


def to_csv(table: Table) -> str:
    """Long form: one line per layer x parameters x statistic."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in table.rows:
        for name, stat in row.stats().items():
            d = stat.to_dict()
            cells = [
                row.layer, row.describe_params(), name, d["estimate"], d["se"], d["ci95"][0], d["ci95"][1],
                d["reference"], d["reference_kind"], d["published"], d["published_agrees"], d["z"],
                row.samples, table.seed,
            ]
            writer.writerow([_cell(c) for c in cells])
    return buf.getvalue()


def _cell(value: Any) -> Any:
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
                f"{fmt.pm(stat.estimate, stat.se)} | {fmt.ref(stat.reference)} | "
                f"{(stat.reference_kind or '—').replace('_', ' ')} | {fmt.z(stat.z)} | {fmt.published(stat)} |"
            )
    lines += ["", "| layer | params | fp shift | fp scale | bp scale |", "|---|---|---:|---:|---:|"]
    for row in table.rows:
        c = row.constants()
        lines.append(
            f"| {row.layer} | {row.describe_params()} | "
            + " | ".join(fmt.constant(c[k]) for k in ("fp_shift", "fp_scale", "bp_scale"))
            + " |"
        )
    lines += [
        "",
        f"Samples per row: {', '.join(sorted({f'{r.samples:,}' for r in table.rows}))}. "
        "z = (estimate - reference) / se. published: ✓ agrees with the reference to its printed precision, "
        f"✗ does not. Published figures: {NORMPROP}.",
    ]
    return "\n".join(lines) + "\n"


#: Text formats and their writers.
WRITERS: dict[str, Callable[[Table], str]] = {"json": to_json, "csv": to_csv, "markdown": to_markdown}


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail early, before any work, if ``path`` cannot be written."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise NormstatsError(f"--output must be a file path, not a directory; got {str(path)!r}")
    if not parent.is_dir():
        raise NormstatsError(f"--output must be in an existing directory; got {str(path)!r}")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise NormstatsError(f"--output must be a writable path; got {str(path)!r} (permission denied)")
    return target


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: readers see the old
    file or the complete new one, never a part."""
    target = check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise NormstatsError(f"--output could not be written: {str(path)!r} ({exc.strerror})") from None
        raise


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, allow_nan=False) + "\n"
