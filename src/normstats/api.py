"""The Python API: :func:`simulate`, :func:`table`, :func:`network`, :func:`width_sweep`, :func:`layers`,
:func:`audit`, :func:`solve`, :func:`meanfield`, :func:`jacobian`, :func:`model` and :func:`init_audit`. The CLI
calls nothing else."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

from normstats._version import __version__
from normstats.engine import blocks as engine
from normstats.engine.exactness import exact_statistics
from normstats.engine.executors import open_executor
from normstats.engine.progress import NULL_PROGRESS, Labelled, Progress
from normstats.engine.sample_count import MAX_SAMPLES, parse_samples
from normstats.engine.sources import METHODS as SAMPLING_METHODS
from normstats.engine.stopping import (
    INTERRUPTED,
    StopRule,
    check_target_se,
    parse_duration,
)
from normstats.errors import NormstatsError
from normstats.exact import selfnorm
from normstats.exact.references import reference_moments
from normstats.exact.selfnorm import Solution
from normstats.layers.base import AUTO_SAMPLER, DEFAULT_SAMPLER, SAMPLERS, Layer
from normstats.networks.build import build_network
from normstats.networks.recipes import apply_recipe
from normstats.networks.run import DEFAULT_DRAWS, check_inits, default_inits, run_network
from normstats.networks.shapes import parse_input
from normstats.networks.spec import parse_spec
from normstats.output.results.init_audit import ParamAudit
from normstats.output.results.jacobian import JacobianResult
from normstats.output.results.meanfield import LayerPoint, MeanFieldResult
from normstats.output.results.model import ModelResult
from normstats.output.results.network import NetworkResult
from normstats.output.results.width_sweep import WidthSweepResult
from normstats.output.results.table import LayerInfo, Row, Table, stats_from_estimates
from normstats.published import constants as published_constants
from normstats.published.constants import AuditEntry
from normstats.published.default_table import DEFAULT_ROWS, DEPTH_DRAWS, DEPTH_RUNS
from normstats.published.figures import published_figures
from normstats.registry import _ALIASES, get_layer, list_layers, make_layer
from normstats.stats import STATS

DEFAULT_SAMPLES = 10**6
DEFAULT_SEED = 0
#: ``method="auto"`` (the default): see :func:`choose_path`.
AUTO_METHOD = "auto"
#: What ``--method`` may name.
METHODS = (AUTO_METHOD, *SAMPLING_METHODS)


def version() -> str:
    return __version__


def compiled() -> dict[str, str | None]:
    """The compiled loops this install runs, by name (``relu_passes``, ``gelu_passes``: ReLU's and exact GELU's
    network passes with their tallies; ``power_sums``: the engine's power sums): ``"avx2"``, ``"plain"`` (C
    without AVX2; GELU's loops are plain C, libm's erfc), or ``None`` where the package was built without a C
    compiler and numpy's passes run (the same numbers up to rounding)."""
    from normstats.engine.moments import power_sums_version
    from normstats.layers import gelu_kernels, relu_kernels

    return {"relu_passes": relu_kernels.version(), "gelu_passes": gelu_kernels.version(),
            "power_sums": power_sums_version()}


def run_metadata(
    seed: int, samples: int, method: str = "mc", estimator: str = engine.DEFAULT_ESTIMATOR
) -> dict[str, Any]:
    """What a result needs to be reproduced: versions, generator, method, estimator, seed and samples."""
    import numpy

    return {
        "normstats": version(),
        "numpy": numpy.__version__,
        "generator": engine.BIT_GENERATOR,
        "method": method,
        "estimator": estimator,
        "seed": seed,
        "samples": samples,
    }


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise NormstatsError(f"--seed must be an integer in [0, 2^63); got {seed!r}")
    return seed


def check_method(method: Any) -> str:
    if method not in METHODS:
        raise NormstatsError(f"--method must be one of {', '.join(METHODS)}; got {method!r}")
    return method


def check_sampler(sampler: Any, choices: tuple[str, ...] = (*SAMPLERS, AUTO_SAMPLER)) -> str | None:
    if sampler is not None and sampler not in choices:
        raise NormstatsError(f"--sampler must be one of {', '.join(choices)}; got {sampler!r}")
    return sampler


def choose_path(
    layer: Layer, method: str, target_se: float | None, sampler: str | None, targeted: bool = False
) -> tuple[str, str]:
    """The method and sampler a run of ``layer`` takes. ``method="auto"``: with a target se (``target_se``, or
    ``targeted``: per-statistic targets, as the default table sets), ``qmc`` on the layer's exact shortcut where
    its settings allow one (``sampler="auto"``), the cheapest honest way to a given precision; without one,
    plain ``mc`` on the layer's own passes, the reproducible route that every shortcut is tested against. A
    sampler given explicitly is kept; ``"auto"`` becomes the name of the shortcut chosen
    (:meth:`~normstats.layers.base.Layer.auto_sampler`)."""
    if method == AUTO_METHOD:
        method = "qmc" if target_se is not None or targeted else "mc"
        if sampler is None and method == "qmc":
            sampler = AUTO_SAMPLER
    sampler = sampler or DEFAULT_SAMPLER
    return method, layer.auto_sampler() if sampler == AUTO_SAMPLER else sampler


