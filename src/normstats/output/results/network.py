"""Result types of a network run: :class:`LayerStats` (one layer or residual block) and :class:`NetworkResult`
(the whole network), and their dict form, the JSON document of ``normstats network --format json``.

Each statistic is a :class:`~normstats.output.results.Stat` whose reference, where there is one, is the
infinite-width (mean-field) value: ``reference_kind`` is ``"mean_field"``, ``z`` is always null (a limit is not
what the finite network is expected to equal) and the dict adds ``difference = estimate - reference``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from normstats.errors import NormstatsError
from normstats.output.results.table import Stat, _num

#: The per-layer statistics every row has, then the ones only some rows have (maps, residual blocks).
NETWORK_STATS = ("fp_mean", "fp_std", "bp_mean", "bp_std")
EXTRA_STATS = ("branch_var", "channel_mean_sq", "channel_var", "token_cosine", "attention_entropy",
               "attention_logit_std", "correlation")
#: The pass band of the closing lines (``--band``): the range of std a layer's output (fp) or input gradient (bp)
#: may reach before the closing line flags it as having left "normalized". By default a factor of 2 either way
#: from the unit std that NormProp aims at.
BAND = (0.5, 2.0)


def check_band(band: tuple[float, float]) -> tuple[float, float]:
    """A pass band ``(lo, hi)`` with ``0 < lo < 1 < hi``, both finite (one that holds the unit std)."""
    lo, hi = (float(v) for v in band)
    if not (0.0 < lo < 1.0 < hi < math.inf):
        raise NormstatsError(f"--band must be LO,HI with 0 < LO < 1 < HI (finite); got {lo:g},{hi:g}")
    return lo, hi


@dataclass(frozen=True)
class LayerStats:
    """The statistics of one layer (or residual block) of a network: its output (fp) and the gradient at its
    input (bp), plus the NF-ResNet figures of a map and a block's branch variance where they apply."""

    index: str  # "3", or "5.2" for the second layer of the branch of block 5
    layer: str
    params: dict[str, Any]
    shape: tuple[int, ...]
    stats: dict[str, Stat]
    scaling: dict[str, float] = field(default_factory=dict)  # NormProp's shift, forward and gradient scale

    @property
    def depth(self) -> int:
        return self.index.count(".")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index, "layer": self.layer, "params": dict(self.params), "shape": list(self.shape),
        }
        for name, stat in self.stats.items():
            d = stat.to_dict()
            d["difference"] = _num(stat.difference)
            out[name] = d
        out["scaling"] = dict(self.scaling)
        return out


