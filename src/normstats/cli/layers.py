"""The commands about single layers: ``list``, ``simulate``, ``table``, ``solve`` and ``audit``."""

from __future__ import annotations

from typing import Any

import click

from normstats import api
from normstats.cli import options
from normstats.cli.errors import EXIT_HELP
from normstats.cli.output import console, emit, finish, render
from normstats.engine.blocks import DEFAULT_ESTIMATOR, ESTIMATORS
from normstats.engine.progress import make_progress
from normstats.exact.references import METHODS
from normstats.exact.selfnorm import TARGETS
from normstats.layers.base import AUTO_SAMPLER, DEFAULT_SAMPLER, SAMPLERS
from normstats.output.files.layers import WRITERS
from normstats.output.files.schema import dumps
from normstats.published.conventions import CONVENTION_CHOICES

FORMATS = ("table", *WRITERS)

method = click.option(
    "--method", type=click.Choice(api.METHODS), default=api.AUTO_METHOD, show_default=True,
    help="Sampling: plain Monte Carlo, 16 randomized scrambled-Sobol replicates, or auto: with --target-se, qmc "
    "on each layer's exact shortcut (--sampler auto), else mc.",
)
estimator = click.option(
    "--estimator", type=click.Choice(ESTIMATORS), default=DEFAULT_ESTIMATOR, show_default=True,
    help="bp statistics: integrate dy out exactly (E[dx^2|x] per draw; bp mean is then exactly 0), or draw dy and "
    "run the backward pass on it.",
)
convention = click.option(
    "--constants", "convention", type=click.Choice(CONVENTION_CHOICES), default="all", show_default=True,
    help="Normalizing constants to show: NormProp (shift, fp/bp scale), NFNet gamma, He gain, or all.",
)
samples = options.samples("per layer; qmc rounds up to a power of two per replicate",
                          f"{api.DEFAULT_SAMPLES:.0e}".replace("+0", ""))


@click.command("list", epilog=EXIT_HELP, short_help="List every layer with its parameters, defaults and reference kind.")
@options.output_format(("table", "json"))
def list_cmd(fmt: str) -> None:
    """List every layer with its parameters, defaults and reference kind."""
    infos = api.layers()
    if fmt == "json":
        click.echo(dumps([info.to_dict() for info in infos]), nl=False)
        return
    console().print(render().layer_list(infos))


@click.command(
    short_help="Estimate one layer's (or a formula's) fp/bp statistics against their references.",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    epilog="Layer parameters are options too: --k 3, --p 0.9, --fan-in 512 (see 'normstats list').\n\n" + EXIT_HELP,
)
@click.option("--layer", "-l", help="Layer name (see 'normstats list').")
@click.option("--expr", metavar="FORMULA", help="A custom activation instead of --layer, e.g. 'x * tanh(x)'.")
@click.option(
    "--torch", "torch_source", metavar="MODULE:NAME",
    help="An elementwise PyTorch activation instead of --layer: torch.nn:GELU (a module class, built with the "
    "--arg keywords) or torch.nn.functional:silu (a function); needs normstats[torch].",
)
@options.factory_args
@samples
@options.seed
@click.option(
    "--reference", type=click.Choice(METHODS), default="auto", show_default=True,
    help="Reference path: closed form, quadrature, or the first available.",
)
@click.option(
    "--sampler", type=click.Choice((*SAMPLERS, AUTO_SAMPLER)), default=None,
    show_default="layer; auto with --method auto and --target-se",
    help="Run the layer's own forward and backward pass, or an exact shortcut with the same statistics: "
    "order-statistics (max pooling: a window's maximum from one uniform), chi-square (normalization layers: a "
    "group from the chi-square law of its sum of squares), spectral (linear); auto: the layer's first shortcut, "
    "else its own passes.",
)
@method
@estimator
@options.stopping
@options.parallel
@options.output_format(FORMATS)
@options.output
@convention
@click.pass_context
def simulate(
    ctx: click.Context, layer: str | None, expr: str | None, torch_source: str | None, args: dict[str, Any],
    samples: int | None, seed: int, reference: str, sampler: str | None, fmt: str, output: str | None,
    convention: str, quiet: bool, **run: Any,
) -> None:
    """Estimate one layer's fp/bp statistics, e.g. 'normstats simulate --layer maxpool --k 3',
    'normstats simulate --expr "x * tanh(log1p(exp(x)))"' or 'normstats simulate --torch torch.nn:GELU --arg
    approximate=tanh'."""
    params = options.layer_params(ctx, layer, "--torch" if torch_source is not None else "--expr")
    row = api.simulate(
        layer, expr=expr, torch=torch_source, torch_args=args, samples=samples, seed=seed, reference=reference,
        progress=make_progress(quiet), sampler=sampler, **run, **params,
    )
    result = api.make_table([row], seed=seed, samples=row.samples, method=row.method, estimator=row.estimator)
    name = f"expr {expr}" if expr is not None else f"torch {row.params['torch']}" if row.layer == "torch" else row.layer
    title = f"{name} · {row.samples:,} draws · seed {seed} · {row.method} · bp {row.estimator}"
    if row.sampler != DEFAULT_SAMPLER:
        title += f" · sampler {row.sampler}"
    emit(result, fmt, output, title, convention)
    finish(result, output)


