"""``normstats jacobian``: the singular values of a network's input-output Jacobian."""

from __future__ import annotations

import click

from normstats import api
from normstats.cli import options
from normstats.cli.errors import EXIT_HELP
from normstats.cli.output import deliver
from normstats.engine.progress import make_progress
from normstats.networks.build import NORMPROP_MODES
from normstats.output.figures.spectrum import plot_spectrum
from normstats.output.files.schema import dumps
from normstats.output.terminal.jacobian import jacobian_table
from normstats.theory.jacobian import parse_draws


@click.command(
    epilog="Depths count the network's top-level layers: '8*(linear relu)' has 16. e.g. normstats jacobian "
    "\"8*(linear(init=kaiming,normalize=none) relu)\" --input 256 --depths 2,4,8,16\n\n" + EXIT_HELP,
)
@click.argument("spec")
@click.option("--input", "input_size", required=True, type=int, metavar="N", help="Values of one input (N).")
@click.option("--init", type=click.Choice(("normal", "orthogonal")), default="normal", show_default=True,
              help="Weights of the linear layers that name none: Gaussian, or orthogonal matrices.")
@click.option("--sigma-w2", type=float, metavar="W", show_default="1",
              help="Weight variance times fan-in (> 0) of those layers (orthogonal: the matrix times sqrt(W)).")
@click.option("--normprop", type=click.Choice(NORMPROP_MODES), default="none", show_default=True,
              help="NormProp scaling, as for 'normstats network'.")
@click.option("--inits", type=int, metavar="K", show_default="one per draw",
              help="Independent networks in all (1: one network, the seed's, for every input).")
@options.samples("a draw: one input and its network's whole Jacobian and SVD", "100", stopping=False,
                 parse=parse_draws)
@options.seed
@click.option("--depths", metavar="L1,L2,...", help="Jacobians of the first L top-level layers, or all. "
              "[default: the whole network]")
@options.parallel
@options.output_format(("table", "json"))
@options.output
@options.plot("the histogram of the squared singular values")
def jacobian(
    spec: str, input_size: int, init: str, sigma_w2: float | None, normprop: str, inits: int | None,
    samples: int | None, seed: int, depths: str | None, fmt: str, output: str | None, plot: str | None,
    workers: int | None, processes: bool, dask: str | None, quiet: bool,
) -> None:
    """The singular values of a network's input-output Jacobian (dynamical isometry) beside their
    free-probability limit, e.g. 'normstats jacobian "8*linear" --input 256 --init orthogonal'."""
    result = api.jacobian(spec, input=input_size, init=init, sigma_w2=sigma_w2, normprop=normprop, inits=inits,
                          samples=samples, seed=seed, depths=depths, workers=workers, processes=processes,
                          dask=dask, progress=make_progress(quiet))
    deliver(fmt, output, lambda out: jacobian_table(result, out.width if out.is_terminal else None),
            {"json": lambda: dumps(result.to_dict())}, plot, lambda path: plot_spectrum(result, path))
