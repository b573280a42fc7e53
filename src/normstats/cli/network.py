"""``normstats network``: per-layer statistics of a whole network at depth."""

from __future__ import annotations

from typing import Any

import click

from normstats import api
from normstats.cli import options
from normstats.cli.errors import EXIT_HELP, checked, exit_if_pipe_closed, interrupted, kept
from normstats.cli.output import deliver, emit_document
from normstats.engine.progress import make_progress
from normstats.errors import NormstatsError
from normstats.networks.build import NORMPROP_MODES
from normstats.networks.run import DEFAULT_DRAWS
from normstats.networks.width_sweep import NOT_WITH_SWEEP, parse_widths
from normstats.output.figures.signal import plot_signal_propagation
from normstats.output.figures.width_sweep import plot_width_sweep
from normstats.output.files import network as network_files
from normstats.output.files import width_sweep as sweep_files
from normstats.output.files.schema import dumps
from normstats.output.results.network import BAND, check_band, population_text
from normstats.output.results.width_sweep import MAX_WIDTHS
from normstats.output.terminal.network import network_table
from normstats.output.terminal.width_sweep import sweep_table

FORMATS = ("table", "json", "csv", "markdown")

#: What --help says about NormProp, --inits and --band beyond the options' one-liners: what only the code
#: said before (networks/build.py, networks/run.py); tests/test_semantics_help.py checks each statement.
SEMANTICS = (
    "NormProp (--normprop fp|bp|split) in detail. Every layer without weights is shifted by its exact fp mean "
    "and divided by its exact fp or bp std: the constants of its single-layer reference on N(0, 1) inputs, not "
    "estimates of the network. Linear and conv weights are normalized instead of scaled: unit-norm rows "
    "(normalize=fan-in) under fp and split, unit-norm columns (normalize=fan-out) under bp; under split a "
    "weighted layer's gradient is also divided by its own bp std (sqrt(fan_out/fan_in) for unit rows, whose fp "
    "std is 1). A layer's own normalize= wins over the mode. Normalization layers (batchnorm, layernorm, "
    "rmsnorm, groupnorm) are left unscaled. Pooling on a finite map (and conv under split) uses the constants "
    "of the map's interior, without padding, whatever padding the layer has.",
    "--inits K runs K independent networks (their own weights and draws), each for ceil(n/K) draws (K ceil(n/K) "
    "in all); each statistic is the mean of the K networks' own estimates and its se the spread of those "
    "estimates over sqrt(K) (95% intervals from Student's t, K - 1 degrees of freedom).",
    "--band LO,HI is the pass band of the closing lines: the std range a layer's output (fp) or input gradient "
    "(bp) may reach before the closing line flags it as no longer normalized; they name the first layer whose "
    "fp std (counting from the input) or bp std (counting back from the output) leaves [LO, HI].",
)


def parse_band(text: str) -> tuple[float, float]:
    """``--band LO,HI``: two numbers with ``0 < LO < 1 < HI``."""
    parts = str(text).split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise NormstatsError(f"--band must be LO,HI, two numbers with 0 < LO < 1 < HI; got {text!r}") from None
    try:
        return check_band((lo, hi))
    except NormstatsError:
        raise NormstatsError(f"--band must be LO,HI with 0 < LO < 1 < HI (finite); got {text!r}") from None


@click.command(
    short_help="Per-layer fp/bp statistics of a whole network, beside the infinite-width limit.",
    epilog="Specs: '20*(linear relu)', 'linear(fan_out=256) relu', 'conv(out_channels=16,k=3,padding=1) relu "
    "maxpool(k=2)', '16*res(linear relu linear, alpha=0.2, beta=auto)'.\n\n" + "\n\n".join(SEMANTICS) + "\n\n"
    + EXIT_HELP,
)
@click.argument("spec")
@click.option("--input", "input_shape", required=True, metavar="SHAPE",
              help="One input: N values (512), a sequence of T tokens of D features (64x256) or a CxHxW map (3x32x32).")
@click.option("--input-correlation", "input_correlation", default="0", show_default=True, metavar="RHO",
              help="A token sequence's input tokens sqrt(RHO) z + sqrt(1-RHO) e_t (z shared): any two start with "
              "cosine about RHO. A vector input (N): a second input RHO x + sqrt(1-RHO^2) e a draw, through the "
              "same weights; each layer reports the two outputs' correlation beside its mean-field limit. "
              "0 <= RHO < 1.")
@click.option("--recipe", metavar="NAME",
              help="A published residual-scaling recipe applied to the transformer spec for its depth N: gpt2, "
              "deepnorm, admin, tfixup, tfixup-decoder, depth-mup (the title shows the spec run).")
@click.option("--width", metavar="N[,N...]", callback=checked(parse_widths),
              help="Outputs of a linear layer (channels of a conv) that names none. A comma list (64,128,256: "
              f"distinct, at most {MAX_WIDTHS}) is a width sweep: the spec run at each width (same seed, same input) "
              "and per layer the slope of log std against log width ± se (0: the scale does not depend on width); "
              "not with --max-time. [default: the incoming width]")
@click.option("--normprop", type=click.Choice(NORMPROP_MODES), default="none", show_default=True,
              help="NormProp: none (every layer as it is); fp, bp and split shift each layer by its exact fp mean, "
              "then divide it: fp by its fp std and bp by its bp std (forward and backward alike: the true "
              "gradient), split forward by the fp std and backward by the bp std (not the true gradient). "
              "Weights, normalization layers and maps: see below.")