@click.command(epilog=EXIT_HELP, short_help="The NormProp table: every published layer, estimated and checked.")
@options.samples("per layer; given, plain mc on the layer's own passes, N draws",
                 "every se at most that of 1e6 plain draws, by qmc on the exact shortcuts")
@options.seed
@click.option(
    "--sampler", type=click.Choice((DEFAULT_SAMPLER, AUTO_SAMPLER)), default=None,
    show_default="layer; auto with --method auto and --target-se",
    help="Each row's own forward and backward pass, or its exact shortcut where it has one (auto).",
)
@method
@estimator
@options.stopping
@options.parallel
@options.output_format(FORMATS)
@options.output
@convention
def table(
    samples: int | None, seed: int, sampler: str | None, fmt: str, output: str | None, convention: str,
    quiet: bool, **run: Any
) -> None:
    """The NormProp table: every published layer with estimates, references and published figures. By default
    each row runs by qmc on its exact shortcut until every se is at most what 10^6 plain Monte Carlo draws give
    (measured by a plain pilot of 16,384 draws): a few seconds. --samples N runs N plain draws a row instead;
    --target-se runs each row by qmc on its exact shortcut (--method auto) to that se."""
    result = api.table(samples=samples, seed=seed, progress=make_progress(quiet), sampler=sampler, **run)
    title = f"normstats {result.version} · {result.metadata['method']} · bp {run['estimator']} · seed {seed}"
    emit(result, fmt, output, title, convention)
    if "pilot" in result.metadata:
        click.echo(f"each se is at most what {api.PLAIN_DRAWS:,} plain draws give (measured by a plain pilot of "
                   f"{result.metadata['pilot']:,} draws a row)", err=True)
    finish(result, output)


@click.command(
    short_help="The scale (and a free parameter) that make an activation self-normalizing.",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    epilog="Fixed layer parameters are options too, e.g. --slope 0.2.\n\n" + EXIT_HELP,
)
@click.option("--layer", "-l", required=True, help="Layer name (see 'normstats list').")
@click.option("--free", metavar="PARAM", help="A shape parameter to solve for too (mean 0), e.g. alpha.")
@click.option(
    "--target", type=click.Choice(TARGETS), default="second-moment", show_default=True,
    help="Without --free: make E (scale f)^2 = 1 (second-moment) or std(scale f) = 1 (std).",
)
@options.output_format(("table", "json"))
@click.pass_context
def solve(ctx: click.Context, layer: str, free: str | None, target: str, fmt: str) -> None:
    """The output scale (and --free parameter) making an activation map N(0,1) to mean 0, variance 1,
    e.g. 'normstats solve --layer elu --free alpha' gives SELU's constants.

    The scale also as an init: the gain G = scale/sqrt(2) of linear(init=kaiming,normalize=none,gain=G) on the
    unscaled activation does the same (normstats' kaiming init is N(0, 2/fan_in); PyTorch's
    torch.nn.init.kaiming_normal_() takes the scale itself as its gain)."""
    params = options.layer_params(ctx, layer)
    sol = api.solve(layer, free=free, target=target, **params)
    if fmt == "json":
        click.echo(dumps(sol.to_dict()), nl=False)
        return
    console().print(render().solution_table(sol))


@click.command(epilog=EXIT_HELP, short_help="Published NFNet gammas and PyTorch gains against exact references.")
@options.output_format(("table", "json"))
def audit(fmt: str) -> None:
    """Published NFNet gammas and PyTorch gains against exact references: figure, reference, relative
    deviation, and whether the deviation exceeds the figure's printed precision."""
    entries = api.audit()
    if fmt == "json":
        click.echo(dumps([e.to_dict() for e in entries]), nl=False)
        return
    console().print(render().audit_table(entries))
