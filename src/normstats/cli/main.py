"""The ``normstats`` group: every command, gathered from its module."""

from __future__ import annotations

import click

from normstats import api
from normstats.cli.errors import EXIT_HELP, Main
from normstats.cli.export import export_cmd, schema_cmd
from normstats.cli.jacobian import jacobian
from normstats.cli.layers import audit, list_cmd, simulate, solve, table
from normstats.cli.meanfield import meanfield
from normstats.cli.model import model
from normstats.cli.network import network


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_HELP)
@click.version_option(api.version(), "-V", "--version", prog_name="normstats")
def main() -> None:
    """Mean and std of each layer's output (fp) and input gradient (bp) for x, dy ~ N(0, I): Monte Carlo
    estimates with standard errors, checked against exact references."""


for command in (list_cmd, simulate, table, network, export_cmd, schema_cmd, meanfield, audit, solve, jacobian, model):
    main.add_command(command)
