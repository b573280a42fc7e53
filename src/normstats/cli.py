"""The ``normstats`` command line: parse, call :mod:`normstats.api`, render. Nothing else lives here.

Data (tables, JSON, CSV) goes to stdout or ``--output``; errors go to stderr as one line.
"""

from __future__ import annotations

import difflib
import functools
import io
import signal
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

import click

from normstats import api
from normstats.engine.allocator import keep_freed_memory
from normstats.engine.blocks import DEFAULT_ESTIMATOR, ESTIMATORS
from normstats.engine.executors import check_workers, default_workers
from normstats.engine.progress import make_progress
from normstats.engine.sample_count import parse_samples
from normstats.engine.stopping import check_target_se, parse_duration
from normstats.errors import NormstatsError, ParameterError
from normstats.exact.references import METHODS
from normstats.exact.selfnorm import TARGETS
from normstats.layers.base import AUTO_SAMPLER, DEFAULT_SAMPLER, SAMPLERS
from normstats.networks.build import NORMPROP_MODES
from normstats.networks.run import DEFAULT_DRAWS
from normstats.output import export, network_render
from normstats.output import formatting as fmt
from normstats.output.plotting import check_png_path, pyplot
from normstats.output.results import Table
from normstats.published.conventions import CONVENTION_CHOICES
from normstats.registry import get_layer

if TYPE_CHECKING:
    from rich.console import Console

EXIT_HELP = """Exit codes: 0 success; 1 an internal error (never bad input); 2 bad input (one line on stderr
names the parameter, what is allowed and what was given); 130 interrupted by Ctrl-C, 143 by SIGTERM (an
interrupted run writes no file); 141 stdout closed by its reader."""

FORMATS = ("table", *export.WRITERS)