def check_estimator(estimator: Any) -> str:
    if estimator not in engine.ESTIMATORS:
        raise NormstatsError(f"--estimator must be one of {', '.join(engine.ESTIMATORS)}; got {estimator!r}")
    return estimator


@dataclass(frozen=True)
class RunOptions:
    """How to run each layer: sample count (a cap when a target or time limit is set), seed, method,
    estimator, when to stop, where blocks run and how progress is shown. Built and checked by
    :func:`run_options`."""

    samples: int
    seed: int
    method: str
    estimator: str
    target_se: float | None
    max_time: float | None
    workers: int | None
    dask: str | None
    chunk_draws: int | None
    progress: Progress
    processes: bool = False

    def stop_rule(self) -> StopRule:
        return StopRule(self.target_se, self.max_time)


def run_options(
    samples: int | str | None = None,
    seed: int = DEFAULT_SEED,
    method: str = "mc",
    target_se: float | str | None = None,
    max_time: float | str | None = None,
    workers: int | None = None,
    dask: str | None = None,
    chunk_draws: int | None = None,
    progress: Progress | None = None,
    estimator: str = engine.DEFAULT_ESTIMATOR,
    processes: bool = False,
) -> RunOptions:
    """Check every run option; ``samples`` defaults to :data:`DEFAULT_SAMPLES`, or to the cap
    :data:`~normstats.engine.sample_count.MAX_SAMPLES` when ``target_se`` or ``max_time`` is given."""
    target = None if target_se is None else check_target_se(target_se)
    limit = None if max_time is None else parse_duration(max_time)
    if samples is None:
        samples = MAX_SAMPLES if target is not None or limit is not None else DEFAULT_SAMPLES
    if workers is not None:
        from normstats.engine.executors import check_workers

        workers = check_workers(workers)
    if dask is not None:
        from normstats.engine.executors import check_dask_address

        dask = check_dask_address(dask)
    if processes and dask is not None:
        raise NormstatsError(
            f"--processes runs local worker processes and --dask sends blocks to a cluster: give one of them; "
            f"got --processes and --dask {dask}"
        )
    return RunOptions(
        parse_samples(samples), check_seed(seed), check_method(method), check_estimator(estimator), target,
        limit, workers, dask, chunk_draws, progress or NULL_PROGRESS, bool(processes),
    )


def simulate(
    layer: Any = None,
    *,
    expr: str | None = None,
    torch: str | None = None,
    torch_args: dict[str, Any] | None = None,
    samples: int | str | None = None,
    seed: int = DEFAULT_SEED,
    reference: str = "auto",
    method: str = AUTO_METHOD,
    estimator: str = engine.DEFAULT_ESTIMATOR,
    target_se: float | str | None = None,
    max_time: float | str | None = None,
    workers: int | None = None,
    dask: str | None = None,
    chunk_draws: int | None = None,
    progress: Progress | None = None,
    processes: bool = False,
    sampler: str | None = None,
    **params: Any,
) -> Row:
    """Estimate the fp/bp mean and std of one layer.

    ``layer`` is a registered name (``params`` are its parameters), a layer instance, or an elementwise
    ``torch.nn.Module`` instance (``torch.nn.SiLU()``); alternatively ``expr`` is a formula over ``x`` for a custom
    activation (:mod:`normstats.layers.expr`), or ``torch`` names a PyTorch activation as ``MODULE:NAME``
    (``"torch.nn:GELU"``, built with the keywords ``torch_args``; :mod:`normstats.layers.torch_activation`). ``method`` is ``mc``
    (plain Monte Carlo), ``qmc`` (16 randomized scrambled-Sobol replicates) or ``auto`` (the default: ``qmc``
    on the layer's exact shortcut when ``target_se`` is given, else ``mc`` on its own passes; see
    :func:`choose_path`). ``estimator`` says how the
    backward statistics are estimated: ``conditional`` integrates the upstream gradient dy out exactly
    (``E[dx^2 | x]`` per draw: fewer random numbers, smaller se; bp mean is then exactly 0), ``sampled``
    draws dy and runs the layer's backward pass on it. The run takes ``samples`` draws (default
    :data:`DEFAULT_SAMPLES`), or stops earlier once every standard error is at or below ``target_se`` or after
    ``max_time`` (seconds, or text such as ``"30s"``); with either of those, ``samples`` is only the cap.
    Blocks run on ``workers`` threads (default: one per core; ``processes=True`` for worker processes; runs
    under about 16M random numbers stay in this thread) or on the Dask scheduler at ``dask``; the result for
    a seed is the same on any of them. ``sampler`` names an exact shortcut with the same statistics
    (``order-statistics``: max pooling, a window's maximum from one uniform through its quantile function;
    ``chi-square``: normalization layers, one group a draw from the chi-square law of its sum of squares; ``spectral``: linear), ``layer`` for the layer's own passes, or
    ``auto`` for the layer's first shortcut; the default follows ``method``. Ctrl-C ends the run early and returns
    what it has (``row.partial``).
    Returns a :class:`~normstats.output.results.Row` whose statistics carry estimate, se, 95% interval, reference
    and z.
    """
    inst = _make(layer, expr, params, torch, torch_args)
    check_sampler(sampler)
    opts = run_options(
        samples, seed, method, target_se, max_time, workers, dask, chunk_draws, progress,
        estimator=estimator, processes=processes,
    )
    with open_executor(opts.workers, opts.dask, opts.processes) as executor:
        return _simulate(inst, opts, reference, executor, sampler)


