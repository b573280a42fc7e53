"""``normstats export`` (the default table, or the depth table, as files) and ``normstats schema``."""

from __future__ import annotations

from typing import Any

import click

from normstats import api
from normstats.cli import options
from normstats.cli.errors import EXIT_HELP, interrupted
from normstats.cli.errors import kept
from normstats.cli.output import emit
from normstats.engine.progress import make_progress
from normstats.output.files.atomic import check_directory
from normstats.output.files.layers import FILE_NAMES, WRITERS, write_all
from normstats.output.files.network import depth_file_names, write_depth
from normstats.published.default_table import DEPTH_RUNS
from normstats.output.files.schema import dumps, schema


@click.command("export", short_help="Export the default table in one format, or every format into a folder.",
               epilog="Regenerate the repository's tables/ folder: normstats export --all --output-dir tables/ "
               "and normstats export --depth --output-dir tables/\n\n" + EXIT_HELP)
@options.samples("per row of the table, plain mc; per run of the depth table",
                 "the table's: every se at most that of 1e6 plain draws; 5e3 with --depth")
@options.seed
@options.stopping
@options.parallel
@options.output_format(tuple(WRITERS), default=None)
@options.output
@click.option("--all", "all_formats", is_flag=True, help="Every format, into --output-dir.")
@click.option("--depth", is_flag=True,
              help="The depth table instead: 20 dense ReLU layers at width 512 in each NormProp mode and a residual "
              "stack, as network JSON documents, CSV and Markdown into --output-dir (5,000 draws each unless -n).")
@click.option("--output-dir", type=click.Path(file_okay=False), help="Folder for --all (it must exist).")
def export_cmd(
    samples: int, seed: int, fmt: str | None, output: str | None, all_formats: bool, depth: bool,
    output_dir: str | None, quiet: bool, **run: Any,
) -> None:
    """Export the default table: one format, or --all formats into a folder; or the depth table (--depth)."""
    progress = make_progress(quiet)
    if depth:
        if fmt or all_formats or output or not output_dir:
            raise click.UsageError("--depth writes every format into --output-dir DIR; give no --format, --all "
                                   "or --output with it")
        check_directory(output_dir, depth_file_names(DEPTH_RUNS))
        results = api.depth_table(samples=samples, seed=seed, progress=progress, **run)
        if any(r.partial for r in results):  # whole or not at all: a partial run would replace good files
            interrupted(f"nothing exported to {output_dir} (its files keep their contents)")
        for path in write_depth(results, output_dir):
            click.echo(f"wrote {path}", err=True)
        return
    if all_formats == bool(fmt):
        raise click.UsageError("give either --format FORMAT or --all (with --output-dir DIR)")
    if all_formats and not output_dir:
        raise click.UsageError("--all needs --output-dir DIR")
    if fmt and output_dir:
        raise click.UsageError("--output-dir goes with --all; use --output FILE with --format")
    if output_dir:
        check_directory(output_dir, FILE_NAMES.values())
    result = api.table(samples=samples, seed=seed, progress=progress, **run)
    if result.partial:  # an export is whole or not at all: a partial table would replace good files
        where = f"{output_dir}" if output_dir else (output or "stdout")
        interrupted(f"nothing exported to {where}" + (" (its files keep their contents)" if output_dir else
                                                        kept(output)))
    if output_dir:
        for path in write_all(result, output_dir):
            click.echo(f"wrote {path}", err=True)
        return
    emit(result, str(fmt), output, "")


@click.command("schema", epilog=EXIT_HELP, short_help="Print the JSON Schema of the --format json documents.")
def schema_cmd() -> None:
    """Print the JSON Schema of the documents written with --format json."""
    click.echo(dumps(schema()), nl=False)