#: The signal that interrupted this run: SIGINT (Ctrl-C) unless SIGTERM came. The exit status is 128 + its
#: number (130, 143), the shell's convention for a process ended by a signal.
_INTERRUPT = {"signal": int(signal.SIGINT)}


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM stops a run as Ctrl-C does (the engine returns what it merged), then exits with 143."""
    _INTERRUPT["signal"] = signum
    raise KeyboardInterrupt


def interrupted_status() -> int:
    return 128 + _INTERRUPT["signal"]


class _Main(click.Group):
    """Turns every usage error into one line on stderr and exit code 2, and Ctrl-C or SIGTERM into exit code
    130 or 143."""

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:  # type: ignore[override]
        keep_freed_memory()  # this process exists to run normstats (see normstats.engine.allocator)
        _INTERRUPT["signal"] = int(signal.SIGINT)
        _PIPE["closed"] = False
        previous = _install(signal.SIGTERM, _on_sigterm)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
            if isinstance(code, int):  # click returns an Exit's code when not in standalone mode
                sys.exit(code)
            return code
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.NoArgsIsHelpError as exc:  # plain `normstats`: the help, which is no error
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        except click.ClickException as exc:
            click.echo(f"normstats: error: {exc.format_message()}", err=True)
            sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
        except NormstatsError as exc:
            click.echo(f"normstats: error: {exc}", err=True)
            sys.exit(2)
        except (KeyboardInterrupt, click.Abort):
            click.echo("normstats: interrupted", err=True)
            sys.exit(interrupted_status())
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list with each command's whole short help (click would cut a long one mid-sentence):
        its ``short_help``, else the first paragraph of its help, wrapped."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            text = cmd.short_help or (cmd.help or "").split("\n\n")[0]
            rows.append((name, " ".join(text.split())))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # the reader went away (normstats list | head -1): end quietly
            _discard_stdout()
            raise click.exceptions.Exit(PIPE_CLOSED) from None


#: The exit status when stdout's reader has gone (128 + SIGPIPE, what a tool killed by SIGPIPE reports).
PIPE_CLOSED = 128 + 13


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that nothing more (not even the flush at exit) fails on a closed pipe."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (e.g. a test runner's buffer)
        pass
    finally:
        os.close(devnull)


def _install(signum: signal.Signals, handler: Callable[[int, Any], None]) -> Any:
    """Set a signal handler where Python allows it (the main thread); return the one it replaced."""
    try:
        return signal.signal(signum, handler)
    except ValueError:  # not the main thread (e.g. an embedding application): leave signals alone
        return None


def _checked(convert: Callable[[Any], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback that runs ``convert`` and reports a NormstatsError as a bad parameter."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return convert(value)
        except NormstatsError as exc:
            raise click.UsageError(str(exc)) from None

    return callback


def _seed(text: str) -> int:
    try:
        return api.check_seed(int(str(text).replace("_", "")))
    except ValueError:
        raise NormstatsError(f"--seed must be an integer in [0, 2^63); got {text!r}") from None


def _output_path(text: str) -> str:
    export.check_writable(text)
    return text


samples_option = click.option(
    "--samples", "-n", default=None, show_default=f"{api.DEFAULT_SAMPLES:.0e}".replace("+0", ""),
    callback=_checked(parse_samples),
    help="Draws per layer: 1e7, 10000000, 10_000_000 or 10M. With --target-se or --max-time: the cap "
    "(default 1e12). qmc rounds up to a power of two per replicate.",
)
seed_option = click.option("--seed", default="0", show_default=True, callback=_checked(_seed), help="Random seed.")
format_option = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format."
)


def run_options(f: Callable[..., Any], estimator: bool = True) -> Callable[..., Any]:
    """The options that say how a run samples, stops, runs in parallel and reports progress (``estimator``:
    with the choice of bp estimator)."""
    options = [
        click.option("--method", type=click.Choice(api.METHODS), default=api.AUTO_METHOD, show_default=True,
                     help="Sampling: plain Monte Carlo, 16 randomized scrambled-Sobol replicates, or auto: "
                     "with --target-se, qmc on each layer's exact shortcut (--sampler auto), else mc (a "
                     "network: mc)."),
        *([click.option("--estimator", type=click.Choice(ESTIMATORS), default=DEFAULT_ESTIMATOR, show_default=True,
                        help="bp statistics: integrate dy out exactly (E[dx^2|x] per draw; bp mean is then "
                        "exactly 0), or draw dy and run the backward pass on it.")] if estimator else []),
        click.option("--target-se", callback=_checked(check_target_se), metavar="SE",
                     help="Stop once every standard error is at or below SE (e.g. 1e-5)."),
        click.option("--max-time", callback=_checked(parse_duration), metavar="DURATION",
                     help="Stop after DURATION per layer: 30s, 2m, 1h or 90 (seconds)."),
        click.option("--workers", "-j", callback=_checked(check_workers), metavar="N",
                     show_default=f"all cores ({default_workers()})",
                     help="Worker threads; any count gives the same result for a seed."),
        click.option("--processes", is_flag=True,
                     help="Run the workers as processes, not threads (for many cores or a GIL-bound sampler)."),
        click.option("--dask", metavar="ADDRESS",
                     help="Run blocks on the Dask scheduler at ADDRESS (needs normstats[dask])."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


output_option = click.option(
    "--output", "-o", callback=_checked(_output_path), metavar="FILE",
    help="Write to FILE (atomically) instead of stdout.",
)


convention_option = click.option(
    "--constants", "convention", type=click.Choice(CONVENTION_CHOICES), default="all", show_default=True,
    help="Normalizing constants to show: NormProp (shift, fp/bp scale), NFNet gamma, He gain, or all.",
)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_HELP)
@click.version_option(api.version(), "-V", "--version", prog_name="normstats")
def main() -> None:
    """Mean and std of each layer's output (fp) and input gradient (bp) for x, dy ~ N(0, I): Monte Carlo
    estimates with standard errors, checked against exact references."""


@main.command("list", epilog=EXIT_HELP, short_help="List every layer with its parameters, defaults and reference kind.")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True)
def list_cmd(fmt: str) -> None:
    """List every layer with its parameters, defaults and reference kind."""
    infos = api.layers()
    if fmt == "json":
        data = [info.to_dict() for info in infos]
        click.echo(export.dumps(data), nl=False)
        return
    _console().print(_render().layer_list(infos))


@main.command(
    short_help="Estimate one layer's (or a formula's) fp/bp statistics against their references.",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    epilog="Layer parameters are options too: --k 3, --p 0.9, --fan-in 512 (see 'normstats list').\n\n"
    + EXIT_HELP,
)
@click.option("--layer", "-l", help="Layer name (see 'normstats list').")
@click.option("--expr", metavar="FORMULA", help="A custom activation instead of --layer, e.g. 'x * tanh(x)'.")
@samples_option
@seed_option
@click.option(
    "--reference", type=click.Choice(METHODS), default="auto", show_default=True,
    help="Reference path: closed form, quadrature, or the first available.",
)
@click.option(
    "--sampler", type=click.Choice((*SAMPLERS, AUTO_SAMPLER)), default=None,
    show_default="layer; auto with --method auto and --target-se",
    help="Run the layer's own forward and backward pass, or an exact shortcut with the same statistics: "
    "order-statistics (max pooling: a window's maximum from one uniform), chi-square (normalization layers: a group from the chi-square law of its sum of squares), "
    "spectral (linear); auto: the layer's first shortcut, else its own passes.",
)
@run_options
@format_option
@output_option
@convention_option
@click.pass_context
def simulate(
    ctx: click.Context, layer: str | None, expr: str | None, samples: int | None, seed: int, reference: str,
    sampler: str | None, fmt: str, output: str | None, convention: str, quiet: bool, **run: Any,
) -> None:
    """Estimate one layer's fp/bp statistics, e.g. 'normstats simulate --layer maxpool --k 3' or
    'normstats simulate --expr "x * tanh(log1p(exp(x)))"'."""
    params = _activation_params(ctx, layer)
    row = api.simulate(
        layer, expr=expr, samples=samples, seed=seed, reference=reference, progress=make_progress(quiet),
        sampler=sampler, **run, **params,
    )
    result = api.make_table([row], seed=seed, samples=row.samples, method=row.method, estimator=row.estimator)
    name = row.layer if expr is None else f"expr {expr}"
    title = f"{name} · {row.samples:,} draws · seed {seed} · {row.method} · bp {row.estimator}"
    if row.sampler != DEFAULT_SAMPLER:
        title += f" · sampler {row.sampler}"
    _emit(result, fmt, output, title, convention)
    _finish(result, output)


@main.command(epilog=EXIT_HELP, short_help="The NormProp table: every published layer, estimated and checked.")
@samples_option
@seed_option
@click.option(
    "--sampler", type=click.Choice((DEFAULT_SAMPLER, AUTO_SAMPLER)), default=None,
    show_default="layer; auto with --method auto and --target-se",
    help="Each row's own forward and backward pass, or its exact shortcut where it has one (auto).",
)
@run_options
@format_option
@output_option
@convention_option
def table(
    samples: int | None, seed: int, sampler: str | None, fmt: str, output: str | None, convention: str,
    quiet: bool, **run: Any
) -> None:
    """The NormProp table: every published layer with estimates, references and published figures. With
    --target-se it runs each row by qmc on its exact shortcut (--method auto), the fastest way to a precision."""
    result = api.table(samples=samples, seed=seed, progress=make_progress(quiet), sampler=sampler, **run)
    title = f"normstats {result.version} · {result.metadata['method']} · bp {run['estimator']} · seed {seed}"
    _emit(result, fmt, output, title, convention)
    _finish(result, output)


NETWORK_FORMATS = ("table", "json", "csv", "markdown")


@main.command(
    short_help="Per-layer fp/bp statistics of a whole network, beside the infinite-width limit.",
    epilog="Specs: '20*(linear relu)', 'linear(fan_out=256) relu', 'conv(out_channels=16,k=3,padding=1) relu "
    "maxpool(k=2)', '16*res(linear relu linear, alpha=0.2, beta=auto)'.\n\n" + EXIT_HELP,
)
@click.argument("spec")
@click.option("--input", "input_shape", required=True, metavar="SHAPE",
              help="One input: N values (512) or a CxHxW map (3x32x32).")
@click.option("--width", type=int, metavar="N",
              help="Outputs of a linear layer (channels of a conv) that names none. [default: the incoming width]")
@click.option("--normprop", type=click.Choice(NORMPROP_MODES), default="none", show_default=True,
              help="NormProp scaling: none; fp (divide by the fp std); bp (by the bp std); split (forward by the fp "
              "std, backward by the bp std: not the true gradient).")
@click.option("--inits", default=1, show_default=True, type=int, metavar="K",
              help="Independent networks (weights and draws); the se then includes the init-to-init spread.")
@click.option(
    "--samples", "-n", default=None, show_default=f"{DEFAULT_DRAWS:.0e}".replace("+0", ""),
    callback=_checked(parse_samples),
    help="Draws in all (a draw: one input forward, one gradient back). With --target-se or --max-time: the cap.",
)
@seed_option
@functools.partial(run_options, estimator=False)
@click.option("--format", "fmt", type=click.Choice(NETWORK_FORMATS), default="table", show_default=True,
              help="Output format.")
@output_option
@click.option("--plot", callback=_checked(check_png_path), metavar="FILE.png",
              help="Also write a signal-propagation plot (needs normstats[plot]).")
def network(
    spec: str, input_shape: str, width: int | None, normprop: str, inits: int, samples: int | None, seed: int,
    fmt: str, output: str | None, plot: str | None, quiet: bool, **run: Any,
) -> None:
    """Per-layer fp/bp statistics of a whole network at depth, beside the infinite-width (mean-field) limit,
    e.g. 'normstats network "20*(linear relu)" --input 512 --normprop fp'."""
    if plot is not None:
        pyplot()  # fail before the run when matplotlib is missing
    result = api.network(
        spec, input=input_shape, width=width, normprop=normprop, inits=inits, samples=samples, seed=seed,
        progress=make_progress(quiet), **run,
    )
    title = (f"network {result.spec} · input {'x'.join(map(str, result.input))} · normprop {result.normprop}"
             f" · {result.draws:,} draws · {result.inits} network{'s' if result.inits > 1 else ''} · seed {seed}")
    if not (output and result.partial):
        _emit_document(fmt, output, lambda _: network_render.network_table(result, title), {
            "json": lambda: export.dumps(result.to_dict()), "csv": lambda: network_render.to_csv(result),
            "markdown": lambda: network_render.to_markdown(result)})
        if plot is not None:
            from normstats.output.signal_plot import plot_signal_propagation

            plot_signal_propagation(result, plot)
            click.echo(f"wrote {plot}", err=True)
    networks = f"{result.inits} network{'s' if result.inits > 1 else ''}"
    click.echo(f"{result.draws:,} draws over {networks} ({result.method}), stopped by {result.stop}", err=True)
    if _PIPE["closed"]:
        sys.exit(PIPE_CLOSED)
    if result.partial and (output is not None or plot is not None):
        _interrupted(f"nothing written to {' or '.join(filter(None, (output, plot)))}")
    if result.partial:
        _interrupted("the results above are partial (their se hold for the draws taken)")


@main.command("export", short_help="Export the default table in one format, or every format into a folder.",
              epilog="Regenerate the repository's tables/ folder: normstats export --all --output-dir tables/ "
              "and normstats export --depth --output-dir tables/\n\n" + EXIT_HELP)
@samples_option
@seed_option
@click.option("--format", "fmt", type=click.Choice(tuple(export.WRITERS)), help="One format (stdout or --output).")
@output_option
@click.option("--all", "all_formats", is_flag=True, help="Every format, into --output-dir.")
@click.option("--depth", is_flag=True,
              help="The depth table instead: 20 dense ReLU layers at width 512 in each NormProp mode and a residual "
              "stack, as network JSON documents, CSV and Markdown into --output-dir (5,000 draws each unless -n).")
@click.option("--output-dir", type=click.Path(file_okay=False), help="Folder for --all (it must exist).")
def export_cmd(
    samples: int, seed: int, fmt: str | None, output: str | None, all_formats: bool, depth: bool,
    output_dir: str | None,
) -> None:
    """Export the default table: one format, or --all formats into a folder; or the depth table (--depth)."""
    if depth:
        if fmt or all_formats or output or not output_dir:
            raise click.UsageError("--depth writes every format into --output-dir DIR; give no --format, --all "
                                   "or --output with it")
        export.check_directory(output_dir)
        for path in export.write_depth(api.depth_table(samples=samples, seed=seed), output_dir):
            click.echo(f"wrote {path}", err=True)
        return
    if all_formats == bool(fmt):
        raise click.UsageError("give either --format FORMAT or --all (with --output-dir DIR)")
    if all_formats and not output_dir:
        raise click.UsageError("--all needs --output-dir DIR")
    if fmt and output_dir:
        raise click.UsageError("--output-dir goes with --all; use --output FILE with --format")
    if output_dir:
        export.check_directory(output_dir)
    result = api.table(samples=samples, seed=seed)
    if result.partial:  # an export is whole or not at all: a partial table would replace good files
        where = f"{output_dir}" if output_dir else (output or "stdout")
        _interrupted(f"nothing exported to {where}" + (" (its files keep their contents)" if output_dir else
                                                         _kept(output)))
    if output_dir:
        for path in export.write_all(result, output_dir):
            click.echo(f"wrote {path}", err=True)
        return
    _emit(result, str(fmt), output, "")



@main.command("schema", epilog=EXIT_HELP, short_help="Print the JSON Schema of the --format json documents.")
def schema_cmd() -> None:
    """Print the JSON Schema of the documents written with --format json."""
    click.echo(export.dumps(export.schema()), nl=False)


#: Set when stdout's reader went away during the output (see :func:`_emit`).
_PIPE = {"closed": False}


def _kept(output: str | None) -> str:
    """What became of ``--output`` after an interrupted run: nothing was written to it."""
    if output is None:
        return ""
    from pathlib import Path

    return " (it keeps its contents)" if Path(output).exists() else " (it was not created)"


def _interrupted(what: str) -> None:
    click.echo(f"normstats: interrupted: {what}", err=True)
    sys.exit(interrupted_status())


def _finish(result: Table, output: str | None = None) -> None:
    """Say on stderr how each run ended; exit 130 (143 for SIGTERM) when the run was cut short, after the
    partial results were printed (to ``--output`` nothing is written: a partial table would replace a whole
    one)."""
    endings = {(row.samples, row.method, row.stop) for row in result.rows}
    if len(result.rows) > 1 and len(endings) == 1:
        ((samples, method, stop),) = endings
        click.echo(f"every row: {samples:,} draws ({method}), stopped by {stop}", err=True)
    else:
        for row in result.rows:
            label = " ".join(filter(None, (row.layer, row.describe_params())))
            click.echo(f"{label}: {row.samples:,} draws ({row.method}), stopped by {row.stop}", err=True)
    for line in fmt.not_finite_lines(result.rows):
        click.echo(line, err=True)
    if _PIPE["closed"]:
        sys.exit(PIPE_CLOSED)
    if result.partial and output is not None:
        _interrupted(f"nothing written to {output}{_kept(output)}")
    if result.partial:
        _interrupted("the results above are partial (their se hold for the draws taken)")


def _activation_params(ctx: click.Context, layer: str | None) -> dict[str, str]:
    """The layer parameters left over by click for ``--layer``; with ``--expr`` there must be none."""
    if layer is not None:
        return _layer_params(layer, ctx.args, ctx.command)
    if ctx.args:
        raise click.UsageError(f"--expr takes no layer parameters; got {' '.join(ctx.args)}")
    return {}


def _layer_params(layer: str, args: list[str], command: click.Command) -> dict[str, str]:
    """Parse ``--name value`` / ``--name=value`` pairs left over by click into layer parameters."""
    cls = get_layer(layer)
    declared = {p.option: p.name for p in cls.params}
    params: dict[str, str] = {}
    it = iter(args)
    for token in it:
        if not token.startswith("--"):
            raise click.UsageError(f"unexpected argument {token!r}: layer parameters are given as --name VALUE")
        option, eq, value = token.partition("=")
        if option not in declared:
            raise _unknown_option(option, cls.name, list(declared), command)
        if not eq:
            value = next(it, None)  # type: ignore[assignment]
            if value is None:
                raise ParameterError(f"parameter {option} of layer '{cls.name}' needs a value")
        params[declared[option]] = value
    return params


#: How close a mistyped option must be to one of the command's own options to be taken for it (``--seeds``
#: for ``--seed``: 0.91; ``--k`` for ``--dask``: 0.67 is not), and to a layer parameter to be suggested.
COMMAND_OPTION_CUTOFF = 0.8
PARAMETER_CUTOFF = 0.6


def _unknown_option(option: str, layer: str, declared: list[str], command: click.Command) -> NormstatsError:
    """The error for ``option``, which neither the command nor the layer has. A near miss of one of the
    command's own options (``--seeds``) is a mistyped option; anything else is taken for a layer parameter
    the layer lacks, with a suggestion only from the layer's parameters (``--k`` for relu suggests nothing:
    relu has no parameters, and ``--dask`` is no kin of ``--k``)."""
    own = [o for p in command.params for o in getattr(p, "opts", []) if o.startswith("--")]
    near = difflib.get_close_matches(option, own, n=1, cutoff=COMMAND_OPTION_CUTOFF)
    in_layer = difflib.get_close_matches(option, declared, n=1, cutoff=PARAMETER_CUTOFF)
    if near and not in_layer:
        return NormstatsError(f"no such option {option} for '{command.name}'; did you mean {near[0]}?")
    hint = f"; did you mean {in_layer[0]}?" if in_layer else ""
    have = ", ".join(declared) or "none"
    return ParameterError(f"layer '{layer}' has no parameter {option} (its parameters: {have}){hint}")


#: Width of text written to a file or a pipe (a terminal uses its own width); a table wider than this gets
#: its natural width there, so that nothing in it wraps or is cut.
FILE_WIDTH = 120


def _render() -> ModuleType:
    """:mod:`normstats.output.render`, imported when a table is printed: it pulls in rich's console and tables
    (about 40 ms), which a run writing JSON or CSV never needs."""
    from normstats.output import render

    return render


def _new_console(**options: Any) -> Console:
    """A rich console that reports a closed stdout as :class:`BrokenPipeError` (rich's own handling exits
    with status 1), so that the run still says on stderr how it ended."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError

        def print(self, *objects: Any, **kwargs: Any) -> None:
            if not _encodable(self.file):
                objects = tuple(_ascii(o) for o in objects)
            if not self.is_terminal:  # a pipe or a file: as wide as the widest table needs
                self.width = max([FILE_WIDTH, *(_render().natural_width(o) for o in objects)])
            super().print(*objects, **kwargs)

    return _Console(**options)


