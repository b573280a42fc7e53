"""A network run: the engine's draws through the built network, one or several independent networks, and the
rows of every layer with their mean-field references.

With ``inits = K > 1`` (the default is :data:`DEFAULT_INITS`) the run draws K independent networks (their own
weights and their own draws, ``ceil(samples / K)`` each). Every statistic is then the mean of the K networks'
estimates and its standard error the spread of those estimates over ``sqrt(K)``: each network's estimate is
unbiased for its own expectation, and those expectations scatter about the architecture's, so the spread of the K
estimates holds both the Monte Carlo error of each network and the init-to-init spread, which is what a reader
of ``± se`` takes it to describe (the architecture) and what the infinite-width theory averages over. The
intervals use Student's t on K - 1 degrees of freedom. ``inits = 1`` describes that one network (network 0 of the
seed): its se is its Monte Carlo error alone and leaves out the init-to-init spread, which at depth can be many
times larger (``20*(linear relu)`` at width 512, no NormProp: layer 40's fp std sat 73 of its se from the
average over networks). With a time limit (``--max-time``) the networks run in turn, each with an equal share of
the time left when it starts (:meth:`~normstats.engine.stopping.StopRule.share`), so that network 0 does not
take it all.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from normstats.engine import blocks as engine
from normstats.engine.exactness import agrees
from normstats.engine.progress import NULL_PROGRESS, Progress
from normstats.engine.stopping import INTERRUPTED, StopRule
from normstats.errors import NormstatsError
from normstats.networks.build import Block, Network
from normstats.networks.correlation_limit import correlation_limit
from normstats.networks.propagate import NetworkModel, draw_seed
from normstats.networks.wide_limit import mean_field
from normstats.output.results.network import LayerStats, NetworkResult
from normstats.output.results.table import Stat, interval_quantile

#: Draws of a network run unless told otherwise (a draw is a whole forward and backward pass).
DEFAULT_DRAWS = 10**4
#: Most independent networks of one run.
MAX_INITS = 1000
#: Independent networks of a run unless told otherwise: enough for the spread between them to estimate the
#: init-to-init variance (t on 7 degrees of freedom: 2.36, against the normal's 1.96).
DEFAULT_INITS = 8
#: A run whose draws hold more values than this goes to the workers even when it takes few random numbers.
PARALLEL_VALUES = 1 << 24


def check_inits(inits: Any) -> int:
    if isinstance(inits, bool) or not isinstance(inits, int) or not 1 <= inits <= MAX_INITS:
        raise NormstatsError(f"--inits must be an integer in [1, {MAX_INITS}]; got {inits!r}")
    return inits


def default_inits(samples: int | None, method: str, target_se: float | None) -> int:
    """The networks of a run that names none: :data:`DEFAULT_INITS`, or as many as ``samples`` gives every one
    its least draws (2, 16 for qmc: at least 1); one network with a target se, which stops one network's run.
    A run of one network is labelled as that network in every output."""
    if target_se is not None:
        return 1
    if samples is None:
        return DEFAULT_INITS
    return max(1, min(DEFAULT_INITS, samples // (16 if method == "qmc" else 2)))


def run_network(
    net: Network, *, samples: int, seed: int, version: str, method: str = "mc", inits: int = 1,
    stop: StopRule | None = None, executor: Any = None, progress: Progress = NULL_PROGRESS,
    metadata: dict[str, Any] | None = None,
) -> NetworkResult:
    """Run ``net`` for ``samples`` draws (over all ``inits`` networks) and return every layer's statistics."""
    inits = check_inits(inits)
    stop = stop or StopRule()
    if inits > 1 and stop.target_se is not None:
        raise NormstatsError(
            "--target-se stops one network's run; with --inits the se is the spread between networks, which more "
            f"draws per network do not shrink below the init-to-init spread: give --samples instead (got --inits "
            f"{inits} and --target-se {stop.target_se:g})"
        )
    if samples < inits * (16 if method == "qmc" else 2):
        raise NormstatsError(f"--samples must give every one of the {inits} networks at least "
                             f"{16 if method == 'qmc' else 2} draws; got {samples}")
    references = {**mean_field(net), **correlation_limit(net)}
    per_net = math.ceil(samples / inits)
    busy = per_net * net.values_per_draw >= PARALLEL_VALUES
    results = []
    for k in range(inits):
        model = NetworkModel(net, k, seed)
        result = engine.execute(
            model, per_net, draw_seed(seed, k), method=method, estimator="sampled", stop=stop.share(inits - k),
            executor=executor, progress=progress, chunk_draws=net.chunk_draws(),
            parallel_min_scalars=0 if busy else None,
        )
        results.append(result)
        if result.stop == INTERRUPTED:
            break
    estimates = _combine([r.estimates for r in results])
    rows = tuple(_rows(net, estimates, references, _quantile(method, len(results))))
    stop_reason = results[-1].stop  # the networks run in turn: the last says how the run ended
    return NetworkResult(
        version, seed, net.spec, net.input, net.width, net.normprop, net.batch, len(results),
        sum(r.draws for r in results), method, stop_reason, rows, dict(metadata or {}),
        input_correlation=net.input_correlation,
    )