def _simulate(
    inst: Layer, opts: RunOptions, reference: str, executor: Any, sampler: str | None = None,
    match_plain: bool = False,
) -> Row:
    """Run ``inst.shortcut(sampler)`` (``inst`` itself, or the stand-in of an exact shortcut) with the method
    and sampler :func:`choose_path` picks, and report it as ``inst``, with ``inst``'s references and published
    figures. ``match_plain``: stop once every se is at most what :data:`PLAIN_DRAWS` plain draws give
    (:func:`plain_targets`)."""
    method, sampler = choose_path(inst, opts.method, opts.target_se, sampler, targeted=match_plain)
    # The sampler and the references first: either may raise, and that must come before the run.
    runs = inst.shortcut(sampler)
    refs = reference_moments(inst, reference)
    exact = exact_statistics(inst, opts.estimator)
    stop = opts.stop_rule()
    if match_plain:
        stop.targets = plain_targets(inst, opts, executor, exact)
    result = engine.execute(
        runs, opts.samples, opts.seed, method=method, estimator=opts.estimator, stop=stop,
        executor=executor, progress=opts.progress, chunk_draws=opts.chunk_draws,
    )
    stats = stats_from_estimates(result.estimates, refs, published_figures(inst), result.method, exact)
    return Row(
        inst.name, dict(inst.values), result.draws, **stats, method=result.method, estimator=result.estimator,
        stop=result.stop, sampler=sampler,
    )


#: The default table's precision: every se of ``normstats table`` is at most what this many plain Monte Carlo
#: draws on the layer's own passes give (the table's former default, 20-30 s).
PLAIN_DRAWS = 10**6
#: The most draws a default row takes: a row whose qmc run has not reached its targets by then stops there and
#: reports the se it has (none of the default rows comes near: the slowest, a batch norm of 8, stops at 2^17).
MATCH_CAP = 1 << 24
#: Plain draws of each row's pilot, which measures the se of :data:`PLAIN_DRAWS` plain draws.
PILOT_DRAWS = 1 << 14
#: The targets are this fraction of the pilot's measure: room for the pilot's own error (an se measured from
#: 2^14 draws is off by a few percent, by more for heavy-tailed draws such as a batch norm of 8's gradient).
PILOT_MARGIN = 0.5
#: A statistic whose plain draws are all the same (se 0) is matched up to float rounding: this, relative to
#: ``max(1, |estimate|)``.
ROUNDING_SE = 1e-12


def plain_targets(
    inst: Layer, opts: RunOptions, executor: Any, exact: dict[str, float] | None = None
) -> dict[str, float]:
    """``{statistic: target se}`` for a run that must be at least as precise as :data:`PLAIN_DRAWS` plain draws
    of ``inst``'s own passes: a plain pilot of :data:`PILOT_DRAWS` draws (its own seed's stream, the run's
    estimator) measures each se, scaled by ``sqrt(PILOT_DRAWS / PLAIN_DRAWS)`` and by :data:`PILOT_MARGIN`.
    Statistics exact in every draw, and those whose se the pilot cannot measure (an infinite moment), get none."""
    pilot = engine.execute(inst, PILOT_DRAWS, opts.seed, method="mc", estimator=opts.estimator, executor=executor)
    scale = PILOT_MARGIN * (PILOT_DRAWS / PLAIN_DRAWS) ** 0.5
    targets = {}
    for name, (estimate, se) in pilot.estimates.items():
        if name in (exact or {}) or not (math.isfinite(se) and math.isfinite(estimate)):
            continue
        targets[name] = max(scale * se, ROUNDING_SE * max(1.0, abs(estimate)))
    return targets