@dataclass(frozen=True)
class NetworkResult:
    """A network run: what was run (spec, input, width, NormProp mode, batch, networks) and every layer's row."""

    version: str
    seed: int
    spec: str
    input: tuple[int, ...]
    width: int | None
    normprop: str
    batch: int
    inits: int
    draws: int
    method: str
    stop: str
    layers: tuple[LayerStats, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The correlation RHO of a token sequence's input tokens, or of a vector network's two inputs (0: none).
    input_correlation: float = 0.0
    #: The published recipe applied to the spec (``--recipe``): name, title, blocks N, constants, source.
    recipe: dict[str, Any] | None = None

    @property
    def partial(self) -> bool:
        return self.stop == "interrupted"

    @property
    def describes(self) -> str:
        """Whose statistics these are: ``architecture`` (several independent networks, the se holding the
        init-to-init spread) or ``one network`` (its se leaves that spread out)."""
        return "architecture" if self.inits > 1 else "one network"

    @property
    def true_gradient(self) -> bool:
        """``split`` divides the backward pass by the bp std: not the gradient of the forward pass any more."""
        return self.normprop != "split"

    def top_level(self) -> list[LayerStats]:
        return [row for row in self.layers if row.depth == 0]

    def first_exits(self, band: tuple[float, float] = BAND) -> dict[str, tuple[str, float] | None]:
        """Where the fp std (from the input on) and the bp std (from the output back) first leave ``band``
        (default :data:`BAND`), among the top-level rows: ``(index, estimate)`` or None."""
        lo, hi = check_band(band)
        rows = self.top_level()
        out: dict[str, tuple[str, float] | None] = {}
        for name, order in (("fp_std", rows), ("bp_std", rows[::-1])):
            out[name] = next(
                ((r.index, r.stats[name].estimate) for r in order
                 if math.isfinite(r.stats[name].estimate) and not lo <= r.stats[name].estimate <= hi),
                None,
            )
        return out

    def to_dict(self, band: tuple[float, float] = BAND) -> dict[str, Any]:
        """The JSON document; ``first_exit`` is taken against ``band``, which the document names (``band``)
        when it is not the default :data:`BAND` (so that documents of the default band keep their form)."""
        exits = self.first_exits(band)
        doc: dict[str, Any] = {
            "normstats": self.version,
            "seed": self.seed,
            "network": self.spec,
            "input": list(self.input),
            **({"input_correlation": self.input_correlation} if self.input_correlation else {}),
            **({"recipe": dict(self.recipe)} if self.recipe else {}),
            "width": self.width,
            "normprop": self.normprop,
            "true_gradient": self.true_gradient,
            "batch": self.batch,
            "inits": self.inits,
            "describes": self.describes,
            "draws": self.draws,
            "method": self.method,
            "stop": self.stop,
            "partial": self.partial,
            "reference_kind": "mean_field",
            "first_exit": {k: None if v is None else {"index": v[0], "estimate": v[1]} for k, v in exits.items()},
        }
        if check_band(band) != BAND:
            doc["band"] = list(check_band(band))
        doc["metadata"] = dict(self.metadata)
        doc["layers"] = [row.to_dict() for row in self.layers]
        return doc


def population_text(result: NetworkResult) -> str:
    """What the run describes, for a title: ``8 networks (seed S)`` or ``one network (seed S)``."""
    return f"{result.inits} networks (seed {result.seed})" if result.inits > 1 else f"one network (seed {result.seed})"


def population_line(result: NetworkResult) -> str:
    """The closing line saying what ``± se`` describes."""
    if result.inits > 1:
        return (f"{result.inits} independent networks (seed {result.seed}): each se is the spread of their "
                "estimates over sqrt(K), so it includes the init-to-init spread; it describes the architecture")
    return (f"one network (seed {result.seed}): its se leaves out the init-to-init spread; "
            "--inits K describes the architecture")


def params_text(row: LayerStats) -> str:
    """A layer's parameters as ``name=value`` pairs joined by ``;``."""
    return ";".join(f"{k}={v}" for k, v in row.params.items())


def block_name(row: LayerStats) -> str:
    """A residual block's name with its alpha and beta (``auto`` with the value it took)."""
    p = row.params
    beta = f"auto: {p['beta_value']:.4g}" if p.get("beta") == "auto" else p["beta"]
    return f"res(alpha={p['alpha']:g}, beta={beta})"


def shape_text(row: LayerStats) -> str:
    return "x".join(str(d) for d in row.shape)


def summary_lines(result: NetworkResult, band: tuple[float, float] = BAND) -> list[str]:
    """The closing lines: where each pass leaves ``band`` first (or that it never does), and for ``split`` that
    the backward pass is not the true gradient."""
    exits = result.first_exits(band)
    lo, hi = check_band(band)
    lines = []
    fp, bp = exits["fp_std"], exits["bp_std"]
    lines.append(
        f"fp std stays within [{lo:g}, {hi:g}] at every layer" if fp is None
        else f"fp std leaves [{lo:g}, {hi:g}] first at layer {fp[0]} ({fp[1]:.4g}), counting from the input"
    )
    lines.append(
        f"bp std stays within [{lo:g}, {hi:g}] at every layer" if bp is None
        else f"bp std leaves [{lo:g}, {hi:g}] first at layer {bp[0]} ({bp[1]:.4g}), counting back from the output"
    )
    lines.append(population_line(result))
    if not result.true_gradient:
        lines.append("--normprop split divides the backward pass by each layer's bp std: it is no longer the "
                     "gradient of the forward pass")
    return lines
