"""A parsed spec built into a network of registered layers, fitted to their shapes and scaled by a NormProp mode.

NormProp in a network (``normprop``; ``normstats network --help`` and the README say the same, and
tests/test_semantics_help.py checks each point against what is built here):

* ``none``: every layer as it is, with the init and normalization it names (``linear`` defaults to unit-norm
  rows, as in single-layer runs; He init is ``linear(init=kaiming,normalize=none)``);
* ``fp``: each layer without weights is shifted by its exact fp mean and divided by its exact fp std, both from
  the layer's single-layer reference on N(0, 1) inputs (:func:`_reference_layer`: the interior for maps). The
  gradient is the true one, so it is divided by the fp std too, and the layer's bp std becomes
  ``bp std / fp std``. Linear and conv weights get unit-norm rows (``normalize=fan-in``) and no scale;
* ``bp``: shifted by the exact fp mean and divided by the exact bp std, forward and backward (the true
  gradient); weights with unit-norm columns (``fan-out``) and no scale;
* ``split``: shifted by the exact fp mean, the forward pass divided by the fp std and the backward pass by the
  bp std (a custom backward: no longer the true gradient); weights with unit-norm rows, their forward pass
  divided by their own fp std (1 for unit rows) and their gradient by their own bp std (``sqrt(fan_out /
  fan_in)`` for unit rows); a weight with no exact std (a raw Gaussian init) is left as it is.

Normalization layers (batch norm, layer norm, RMS norm, group norm) normalize themselves and are left unscaled.
A layer's explicit parameters (``linear(normalize=none)``) win over the mode. A map layer (pooling, and conv
under ``split``) on a finite map takes the constants of the same kernel on the map's interior, without padding,
whatever padding it has (:func:`_reference_layer`): those of the published tables, not the padded map's own.

A residual block ``res(branch, alpha=A, beta=B)`` computes ``x + A * branch(x / B)``; ``beta=auto`` is the
NF-ResNet choice: the expected std of ``x``, tracked from 1 at the network's input and growing by ``A^2`` in
variance after each block (``var += alpha^2``), assuming each branch keeps unit variance. Inside a branch the
tracking starts again at 1 (the branch sees ``x / beta``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

from normstats.errors import NormstatsError
from normstats.exact.references import reference_moments
from normstats.layers.base import Layer
from normstats.networks import shapes
from normstats.networks.shapes import Shape, describe_shape
from normstats.networks.spec import (
    LayerNode,
    Node,
    Repeat,
    Residual,
    SpecError,
    format_spec,
    parse_spec,
)
from normstats.registry import get_layer

NORMPROP_MODES = ("none", "fp", "bp", "split")
#: Most values (inputs and outputs of every layer, over the batch) one draw may hold: 256 MiB of float64 (about a
#: quarter of them alive at once, CHUNK_VALUES below). Issue 25's 48-block transformer at 64x256 holds 144 MiB.
MAX_DRAW_VALUES = 1 << 25
#: Most weights (all linear and conv layers together) one network may hold: 256 MiB of float64, and every worker
#: thread keeps its own copy.
MAX_WEIGHTS = 1 << 25
#: Values of a chunk of draws (every layer's input and output; 64 MiB): the chunk size is this over the values of
#: one draw. The engine tallies each layer's values as they come, so about a quarter of them are alive at once
#: (the states the backward pass needs). A network of matrix products may take more (GEMM_ROWS).
CHUNK_VALUES = 1 << 23
#: Values a block of draws passes through (about 2 chunks of CHUNK_VALUES): a block of a deep network is then a
#: fraction of a second, and a run of 10^4 draws has enough blocks to keep two workers busy to the end.
BLOCK_VALUES = 1 << 24
#: Values of one layer's output (or input) over a chunk that still stay in a core's cache (1 MiB of float64) while
#: the engine tallies them and the next layer reads them. A conv net's maps hold thousands of values a draw, so
#: CHUNK_VALUES alone gives records of 10 MB, tallied from memory: on the benchmark's conv net (3x16x16, 16 and
#: 32 channels) chunks of 22-33 draws took 20-25% less CPU than the 330 CHUNK_VALUES gives. The chunk is cut
#: down to this bound, but never below GEMM_ROWS rows in any layer's matrix product.
STAGE_VALUES = 1 << 17
#: Fewest rows a chunk gives each matrix product (a linear layer: draws x batch; a conv: draws x batch x output
#: positions). Products of fewer rows fall off the BLAS peak (OpenBLAS packs the weight again for every
#: product). Where this asks for more draws than :meth:`Network._memory_chunk`, a block holds one chunk, of
#: whole memory chunks. Measured on ``20*(linear relu)`` at width 512, one core, the loop's CPU time over the
#: same products on 1000 rows: with ReLU's compiled loops, 1.15x at 200 draws a chunk, 1.09x at 400, 1.07x at
#: 800 and 1000, 1.11x at 2000 (numpy's passes before them: 1.24x at 204, 1.18x at 408, 1.20x at 816).
GEMM_ROWS = 800


@dataclass(frozen=True)
class Stage:
    """One layer of a built network."""

    label: str
    name: str
    given: tuple[tuple[str, str], ...]  # the spec's parameters, as written
    layer: Layer = field(compare=False, hash=False)
    kind: str
    in_shape: Shape
    out_shape: Shape
    shift: float = 0.0
    fwd_scale: float = 1.0
    grad_scale: float = 1.0
    pos: int = 0

    @property
    def in_values(self) -> int:
        return math.prod(self.in_shape)

    @property
    def out_values(self) -> int:
        return math.prod(self.out_shape)

    @property
    def n_uniform(self) -> int:
        """Uniforms one input of the network needs for this layer."""
        per = self.layer.n_uniform
        return per * self.in_values if self.kind == shapes.POINTWISE else per

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.layer.values)

    @property
    def scaled(self) -> bool:
        return self.shift != 0.0 or self.fwd_scale != 1.0 or self.grad_scale != 1.0


@dataclass(frozen=True)
class Block:
    """A residual block: ``x + alpha * branch(x / beta)``."""

    label: str
    branch: tuple[Item, ...]
    alpha: float
    beta: float
    beta_text: str  # "auto" or the number as given
    shape: Shape
    pos: int = 0


Item = Union[Stage, Block]


@dataclass(frozen=True)
class Network:
    """A built network: its items in order, the input shape, the batch a draw spans, and how it was scaled."""

    spec: str  # canonical text
    items: tuple[Item, ...]
    input: Shape
    output: Shape
    batch: int
    normprop: str
    width: int | None
    #: Correlation RHO of a token sequence's input tokens (:func:`~normstats.networks.sequences.correlate_tokens`),
    #: or of a vector network's two inputs a draw (:mod:`~normstats.networks.pairs`); 0: none.
    input_correlation: float = 0.0

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.spec, self.input, self.batch, self.normprop, self.width, self.input_correlation)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Network) and other.key == self.key

    def walk(self) -> list[Item]:
        """Every stage and block in forward order (a block before its branch)."""
        out: list[Item] = []

        def visit(items: tuple[Item, ...]) -> None:
            for item in items:
                out.append(item)
                if isinstance(item, Block):
                    visit(item.branch)

        visit(self.items)
        return out

    @property
    def values_per_draw(self) -> int:
        """Values the forward and backward pass of one draw hold (what the memory bound counts): every layer's
        input and output, and what a layer's passes hold besides (attention's weights, ``held_values``)."""
        total = 0
        for item in self.walk():
            n = math.prod(item.shape) * 2 if isinstance(item, Block) else \
                item.in_values + item.out_values + item.layer.held_values
            total += n * self.batch
        return total

    @property
    def weights(self) -> int:
        """Weights of every linear and conv layer."""
        total = 0
        for item in self.walk():
            if isinstance(item, Stage) and item.name in shapes.PROJECTED:
                total += item.layer.weight_count
            elif isinstance(item, Stage) and item.name in shapes.WEIGHTED:
                v = item.layer.values
                total += v["fan_in"] * v["fan_out"] if item.name == "linear" else \
                    v["out_channels"] * v["in_channels"] * v["k"] ** 2
        return total

    @property
    def uniforms_per_input(self) -> int:
        return sum(i.n_uniform for i in self.walk() if isinstance(i, Stage))

    def _memory_chunk(self) -> int:
        """Draws whose values (every layer's input and output) fill CHUNK_VALUES: the unit blocks are made of."""
        return max(1, min(4096, CHUNK_VALUES // max(1, self.values_per_draw)))

    def _product_draws(self) -> int:
        """Draws that give every matrix product GEMM_ROWS rows (1 for a network without products)."""
        fewest_rows = None
        for item in self.walk():
            if isinstance(item, Stage) and (item.name in shapes.WEIGHTED or item.name in shapes.PROJECTED):
                # a conv's output positions, a sequence's tokens (a linear layer per token, attention)
                rows = math.prod(item.out_shape[1:]) if item.name == "conv" else \
                    item.in_shape[0] if len(item.in_shape) == 2 else 1
                fewest_rows = rows if fewest_rows is None else min(fewest_rows, rows)
        return 1 if fewest_rows is None else -(-GEMM_ROWS // (fewest_rows * self.batch))

    def chunk_draws(self) -> int:
        """Draws the engine pushes through the network at a time: :meth:`_memory_chunk`, cut down so that one
        layer's values fit STAGE_VALUES, but enough for GEMM_ROWS rows in every matrix product (then the whole
        block, which is sized for it). The chunk changes a result only by float rounding (the blocks, and so
        the draws, stay those of :meth:`block_draws`)."""
        largest = 1
        for item in self.walk():
            size = math.prod(item.shape) if isinstance(item, Block) else \
                max(item.in_values, item.out_values, item.layer.held_values)
            largest = max(largest, size)
        fits = max(1, min(self._memory_chunk(), STAGE_VALUES // (largest * self.batch)))
        if self._product_draws() <= fits:
            return fits
        memory = self._memory_chunk()
        return min(self.block_draws(), -(-self._product_draws() // memory) * memory)

    def block_draws(self) -> int:
        """Draws per block: a whole number of :meth:`_memory_chunk`, about ``BLOCK_VALUES`` values in all, and
        at least the draws of one chunk that gives every matrix product GEMM_ROWS rows (the engine caps it at
        its own block of random numbers)."""
        chunk = self._memory_chunk()
        return chunk * max(1, BLOCK_VALUES // (chunk * max(1, self.values_per_draw)),
                           -(-self._product_draws() // chunk))


#: The widest ``--width``.
MAX_WIDTH = 16384


def build_network(spec: str | tuple[Node, ...], input: Shape, *, width: int | None = None,
                  normprop: str = "none", input_correlation: float = 0.0) -> Network:
    """Parse (if needed) and build ``spec`` on inputs of ``input`` shape; one-line errors name the position.
    ``input_correlation`` is the correlation of a token sequence's input tokens, or of a vector network's two
    inputs a draw."""
    rho = check_input_correlation(input_correlation, tuple(input))
    if normprop not in NORMPROP_MODES:
        raise NormstatsError(f"--normprop must be one of: {', '.join(NORMPROP_MODES)}; got {normprop!r}")
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= MAX_WIDTH):
        raise NormstatsError(f"--width must be an integer in [1, {MAX_WIDTH}]; got {width!r}")
    nodes = parse_spec(spec) if isinstance(spec, str) else spec
    builder = _Builder(width, normprop)
    items, out_shape = builder.chain(nodes, tuple(input), prefix="", var=1.0)
    batch = builder.batch or 1
    net = Network(format_spec(nodes), items, tuple(input), out_shape, batch, normprop, width, rho)
    if net.weights > MAX_WEIGHTS:
        raise SpecError(
            f"network spec: this network holds {net.weights:,} weights ({net.weights * 8 / 2**20:,.0f} MiB, copied "
            f"into every worker); the bound is {MAX_WEIGHTS:,} weights ({MAX_WEIGHTS * 8 / 2**20:,.0f} MiB)"
        )
    need = net.values_per_draw
    if need > MAX_DRAW_VALUES:
        held_text = ", and the arrays attention holds" if any(
            isinstance(i, Stage) and i.layer.held_values for i in net.walk()) else ""
        raise SpecError(
            f"network spec: one draw of this network holds {need:,} values ({need * 8 / 2**20:,.0f} MiB: every "
            f"layer's input and output{held_text} over a batch of {batch}); the bound is {MAX_DRAW_VALUES:,} values "
            f"({MAX_DRAW_VALUES * 8 / 2**20:,.0f} MiB)"
        )
    return net


def check_input_correlation(rho: Any, input: Shape) -> float:
    """``rho`` as a float in [0, 1), on a token sequence (``TxD``: correlated tokens) or a vector (``N``: two
    correlated inputs a draw, :mod:`normstats.networks.pairs`) unless it is 0."""
    try:
        value = float(rho)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(rho, bool) or not 0.0 <= value < 1.0:
        raise NormstatsError(f"--input-correlation must be a number in [0, 1); got {rho!r}")
    if value != 0.0 and len(input) not in (1, 2):
        raise NormstatsError(
            f"--input-correlation needs --input N (two correlated inputs a draw) or --input TxD (correlated "
            f"tokens); got {describe_shape(input)}"
        )
    return value


class _Builder:
    def __init__(self, width: int | None, normprop: str) -> None:
        self.width = width
        self.normprop = normprop
        self.batch: int | None = None
        self.batch_pos = 0

    def chain(self, nodes: tuple[Node, ...], shape: Shape, prefix: str, var: float
              ) -> tuple[tuple[Item, ...], Shape]:
        items: list[Item] = []
        counter = [0]

        def label() -> str:
            counter[0] += 1
            return f"{prefix}{counter[0]}"

        def visit(node: Node) -> None:
            nonlocal shape, var
            if isinstance(node, Repeat):
                for _ in range(node.count):
                    for inner in node.body:
                        visit(inner)
            elif isinstance(node, Residual):
                here = label()
                beta = math.sqrt(var) if node.beta == "auto" else float(node.beta)
                branch, out = self.chain(node.branch, shape, f"{here}.", 1.0)
                if out != shape:
                    raise SpecError(
                        f"network spec, position {node.pos} ('res'): a residual branch must keep the shape; it "
                        f"maps {describe_shape(shape)} to {describe_shape(out)}"
                    )
                items.append(Block(here, branch, node.alpha, beta,
                                   "auto" if node.beta == "auto" else f"{node.beta:g}", shape, node.pos))
                var += node.alpha * node.alpha
            else:
                stage = self.stage(node, shape, label())
                items.append(stage)
                shape = stage.out_shape

        for node in nodes:
            visit(node)
        return tuple(items), shape

    def stage(self, node: LayerNode, shape: Shape, label: str) -> Stage:
        where = f"network spec, position {node.pos} ('{node.name}')"
        try:
            cls = get_layer(node.name)
        except NormstatsError as exc:
            raise SpecError(f"{where}: {exc}") from None
        probe = _probe(cls)
        given = dict(node.params)
        declared = {p.name for p in cls.params}
        for key in given:
            if key not in declared:
                have = ", ".join(p.name for p in cls.params) or "none"
                raise SpecError(f"{where}: layer '{cls.name}' has no parameter {key!r} (its parameters: {have})")
        fit = shapes.fit(cls.name, given, shape, self.width, node.pos, probe["pointwise"], cls.spans_batch)
        params = dict(fit.params)
        mode = self.normprop
        if (cls.name in shapes.WEIGHTED or cls.name in shapes.PROJECTED) and mode != "none" and \
                "normalize" not in given:
            params["normalize"] = "fan-out" if mode == "bp" else "fan-in"
        try:
            layer = cls(**params)
        except NormstatsError as exc:
            raise SpecError(f"{where}: {exc}") from None
        if cls.spans_batch:
            b = layer.values["batch"]
            if self.batch is not None and b != self.batch:
                raise SpecError(f"{where}: every batch-spanning layer of a network needs the same batch; got "
                                f"{b} here and {self.batch} at position {self.batch_pos}")
            self.batch, self.batch_pos = b, node.pos
        out_shape = fit.out_shape or _out_shape(layer, fit.kind, shape)
        shift, fwd, grad = self.scaling(cls.name, layer, fit.kind, where)
        return Stage(label, cls.name, node.params, layer, fit.kind, shape, out_shape, shift, fwd, grad, node.pos)

    def scaling(self, name: str, layer: Layer, kind: str, where: str) -> tuple[float, float, float]:
        """``(shift, forward scale, gradient scale)`` of a layer under the NormProp mode."""
        mode = self.normprop
        if mode == "none" or name in shapes.NORMALIZERS:
            return 0.0, 1.0, 1.0
        refs = reference_moments(_reference_layer(layer))
        fp_mean, fp_std, bp_std = (refs[s].value if refs[s] is not None else None  # type: ignore[union-attr]
                                   for s in ("fp_mean", "fp_std", "bp_std"))
        if name in shapes.WEIGHTED or name in shapes.PROJECTED:
            if mode != "split":
                return 0.0, 1.0, 1.0  # the weights are normalized instead
            if fp_std is None or bp_std is None or not fp_std > 0 or not bp_std > 0:
                return 0.0, 1.0, 1.0  # weights the user chose, with no exact std: left as they are
            return 0.0, 1.0 / fp_std, 1.0 / bp_std
        needed = {"fp": ("fp_mean", "fp_std"), "bp": ("fp_mean", "bp_std"), "split": ("fp_mean", "fp_std", "bp_std")}
        missing = [s for s in needed[mode] if refs[s] is None]
        if missing:
            raise SpecError(f"{where}: --normprop {mode} needs the exact {' and '.join(missing)} of this layer; "
                            "it has none")
        for stat in needed[mode][1:]:
            if not refs[stat].value > 0:  # type: ignore[union-attr]
                raise SpecError(f"{where}: --normprop {mode} divides by the {stat.replace('_', ' ')}, which is 0 "
                                "for this layer")
        if mode == "fp":
            return fp_mean, 1.0 / fp_std, 1.0 / fp_std  # type: ignore[operator]
        if mode == "bp":
            return fp_mean, 1.0 / bp_std, 1.0 / bp_std  # type: ignore[operator]
        return fp_mean, 1.0 / fp_std, 1.0 / bp_std  # type: ignore[operator]


def _probe(cls: type) -> dict[str, bool]:
    """Whether the layer class maps one value to one value (an activation or dropout)."""
    layer = cls()
    return {"pointwise": layer.in_dim == 1 and layer.out_dim == 1 and not cls.spans_batch}


def _out_shape(layer: Layer, kind: str, shape: Shape) -> Shape:
    if layer.name == "linear":
        return (shape[0], layer.values["fan_out"]) if kind == shapes.PER_TOKEN else (layer.values["fan_out"],)
    grid = layer.grid  # conv and pooling: a finite map
    channels = layer.values["out_channels"] if layer.name == "conv" else shape[0]
    return (channels, grid.h.windows, grid.w.windows)


def _reference_layer(layer: Layer) -> Layer:
    """The layer whose single-layer reference gives the NormProp constants: the layer itself, or for a map
    layer the same kernel on the stationary interior (what the published constants are for)."""
    values = dict(layer.values)
    if "size" not in values:
        return layer
    values.pop("size")
    values.pop("padding", None)
    for derived in ("kh", "kw"):
        if values.get(derived) == values.get("k"):
            values.pop(derived, None)
    return type(layer)(**values)