def _quantile(method: str, networks: int) -> float:
    """The 97.5% quantile of the intervals: Student's t where the se is a spread of few replicates (K networks,
    K - 1 degrees of freedom; qmc's 16 scrambled sequences), else the normal's."""
    if networks > 1:
        from normstats.lazy import special

        return float(special.stdtrit(networks - 1, 0.975))
    return interval_quantile(method)


def _combine(per_network: list[dict[str, tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    """One network's estimates as they are; several: their mean, and their spread over sqrt(K) as the se."""
    if len(per_network) == 1:
        return per_network[0]
    out = {}
    for key in per_network[0]:
        values = np.array([p[key][0] for p in per_network])
        with np.errstate(over="ignore", invalid="ignore"):  # estimates near 1e300: a spread beyond float64 (inf)
            out[key] = (float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values))))
    return out


def _rows(net: Network, estimates: dict[str, tuple[float, float]], references: dict[str, float | None],
          quantile: float) -> list[LayerStats]:
    rows = []
    by_label: dict[str, list[tuple[str, str, tuple[float, float]]]] = {}  # one pass over the keys, not one a layer
    for key, value in estimates.items():
        label, bar, name = key.partition("|")
        if bar:  # an interrupted run's engine result without draws holds its own keys, no layer's
            by_label.setdefault(label, []).append((key, name, value))
    for item in net.walk():
        stats = {}
        # the statistics the layer declares exact in every draw (a layer norm's fp and bp means: each token's
        # outputs and gradients sum to 0), where the network does not shift or scale it
        exact = {} if isinstance(item, Block) or item.scaled else item.layer.exact_statistics()
        for key, name, (estimate, se) in by_label.get(item.label, ()):
            ref = references.get(key)
            kind = None if ref is None else "mean_field"
            if name in exact and agrees(estimate, exact[name]):
                stats[name] = Stat(exact[name], 0.0, ref, kind, quantile=quantile, exact=True)
            else:
                stats[name] = Stat(estimate, se, ref, kind, quantile=quantile)
        if isinstance(item, Block):
            params: dict[str, Any] = {"alpha": item.alpha, "beta": item.beta_text}
            if item.beta_text == "auto":
                params["beta_value"] = item.beta
            rows.append(LayerStats(item.label, "res", params, item.shape, stats))
        else:
            scaling = {"shift": item.shift, "forward": item.fwd_scale, "gradient": item.grad_scale} if item.scaled \
                else {}
            rows.append(LayerStats(item.label, item.name, item.params, item.out_shape, stats, scaling))
    return rows