def _make(
    layer: Any, expr: str | None, params: dict[str, Any], torch: str | None = None,
    torch_args: dict[str, Any] | None = None,
) -> Layer:
    """The layer that ``layer`` (a name, a layer, a ``torch.nn.Module``), ``expr`` or ``torch`` (exactly one of
    them) stands for."""
    if sum(x is not None for x in (layer, expr, torch)) != 1:
        raise NormstatsError("give exactly one of --layer NAME, --expr FORMULA and --torch MODULE:NAME")
    if torch_args and torch is None:
        raise NormstatsError(f"--arg is for --torch; got --arg {', '.join(torch_args)} without --torch")
    if expr is not None or torch is not None:
        if params:
            option = "--expr" if expr is not None else "--torch (its keywords go in --arg KEY=VALUE)"
            raise NormstatsError(f"{option} takes no layer parameters; got {', '.join(params)}")
        if expr is not None:
            from normstats.layers.expr import CustomActivation

            return CustomActivation(expr)
        from normstats.layers.torch_activation import TorchActivation

        return TorchActivation.from_source(torch, torch_args)  # type: ignore[arg-type]
    if isinstance(layer, Layer):
        return layer
    from normstats.layers.torch_activation import TorchActivation, is_torch_module

    if is_torch_module(layer):
        if params:
            raise NormstatsError(f"a torch.nn.Module takes no layer parameters; got {', '.join(params)}")
        return TorchActivation.from_module(layer)
    if not isinstance(layer, str):
        raise NormstatsError(f"layer must be a layer name, a Layer or a torch.nn.Module; got {type(layer).__name__}")
    return make_layer(layer, **params)


def table(
    *,
    samples: int | str | None = None,
    seed: int = DEFAULT_SEED,
    rows: Iterable[tuple[str, dict[str, Any]]] = DEFAULT_ROWS,
    on_row: Callable[[Row], None] | None = None,
    method: str = AUTO_METHOD,
    estimator: str = engine.DEFAULT_ESTIMATOR,
    target_se: float | str | None = None,
    max_time: float | str | None = None,
    workers: int | None = None,
    dask: str | None = None,
    progress: Progress | None = None,
    processes: bool = False,
    sampler: str | None = None,
) -> Table:
    """Every row of the default table (or of ``rows``), each run as :func:`simulate` runs one layer (a time
    limit applies to each row; ``sampler`` is ``layer`` or ``auto``, each row's own shortcut). One pool of
    workers serves every row. Ctrl-C ends the table after the current row, which is marked partial.

    By default (no ``samples``, ``target_se`` or ``max_time``, ``method="auto"``) each row takes the fastest
    honest route to the precision of :data:`PLAIN_DRAWS` plain draws: a plain pilot measures the se those
    draws would give for each statistic (:func:`plain_targets`), and the row runs by ``qmc`` on its exact
    shortcut until every se is at most that (a few seconds for the table, against 20-30 s for 10^6 plain
    draws); ``metadata["pilot"]`` records the pilot's draws. ``samples=N`` keeps its meaning: plain ``mc``,
    N draws a row."""
    check_sampler(sampler, (DEFAULT_SAMPLER, AUTO_SAMPLER))
    match_plain = samples is None and target_se is None and max_time is None and method == AUTO_METHOD
    opts = run_options(
        MATCH_CAP if match_plain else samples, seed, method, target_se, max_time, workers, dask, None,
        progress, estimator=estimator, processes=processes,
    )
    out: list[Row] = []
    interrupted = False
    rows = list(rows)
    with open_executor(opts.workers, opts.dask, opts.processes) as executor:
        try:
            for i, (name, params) in enumerate(rows, 1):
                labelled = replace(opts, progress=Labelled(opts.progress, f"row {i}/{len(rows)}"))
                row = _simulate(make_layer(name, **params), labelled, "auto", executor, sampler, match_plain)
                out.append(row)
                if on_row is not None:
                    on_row(row)
                if row.stop == INTERRUPTED:
                    break
        except KeyboardInterrupt:
            interrupted = True
    methods = {row.method for row in out}
    method = methods.pop() if len(methods) == 1 else opts.method  # "auto" only where rows differ
    result = make_table(
        out, seed=opts.seed, samples=opts.samples, method=method, estimator=opts.estimator,
        interrupted=interrupted,
    )
    if match_plain:
        result.metadata["pilot"] = PILOT_DRAWS
    return result


