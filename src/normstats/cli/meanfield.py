"""``normstats meanfield``: mean-field theory of a deep network of one activation."""

from __future__ import annotations

from typing import Any

import click

from normstats import api
from normstats.cli import options
from normstats.cli.errors import EXIT_HELP
from normstats.cli.output import deliver
from normstats.output.figures.phase import plot_phase_diagram
from normstats.output.files.schema import dumps
from normstats.output.terminal.meanfield import meanfield as meanfield_table


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    short_help="Mean-field theory: fixed points, chi_1, depth scales, the edge of chaos.",
    epilog="Layer parameters are options too, e.g. --slope 0.2 (see 'normstats list').\n\n" + EXIT_HELP,
)
@click.option("--layer", "-l", help="Elementwise activation (see 'normstats list').")
@click.option("--expr", metavar="FORMULA", help="A custom activation instead of --layer, e.g. 'erf(x)'.")
@click.option("--sigma-w2", type=float, metavar="W", help="Weight variance times fan-in (> 0).")
@click.option("--sigma-b2", type=float, default=0.0, show_default=True, metavar="B", help="Bias variance (>= 0).")
@click.option("--q0", type=float, default=1.0, show_default=True, help="Variance of the first pre-activations.")
@click.option("--c0", type=float, help="Correlation of the two inputs' first pre-activations, in [-1, 1] "
              "(the trajectory starts at 0 without it).")
@click.option("--depth", type=int, default=10, show_default=True, help="Layers of the trajectory.")
@click.option("--width", type=int, help="Also run random networks of this width (finite-width check).")
@click.option("--networks", type=int, default=20, show_default=True, help="Random networks of the check.")
@options.seed
@click.option("--critical", is_flag=True, help="Find the sigma_w2 of the edge of chaos (chi_1 = 1) at --sigma-b2, "
              "or say why there is none in the range searched and report the point that stands in for it.")
@options.output_format(("table", "json"))
@options.output
@options.plot("the phase diagram over (sigma_w2, sigma_b2)")
@click.pass_context
def meanfield(
    ctx: click.Context, layer: str | None, expr: str | None, plot: str | None, fmt: str, output: str | None,
    **settings: Any,
) -> None:
    """Mean-field theory (infinite width) of a deep network: fixed points, chi_1, depth scales, trajectories,
    the edge of chaos, e.g. 'normstats meanfield --layer tanh --sigma-w2 1.5 --sigma-b2 0.05'."""
    params = options.layer_params(ctx, layer)
    result = api.meanfield(layer, expr=expr, phase_diagram=plot is not None, **settings, **params)
    deliver(fmt, output, lambda _: meanfield_table(result), {"json": lambda: dumps(result.to_dict())},
            plot, lambda path: plot_phase_diagram(result, path))
