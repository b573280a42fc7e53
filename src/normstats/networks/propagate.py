"""Draws through a whole network, as the engine runs them: one input ``x ~ N(0, I)`` (a batch of them where a
layer spans the batch) pushed forward through every layer, and one upstream gradient ``dy ~ N(0, I)`` at the
output pushed back through the network's own backward pass, both computed by the same layer code that
single-layer runs use (:meth:`~normstats.layers.base.Layer.passes`).

For every layer the engine tallies its output (``fp``) and the gradient at its input (``bp``); for a map, per
input, the NF-ResNet figures (Brock et al. 2021, "Characterizing signal propagation to close the performance
gap in unnormalized ResNets": the average over channels of the squared channel mean, and of the channel
variance, here over the positions of one input); for a residual block, its branch's output; for a vector
network with ``--input-correlation``, the cosine of its outputs for the draw's two correlated inputs (the second
goes forward only, :mod:`normstats.networks.pairs`). The values of
one draw are correlated, so every standard error treats the draw as the independent unit
(:class:`~normstats.engine.moments.Tally`).

Weights are drawn once per run from the seed (``init = 0``: the network the user has); ``init = k > 0`` is the
``k``-th independent network of the same spec, with its own weights and its own draws.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from normstats.engine.blocks import setup_rng
from normstats.engine.moments import DrawSums, PowerSums, Tally
from normstats.errors import NormstatsError
from normstats.networks import shapes
from normstats.networks.build import Block, Item, Network, Stage
from normstats.networks.pairs import pair_cosine, partner
from normstats.networks.sequences import attention_entropy, correlate_tokens, token_cosine

#: What is tallied of an item, by kind of record.
FP, BP, BRANCH, CHANNEL_MEAN_SQ, CHANNEL_VAR = "fp", "bp", "branch", "channel_mean_sq", "channel_var"
#: A token sequence's geometry per input (:mod:`normstats.networks.sequences`).
TOKEN_COSINE, ATTENTION_ENTROPY, ATTENTION_LOGIT_STD = "token_cosine", "attention_entropy", "attention_logit_std"
#: A vector network's two correlated inputs a draw: the cosine of their outputs (:mod:`normstats.networks.pairs`).
CORRELATION = "correlation"
#: Where a pass hands each record: ``sink(record index, values of shape (draws, width))``.
Sink = Callable[[int, np.ndarray], None]
#: Where a summed pass writes a record's row summaries (``(row means, row sums of squares)``, one value a draw),
#: or ``None`` for a record whose values the sink needs (see :meth:`NetworkSampler.run`).
RowsOf = Callable[[int], "tuple[np.ndarray, np.ndarray] | None"]
#: ``NORMSTATS_SUMMED_PASSES=0`` turns the summed passes off (the numpy passes run; for comparing the two).
_SUMMED = os.environ.get("NORMSTATS_SUMMED_PASSES", "1") != "0"
#: A network whose values leave float64 (a residual block of alpha = 1e200, weights of variance 1e6 over 200
#: layers) computes inf and nan, and those are the answer: its statistics are reported as not finite, in words
#: (:attr:`~normstats.output.results.table.Stat.status`). numpy's warnings about them are silenced where the
#: values are made and tallied, not left to reach stderr.
_BEYOND_FLOAT64 = dict(over="ignore", invalid="ignore", divide="ignore")


@dataclass(frozen=True)
class Record:
    """One tallied quantity: the item's label and what of it (fp, bp, branch, channel figures)."""

    label: str
    what: str
    width: int  # values per draw