def make_table(
    rows: Iterable[Row],
    *,
    seed: int,
    samples: int,
    method: str = "mc",
    estimator: str = engine.DEFAULT_ESTIMATOR,
    interrupted: bool = False,
) -> Table:
    """Wrap rows computed with one seed into a :class:`~normstats.output.results.Table` with its metadata."""
    return Table(version(), seed, tuple(rows), run_metadata(seed, samples, method, estimator), interrupted)


def layers() -> list[LayerInfo]:
    """Every registered layer, in natural name order."""
    out = []
    for name in list_layers():
        cls = get_layer(name)
        refs = reference_moments(cls())
        out.append(
            LayerInfo(
                name=name,
                summary=cls.summary,
                aliases=tuple(a for a, target in _ALIASES.items() if target == name),
                params=cls.params,
                reference_kinds={s: None if refs[s] is None else refs[s].kind for s in STATS},
            )
        )
    return out


def network(
    spec: str,
    *,
    input: int | str | tuple[int, ...],
    width: int | None = None,
    normprop: str = "none",
    inits: int | None = None,
    samples: int | str | None = None,
    seed: int = DEFAULT_SEED,
    method: str = AUTO_METHOD,
    target_se: float | str | None = None,
    max_time: float | str | None = None,
    workers: int | None = None,
    dask: str | None = None,
    progress: Progress | None = None,
    processes: bool = False,
    input_correlation: float = 0.0,
    recipe: str | None = None,
) -> NetworkResult:
    """The fp and bp statistics of every layer of a network, with standard errors and the infinite-width
    (mean-field) value where one is computed.

    ``spec`` is a network spec (:mod:`normstats.networks.spec`: ``"20*(linear relu)"``,
    ``"16*res(linear relu linear, alpha=0.2, beta=auto)"``), ``input`` the shape of one input (``512`` or
    ``"3x32x32"``), ``width`` the outputs of a linear layer (channels of a convolution) that does not name its
    own (default: the incoming width). ``normprop`` is ``none``, ``fp``, ``bp`` or ``split``
    (:mod:`normstats.networks.build`). A draw is one input (a batch, where a layer spans one) pushed forward
    and one upstream gradient pushed back; ``samples`` draws in all (default
    :data:`~normstats.networks.run.DEFAULT_DRAWS`), over ``inits`` independent networks (weights drawn from
    the seed; default :func:`~normstats.networks.run.default_inits`: 8, so that the se includes the
    init-to-init spread and describes the architecture; ``inits=1`` describes network 0 of the seed alone, and
    ``result.describes`` says which). ``input_correlation`` (``RHO`` in [0, 1)) correlates a token sequence's
    tokens, or sends a vector network two inputs a draw, ``x`` and ``RHO x + sqrt(1 - RHO^2) e``, whose outputs'
    cosine every layer reports beside the mean-field correlation map (:mod:`normstats.networks.pairs`,
    :mod:`normstats.networks.correlation_limit`). ``recipe`` names a published residual-scaling recipe
    (:mod:`normstats.networks.recipes`: ``gpt2``, ``deepnorm``, ``admin``, ``tfixup``, ``tfixup-decoder``,
    ``depth-mup``) that rewrites the transformer ``spec`` with its constants for its depth; ``result.spec`` is the
    spec run and ``result.recipe`` the recipe's constants. The other options are :func:`simulate`'s.
    """
    if isinstance(width, (list, tuple)) or (isinstance(width, str) and "," in width):
        given = width if isinstance(width, str) else list(width)
        raise NormstatsError(f"width takes one width in normstats.network; got {given!r}: a list is a width sweep, "
                             "normstats.width_sweep(spec, input=..., widths=...)")
    applied = None
    if recipe is not None:
        if normprop != "none":
            raise NormstatsError(f"--recipe sets the network's scales itself and takes --normprop none; got --normprop "
                                 f"{normprop}")
        applied = apply_recipe(recipe, parse_spec(spec) if isinstance(spec, str) else spec)
        spec = applied.nodes
    net = build_network(spec, parse_input(input), width=width, normprop=normprop,
                        input_correlation=input_correlation)
    result = _run_built(net, inits, samples, seed, method, target_se, max_time, workers, dask, progress, processes)
    return result if applied is None else replace(result, recipe=applied.to_dict())


def _run_built(net: Any, inits: int | None, samples: int | str | None, seed: int, method: str,
               target_se: float | str | None, max_time: float | str | None, workers: int | None, dask: str | None,
               progress: Progress | None, processes: bool) -> NetworkResult:
    """:func:`network`'s run of a built network (shared with :func:`width_sweep`)."""
    if samples is None and target_se is None and max_time is None:
        samples = DEFAULT_DRAWS
    opts = run_options(samples, seed, method, target_se, max_time, workers, dask, None, progress,
                       estimator="sampled", processes=processes)
    if opts.method == AUTO_METHOD:  # a network has no exact shortcut, and qmc gains little in its dimensions
        opts = replace(opts, method="mc")
    inits = default_inits(None if samples is None else opts.samples, opts.method, opts.target_se) \
        if inits is None else check_inits(inits)
    meta = run_metadata(opts.seed, opts.samples, opts.method, "sampled")
    with open_executor(opts.workers, opts.dask, opts.processes) as executor:
        result = run_network(
            net, samples=opts.samples, seed=opts.seed, version=version(), method=opts.method, inits=inits,
            stop=opts.stop_rule(), executor=executor, progress=opts.progress, metadata=meta,
        )
    return result