#: Plain-ASCII spellings of the characters the tables use, for a stdout that cannot encode them.
ASCII = str.maketrans({
    "·": "|", "±": "+-", "—": "-", "–": "-", "✓": "yes", "✗": "NO", "γ": "gamma", "²": "^2", "…": "...",
    "≤": "<=", "≥": ">=", "×": "x", "√": "sqrt", "∞": "inf",
})


def _ascii(renderable: Any) -> Any:
    """``renderable`` (a str, rich Text, Table or Group, as :mod:`normstats.output.render` builds them) with
    its text spelled in plain ASCII (``±`` as ``+-``, ``✓`` as ``yes``), before rich lays it out; rich draws
    ASCII boxes itself for an encoding that is not UTF."""
    from rich.console import Group
    from rich.table import Table as RichTable
    from rich.text import Text

    if isinstance(renderable, str):
        return renderable.translate(ASCII).encode("ascii", "replace").decode("ascii")
    if isinstance(renderable, Text):
        style = renderable.spans[0].style if renderable.spans else renderable.style
        return Text(_ascii(renderable.plain), style=style, justify=renderable.justify)
    if isinstance(renderable, Group):
        return Group(*(_ascii(r) for r in renderable.renderables))
    if isinstance(renderable, RichTable):
        for attr in ("title", "caption"):
            if getattr(renderable, attr) is not None:
                setattr(renderable, attr, _ascii(getattr(renderable, attr)))
        for column in renderable.columns:
            column.header = _ascii(column.header)
            column._cells = [_ascii(c) for c in column._cells]
        return renderable
    return renderable


