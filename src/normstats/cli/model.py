"""``normstats model``: per-module fp/bp statistics of a PyTorch model at initialization."""

from __future__ import annotations

from typing import Any

import click

from normstats import api
from normstats.cli import options
from normstats.cli.errors import EXIT_HELP
from normstats.cli.output import deliver, render_audit
from normstats.engine.progress import make_progress
from normstats.output.figures.model import plot_model
from normstats.output.files import model as model_files
from normstats.output.files.schema import dumps
from normstats.output.terminal.model import model_table, model_title

FORMATS = ("table", "json", "csv", "markdown")
#: Defaults shown in --help (the API's own: normstats.models.run, which imports torch, is not loaded for --help).
DEFAULT_DRAWS, DEFAULT_INITS, DEFAULT_MEMORY_GIB = 32, 8, 8.0


def _memory(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 2**20:
        from normstats.errors import NormstatsError

        raise NormstatsError(f"--max-memory must be a number of GiB in (0, 1048576]; got {text!r}")
    return value


@click.command(
    short_help="Per-module fp/bp statistics of a PyTorch model (timm, torchvision, your own) at initialization.",
    epilog="SOURCE: timm:NAME (timm.create_model(NAME, pretrained=False)), torchvision:NAME "
    "(torchvision.models.get_model(NAME, weights=None)) or package.module:callable (any factory returning an "
    "nn.Module). No weights are ever downloaded. Needs normstats[torch].\n\n" + EXIT_HELP,
)
@click.argument("source")
@click.option("--input", "input_shape", default="3x224x224", show_default=True, metavar="SHAPE",
              help="One input: CxHxW, N, or ids:T (T token ids uniform over the first embedding's vocabulary).")
@click.option("--batch", "-b", default=8, show_default=True, type=int, metavar="B",
              help="Inputs per draw (batch norm in train mode makes the batch part of the result).")
@options.samples("in all; a draw: one batch forward, one gradient back", str(DEFAULT_DRAWS), stopping=False)
@click.option("--inits", default=DEFAULT_INITS, show_default=True, type=int, metavar="K",
              help="Independent inits the draws are split over; the se then includes the init-to-init spread.")
@click.option("--mode", type=click.Choice(("train", "eval")), default="train", show_default=True,
              help="train: batch norm uses the batch and dropout is on (the first step of training); eval.")
@click.option("--output-key", metavar="KEY",
              help="The output tensor the gradient goes into (a dict key or a tuple index). [default: logits "
              "where there is one, else the first tensor]")
@click.option("--device", default="cpu", show_default=True, metavar="DEVICE", help="cpu or cuda (cuda:N).")
@click.option("--depth", type=click.IntRange(0, None), metavar="D",
              help="Show modules down to depth D in the table (1: the model's children); JSON keeps all.")
@click.option("--max-memory", default=str(DEFAULT_MEMORY_GIB), show_default=True, metavar="GIB",
              callback=lambda ctx, p, v: _checked_memory(v),
              help="Refuse a run whose parameters and one batch's activations need more than GIB GiB.")
@click.option("--threads", type=click.IntRange(1, 1024), metavar="N",
              help="CPU threads for torch (torch.set_num_threads). [default: torch's own]")
@click.option("--params", is_flag=True,
              help="Also audit each parameter's init: shape, fans, std, std*sqrt(fan_in) and the common rule it "
              "matches within 4 se (PyTorch's default kaiming_uniform(a=sqrt(5)), Kaiming, Xavier, LeCun, a fixed "
              "std such as 0.02, GPT-2's scaled c_proj, zeros/ones), or none of these; the JSON's params section.")
@options.factory_args
@options.dask
@options.seed
@options.quiet
@options.output_format(FORMATS)
@options.output
@options.plot("the signal-propagation plot")
def model(
    source: str, input_shape: str, batch: int, samples: int | None, inits: int, mode: str, output_key: str | None,
    device: str, depth: int | None, max_memory: float, threads: int | None, params: bool, args: dict[str, Any],
    dask: str | None, seed: int, quiet: bool, fmt: str, output: str | None, plot: str | None,
) -> None:
    """Per-module fp/bp statistics of a PyTorch model at initialization, with standard errors over draws and
    inits, e.g. 'normstats model timm:resnet18 --input 3x224x224 --batch 8 -n 64'."""
    result = api.model(
        source, input=input_shape, batch=batch, samples=samples, inits=inits, mode=mode, seed=seed, device=device,
        output_key=output_key, args=args, max_memory=max_memory * 2**30, threads=threads, params=params,
        progress=make_progress(quiet), dask=dask,
    )

    def table(_: Any) -> Any:
        from rich.console import Group

        shown = model_table(result, model_title(result), depth)
        return shown if result.params is None else Group(shown, render_audit(result.params))

    ending = (f"{result.draws:,} draws over {result.inits} init{'s' if result.inits > 1 else ''} "
              f"({result.init_method}), batch {result.batch}, {result.mode} mode")
    deliver(fmt, output, table, {
        "json": lambda: dumps(result.to_dict()), "csv": lambda: model_files.to_csv(result),
        "markdown": lambda: model_files.to_markdown(result)}, plot, lambda path: plot_model(result, path),
        ending=ending)


def _checked_memory(value: str) -> float:
    from normstats.errors import NormstatsError

    try:
        return _memory(value)
    except NormstatsError as exc:
        raise click.UsageError(str(exc)) from None