def width_sweep(
    spec: str,
    *,
    input: int | str | tuple[int, ...],
    widths: str | Iterable[int],
    normprop: str = "none",
    inits: int | None = None,
    samples: int | str | None = None,
    seed: int = DEFAULT_SEED,
    method: str = AUTO_METHOD,
    target_se: float | str | None = None,
    workers: int | None = None,
    dask: str | None = None,
    progress: Progress | None = None,
    processes: bool = False,
    input_correlation: float = 0.0,
) -> WidthSweepResult:
    """A coordinate check at initialisation: ``spec`` run by :func:`network` at each of ``widths`` (``"64,128,256"``
    or a list; distinct positive integers, at most
    :data:`~normstats.output.results.width_sweep.MAX_WIDTHS`), each width the ``width`` of its run (the hidden
    layers change width, the input shape stays), all with the same seed and options. The result holds every run
    (``result.runs``) and per layer, lined up by position in the spec, the slope of log std against log width
    with its se for each scale statistic (fp and bp std, a block's branch variance, a map's channel figures, an
    attention layer's logit std): weighted least squares on log std, the se of log std by the delta method
    (:mod:`normstats.networks.width_sweep`). A slope of 0 means the layer's scale does not depend on width.
    Every width is built (and checked) before any runs; Ctrl-C stops the sweep after the run it interrupts
    (``result.partial``). ``max_time`` is not taken (whose budget would it be: the sweep's or each width's?)."""
    from normstats.networks.width_sweep import check_sweep, parse_widths, sweep_result

    sizes = parse_widths(widths)
    shape = parse_input(input)
    nets = [build_network(spec, shape, width=w, normprop=normprop, input_correlation=input_correlation)
            for w in sizes]
    check_sweep(nets, sizes)
    runs = []
    for w, net in zip(sizes, nets):
        labelled = progress if progress is None else Labelled(progress, f"width {w}")
        runs.append(_run_built(net, inits, samples, seed, method, target_se, None, workers, dask, labelled,
                               processes))
        if runs[-1].partial:
            break
    return sweep_result(sizes, runs)


def model(
    model: Any,
    *,
    input: str = "3x224x224",
    batch: int = 8,
    samples: int | str | None = None,
    inits: int = 8,
    mode: str = "train",
    seed: int = DEFAULT_SEED,
    device: str = "cpu",
    output_key: str | None = None,
    args: dict[str, Any] | None = None,
    max_memory: float | None = None,
    threads: int | None = None,
    params: bool = False,
    progress: Progress | None = None,
    dask: str | None = None,
) -> ModelResult:
    """The fp and bp statistics of every module of a PyTorch model at initialization, with standard errors.

    ``model`` is an ``nn.Module``, a zero-argument factory returning one, or a SOURCE string (``"timm:resnet18"``,
    ``"torchvision:resnet18"``, ``"package.module:callable"``; ``args`` are its keyword arguments). ``input`` is
    the shape of one input (``"3x224x224"``) or ``"ids:T"`` (T token ids uniform over the first embedding's
    vocabulary); ``batch`` inputs per draw; ``samples`` draws in all (default 32), split over ``inits``
    independent inits (a factory called again under a seed of its own; a module passed in: deep copies
    re-initialized by ``reset_parameters()``, or the module itself for one init). ``mode`` is ``train`` (batch
    norm uses the batch, dropout is on) or ``eval``. ``output_key`` names the output tensor the gradient goes
    into (default ``logits`` where there is one, else the first tensor). ``max_memory``: bytes a draw may need
    (default :data:`normstats.models.run.MEMORY_BOUND`); ``threads``: CPU threads for the run (default torch's).
    The same seed gives the same numbers (on the same device and thread count). ``params=True`` also audits the
    init of every parameter of the first init, as built (:func:`init_audit`), into ``result.params``. See
    :mod:`normstats.models.run`. ``dask``: the address of a Dask scheduler to run each init on as one task, the
    worker building its own model (``model`` a SOURCE string or a picklable factory, not a module object), with
    the numbers of a local run for the seed (:mod:`normstats.models.spread`).
    """
    if dask is not None:
        from normstats.engine.executors import check_dask_address

        dask = check_dask_address(dask)
    from normstats.models import require_torch

    require_torch()
    from normstats.models import run as model_run

    draws = model_run.DEFAULT_DRAWS if samples is None else parse_samples(samples)
    check_seed(seed)
    inits = model_run._check_int("--inits", inits, 1, model_run.MAX_INITS)
    make, label, init_method, restore = model_run.model_maker(model, inits, args)
    spread = None
    if dask is not None:
        from normstats.models.spread import dask_spreader, shipped_model

        spread = dask_spreader(dask, shipped_model(model, args, make), inits, threads)
    result = model_run.run_model(
        make, source=label, init_method=init_method, input=input, batch=batch, draws=draws, inits=inits, mode=mode,
        seed=seed, device=device, output_key=output_key, version=version(), max_memory=max_memory,
        progress=progress or NULL_PROGRESS, restore=restore, threads=threads, params=params, spread=spread,
    )
    if dask is not None:
        result.metadata["dask"] = dask
    return result


