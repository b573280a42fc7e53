"""The input-output Jacobian of a network, measured: per draw one input ``x ~ N(0, I)`` and one network, ``J(x)``
from the network's own backward pass, and its singular values.

``J`` comes from :meth:`~normstats.networks.propagate.NetworkSampler.ends`, which returns ``J(x)^T dy`` for
every row of ``dy``: ``x`` repeated once per output with ``dy`` the identity gives the rows ``J^T e_j``, i.e. ``J``
itself (for ``--normprop split`` the backward pass as scaled, which is what training would use). The Jacobian
of the first ``d`` top-level items comes from the sampler of that prefix
(:meth:`~normstats.networks.propagate.NetworkSampler.prefix`), which shares the network's weights.

Weights. ``--init normal|orthogonal`` and ``--sigma-w2`` set every linear layer that does not name its own
``init``/``normalize``/``gain``: with ``--normprop none`` the raw draw, ``normalize=none``, scaled to weights
of variance ``sigma_w^2 / fan_in`` (``normal``: built as ``init=kaiming``, ``N(0, 2 / fan_in)``, with ``gain =
sqrt(sigma_w^2 / 2)``; ``orthogonal``: an orthogonal matrix times ``gain = sigma_w``). A layer that names them
keeps its own (``linear(init=kaiming,normalize=none)`` is He's init, ``sigma_w^2 = 2``). Under a NormProp mode
the mode normalizes the weights (unit rows or columns of the ``--init`` draw), so ``--sigma-w2`` is refused
there. No layer has a bias (``sigma_b^2 = 0``): a bias leaves ``J`` given the pre-activations unchanged but
moves ``q*``, and these networks have none to measure.

Draws. Network ``k`` has the weights of :func:`~normstats.networks.propagate.weight_rng` ``(seed, k)`` and its
inputs from ``SeedSequence(seed, spawn_key=(3, k))``. By default every draw has its own network (``inits =
draws``): the draws are independent in both, and the standard errors are those of iid draws. ``inits = 1``
keeps one network (the seed's) for every input: the statistics of that network (for a linear network, whose
``J`` does not depend on ``x``, every draw is the same and the se is 0). In between, ``draws / inits`` inputs per
network and the se over the networks' means.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from normstats.engine.progress import NULL_PROGRESS, Progress
from normstats.engine.sample_count import MIN_SAMPLES, parse_samples
from normstats.errors import NormstatsError
from normstats.networks.build import Block, Network, build_network
from normstats.networks.propagate import NetworkSampler, weight_rng
from normstats.networks.spec import (
    LayerNode,
    Node,
    Repeat,
    Residual,
    format_spec,
    parse_spec,
)
from normstats.output.results.jacobian import DepthSpectrum, JacobianResult, SpectrumPrediction, stat
from normstats.registry import get_layer
from normstats.theory.free_probability import predict

INITS = ("normal", "orthogonal")
#: Draws unless told otherwise: one 256-wide, 8-layer Jacobian and its SVD take about 20 ms here (60 ms with
#: orthogonal weights, whose QR dominates), so the default run takes a few seconds.
DEFAULT_DRAWS = 100
MAX_DRAWS = 100_000
INPUT_RANGE = (1, 2048)
#: Most values one Jacobian's forward and backward pass may hold (N copies of a draw): 256 MiB of float64.
MAX_JACOBIAN_VALUES = 1 << 25
SIGMA_W2_RANGE = (0.0, 1e6)


def _set_weights(nodes: tuple[Node, ...], init: str, sigma_w2: float | None, normprop: str) -> tuple[Node, ...]:
    """``nodes`` with the linear layers that name no weights of their own set from ``--init`` and ``--sigma-w2``."""
    out: list[Node] = []
    for node in nodes:
        if isinstance(node, Repeat):
            out.append(Repeat(node.count, _set_weights(node.body, init, sigma_w2, normprop), node.pos))
        elif isinstance(node, Residual):
            out.append(Residual(_set_weights(node.branch, init, sigma_w2, normprop), node.alpha, node.beta, node.pos))
        else:
            out.append(_set_layer(node, init, sigma_w2, normprop))
    return tuple(out)


def _set_layer(node: LayerNode, init: str, sigma_w2: float | None, normprop: str) -> LayerNode:
    try:
        name = get_layer(node.name).name
    except NormstatsError:
        return node  # the build says what is wrong, with the position
    given = dict(node.params)
    if name != "linear" or {"init", "normalize", "gain"} & set(given):
        return node
    w2 = 1.0 if sigma_w2 is None else sigma_w2
    if normprop != "none":
        return LayerNode(node.name, (*node.params, ("init", init)), node.pos)
    if init == "normal":
        extra = (("init", "kaiming"), ("normalize", "none"), ("gain", repr(math.sqrt(w2 / 2.0))))
    else:
        extra = (("init", "orthogonal"), ("normalize", "none"), ("gain", repr(math.sqrt(w2))))
    return LayerNode(node.name, (*node.params, *extra), node.pos)


def check_options(input: Any, init: Any, sigma_w2: Any, normprop: str, draws: Any, inits: Any
                  ) -> tuple[int, float | None, int, int]:
    from normstats.theory.meanfield import check_count, check_real

    n = check_count("--input", input, *INPUT_RANGE)
    if init not in INITS:
        raise NormstatsError(f"--init must be one of: {', '.join(INITS)}; got {init!r}")
    if sigma_w2 is not None:
        if normprop != "none":
            raise NormstatsError(f"--sigma-w2 sets raw weights; --normprop {normprop} normalizes them itself: give "
                                 f"one of them (got --sigma-w2 {sigma_w2!r} and --normprop {normprop})")
        sigma_w2 = check_real("--sigma-w2", sigma_w2, *SIGMA_W2_RANGE, low_open=True)
    draws = check_count("--samples", draws, 2, MAX_DRAWS)
    inits = draws if inits is None else check_count("--inits", inits, 1, draws)
    return n, sigma_w2, draws, inits


def parse_draws(value: Any) -> int:
    """A draw count written as any sample count (``1e4``, ``10_000``, ``10k``), in ``[2, MAX_DRAWS]``: the message
    states this command's range, not the engine's."""
    try:
        count = parse_samples(value)
    except NormstatsError:
        count = None
    if count is None or count > MAX_DRAWS:
        raise NormstatsError(f"--samples must be a whole number in [{MIN_SAMPLES}, {MAX_DRAWS:,}] (e.g. 1000, 1e4, "
                             f"10k); got {value!r}")
    return count


def parse_depths(depths: Any, items: int) -> tuple[int, ...]:
    """``None`` (the whole network), ``"all"``, ``"2,4,8"`` or a sequence of integers in ``[1, items]``."""
    if depths is None:
        return (items,)
    if isinstance(depths, str):
        if depths.strip() == "all":
            return tuple(range(1, items + 1))
        parts = [p.strip() for p in depths.split(",")]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise NormstatsError(f"--depths must be integers in [1, {items}] separated by commas, or all; got "
                                 f"{depths!r}") from None
    else:
        values = list(depths)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= items for v in values):
        raise NormstatsError(f"--depths must be integers in [1, {items}] (the network's top-level layers) "
                             f"separated by commas, or all; got {depths!r}")
    return tuple(sorted(set(values)))


def build(spec: str, n: int, init: str, sigma_w2: float | None, normprop: str) -> Network:
    nodes = _set_weights(parse_spec(spec), init, sigma_w2, normprop)
    net = build_network(nodes, (n,), normprop=normprop)
    if net.batch != 1:
        raise NormstatsError(f"jacobian: this network spans a batch of {net.batch} inputs (a batch norm), so its "
                             "Jacobian is that of the whole batch; give a network of per-input layers")
    return net


def _check_square(net: Network, depths: tuple[int, ...]) -> None:
    for d in depths:
        item = net.items[d - 1]
        out = item.shape if isinstance(item, Block) else item.out_shape
        m, n = math.prod(out), math.prod(net.input)
        if m != n:
            raise NormstatsError(
                f"--depths {d}: the Jacobian of the first {d} layers is {m} x {n} (outputs x inputs), not square; "
                "the spectrum's mean and variance per input dimension, its condition number and isometry need a "
                f"square Jacobian: choose depths whose output has the input's {n} values"
            )
        if m * net.values_per_draw > MAX_JACOBIAN_VALUES:
            raise NormstatsError(
                f"--input {n}: one Jacobian of this network holds {m * net.values_per_draw:,} values ({m} copies of "
                f"a draw); the bound is {MAX_JACOBIAN_VALUES:,}: give a smaller --input or a shallower network"
            )


def spectra(net: Network, depths: tuple[int, ...], draws: int, inits: int, seed: int, executor: Any = None,
            progress: Progress = NULL_PROGRESS) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per depth, ``(singular values of every draw (draws x N), whether the draw's J is singular)``; a draw whose J
    overflowed float64 has singular values ``inf`` (:func:`_singular_values`).

    Network ``k``'s draws are one task (:func:`_network_draws`) with its own generators, so ``executor``
    (threads, processes or Dask; ``None``: here) changes only where they run, never the result."""
    n = math.prod(net.input)
    per = draws // inits
    sv = [np.empty((draws, n)) for _ in depths]
    eps = np.finfo(float).eps
    progress.start("jacobian", draws, None)
    try:
        if executor is None:
            results: Any = (_network_draws(net, depths, seed, k, per) for k in range(inits))
        else:
            futures = [executor.submit(_network_draws, net, depths, seed, k, per) for k in range(inits)]
            results = (f.result() for f in futures)
        for k, found in enumerate(results):
            for i, values in enumerate(found):
                sv[i][k * per:(k + 1) * per] = values
            progress.update((k + 1) * per, math.nan)
    finally:
        progress.stop()
    # numerically singular: rank < N (a draw whose J overflowed is not counted: its values are not known)
    return [(s, np.isfinite(s).all(axis=1) & (s.min(axis=1) <= s.max(axis=1) * n * eps)) for s in sv]


