"""Result types of a PyTorch model run (``normstats model``): :class:`ModuleStats` (one module call) and
:class:`ModelResult` (the model), and their dict form, the JSON document of ``normstats model --format json``.

A module's fp statistics describe its output, its bp statistics the gradient at its input (the convention of
``normstats network``), each a :class:`~normstats.output.results.table.Stat` without a reference: nothing exact is
known of a user's model, but a statistic the same in every draw to float rounding is flagged ``exact`` (se 0;
:func:`normstats.models.run.rounding_exact`). The standard errors are over independent draws (one draw: a batch
forward, an upstream gradient back) and, with several inits, over the inits: the se is then the spread of the
per-init estimates over sqrt(K), which holds the init-to-init spread too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from normstats.output.results.init_audit import ParamAudit
from normstats.output.results.network import BAND
from normstats.output.results.table import Stat

#: Every statistic a module row may have, in order (bp is missing where no gradient reaches the module's
#: input, e.g. an embedding fed token ids; the channel figures only for 4-D maps).
MODEL_STATS = ("fp_mean", "fp_std", "bp_mean", "bp_std", "channel_mean_sq", "channel_var")


@dataclass(frozen=True)
class ModuleStats:
    """One module call: its qualified name (``""`` for the model itself; ``name#2`` for a module's second call
    in one forward pass), its class, depth (0: the model, 1: its children), output shape (batch first), where
    its output came in the forward pass (``order``), and its statistics."""

    name: str
    module: str
    depth: int
    shape: tuple[int, ...]
    order: int
    stats: dict[str, Stat]

    @property
    def label(self) -> str:
        return self.name or "(model)"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "module": self.module, "depth": self.depth,
                               "shape": list(self.shape), "order": self.order}
        for name in MODEL_STATS:
            out[name] = self.stats[name].to_dict() if name in self.stats else None
        return out


@dataclass(frozen=True)
class ModelResult:
    """A model run: what was run (source, input, batch, mode, inits, draws, seed, device, the output tensor)
    and every module call's row, in the order the calls start (a container before its children)."""

    version: str
    seed: int
    source: str
    input: tuple[int, ...]
    input_kind: str  # "normal": x ~ N(0, I); "ids": token ids uniform over the vocabulary
    vocabulary: int | None
    batch: int
    mode: str
    inits: int
    init_method: str  # "factory", "reset_parameters" or "as given"
    draws: int
    device: str
    output_key: str
    modules: tuple[ModuleStats, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The init audit of init 0's parameters (``--params``), or None where it was not asked for.
    params: tuple[ParamAudit, ...] | None = None

    @property
    def input_text(self) -> str:
        shape = "x".join(map(str, self.input))
        return f"ids:{shape}" if self.input_kind == "ids" else shape

    @property
    def se_population(self) -> str:
        """What the standard errors describe, in words."""
        if self.inits > 1:
            return (f"over {self.inits} inits ({self.init_method}) and the draws: the spread of the per-init "
                    "estimates over sqrt(inits), init-to-init spread included")
        return "over the draws of one init: it leaves out the init-to-init spread (--inits K includes it)"

    def in_flow_order(self) -> list[ModuleStats]:
        """The rows in the order their outputs were produced (the forward pass's order)."""
        return sorted(self.modules, key=lambda m: m.order)

    def first_exits(self) -> dict[str, tuple[str, float] | None]:
        """Where the fp std (in the order the outputs are produced) and the bp std (in the order the backward pass
        completes the input gradients: the calls' starts, from the last) first leave
        :data:`~normstats.output.results.network.BAND`: ``(name, estimate)`` or None."""
        out: dict[str, tuple[str, float] | None] = {}
        for stat, rows in (("fp_std", self.in_flow_order()), ("bp_std", self.modules[::-1])):
            out[stat] = next(
                ((r.label, r.stats[stat].estimate) for r in rows if stat in r.stats
                 and math.isfinite(r.stats[stat].estimate) and not BAND[0] <= r.stats[stat].estimate <= BAND[1]),
                None,
            )
        return out

    def first_nonfinite(self) -> dict[str, str | None]:
        """The first module (fp: in the forward pass's order; bp: counting back from the output) where a value
        is not finite (NaN or infinity), or None."""
        out: dict[str, str | None] = {}
        for p, rows in (("fp", self.in_flow_order()), ("bp", self.modules[::-1])):
            out[p] = next((r.label for r in rows
                           if any(not math.isfinite(r.stats[s].estimate) for s in (f"{p}_mean", f"{p}_std")
                                  if s in r.stats)), None)
        return out

    def to_dict(self) -> dict[str, Any]:
        exits = self.first_exits()
        return {
            "normstats": self.version,
            "seed": self.seed,
            "model": self.source,
            "input": list(self.input),
            "input_kind": self.input_kind,
            "vocabulary": self.vocabulary,
            "batch": self.batch,
            "mode": self.mode,
            "inits": self.inits,
            "init_method": self.init_method,
            "draws": self.draws,
            "device": self.device,
            "output_key": self.output_key,
            "se_population": self.se_population,
            "first_exit": {k: None if v is None else {"name": v[0], "estimate": v[1]} for k, v in exits.items()},
            "first_nonfinite": self.first_nonfinite(),
            "metadata": dict(self.metadata),
            "modules": [m.to_dict() for m in self.modules],
            "params": None if self.params is None else [p.to_dict() for p in self.params],
        }


def shape_text(row: ModuleStats) -> str:
    return "x".join(str(d) for d in row.shape)


def summary_lines(result: ModelResult) -> list[str]:
    """The closing lines: where each pass first leaves [1/2, 2] (or that it never does), and where a value is
    first not finite."""
    exits, bad = result.first_exits(), result.first_nonfinite()
    lo, hi = BAND
    fp, bp = exits["fp_std"], exits["bp_std"]
    lines = [
        f"fp std stays within [{lo:g}, {hi:g}] at every module" if fp is None
        else f"fp std leaves [{lo:g}, {hi:g}] first at {fp[0]} ({fp[1]:.4g}), in the forward pass's order",
        f"bp std stays within [{lo:g}, {hi:g}] at every module" if bp is None
        else f"bp std leaves [{lo:g}, {hi:g}] first at {bp[0]} ({bp[1]:.4g}), counting back from the output",
    ]
    if bad["fp"] is None and bad["bp"] is None:
        lines.append("every value is finite")
    else:
        if bad["fp"] is not None:
            lines.append(f"fp is not finite first at {bad['fp']}, in the forward pass's order")
        if bad["bp"] is not None:
            lines.append(f"bp is not finite first at {bad['bp']}, counting back from the output")
    return lines
