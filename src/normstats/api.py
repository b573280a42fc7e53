"""The Python API: :func:`simulate`, :func:`table`, :func:`layers`, :func:`audit` and :func:`solve`. The CLI
calls nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Iterable

from normstats import engine, published_constants
from normstats import selfnorm
from normstats.catalog import DEFAULT_ROWS
from normstats.errors import NormstatsError
from normstats.layers.base import STATS, Layer
from normstats.params import Param
from normstats.published import published_figures
from normstats.published_constants import AuditEntry
from normstats.reference import reference_moments
from normstats.registry import _ALIASES, get_layer, list_layers, make_layer
from normstats.results import Row, Table, make_stats
from normstats.sample_count import parse_samples
from normstats.selfnorm import Solution

DEFAULT_SAMPLES = 10**6
DEFAULT_SEED = 0


def version() -> str:
    try:
        return metadata.version("normstats")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def run_metadata(seed: int, samples: int, method: str = "mc") -> dict[str, Any]:
    """What a result needs to be reproduced: versions, generator, method, seed and samples."""
    import numpy

    return {
        "normstats": version(),
        "numpy": numpy.__version__,
        "generator": engine.BIT_GENERATOR,
        "method": method,
        "seed": seed,
        "samples": samples,
    }


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise NormstatsError(f"--seed must be an integer in [0, 2^63); got {seed!r}")
    return seed


def simulate(
    layer: str | Layer | None = None,
    *,
    expr: str | None = None,
    samples: int | str = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
    reference: str = "auto",
    chunk_draws: int | None = None,
    **params: Any,
) -> Row:
    """Estimate the fp/bp mean and std of one layer from ``samples`` draws.

    ``layer`` is a registered name (``params`` are its parameters) or a layer instance; alternatively
    ``expr`` is a formula over ``x`` for a custom activation (:mod:`normstats.expr`). Returns a
    :class:`~normstats.results.Row` whose statistics carry estimate, se, 95% interval, reference and z.
    """
    inst = _make(layer, expr, params)
    count = parse_samples(samples)
    seed = check_seed(seed)
    refs = reference_moments(inst, reference)
    acc = engine.run(inst, count, seed, chunk_draws=chunk_draws)
    stats = make_stats(acc.fp, acc.bp, refs, published_figures(inst))
    return Row(inst.name, dict(inst.values), count, **stats)


def _make(layer: str | Layer | None, expr: str | None, params: dict[str, Any]) -> Layer:
    if (layer is None) == (expr is None):
        raise NormstatsError("give exactly one of --layer NAME and --expr FORMULA")
    if expr is not None:
        if params:
            raise NormstatsError(f"--expr takes no layer parameters; got {', '.join(params)}")
        from normstats.expr import CustomActivation

        return CustomActivation(expr)
    return layer if isinstance(layer, Layer) else make_layer(layer, **params)


def table(
    *,
    samples: int | str = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
    rows: Iterable[tuple[str, dict[str, Any]]] = DEFAULT_ROWS,
    on_row: Callable[[Row], None] | None = None,
) -> Table:
    """Every row of the default table (or of ``rows``), each from ``samples`` draws with ``seed``."""
    count = parse_samples(samples)
    seed = check_seed(seed)
    out = []
    for name, params in rows:
        row = simulate(name, samples=count, seed=seed, **params)
        out.append(row)
        if on_row is not None:
            on_row(row)
    return make_table(out, seed=seed, samples=count)


def make_table(rows: Iterable[Row], *, seed: int, samples: int, method: str = "mc") -> Table:
    """Wrap rows computed with one seed into a :class:`~normstats.results.Table` with its metadata."""
    return Table(version(), seed, tuple(rows), run_metadata(seed, samples, method))


@dataclass(frozen=True)
class LayerInfo:
    """What ``normstats list`` shows of a registered layer."""

    name: str
    summary: str
    aliases: tuple[str, ...]
    params: tuple[Param, ...]
    reference_kinds: dict[str, str | None]  # per statistic, at the default parameters

    @property
    def reference_summary(self) -> str:
        kinds = [k for k in dict.fromkeys(self.reference_kinds.values()) if k]
        missing = [s for s, k in self.reference_kinds.items() if k is None]
        text = " + ".join(k.replace("_", " ") for k in kinds) or "none"
        return text + (f" (none for {', '.join(missing)})" if missing and kinds else "")


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


def audit() -> list[AuditEntry]:
    """Every published NFNet gamma and PyTorch gain next to its exact reference
    (:mod:`normstats.published_constants`)."""
    return published_constants.audit()


def solve(layer: str, *, free: str | None = None, target: str = "second-moment", **params: Any) -> Solution:
    """The output scale (and the parameter ``free``) that make ``layer`` map N(0, 1) to mean 0 and variance 1
    (:mod:`normstats.selfnorm`)."""
    return selfnorm.solve(layer, free=free, target=target, **params)