@click.option("--inits", type=int, metavar="K",
              help="Independent networks (weights and draws), each ceil(n/K) draws; the estimate is their mean and "
              "the se their spread over sqrt(K), so it includes the init-to-init spread and describes the "
              "architecture. --inits 1: one network (seed S), whose se leaves that spread out. [default: 8; 1 "
              "with --target-se]")
@options.samples("in all; a draw: one input forward, one gradient back", f"{DEFAULT_DRAWS:.0e}".replace("+0", ""))
@options.seed
@click.option("--method", type=click.Choice(api.METHODS), default=api.AUTO_METHOD, show_default=True,
              help="Sampling: plain Monte Carlo, 16 randomized scrambled-Sobol replicates, or auto (a network: mc).")
@options.stopping
@options.parallel
@options.output_format(FORMATS)
@options.output
@options.plot("a signal-propagation plot")
@click.option("--band", default=f"{BAND[0]:g},{BAND[1]:g}", show_default=True, callback=checked(parse_band),
              metavar="LO,HI",
              help="The closing lines' pass band (0 < LO < 1 < HI): the std range a layer's signal may reach "
              "before they flag it (see below).")
def network(
    spec: str, input_shape: str, input_correlation: str, recipe: str | None, width: tuple[int, ...] | None,
    normprop: str, inits: int,
    samples: int | None, seed: int, fmt: str, output: str | None, plot: str | None, quiet: bool,
    band: tuple[float, float], **run: Any,
) -> None:
    """Per-layer fp/bp statistics of a whole network at depth, beside the infinite-width (mean-field) limit,
    e.g. 'normstats network "20*(linear relu)" --input 512 --normprop fp'; with --width 64,128,256 a width sweep."""
    if width is not None and len(width) > 1:
        if recipe is not None:
            raise NormstatsError(f"--recipe takes one width; got --width {','.join(map(str, width))} (a width sweep)")
        _sweep(spec, input_shape, input_correlation, width, normprop, inits, samples, seed, fmt, output, plot,
               quiet, band, **run)
        return
    result = api.network(
        spec, input=input_shape, width=None if width is None else width[0], normprop=normprop, inits=inits,
        samples=samples, seed=seed, progress=make_progress(quiet), input_correlation=input_correlation, recipe=recipe,
        **run,
    )
    rho = f" · input correlation {result.input_correlation:g}" if result.input_correlation else ""
    if result.recipe:
        consts = ", ".join(f"{k}={v:.4g}" for k, v in result.recipe["constants"].items())
        rho += f" · recipe {result.recipe['name']} (N={result.recipe['blocks']}: {consts})"
    title = (f"network {result.spec} · input {'x'.join(map(str, result.input))}{rho} · normprop {result.normprop}"
             f" · {result.draws:,} draws · {population_text(result)}")
    document = (lambda out: network_table(result, title, band, out.width if out.is_terminal else None), {
        "json": lambda: dumps(result.to_dict(band)), "csv": lambda: network_files.to_csv(result),
        "markdown": lambda: network_files.to_markdown(result, band)})
    networks = f"{result.inits} network{'s' if result.inits > 1 else ''}"
    ending = f"{result.draws:,} draws over {networks} ({result.method}), stopped by {result.stop}"
    _finish(result.partial, fmt, output, plot, document, lambda path: plot_signal_propagation(result, path, band),
            ending, "the results above are partial")


def _finish(partial: bool, fmt: str, output: str | None, plot: str | None, document: tuple[Any, Any],
            draw: Any, ending: str, what: str) -> None:
    """A finished run's document, file and plot; or, after Ctrl-C, the partial document on stdout, no file, and
    the interrupted exit."""
    if not partial:
        deliver(fmt, output, *document, plot, draw, ending=ending)
        return
    if output is None:  # the partial results on stdout; no file: an interrupted run writes none
        emit_document(fmt, None, *document)
    click.echo(ending, err=True)
    exit_if_pipe_closed()
    if output is not None or plot is not None:
        untouched = [f"{path}{kept(path)}" for path in (output, plot) if path is not None]
        interrupted(f"nothing written to {' or '.join(untouched)}")
    interrupted(f"{what} (their se hold for the draws taken)")


def _sweep(spec: str, input_shape: str, input_correlation: str, widths: tuple[int, ...], normprop: str, inits: int,
           samples: int | None, seed: int, fmt: str, output: str | None, plot: str | None, quiet: bool,
           band: tuple[float, float], **run: Any) -> None:
    """``--width N1,N2,...``: the sweep (:func:`normstats.width_sweep`), its table or document and plot."""
    for key, why in NOT_WITH_SWEEP.items():
        if run.pop(key, None) is not None:
            raise NormstatsError(f"--width {','.join(map(str, widths))} (a width sweep) cannot be combined with {why}")
    result = api.width_sweep(
        spec, input=input_shape, widths=widths, normprop=normprop, inits=inits, samples=samples, seed=seed,
        progress=make_progress(quiet), input_correlation=input_correlation, **run,
    )
    document = (lambda out: sweep_table(result, out.width if out.is_terminal else None), {
        "json": lambda: dumps(result.to_dict(band)), "csv": lambda: sweep_files.to_csv(result),
        "markdown": lambda: sweep_files.to_markdown(result)})
    draws = sum(r.draws for r in result.runs)
    runs = f"{len(result.runs)} width{'s' if len(result.runs) > 1 else ''}"
    ending = f"{draws:,} draws over {runs} ({result.first.method}), stopped by {result.runs[-1].stop}"
    _finish(result.partial, fmt, output, plot, document, lambda path: plot_width_sweep(result, path), ending,
            f"the sweep above is partial, widths {','.join(map(str, result.run_widths))} run")