def depth_table(*, samples: int | str | None = None, seed: int = DEFAULT_SEED, progress: Progress | None = None,
                **run: Any) -> list[NetworkResult]:
    """Every run of the depth table (:data:`~normstats.published.default_table.DEPTH_RUNS`), each with
    ``samples`` draws (default :data:`~normstats.published.default_table.DEPTH_DRAWS`); ``run`` takes
    :func:`network`'s options (``workers``, ``processes``, ``dask``, ``target_se``, ``max_time``). Ctrl-C ends it
    after the run it stopped, which is returned partial (``.partial``), as the last."""
    results = []
    for spec, width, mode in DEPTH_RUNS:
        results.append(network(spec, input=width, normprop=mode, seed=seed, progress=progress,
                               samples=DEPTH_DRAWS if samples is None else samples, **run))
        if results[-1].partial:
            break
    return results


def audit() -> list[AuditEntry]:
    """Every published NFNet gamma and PyTorch gain next to its exact reference
    (:mod:`normstats.published.constants`)."""
    return published_constants.audit()


def init_audit(module: Any, *, n_layer: int | None = None, initializer_range: float | None = None) -> list[ParamAudit]:
    """For each parameter of the ``torch.nn.Module`` ``module``: its shape, fan-in and fan-out as ``torch.nn.init``
    computes them, its mean and std, ``std * sqrt(fan_in)``, the law of its values (normal or uniform, by the
    kurtosis) and the common init rules it matches within 4 se (PyTorch's default ``kaiming_uniform_(a=sqrt(5))``,
    Kaiming for ReLU in either mode, Xavier, LeCun, a fixed std such as 0.02, GPT-2's scaled ``c_proj``,
    zeros/ones), or "none of these" (:mod:`normstats.models.init_audit`). ``n_layer`` and ``initializer_range``
    (GPT-2's) default to those on ``module.config``; with ``n_layer`` known, a ``c_proj.weight`` without GPT-2's
    scaled init is flagged (``ok`` False, and a ``note``)."""
    from normstats.models.init_audit import audit_parameters

    return audit_parameters(module, n_layer=n_layer, initializer_range=initializer_range)


def solve(layer: str, *, free: str | None = None, target: str = "second-moment", **params: Any) -> Solution:
    """The output scale (and the parameter ``free``) that make ``layer`` map N(0, 1) to mean 0 and variance 1
    (:mod:`normstats.exact.selfnorm`)."""
    return selfnorm.solve(layer, free=free, target=target, **params)


