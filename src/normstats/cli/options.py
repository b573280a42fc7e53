"""The options that several commands take, each declared once here so that it means and checks the same
everywhere: ``-n/--samples``, ``--seed``, ``-j/--workers``, ``--processes``, ``--dask``, ``-q/--quiet``,
``--target-se``, ``--max-time``, ``--format``, ``-o/--output`` and ``--plot``; and the layer parameters that
``simulate``, ``solve`` and ``meanfield`` take as options of their own (``--k 3``)."""

from __future__ import annotations

import ast
import difflib
from typing import Any, Callable

import click

from normstats import api
from normstats.cli.errors import checked, plan_output
from normstats.engine.executors import check_workers, default_workers
from normstats.engine.sample_count import parse_samples
from normstats.engine.stopping import check_target_se, parse_duration
from normstats.errors import NormstatsError, ParameterError
from normstats.output.figures.backend import check_png_path, pyplot
from normstats.output.files.atomic import check_writable
from normstats.registry import get_layer

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

#: How ``-n/--samples`` may be written, the same for every command.
SAMPLES_SPELLINGS = "1e7, 10000000, 10_000_000 or 10M"


def _stack(*options: Decorator) -> Decorator:
    """One decorator applying ``options`` in the order they are listed (as they appear in ``--help``)."""

    def apply(f: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


def samples(draw: str, default: str, stopping: bool = True,
            parse: Callable[[Any], int] = parse_samples) -> Decorator:
    """``-n/--samples``: ``draw`` says what one draw is for this command, ``default`` shows its default;
    ``stopping``: the command also takes ``--target-se``/``--max-time``, which make it a cap; ``parse``: the
    count's check where the command has bounds of its own (the same spellings, its own range in the message)."""
    cap = " With --target-se or --max-time: the cap (default 1e12)." if stopping else ""
    return click.option(
        "--samples", "-n", default=None, show_default=default, callback=checked(parse),
        help=f"Draws ({draw}): {SAMPLES_SPELLINGS}.{cap}",
    )


def _seed(text: str) -> int:
    try:
        return api.check_seed(int(str(text).replace("_", "")))
    except ValueError:
        raise NormstatsError(f"--seed must be an integer in [0, 2^63); got {text!r}") from None


seed = click.option("--seed", default="0", show_default=True, callback=checked(_seed),
                    help="Random seed: the same seed gives the same numbers.")

workers = click.option(
    "--workers", "-j", callback=checked(check_workers), metavar="N", show_default=f"all cores ({default_workers()})",
    help="Worker threads; any count gives the same result for a seed.",
)
processes = click.option(
    "--processes", is_flag=True,
    help="Run the workers as processes, not threads (for many cores or a GIL-bound sampler).",
)
dask = click.option("--dask", metavar="ADDRESS", help="Run blocks on the Dask scheduler at ADDRESS (needs normstats[dask]).")
quiet = click.option("--quiet", "-q", is_flag=True, help="No progress bar.")

#: Where draws run and whether progress is shown.
parallel = _stack(workers, processes, dask, quiet)

target_se = click.option("--target-se", callback=checked(check_target_se), metavar="SE",
                         help="Stop once every standard error is at or below SE (e.g. 1e-5).")
max_time = click.option("--max-time", callback=checked(parse_duration), metavar="DURATION",
                        help="Stop a run after DURATION (each row of a table has its own; a network's inits share it equally): "
                             "30s, 2m, 1h or 90 (seconds).")

#: When a run stops before its draws are done.
stopping = _stack(target_se, max_time)


def output_format(choices: tuple[str, ...], default: str | None = "table") -> Decorator:
    """``--format``: the command's own formats, the same help everywhere."""
    return click.option("--format", "fmt", type=click.Choice(choices), default=default, show_default=default is not None,
                        help="Output format.")


def _output_path(text: str) -> str:
    check_writable(text)
    return plan_output(text)


output = click.option("--output", "-o", callback=checked(_output_path), metavar="FILE",
                      help="Write to FILE (atomically) instead of stdout.")


def _plot_path(text: str) -> str:
    check_png_path(text)
    pyplot()  # one line now, before the work, if matplotlib is missing
    return plan_output(text)


def plot(what: str) -> Decorator:
    """``--plot FILE.png``: ``what`` names the figure. The path is checked, and matplotlib imported, before the
    run."""
    return click.option("--plot", callback=checked(_plot_path), metavar="FILE.png",
                        help=f"Also write {what} to FILE.png (needs normstats[plot]).")


def parse_factory_args(values: tuple[str, ...]) -> dict[str, Any]:
    """``--arg KEY=VALUE`` (repeatable) as keyword arguments: each VALUE a Python literal (``12``, ``0.1``,
    ``'tanh'``, ``(3, 3)``, ``True``); a bare word that is no literal is taken as a string (``approximate=tanh``)."""
    out: dict[str, Any] = {}
    for text in values:
        key, eq, value = text.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise NormstatsError(f"--arg must be KEY=VALUE with KEY a Python name; got {text!r}")
        try:
            out[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            if not value.strip().isidentifier():
                raise NormstatsError(f"--arg {key}: the value must be a Python literal (12, 0.5, 'text', (3, 3), "
                                     f"True) or a plain word; got {value!r}") from None
            out[key] = value.strip()
    return out


factory_args = click.option(
    "--arg", "args", multiple=True, metavar="KEY=VALUE", callback=lambda ctx, param, v: _factory_args(v),
    help="A keyword argument for the factory, as a Python literal (repeatable): --arg depth=12 --arg approximate=tanh.",
)


def _factory_args(values: tuple[str, ...]) -> dict[str, Any]:
    try:
        return parse_factory_args(values)
    except NormstatsError as exc:
        raise click.UsageError(str(exc)) from None


def layer_params(ctx: click.Context, layer: str | None, instead: str = "--expr") -> dict[str, str]:
    """The layer parameters that click left over (``ctx.args``) for ``--layer``; with no layer (``instead`` names
    what was given in its place: ``--expr``, ``--torch``) there must be none."""
    if layer is not None:
        return _parse_layer_params(layer, ctx.args, ctx.command)
    if ctx.args:
        option = ctx.args[0].partition("=")[0]
        if option in SHARED_OPTIONS:
            raise _unknown_option(option, None, [], ctx.command)
        raise click.UsageError(f"{instead} takes no layer parameters; got {' '.join(ctx.args)}")
    return {}


def _parse_layer_params(layer: str, args: list[str], command: click.Command) -> dict[str, str]:
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


def _unknown_option(option: str, layer: str | None, declared: list[str], command: click.Command) -> NormstatsError:
    """The error for ``option``, which neither the command nor the layer has.

    A near miss of one of the command's own options (``--seeds``) is a mistyped option. An option that another
    command takes (``--quiet`` to ``meanfield``) is an option this command lacks, never a layer parameter.
    Anything else is taken for a layer parameter the layer lacks, with a suggestion only from the layer's
    parameters (``--k`` for relu suggests nothing: relu has no parameters, and ``--dask`` is no kin of ``--k``)."""
    own = [o for p in command.params for o in getattr(p, "opts", []) if o.startswith("--")]
    near = difflib.get_close_matches(option, own, n=1, cutoff=COMMAND_OPTION_CUTOFF)
    in_layer = difflib.get_close_matches(option, declared, n=1, cutoff=PARAMETER_CUTOFF)
    if near and not in_layer:
        return NormstatsError(f"no such option {option} for '{command.name}'; did you mean {near[0]}?")
    if option in SHARED_OPTIONS:
        return NormstatsError(f"no such option {option} for '{command.name}' (its options: 'normstats "
                              f"{command.name} --help')")
    hint = f"; did you mean {in_layer[0]}?" if in_layer else ""
    have = ", ".join(declared) or "none"
    return ParameterError(f"layer '{layer}' has no parameter {option} (its parameters: {have}){hint}")


#: Every long option declared here: one of them given to a command that lacks it is an unknown option.
SHARED_OPTIONS = frozenset({
    "--samples", "--seed", "--workers", "--processes", "--dask", "--quiet", "--target-se", "--max-time", "--format",
    "--output", "--plot",
})
