"""``normstats network``: per-layer statistics of a whole network at depth."""

from __future__ import annotations

from typing import Any

import click

from normstats import api
from normstats.cli import options
from normstats.cli.errors import EXIT_HELP, exit_if_pipe_closed, interrupted
from normstats.cli.output import emit_document
from normstats.engine.progress import make_progress
from normstats.networks.build import NORMPROP_MODES
from normstats.networks.run import DEFAULT_DRAWS
from normstats.output.figures.signal import plot_signal_propagation
from normstats.output.files import network as network_files
from normstats.output.files.schema import dumps
from normstats.output.terminal.network import network_table

FORMATS = ("table", "json", "csv", "markdown")


@click.command(
    short_help="Per-layer fp/bp statistics of a whole network, beside the infinite-width limit.",
    epilog="Specs: '20*(linear relu)', 'linear(fan_out=256) relu', 'conv(out_channels=16,k=3,padding=1) relu "
    "maxpool(k=2)', '16*res(linear relu linear, alpha=0.2, beta=auto)'.\n\n" + EXIT_HELP,
)
@click.argument("spec")
@click.option("--input", "input_shape", required=True, metavar="SHAPE",
              help="One input: N values (512), a sequence of T tokens of D features (64x256) or a CxHxW map (3x32x32).")
@click.option("--input-correlation", "input_correlation", default="0", show_default=True, metavar="RHO",
              help="A token sequence's input tokens sqrt(RHO) z + sqrt(1-RHO) e_t (z shared): any two start with "
              "cosine about RHO; 0 <= RHO < 1.")
@click.option("--width", type=int, metavar="N",
              help="Outputs of a linear layer (channels of a conv) that names none. [default: the incoming width]")
@click.option("--normprop", type=click.Choice(NORMPROP_MODES), default="none", show_default=True,
              help="NormProp scaling: none; fp (divide by the fp std); bp (by the bp std); split (forward by the fp "
              "std, backward by the bp std: not the true gradient).")
@click.option("--inits", default=1, show_default=True, type=int, metavar="K",
              help="Independent networks (weights and draws); the se then includes the init-to-init spread.")
@options.samples("in all; a draw: one input forward, one gradient back", f"{DEFAULT_DRAWS:.0e}".replace("+0", ""))
@options.seed
@click.option("--method", type=click.Choice(api.METHODS), default=api.AUTO_METHOD, show_default=True,
              help="Sampling: plain Monte Carlo, 16 randomized scrambled-Sobol replicates, or auto (a network: mc).")
@options.stopping
@options.parallel
@options.output_format(FORMATS)
@options.output
@options.plot("a signal-propagation plot")
def network(
    spec: str, input_shape: str, input_correlation: str, width: int | None, normprop: str, inits: int,
    samples: int | None, seed: int, fmt: str, output: str | None, plot: str | None, quiet: bool, **run: Any,
) -> None:
    """Per-layer fp/bp statistics of a whole network at depth, beside the infinite-width (mean-field) limit,
    e.g. 'normstats network "20*(linear relu)" --input 512 --normprop fp'."""
    result = api.network(
        spec, input=input_shape, width=width, normprop=normprop, inits=inits, samples=samples, seed=seed,
        progress=make_progress(quiet), input_correlation=input_correlation, **run,
    )
    rho = f" · input correlation {result.input_correlation:g}" if result.input_correlation else ""
    title = (f"network {result.spec} · input {'x'.join(map(str, result.input))}{rho} · normprop {result.normprop}"
             f" · {result.draws:,} draws · {result.inits} network{'s' if result.inits > 1 else ''} · seed {seed}")
    if not (output and result.partial):
        emit_document(fmt, output, lambda _: network_table(result, title), {
            "json": lambda: dumps(result.to_dict()), "csv": lambda: network_files.to_csv(result),
            "markdown": lambda: network_files.to_markdown(result)})
        if plot is not None:
            plot_signal_propagation(result, plot)
            click.echo(f"wrote {plot}", err=True)
    networks = f"{result.inits} network{'s' if result.inits > 1 else ''}"
    click.echo(f"{result.draws:,} draws over {networks} ({result.method}), stopped by {result.stop}", err=True)
    exit_if_pipe_closed()
    if result.partial and (output is not None or plot is not None):
        interrupted(f"nothing written to {' or '.join(filter(None, (output, plot)))}")
    if result.partial:
        interrupted("the results above are partial (their se hold for the draws taken)")