def meanfield(
    layer: str | Layer | None = None,
    *,
    expr: str | None = None,
    sigma_w2: float | None = None,
    sigma_b2: float = 0.0,
    q0: float = 1.0,
    c0: float | None = None,
    depth: int = 10,
    width: int | None = None,
    networks: int = 20,
    seed: int = DEFAULT_SEED,
    critical: bool = False,
    phase_diagram: bool = False,
    **params: Any,
) -> MeanFieldResult:
    """Mean-field signal propagation (infinite width) through a deep network of the elementwise activation
    ``layer`` (or ``expr``) with weights of variance ``sigma_w2 / fan_in`` and biases of variance ``sigma_b2``
    (:mod:`normstats.theory.meanfield`): the fixed point ``q*``, ``c*`` (from correlation 0, and from ``c0``),
    ``chi_1``, ``chi_c``, ``chi_q``, the depth scales ``xi_q`` and ``xi_c``, and the trajectory of ``q`` and ``c``
    from ``q0`` and ``c0`` (0 if not given) over ``depth`` layers. ``critical=True`` finds the ``sigma_w2`` of
    the edge of chaos at ``sigma_b2`` (give no ``sigma_w2``) and reports everything there; where there is none,
    ``edge`` says so and why (``edge.reason``), and everything is reported at the ``sigma_w2`` it names instead
    (``edge.analysed_sigma_w2``: the jump of the fixed point, or the end of the range nearest the edge).
    ``width`` adds a finite-width check: ``networks`` random networks of that width
    (:mod:`normstats.theory.finite_width`). ``phase_diagram=True`` computes the grid that
    :func:`normstats.output.phase_plot.plot_phase_diagram` draws."""
    from normstats.theory import meanfield as mf

    inst = mf.check_elementwise(_make(layer, expr, params))
    b = mf.check_real("--sigma-b2", sigma_b2, 0.0)
    q0 = mf.check_real("--q0", q0, 0.0, low_open=True)
    c_start = None if c0 is None else mf.check_real("--c0", c0, -1.0, 1.0)
    depth = mf.check_count("--depth", depth, 1, mf.MAX_DEPTH)
    if width is not None:
        width = mf.check_count("--width", width, *mf.WIDTH_RANGE)
        networks = mf.check_count("--networks", networks, *mf.NETWORKS_RANGE)
    seed = check_seed(seed)
    edge = None
    if critical:
        if sigma_w2 is not None:
            raise NormstatsError(f"--critical finds sigma_w2 itself: give no --sigma-w2; got --sigma-w2 {sigma_w2!r}")
        edge = mf.find_edge(inst, b, q0)  # no edge in the range is an answer too, analysed where it says
        w = float(edge.analysed_sigma_w2)  # type: ignore[arg-type]  # find_edge always sets it
    else:
        if sigma_w2 is None:
            raise NormstatsError("--sigma-w2 is required (or --critical, which finds it)")
        w = mf.check_real("--sigma-w2", sigma_w2, 0.0, low_open=True)
    theory = mf.MeanField(inst, w, b)
    fixed = replace(theory.fixed_point(q0, c_start), fixed_points=theory.fixed_points(q0))
    path = theory.trajectory(q0, 0.0 if c_start is None else c_start, depth)
    if width is not None:
        from normstats.theory.finite_width import propagate

        checks = propagate(inst, w, b, q0, 0.0 if c_start is None else c_start, depth, width, networks, seed)
        path = [LayerPoint(p.layer, p.q, p.c, check) for p, check in zip(path, checks)]
    grid = None
    if phase_diagram:
        from normstats.theory.phase import phase_diagram as diagram

        grid = diagram(inst, w, b, q0)
    return MeanFieldResult(
        version(), inst.name, dict(inst.values), w, b, q0, c_start, depth, fixed, tuple(path),
        width=width, networks=networks if width is not None else None, seed=seed if width is not None else None,
        edge=edge, phase_diagram=grid,
    )


def jacobian(
    spec: str,
    *,
    input: int,
    init: str = "normal",
    sigma_w2: float | None = None,
    normprop: str = "none",
    inits: int | None = None,
    samples: int | str | None = None,
    seed: int = DEFAULT_SEED,
    depths: str | Iterable[int] | None = None,
    workers: int | None = None,
    processes: bool = False,
    dask: str | None = None,
    progress: Progress | None = None,
) -> JacobianResult:
    """The spectrum of the input-output Jacobian of a network on ``input`` values (:mod:`normstats.theory.jacobian`):
    per draw (one input ``x ~ N(0, I)`` and one network) ``J`` from the network's own backward pass and its
    squared singular values; per depth (``depths``: top-level layers, ``"2,4,8"``, ``"all"``; default the whole
    network) their mean, variance, largest and log10 condition number with standard errors over ``samples``
    draws (default :data:`~normstats.theory.jacobian.DEFAULT_DRAWS`), beside the free-probability
    (infinite-width) prediction where the network is a chain of square linear layers and activations
    (:mod:`normstats.theory.free_probability`). ``init`` (``normal`` or ``orthogonal``) and ``sigma_w2``
    (default 1) set the linear layers that name no weights of their own; ``normprop`` as in :func:`network`;
    ``inits``: networks in all (default: one per draw). Each network's draws run as one task on ``workers``
    threads (or ``processes``, or the Dask scheduler at ``dask``): the result is the same for any of them."""
    from normstats.theory import jacobian as jac

    draws = jac.DEFAULT_DRAWS if samples is None else jac.parse_draws(samples)
    opts = run_options(draws, seed, workers=workers, dask=dask, progress=progress, processes=processes)
    meta = run_metadata(opts.seed, draws, "mc", "sampled")
    with open_executor(opts.workers, opts.dask, opts.processes) as executor:
        return jac.measure(spec, input=input, init=init, sigma_w2=sigma_w2, normprop=normprop, draws=draws,
                           inits=inits, depths=depths, seed=opts.seed, version=version(), metadata=meta,
                           executor=executor, progress=opts.progress)