def _network_draws(net: Network, depths: tuple[int, ...], seed: int, k: int, per: int) -> list[np.ndarray]:
    """Network ``k``'s ``per`` draws: per depth, their singular values (``per x N``). One BLAS thread, as the
    engine's workers: no spinning on a shared machine."""
    n = math.prod(net.input)
    eye = np.eye(n)
    sampler = NetworkSampler(net, weight_rng(seed, k))
    subs = [sampler.prefix(d) for d in depths]
    rng = np.random.Generator(np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(3, k))))
    out = [np.empty((per, n)) for _ in depths]
    with threadpool_limits(limits=1):
        for j in range(per):
            x = rng.standard_normal(n)
            u = rng.random(net.uniforms_per_input)
            xs, us = np.tile(x, (n, 1)), np.tile(u, (n, 1))
            for i, sub in enumerate(subs):
                y, jac = sub.ends(xs, eye, us)
                out[i][j] = _singular_values(jac if np.isfinite(y).all() else y)
    return out


def _singular_values(jac: np.ndarray) -> np.ndarray:
    """``J``'s singular values; all ``inf`` where ``J`` overflowed float64 (an entry is not finite), whose spectrum
    float64 cannot hold. The caller passes the network's output instead of ``J`` where that is not finite: the
    forward pass overflowed, and the ``J`` computed past it (``relu'(nan) = 0``: a ``J`` of 0) is not the
    network's. LAPACK scales a finite ``J`` itself, so its SVD converges whatever the entries' size."""
    if not np.isfinite(jac).all():
        return np.full(len(jac), np.inf)
    return np.linalg.svd(jac, compute_uv=False)