def records(net: Network) -> tuple[Record, ...]:
    """Every tallied quantity of ``net``, in forward order (a block's own records before its branch's)."""
    out = []
    b = net.batch
    for item in net.walk():
        shape = item.shape if isinstance(item, Block) else item.out_shape
        in_values = math.prod(item.shape) if isinstance(item, Block) else item.in_values
        out.append(Record(item.label, FP, b * math.prod(shape)))
        out.append(Record(item.label, BP, b * in_values))
        if isinstance(item, Block):
            out.append(Record(item.label, BRANCH, b * math.prod(shape)))
        if len(shape) == 3:
            out.append(Record(item.label, CHANNEL_MEAN_SQ, b))
            out.append(Record(item.label, CHANNEL_VAR, b))
        if _is_sequence(shape):
            out.append(Record(item.label, TOKEN_COSINE, b))
        if _is_attention(item):
            out.append(Record(item.label, ATTENTION_ENTROPY, b))
            out.append(Record(item.label, ATTENTION_LOGIT_STD, b))
        if paired(net):
            out.append(Record(item.label, CORRELATION, b))
    return tuple(out)


def paired(net: Network) -> bool:
    """Whether ``net`` runs two correlated inputs a draw (a vector input with ``--input-correlation``)."""
    return bool(net.input_correlation) and len(net.input) == 1


def _is_sequence(shape: tuple[int, ...]) -> bool:
    """Whether ``shape`` is a token sequence of at least two tokens (whose geometry is tallied)."""
    return len(shape) == 2 and shape[0] >= 2


def _is_attention(item: Item) -> bool:
    return isinstance(item, Stage) and item.name == "attention" and item.in_shape[0] >= 2


def weight_rng(seed: int, init: int) -> np.random.Generator:
    """The generator of network ``init``'s weights: the run's own for ``init = 0`` (as a single layer's)."""
    if init == 0:
        return setup_rng(seed)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(0, init))))


def draw_seed(seed: int, init: int) -> int:
    """The seed of network ``init``'s draws (independent streams for every network; ``seed`` itself for 0)."""
    if init == 0:
        return seed
    return int(np.random.SeedSequence(seed, spawn_key=(2, init)).generate_state(1, np.uint64)[0] >> 1)


def _ours(result: np.ndarray, given: np.ndarray, fresh: bool, owned: bool, passes: Any) -> bool:
    """Whether a pass's ``result`` is a new array that nothing else holds: the pass says its results are new
    (``fresh``), and ``result`` is not a view of the array it was ``given``, unless that array was ours
    (``owned``) and the pass writes over its input on purpose (its state never holds it)."""
    return fresh and result.flags.writeable and (
        not np.may_share_memory(result, given) or (owned and passes.writes_over_input))