def _encodable(stream: Any) -> bool:
    """Whether ``stream`` can show the tables' characters (a UTF terminal or pipe can; ``ascii`` cannot)."""
    try:
        "±·—✓✗γ²…".encode(getattr(stream, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _console(file: Any = None) -> Console:
    console = _new_console(file=file)
    if not console.is_terminal:
        console = _new_console(file=file, width=FILE_WIDTH)
    return console


def _emit_document(fmt: str, output: str | None, table: Callable[[Any], Any], texts: dict[str, Callable[[], str]]
                   ) -> None:
    """Print one result document, or write it atomically to ``output``: ``table(console)`` gives the rich
    renderable for ``--format table``, ``texts[fmt]()`` the text of the other formats. A closed stdout is noted (the
    command then ends quietly with :data:`PIPE_CLOSED` after its stderr summary)."""
    try:
        if fmt == "table":
            buf = io.StringIO() if output else None
            console = _new_console(file=buf, width=FILE_WIDTH, no_color=True) if buf else _console()
            console.print(table(console))
            text = buf.getvalue() if buf else None
        else:
            text = texts[fmt]()
            if not output:
                click.echo(text, nl=False)
    except BrokenPipeError:  # stdout's reader went away: still say on stderr how the run ended
        _discard_stdout()
        _PIPE["closed"] = True
        return
    if output and text is not None:
        export.write_atomic(output, text)
        click.echo(f"wrote {output}", err=True)


def _plot_and_close(plot: str | None, draw: Callable[[str], None]) -> None:
    """Write the ``--plot`` figure (``draw(path)``), if one was asked for; then end with :data:`PIPE_CLOSED` if
    stdout's reader went away."""
    if plot is not None:
        draw(plot)
        click.echo(f"wrote {plot}", err=True)
    if _PIPE["closed"]:
        sys.exit(PIPE_CLOSED)


def _emit(result: Table, fmt: str, output: str | None, title: str, convention: str = "all") -> None:
    """Print ``result`` in ``fmt``, or write it atomically to ``output`` (unless the run was interrupted:
    :func:`_finish` says so)."""
    if output and result.partial:
        return

    def table(console: Any) -> Any:
        width = console.width if console.is_terminal else None
        return _render().results(list(result.rows), title, convention, width)

    _emit_document(fmt, output, table, {name: (lambda w=w: w(result)) for name, w in export.WRITERS.items()})


@main.command(
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
@seed_option
@click.option("--critical", is_flag=True, help="Find the sigma_w2 of the edge of chaos (chi_1 = 1) at --sigma-b2.")
@click.option("--plot", metavar="FILE.png", help="Write the phase diagram over (sigma_w2, sigma_b2) to FILE.png.")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True)
@output_option
@click.pass_context
def meanfield(
    ctx: click.Context, layer: str | None, expr: str | None, plot: str | None, fmt: str, output: str | None,
    **options: Any,
) -> None:
    """Mean-field theory (infinite width) of a deep network: fixed points, chi_1, depth scales, trajectories,
    the edge of chaos, e.g. 'normstats meanfield --layer tanh --sigma-w2 1.5 --sigma-b2 0.05'."""
    params = _activation_params(ctx, layer)
    if plot is not None:
        from normstats.output.plotting import check_png_path, pyplot

        check_png_path(plot)
        pyplot()  # one line now, before the work, if matplotlib is missing
    result = api.meanfield(layer, expr=expr, phase_diagram=plot is not None, **options, **params)
    from normstats.output import render_meanfield

    _emit_document(fmt, output, lambda _: render_meanfield.meanfield(result),
                   {"json": lambda: export.dumps(result.to_dict())})
    from normstats.output.phase_plot import plot_phase_diagram

    _plot_and_close(plot, lambda path: plot_phase_diagram(result, path))


@main.command(epilog=EXIT_HELP, short_help="Published NFNet gammas and PyTorch gains against exact references.")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True)
def audit(fmt: str) -> None:
    """Published NFNet gammas and PyTorch gains against exact references: figure, reference, relative
    deviation, and whether the deviation exceeds the figure's printed precision."""
    entries = api.audit()
    if fmt == "json":
        click.echo(export.dumps([e.to_dict() for e in entries]), nl=False)
        return
    _console().print(_render().audit_table(entries))


@main.command(
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
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True)
@click.pass_context
def solve(ctx: click.Context, layer: str, free: str | None, target: str, fmt: str) -> None:
    """The output scale (and --free parameter) making an activation map N(0,1) to mean 0, variance 1,
    e.g. 'normstats solve --layer elu --free alpha' gives SELU's constants."""
    params = _layer_params(layer, ctx.args, ctx.command)
    sol = api.solve(layer, free=free, target=target, **params)
    if fmt == "json":
        click.echo(export.dumps(sol.to_dict()), nl=False)
        return
    _console().print(_render().solution_table(sol))


@main.command(
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
@click.option("--samples", "-n", default=None, callback=_checked(parse_samples), show_default="100",
              help="Draws (a draw: one input and its network's whole Jacobian and SVD).")
@seed_option
@click.option("--depths", metavar="L1,L2,...", help="Jacobians of the first L top-level layers, or all. "
              "[default: the whole network]")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True)
@output_option
@click.option("--plot", callback=_checked(check_png_path), metavar="FILE.png",
              help="Also write the histogram of the squared singular values (needs normstats[plot]).")
def jacobian(
    spec: str, input_size: int, init: str, sigma_w2: float | None, normprop: str, inits: int | None,
    samples: int | None, seed: int, depths: str | None, fmt: str, output: str | None, plot: str | None,
) -> None:
    """The singular values of a network's input-output Jacobian (dynamical isometry) beside their
    free-probability limit, e.g. 'normstats jacobian "8*linear" --input 256 --init orthogonal'."""
    if plot is not None:
        pyplot()  # fail before the run when matplotlib is missing
    result = api.jacobian(spec, input=input_size, init=init, sigma_w2=sigma_w2, normprop=normprop, inits=inits,
                          samples=samples, seed=seed, depths=depths)
    from normstats.output import render_jacobian

    _emit_document(fmt, output, lambda _: render_jacobian.jacobian_table(result),
                   {"json": lambda: export.dumps(result.to_dict())})
    from normstats.output.spectrum_plot import plot_spectrum

    _plot_and_close(plot, lambda path: plot_spectrum(result, path))


if __name__ == "__main__":
    main()