def _out_of_range(limit: SpectrumPrediction | None) -> str | None:
    """``overflow`` / ``underflow`` where the limit's mean λ, a product of the factors' means, lies beyond
    float64 (its float value is then ``inf`` or 0, an artefact, not the limit); None otherwise."""
    if limit is None or not all(f.mean > 0 and math.isfinite(f.mean) for f in limit.factors):
        return None
    log10 = math.fsum(math.log10(f.mean) for f in limit.factors)
    if log10 > math.log10(np.finfo(float).max):
        return "overflow"
    if log10 < math.log10(np.finfo(float).tiny):
        return "underflow"
    return None


def measure(spec: str, *, input: int, init: str = "normal", sigma_w2: float | None = None,
            normprop: str = "none", draws: int = DEFAULT_DRAWS, inits: int | None = None,
            depths: Any = None, seed: int = 0, version: str = "", metadata: dict[str, Any] | None = None,
            executor: Any = None, progress: Progress = NULL_PROGRESS) -> JacobianResult:
    n, sigma_w2, draws, inits = check_options(input, init, sigma_w2, normprop, draws, inits)
    net = build(spec, n, init, sigma_w2, normprop)
    chosen = parse_depths(depths, len(net.items))
    _check_square(net, chosen)
    draws = math.ceil(draws / inits) * inits
    per = draws // inits
    predictions = predict(net)
    out = []
    for d, (sv, singular) in zip(chosen, spectra(net, chosen, draws, inits, seed, executor, progress)):
        pred = predictions[d - 1]
        beyond = _out_of_range(pred)

        def ref(name: str) -> float | None:
            # a limit beyond float64 (its float value inf or 0) is said in words, not compared with
            value = None if pred is None else pred.reference(name)
            return None if value is None or not math.isfinite(value) or (beyond and name != "log10_condition") \
                else value

        # Beyond float64, inf is the meaningful value: a draw whose J overflowed has every λ inf (its variance
        # too, not inf - inf), and its statistics are reported as not finite, in words.
        with np.errstate(over="ignore", invalid="ignore"):
            lam = sv * sv
            overflow = ~np.isfinite(lam).all(axis=1)
            lam[overflow] = np.inf
            variance = lam.var(axis=1)
            variance[overflow] = np.inf
            stats = {
                "mean": stat(lam.mean(axis=1), ref("mean"), per),
                "variance": stat(variance, ref("variance"), per),
                "largest": stat(lam.max(axis=1), ref("largest"), per),
            }
        underflow = ~overflow & (lam.max(axis=1) < np.finfo(float).tiny)
        count = int(singular.sum())
        if not count and not overflow.any():
            stats["log10_condition"] = stat(np.log10(sv[:, 0] / sv[:, -1]), ref("log10_condition"), per)
        item = net.items[d - 1]
        layer = "res" if isinstance(item, Block) else item.name
        out.append(DepthSpectrum(d, item.label, layer, (n, n), stats, count, pred, lam.ravel(),
                                 int(overflow.sum()), int(underflow.sum()), beyond))
    return JacobianResult(version, spec, format_spec(_set_weights(parse_spec(spec), init, sigma_w2, normprop)),
                          n, init, sigma_w2, normprop, draws, inits, seed, tuple(out), dict(metadata or {}))