class NetworkSampler:
    """``(x, dy, u) -> [array per record]``: the forward pass, then the backward pass from ``dy``."""

    def __init__(self, net: Network, rng: np.random.Generator | None = None,
                 passes: dict[str, Any] | None = None) -> None:
        """The layers' passes are built from ``rng`` (weights drawn in layer order), or given as ``passes``
        (by label: those of a larger network, for :meth:`prefix`, or those the threads of a run share)."""
        self.net = net
        self.shared = passes  # held: a run's shared passes live as long as a sampler uses them
        self.records = records(net)
        self.index = {(r.label, r.what): i for i, r in enumerate(self.records)}
        self.passes: dict[str, Any] = {}
        self.uniform_at: dict[str, int] = {}
        offset = 0
        for item in net.walk():
            if isinstance(item, Stage):
                self.passes[item.label] = passes[item.label] if passes is not None else item.layer.passes(rng)
                self.uniform_at[item.label] = offset
                offset += item.n_uniform
        # the items whose fp record (forward) or bp record (backward) the next stage of their chain sums as it
        # reads it, when the run hands out rows
        self.summed_by_next: set[tuple[str, str]] = set()
        self._plan(net.items)

    def _plan(self, items: tuple[Item, ...]) -> None:
        for i, item in enumerate(items):
            if i + 1 < len(items) and self._summing(items[i + 1]):
                self.summed_by_next.add((item.label, FP))
            if i > 0 and self._summing(items[i - 1]):
                self.summed_by_next.add((item.label, BP))
            if isinstance(item, Block):
                self._plan(item.branch)

    def _summing(self, item: Item) -> bool:
        """Whether ``item`` is a stage that sums its input and output as it runs (:attr:`Passes.summed`)."""
        return (_SUMMED and isinstance(item, Stage) and item.kind == shapes.POINTWISE
                and self.passes[item.label].summed)

    def __call__(self, x: np.ndarray, dy: np.ndarray, u: np.ndarray) -> list[np.ndarray]:
        out: list[np.ndarray] = [None] * len(self.records)  # type: ignore[list-item]

        def keep(index: int, values: np.ndarray) -> None:
            out[index] = values

        self.run(x, dy, u, keep, reuse=False)
        return out

    def run(self, x: np.ndarray, dy: np.ndarray, u: np.ndarray, sink: Sink, reuse: bool = True,
            rows: RowsOf | None = None) -> None:
        """The forward and backward pass, handing every record to ``sink(index, values)`` (``values`` of shape
        ``(draws, width)``) as soon as it is computed: the engine tallies it while it is still in cache, and
        no record outlives its use.

        With ``reuse`` (the engine's tallies, which read ``values`` before ``sink`` returns), a layer may write
        its output over an input that no one needs any more: a new array that the previous layer returned
        (``fresh_output``, ``fresh_grad``) and that has been handed to ``sink``, so ``values`` may be
        overwritten after ``sink`` returns. ReLU does, in both passes: its mask is its state, not its input,
        so neither pass needs a new array (2-5% of ``20*(linear relu)``'s time at width 512, in runs that
        move by 2-3%). The numbers are the same bit for bit. A sink that keeps ``values`` needs
        ``reuse=False``.

        With ``rows`` (the engine's tallies, which keep only each draw's mean and sum of squares of a record), a
        stage that sums as it runs (:attr:`~normstats.layers.base.Passes.summed`: ReLU with its compiled loops)
        writes the row summaries of its output, and of its input where that is the previous item's record,
        into ``rows(index)``; those records never reach ``sink``. Its output is the same bit for bit, and the
        summaries differ from the sink's by float rounding. ``rows(index)`` is ``None`` for a record that
        ``sink`` must see."""
        net = self.net
        draws = len(x)
        n_rows = draws * net.batch
        h = x.reshape(n_rows, -1)
        h2 = None
        if paired(net):
            h2 = partner(x.reshape(draws, -1), net.input_correlation).reshape(n_rows, -1)
        elif net.input_correlation:
            h = correlate_tokens(h, net.input[0], net.input_correlation)
        uu = u.reshape(n_rows, -1)
        states: dict[str, Any] = {}
        run = _Run(sink, rows, draws)
        with np.errstate(**_BEYOND_FLOAT64):
            self._forward(net.items, h, uu, states, run, reuse, h2)
            g = dy.reshape(n_rows, -1)
            self._backward(net.items, g, states, run, reuse)

    def ends(self, x: np.ndarray, dy: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(y, dx)``: the network's output and the gradient at its input for upstream gradient ``dy`` (rows of
        ``x``, ``dy`` and ``u`` are draws, as for ``__call__``). ``dx = J(x)^T dy`` with ``J`` the network's
        input-output Jacobian (for ``split``, the backward pass as scaled)."""
        out = self(x, dy, u)
        first, last = self.net.items[0].label, self.net.items[-1].label
        return out[self.index[(last, FP)]], out[self.index[(first, BP)]]

    def prefix(self, count: int) -> NetworkSampler:
        """A sampler of the network's first ``count`` top-level items that shares this sampler's layers (the
        same weights): the block whose Jacobian a depth of ``normstats jacobian`` asks for."""
        import dataclasses

        items = self.net.items[:count]
        last = items[-1]
        out_shape = last.shape if isinstance(last, Block) else last.out_shape
        return NetworkSampler(dataclasses.replace(self.net, items=items, output=out_shape), passes=self.passes)

    # -- forward -------------------------------------------------------------------------------------------------
    def _forward(self, items: tuple[Item, ...], h: np.ndarray, u: np.ndarray, states: dict[str, Any],
                 run: _Run, reuse: bool, h2: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The output of ``items`` from ``h`` (and from the partner input ``h2``, where the draws are paired)."""
        owned = False  # h is the caller's (the engine's draws, or a block's input, which its sum needs)
        for item in items:
            summed = False
            y2 = None
            if isinstance(item, Block):
                run.hand()
                xb = h / item.beta if item.beta != 1.0 else h
                xb2 = None if h2 is None else (h2 / item.beta if item.beta != 1.0 else h2)
                f, f2 = self._forward(item.branch, xb, u, states, run, reuse, xb2)
                y = h + item.alpha * f if item.alpha != 1.0 else h + f
                if h2 is not None:
                    y2 = h2 + item.alpha * f2 if item.alpha != 1.0 else h2 + f2
                run.record(self.index[(item.label, BRANCH)], f)
                owned = False
            else:
                if h2 is not None:  # before the pass of h, which may write over h (never over h2)
                    y2 = self._partner_forward(item, h2, u)
                y, owned, summed = self._stage_forward(item, h, u, states, reuse and owned, run)
            if not summed:
                run.record(self.index[(item.label, FP)], y, (item.label, FP) in self.summed_by_next)
            if y2 is not None:
                run.record(self.index[(item.label, CORRELATION)],
                           pair_cosine(y.reshape(len(y), -1), y2.reshape(len(y2), -1)))
            shape = item.shape if isinstance(item, Block) else item.out_shape
            if len(shape) == 3:
                self._channel_figures(item.label, y, shape, run)
            if _is_sequence(shape):
                run.record(self.index[(item.label, TOKEN_COSINE)], token_cosine(y, shape[0]))
            if _is_attention(item):
                state = states[item.label]
                run.record(self.index[(item.label, ATTENTION_ENTROPY)], attention_entropy(state[3]))
                run.record(self.index[(item.label, ATTENTION_LOGIT_STD)], state.logit_std)
            h, h2 = y, y2
        run.hand()
        return h, h2

    def _partner_forward(self, stage: Stage, h: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The stage's output for the partner input ``h`` (a new array or a view; ``h`` left as it is): the plain
        pass, with the draw's uniforms, its state dropped."""
        y, _ = self._apply(stage, self.passes[stage.label].forward, h, u)
        if stage.shift != 0.0 or stage.fwd_scale != 1.0:
            y = (y - stage.shift) * stage.fwd_scale
        return y

    def _apply(self, stage: Stage, forward: Any, h: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, Any]:
        """``forward`` (a pass of the stage) on rows ``h``: per channel or token, per batch, or per row."""
        rows = len(h)
        start = self.uniform_at[stage.label]
        us = u[:, start : start + stage.n_uniform]
        if stage.kind in (shapes.PER_CHANNEL, shapes.PER_TOKEN):  # a map's channels, a sequence's tokens
            c = stage.in_shape[0]
            y, st = forward(h.reshape(rows * c, -1), np.empty((rows * c, 0)))
            return y.reshape(rows, -1), st
        if stage.kind == shapes.BATCH:
            draws = rows // self.net.batch
            y, st = forward(h.reshape(draws, -1), us.reshape(draws, -1))
            return y.reshape(rows, -1), st
        return forward(h, us)

    def _stage_forward(self, stage: Stage, h: np.ndarray, u: np.ndarray, states: dict[str, Any],
                       owned: bool, run: _Run) -> tuple[np.ndarray, bool, bool]:
        """The stage's output; whether it is a new array that nothing else holds (``owned``: the input was
        such an array, which the stage may have overwritten); and whether the stage summed its output (and its
        input, if that was the previous item's record) into the run's rows."""
        passes = self.passes[stage.label]
        y_rows = run.rows_of(self.index[(stage.label, FP)]) if self._summing(stage) and _fits(h) else None
        if y_rows is not None:
            y, st = passes.forward_summed(h.reshape(run.draws, -1), stage.shift, stage.fwd_scale, run.take(),
                                          y_rows, owned)
            states[stage.label] = st.reshape(h.shape)
            return y.reshape(h.shape), True, True
        run.hand()  # h's record, before a pass that may write over h
        forward = passes.forward_inplace if owned else passes.forward
        y, st = self._apply(stage, forward, h, u)
        states[stage.label] = st
        fresh = _ours(y, h, passes.fresh_output, owned, passes)
        if stage.shift != 0.0 or stage.fwd_scale != 1.0:
            if fresh:
                np.subtract(y, stage.shift, out=y)  # y is ours: no new arrays
                np.multiply(y, stage.fwd_scale, out=y)
            else:
                y = (y - stage.shift) * stage.fwd_scale
                fresh = True
        return y, fresh, False

    # -- backward ------------------------------------------------------------------------------------------------
    def _backward(self, items: tuple[Item, ...], g: np.ndarray, states: dict[str, Any], run: _Run,
                  reuse: bool) -> np.ndarray:
        owned = False  # g is the caller's (the engine's dy, or a block's gradient, which its sum needs)
        for item in reversed(items):
            summed = False
            if isinstance(item, Block):
                run.hand()
                gb = self._backward(item.branch, g * item.alpha if item.alpha != 1.0 else g, states, run, reuse)
                dx = g + (gb / item.beta if item.beta != 1.0 else gb)
                owned = False
            else:
                dx, owned, summed = self._stage_backward(item, g, states, reuse and owned, run)
            if not summed:
                run.record(self.index[(item.label, BP)], dx, (item.label, BP) in self.summed_by_next)
            g = dx
        run.hand()
        return g

    def _stage_backward(self, stage: Stage, g: np.ndarray, states: dict[str, Any], owned: bool,
                        run: _Run) -> tuple[np.ndarray, bool, bool]:
        """The stage's input gradient, whether it is a new array that nothing else holds, and whether the stage
        summed it (as forward)."""
        passes = self.passes[stage.label]
        st = states.pop(stage.label)
        dx_rows = run.rows_of(self.index[(stage.label, BP)]) if self._summing(stage) and _fits(g) else None
        if dx_rows is not None:
            gv = g.reshape(run.draws, -1)
            dx = passes.backward_summed(st.reshape(gv.shape), gv, stage.grad_scale, run.take(), dx_rows, owned)
            return dx.reshape(g.shape), True, True
        run.hand()  # g's record, before a pass that may write over g
        rows = len(g)
        g_in = g
        if stage.kind in (shapes.PER_CHANNEL, shapes.PER_TOKEN):
            g = g.reshape(rows * stage.in_shape[0], -1)
        elif stage.kind == shapes.BATCH:
            g = g.reshape(rows // self.net.batch, -1)
        backward = passes.backward_inplace if owned else passes.backward_at
        dx = backward(st, g, stage.grad_scale)
        return dx.reshape(rows, -1), _ours(dx, g_in, passes.fresh_grad, owned, passes), False

    # -- records -------------------------------------------------------------------------------------------------
    def _channel_figures(self, label: str, y: np.ndarray, shape: tuple[int, ...], run: _Run) -> None:
        maps = y.reshape(len(y), shape[0], -1)
        # maps.mean(axis=2) and maps.var(axis=2) with the same operations (bit for bit), the mean made once
        count = maps.shape[2]
        means = np.add.reduce(maps, axis=2, keepdims=True)
        means /= count
        run.record(self.index[(label, CHANNEL_MEAN_SQ)], np.mean(means[..., 0] ** 2, axis=1))
        dev = maps - means
        np.multiply(dev, dev, out=dev)
        var = np.add.reduce(dev, axis=2)
        var /= count
        run.record(self.index[(label, CHANNEL_VAR)], var.mean(axis=1))


def _fits(a: np.ndarray) -> bool:
    """Whether a summed pass can take ``a`` as it is (float64, C-contiguous)."""
    return a.dtype == np.float64 and a.flags.c_contiguous


class _Run:
    """One run's hand-over of records: each to the sink as it is computed, except one that the next stage sums
    as it reads it, which waits (:attr:`pending`) until that stage takes its rows (:meth:`take`) or, if it
    cannot, hands it over (:meth:`hand`) before its pass may write over the values."""

    def __init__(self, sink: Sink, rows: RowsOf | None, draws: int) -> None:
        self.sink = sink
        self.rows = rows
        self.draws = draws
        self.pending: tuple[int, np.ndarray] | None = None

    def rows_of(self, index: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Where record ``index``'s row summaries go, or ``None`` if the sink needs its values."""
        return self.rows(index) if self.rows is not None else None

    def record(self, index: int, values: np.ndarray, summed_by_next: bool = False) -> None:
        """Record ``index``'s values: to the sink, or held for the next stage (if it sums, and may here). A
        record handed meanwhile (a map's channel figures) leaves the held one waiting: the sink takes records
        in any order."""
        if summed_by_next and self.rows_of(index) is not None:
            self.hand()
            self.pending = (index, values)
        else:
            self.sink(index, values.reshape(self.draws, -1))

    def take(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The rows of the record held for the stage that now reads it (``None`` if none is held)."""
        if self.pending is None:
            return None
        index, _ = self.pending
        self.pending = None
        return self.rows_of(index)

    def hand(self) -> None:
        """Hand the held record, if any, to the sink."""
        if self.pending is not None:
            index, values = self.pending
            self.pending = None
            self.sink(index, values.reshape(self.draws, -1))


@dataclass(frozen=True)
class NetworkTallies:
    """The tallies of every record of a network over the draws seen so far (the engine's ``Tallies``)."""

    records: tuple[Record, ...]
    tallies: tuple[Tally, ...]

    @classmethod
    def empty(cls, recs: tuple[Record, ...]) -> NetworkTallies:
        return cls(recs, tuple(Tally.empty(r.width) for r in recs))

    def merge(self, other: NetworkTallies) -> NetworkTallies:
        with np.errstate(**_BEYOND_FLOAT64):
            return NetworkTallies(self.records, tuple(a.merge(b) for a, b in zip(self.tallies, other.tallies)))

    @property
    def draws(self) -> int:
        return self.tallies[0].draws if self.tallies else 0

    def estimates(self) -> dict[str, tuple[float, float]]:
        """``{"label|statistic": (estimate, se)}`` for every record."""
        out: dict[str, tuple[float, float]] = {}
        with np.errstate(**_BEYOND_FLOAT64):
            self._estimates(out)
        return out

    def _estimates(self, out: dict[str, tuple[float, float]]) -> None:
        for rec, t in zip(self.records, self.tallies):
            key = f"{rec.label}|"
            if rec.what in (FP, BP):
                out[key + rec.what + "_mean"] = (t.mean, t.se_mean())
                out[key + rec.what + "_std"] = (t.std, t.se_std())
            elif rec.what == BRANCH:
                out[key + "branch_var"] = (t.std**2, 2.0 * t.std * t.se_std())
            else:
                out[key + rec.what] = (t.mean, t.se_mean())


class _NetworkSums:
    """One block's tallies of every record: one :class:`~normstats.engine.moments.DrawSums` for the records of
    several values a draw, a :class:`~normstats.engine.moments.PowerSums` for each record of one."""

    def __init__(self, recs: tuple[Record, ...], capacity: int) -> None:
        self.records = recs
        wide = [i for i, r in enumerate(recs) if r.width > 1]
        self.draw_sums = DrawSums([recs[i].width for i in wide], capacity)
        self.slot = {index: slot for slot, index in enumerate(wide)}  # record -> its row in draw_sums
        self.power_sums = {i: PowerSums(r.width, capacity) for i, r in enumerate(recs) if r.width == 1}

    def add(self, outputs: list[np.ndarray]) -> None:
        self.draw_sums.begin(len(outputs[0]))
        for index, values in enumerate(outputs):
            self._add_one(index, values)
        self.draw_sums.end()

    def feed(self, sampler: NetworkSampler, x: np.ndarray, dy: np.ndarray, u: np.ndarray) -> None:
        """Run the chunk through ``sampler``, tallying each record as it comes (what the engine calls)."""
        with np.errstate(**_BEYOND_FLOAT64):
            self.draw_sums.begin(len(x))
            sampler.run(x, dy, u, self._add_one, rows=self._rows)
            self.draw_sums.end()

    def _rows(self, index: int) -> tuple[np.ndarray, np.ndarray] | None:
        slot = self.slot.get(index)
        return None if slot is None else self.draw_sums.rows(slot)

    def _add_one(self, index: int, values: np.ndarray) -> None:
        slot = self.slot.get(index)
        if slot is None:
            self.power_sums[index].add(values)
        else:
            self.draw_sums.add(slot, values)

    def result(self) -> NetworkTallies:
        with np.errstate(**_BEYOND_FLOAT64):
            wide = iter(self.draw_sums.tallies())
            tallies = [self.power_sums[i].tally() if i in self.power_sums else next(wide)
                       for i in range(len(self.records))]
        return NetworkTallies(self.records, tuple(tallies))


@dataclass(frozen=True)
class NetworkModel:
    """A network as the engine runs it (:class:`~normstats.engine.blocks.Model`)."""

    net: Network
    init: int = 0
    weight_seed: int = 0  # the run's seed: network ``init``'s weights come from it (see weight_rng)
    name: str = "network"

    @property
    def in_dim(self) -> int:
        return self.net.batch * math.prod(self.net.input)

    @property
    def out_dim(self) -> int:
        return self.net.batch * math.prod(self.net.output)

    @property
    def n_uniform(self) -> int:
        return self.net.batch * self.net.uniforms_per_input

    @property
    def block_draws(self) -> int:
        return self.net.block_draws()

    def make_sampler(self, seed: int, estimator: str) -> NetworkSampler:
        """A sampler for one thread, on the layers' passes (the weights) that every thread of this process shares
        for this model: drawn once, not once per worker, and half the memory traffic of a copy per thread."""
        if estimator != "sampled":
            raise NormstatsError("a network's bp statistics come from the sampled estimator (dy drawn at the "
                                 f"output and run back); got --estimator {estimator}")
        return NetworkSampler(self.net, passes=_shared_passes(self))

    def chunk_sums(self, capacity: int, estimator: str) -> _NetworkSums:
        return _NetworkSums(records(self.net), capacity)

    def empty(self, estimator: str) -> NetworkTallies:
        return NetworkTallies.empty(records(self.net))


class _Passes(dict):  # type: ignore[type-arg]
    """A network's passes by label (a dict that a weak reference can point to)."""


_PASSES: weakref.WeakValueDictionary[NetworkModel, _Passes] = weakref.WeakValueDictionary()
_PASSES_LOCK = threading.Lock()


def _shared_passes(model: NetworkModel) -> _Passes:
    """The passes of ``model``'s layers, built from its weight generator by the first thread that asks and shared
    with the others: the passes hold weights and parameters, never buffers, so threads may run them at once. The
    samplers that use them keep them alive; when the last is gone (the run's threads have ended) so are they."""
    with _PASSES_LOCK:
        passes = _PASSES.get(model)
        if passes is None:
            rng = weight_rng(model.weight_seed, model.init)
            passes = _Passes()
            for item in model.net.walk():
                if isinstance(item, Stage):
                    passes[item.label] = item.layer.passes(rng)
            _PASSES[model] = passes
        return passes
