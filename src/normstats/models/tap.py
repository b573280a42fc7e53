"""Hooks on every module of a model (leaves and containers) that reduce, as a draw runs, its output and the
gradient at its input to a few numbers on the device, and keep nothing else.

Per module call and draw: the mean ``a`` and the mean square ``q`` of its output (fp) and of the gradient at its
input (bp), and for a 4-D feature map ``(batch, channels, height, width)`` the NF-ResNet figures, per input and
averaged over the batch: the average over channels of the squared channel mean and of the channel variance
(over positions). The draw is the independent unit of every standard error
(:class:`~normstats.engine.moments.ConditionalTally` takes the ``(a, q)`` pairs). On the CPU one compiled pass
per tensor gives its sums (:func:`_reduce`); elsewhere the reductions write their sums into one
preallocated buffer on the device, copied to the host once per draw (:class:`_Slots`), where the figures are
formed in float64 (:func:`figures`).

The backward pass is read through tensor hooks, not ``register_full_backward_hook`` (unreliable with in-place
operations, several inputs or reused modules: pytorch issues #54405, #38951, #12331). A forward pre-hook gives
the module a fresh alias ``x.view_as(x)`` of its first floating input that needs a gradient, and a hook on that
alias receives exactly the gradient flowing into this module's input (not what other users of ``x``, such as
a residual shortcut, add to it). An in-place operation on a view loses the hooks on it (autograd rebases the
view's history), so :func:`no_inplace` turns off the ``inplace`` flag of modules that have one (``nn.ReLU``,
timm's activations; the values are the same, only memory differs) while the model is measured, and a module
still found modifying its input in place (:func:`inplace_modules`) gets a copy of its input instead of a view.
A module called twice in one forward pass (torchvision's ``BasicBlock`` calls
its ``relu`` twice) gets a row per call (``name#2``). Every handle is removed when the :class:`Tap` closes, so
the model is left as it was found.
"""

from __future__ import annotations

import functools
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import weakref

import torch

from normstats.engine import moments

#: What a module call's fp figures hold, in order (``a``, ``q``, then a map's channel figures); bp holds (a, q).
FP_MAP_FIGURES = ("a", "q", "channel_mean_sq", "channel_var")


@dataclass(frozen=True)
class Call:
    """One module call of the forward pass: qualified name (``#k`` for a k-th call), class, depth, the shape of
    its output, and where its output came in the forward pass (``finish``: 0 for the first output produced)."""

    name: str
    module: str
    depth: int
    shape: tuple[int, ...]
    finish: int


def pick_tensor(out: Any, key: str | None = None) -> tuple[Any, str]:
    """The tensor of a module's output and what it is called: the output itself, ``out[key]`` where a key is
    given, else ``logits`` where there is one, else the first floating tensor of a tuple, list or dict
    (a Hugging Face ``ModelOutput`` is a dict). ``(None, "")`` when there is none."""
    if isinstance(out, torch.Tensor):
        return (out, "(tensor)") if key is None else (None, "")
    if key is not None:
        if isinstance(out, dict):
            return (out[key], key) if key in out else (None, "")
        if isinstance(out, (tuple, list)) and key.isdigit() and int(key) < len(out):
            return out[int(key)], key
        return None, ""
    if isinstance(out, dict):
        if isinstance(out.get("logits"), torch.Tensor):
            return out["logits"], "logits"
        items = list(out.items())
    elif isinstance(out, (tuple, list)):
        items = [(str(i), v) for i, v in enumerate(out)]
    else:
        return None, ""
    for name, value in items:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value, name
    return None, ""


#: Values per block of the sum of squares (:func:`_square_sums`).
BLOCK = 1024


def _reduce(t: torch.Tensor, maps: bool, slots: _Slots) -> tuple[Any, ...]:
    """Reduce ``t`` and say how to read the result: ``("done", figures)`` where the figures are already known
    (the compiled pass below); else, reduced into ``slots`` (on t's device), ``("whole", key, at, n, k)`` for
    ``k`` partial sums (whole blocks, and a tail) and ``k`` partial sums of squares, ``("map", key, at, n, k,
    width)`` for a 4-D map's, then its sum of squared channel sums; ``("empty", f)`` for a tensor without values
    (``f`` figures, all NaN).

    A contiguous float32 or float64 tensor on the CPU, where normstats has its AVX2 loop: one compiled pass
    (:func:`normstats.engine.moments.row_sums` over a zero-copy numpy view, the map as ``batch x channels`` rows
    of ``height x width`` values) gives the sum, the sum of squares and the sum of squared channel sums in
    float64 (float32 within spans of 512 values first: more accurate than the torch passes' blocks of 1024), in
    about half the time of the two torch passes (resnet18's tensors at batch 8, one core).

    Anything else (CUDA, a strided layout such as channels_last, no compiled loop): two passes over the values,
    by the fastest accurate torch kernels we measured: a sum (:func:`_sums`; for a map, the sums over each
    channel of each input, ``height x width`` values, by one matrix-vector product with ones, faster than a row
    sum when rows are short) and a sum of squares (:func:`_square_sums`). A map's average channel variance needs
    no per-channel sum of squares: it is the pooled mean square minus the average squared channel mean
    (:func:`figures`). ``torch.var_mean``, a row-wise ``var_mean`` or a normalization's one-pass statistics
    compute the same in one call but ran 5 to 30 times slower on the CPU."""
    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    four = maps and t.dim() == 4 and t.shape[2] * t.shape[3] > 0
    n = t.numel()
    if n == 0:
        return ("empty", 4 if four else 2)
    values = _numpy_view(t)
    if values is not None:
        width = t.shape[2] * t.shape[3] if four else n
        total, squares, squared_rows = moments.row_sums(values, width)
        return ("done", _from_sums(total, squares, squared_rows if four else None, n, width))
    flat = t.reshape(-1)
    parts = 2 if n > BLOCK and n % BLOCK else 1
    key = (flat.dtype, flat.device)
    if not four:
        buf, at = slots.take(flat, 2 * parts)
        _sums(flat, buf, at, slots)
        _square_sums(flat, buf, at + parts)
        return ("whole", key, at, n, parts)
    width = t.shape[2] * t.shape[3]
    buf, at = slots.take(flat, 2 + parts)
    sums = torch.mv(flat.view(-1, width), slots.ones(width, flat))  # per input and channel
    torch.sum(sums, 0, out=buf[at])
    _square_sums(flat, buf, at + 1)
    torch.dot(sums, sums, out=buf[at + 1 + parts])
    return ("map", key, at, n, parts, width)


def _numpy_view(t: torch.Tensor) -> Any:
    """A zero-copy numpy view of ``t`` (detached) for the one compiled pass of :func:`_reduce`, or ``None``
    where that pass does not take it: anything but a dense, C-contiguous float32 or float64 tensor in CPU memory
    that numpy can read as it is (a negative-view bit, a tensor subclass numpy cannot see through), or a machine
    without the AVX2 loop."""
    if not (t.device.type == "cpu" and t.dtype in _COMPILED_DTYPES and t.layout == torch.strided
            and t.is_contiguous() and not t.is_neg() and moments.vector_row_sums()):
        return None
    try:
        return t.numpy()
    except (RuntimeError, TypeError):
        return None


_COMPILED_DTYPES = (torch.float32, torch.float64)


def _sums(flat: torch.Tensor, buf: torch.Tensor, at: int, slots: _Slots) -> None:
    """The sum of ``flat`` into ``buf[at]`` (and, for a tail past whole blocks, ``buf[at + 1]``): the sums of
    blocks of :data:`BLOCK` values by one matrix-vector product with ones, then their sum (1.1 to 2 times faster
    than ``torch.sum`` of the whole tensor on the CPU, and as accurate: 1024 values a block, then a cascade)."""
    n = flat.numel()
    blocks = n // BLOCK
    if not blocks:
        torch.sum(flat, 0, out=buf[at])
        return
    sums = torch.mv(flat[: blocks * BLOCK].view(blocks, BLOCK), slots.ones(BLOCK, flat))
    torch.sum(sums, 0, out=buf[at])
    if n % BLOCK:
        torch.sum(flat[blocks * BLOCK:], 0, out=buf[at + 1])


def _square_sums(flat: torch.Tensor, buf: torch.Tensor, at: int) -> None:
    """The sum of squares of ``flat`` into ``buf[at]`` (and, for a tail past whole blocks, ``buf[at + 1]``): the
    norms of blocks of :data:`BLOCK` values, then the dot product of those norms with themselves.

    Not ``torch.linalg.vector_norm`` or ``torch.dot`` of the whole tensor: on the CPU they accumulate in float32
    along a few lanes, so their relative error grows with the size and the mean of the values: for 6.4 million
    values (resnet18's stem output at batch 8) of a shifted ReLU, 2.4e-3 for the norm and 4.9e-5 for a dot
    product of each million, as large as the se it feeds. Norms of blocks of 1024 values: 5e-7, about 10% slower
    than the whole norm (of 256 values: 1e-7, 40% slower)."""
    n = flat.numel()
    blocks = n // BLOCK
    if not blocks:
        torch.dot(flat, flat, out=buf[at])
        return
    norms = torch.linalg.vector_norm(flat[: blocks * BLOCK].view(blocks, BLOCK), dim=1)
    torch.dot(norms, norms, out=buf[at])
    if n % BLOCK:
        tail = flat[blocks * BLOCK:]
        torch.dot(tail, tail, out=buf[at + 1])


def figures(entry: tuple[Any, ...], values: dict[Any, list[float]]) -> list[float]:
    """The figures of one reduction (:func:`_reduce`) from its buffer's values on the host, in float64: ``(a,
    q)``, the mean and mean square, and for a map ``channel_mean_sq`` (the average over inputs and channels of
    the squared channel mean) and ``channel_var`` (the average channel variance over positions, ``q -
    channel_mean_sq``: each channel's variance is its mean square minus its squared mean, and the channels'
    mean squares average to ``q``)."""
    if entry[0] == "empty":
        return [math.nan] * entry[1]
    if entry[0] == "done":
        return list(entry[1])
    raw = values[entry[1]]
    at, n, parts = entry[2], entry[3], entry[4]
    if entry[0] == "whole":
        return _from_sums(sum(raw[at: at + parts]), sum(raw[at + parts: at + 2 * parts]), None, n, n)
    return _from_sums(raw[at], sum(raw[at + 1: at + 1 + parts]), raw[at + 1 + parts], n, entry[5])


def _from_sums(total: float, squares: float, squared_rows: float | None, n: int, width: int) -> list[float]:
    """The figures of ``n`` values from their sum, their sum of squares and, for a map (rows of ``width`` values,
    one per input and channel), the sum of its squared row sums (``None`` for a tensor taken whole)."""
    a, q = total / n, squares / n
    if squared_rows is None:
        return [a, q]
    channel_mean_sq = squared_rows / (width * width) / (n // width)
    return [a, q, channel_mean_sq, q - channel_mean_sq]


@functools.cache
def _eps(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps)


class _Slots:
    """The raw figures of a draw, kept on the device in one preallocated buffer per dtype (and device), written
    by the reductions' ``out=`` and copied to the host once per draw. A buffer grows (doubling) only while the
    first draw finds how many it needs; a vector of ones per map width and dtype is made once."""

    def __init__(self) -> None:
        self.buffers: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
        self.used: dict[tuple[torch.dtype, torch.device], int] = {}
        self._ones: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}

    def take(self, t: torch.Tensor, k: int) -> tuple[torch.Tensor, int]:
        """``(buffer, at)``: ``k`` free slots of the buffer of ``t``'s dtype and device, from ``at``."""
        key = (t.dtype, t.device)
        buf = self.buffers.get(key)
        at = self.used.get(key, 0)
        if buf is None or at + k > len(buf):
            grown = torch.empty(max(64, 2 * (at + k)), dtype=t.dtype, device=t.device)
            if buf is not None:
                grown[:at] = buf[:at]
            self.buffers[key] = buf = grown
        self.used[key] = at + k
        return buf, at

    def ones(self, width: int, t: torch.Tensor) -> torch.Tensor:
        key = (width, t.dtype, t.device)
        ones = self._ones.get(key)
        if ones is None:
            ones = self._ones[key] = torch.ones(width, dtype=t.dtype, device=t.device)
        return ones

    def to_host(self) -> dict[Any, list[float]]:
        """Every buffer's used values as Python floats (one copy per buffer), by dtype and device; the slots
        are free again."""
        out = {key: buf[: self.used.get(key, 0)].double().cpu().tolist() for key, buf in self.buffers.items()}
        self.used.clear()
        return out


@contextmanager
def no_inplace(model: torch.nn.Module) -> Iterator[None]:
    """Every module's boolean ``inplace`` attribute set to False inside the block, then restored."""
    changed = [m for m in model.modules() if getattr(m, "inplace", None) is True]
    try:
        for m in changed:
            m.inplace = False
        yield
    finally:
        for m in changed:
            m.inplace = True


def first_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    """A module call's first floating tensor input (positional first)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value
    return None


def inplace_modules(model: torch.nn.Module, run: Any) -> set[str]:
    """The names of the modules that modify their first floating input in place during ``run()`` (seen through
    the tensor's version counter)."""
    found: set[str] = set()
    seen: dict[str, list[tuple[torch.Tensor, int]]] = {}

    def pre(name: str) -> Any:
        def hook(module: Any, args: Any, kwargs: Any) -> None:
            t = first_input(args, kwargs)
            seen.setdefault(name, []).append((t, t._version) if t is not None else None)  # type: ignore[arg-type]

        return hook

    def post(name: str) -> Any:
        def hook(module: Any, args: Any, out: Any) -> None:
            entry = seen[name].pop() if seen.get(name) else None
            if entry is not None and entry[0]._version != entry[1]:
                found.add(name)

        return hook

    handles = []
    try:
        for name, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(pre(name), with_kwargs=True))
            handles.append(module.register_forward_hook(post(name)))
        run()
    finally:
        for h in handles:
            h.remove()
    return found


class Tap:
    """A context manager over ``model``: while open, each draw (:meth:`begin` ... forward, backward ...
    :meth:`end`) yields every module call's figures; :attr:`calls` describes the calls in the order they start
    (a container before its children). ``root_key`` picks the model's own output as ``run`` does."""

    def __init__(self, model: torch.nn.Module, root_key: str | None = None, copy_inputs: set[str] | None = None
                 ) -> None:
        self.model = model
        self.root_key = root_key
        self.copy_inputs = copy_inputs or set()  # modules that modify their input in place: alias by a copy
        self.calls: dict[str, Call] = {}  # by row name
        self._started: dict[str, None] = {}  # row names in the order the calls first start
        self._handles: list[Any] = []
        self._inplace: Any = None  # the no_inplace context while the tap is open
        self._open: dict[str, list[str]] = {}  # module name -> row names of its calls still running
        self._count: dict[str, int] = {}
        self._fp: dict[str, tuple[Any, ...]] = {}  # row -> where its figures are (:func:`_reduce`)
        self._bp: dict[str, tuple[Any, ...]] = {}
        self._slots = _Slots()
        #: The machine epsilon of the values each row's figures come from, by ``(pass, row)`` (a half-precision
        #: tensor is reduced in float32 but its values carry half's rounding): the scale of the rounding bound
        #: under which a statistic counts as exact (:func:`normstats.models.run.rounding_exact`).
        self.eps: dict[tuple[str, str], float] = {}
        self._finished = 0
        self._seen: dict[tuple[int, bool], tuple[Any, int, tuple[Any, ...]]] = {}  # (id, maps) -> (ref, version, entry)

    # -- context ----------------------------------------------------------------------------------------------
    def __enter__(self) -> Tap:
        self._inplace = no_inplace(self.model)
        self._inplace.__enter__()
        try:
            for name, module in self.model.named_modules():
                self._handles.append(module.register_forward_pre_hook(self._pre(name), with_kwargs=True))
                self._handles.append(module.register_forward_hook(self._post(name)))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._clear()
        if self._inplace is not None:
            self._inplace.__exit__(None, None, None)
            self._inplace = None

    def _clear(self) -> None:
        self._open.clear()
        self._count.clear()
        self._fp.clear()
        self._bp.clear()
        self._seen.clear()
        self._slots.used.clear()

    # -- a draw -----------------------------------------------------------------------------------------------
    def begin(self) -> None:
        self._clear()
        self._finished = 0

    def end(self) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        """The draw's figures, ``(fp, bp)`` by row name, as Python floats (one copy from the device); the tap
        holds no tensor afterwards."""
        values = self._slots.to_host()
        fp = {row: figures(entry, values) for row, entry in self._fp.items()}
        bp = {row: figures(entry, values) for row, entry in self._bp.items()}
        self._clear()
        return fp, bp

    def ordered_calls(self) -> list[Call]:
        """Every call seen, in the order the calls first started (a container before its children)."""
        return [self.calls[row] for row in self._started if row in self.calls]

    def held_tensors(self) -> int:
        """What the tap holds of the current draw (0 between draws: nothing of a draw is kept; no activation or
        gradient is ever held, only weak references while the draw runs, and the figures' small buffers)."""
        return len(self._fp) + len(self._bp) + len(self._seen)

    # -- hooks ------------------------------------------------------------------------------------------------
    def _reduced(self, tensor: torch.Tensor, maps: bool = True) -> tuple[Any, ...]:
        """The figures of ``tensor``, computed once per draw for the same values: the same tensor at the same
        version, or a view of it with its shape and layout (a container's output is often its last child's; an
        ``nn.Identity`` returns the alias of its input; a gradient passed back through an alias is a view of the
        one before). Only weak references are kept: nothing stays alive for this."""
        base = tensor._base
        if base is not None and base.shape == tensor.shape and base.stride() == tensor.stride() \
                and base.storage_offset() == tensor.storage_offset() and base.dtype == tensor.dtype:
            tensor = base
        key = (id(tensor), maps)
        seen = self._seen.get(key)
        if seen is not None and seen[0]() is tensor and seen[1] == tensor._version:
            return seen[2]
        entry = _reduce(tensor, maps, self._slots)
        self._seen[key] = (weakref.ref(tensor), tensor._version, entry)
        return entry

    def _pre(self, name: str) -> Any:
        def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            count = self._count.get(name, 0) + 1
            self._count[name] = count
            row = name if count == 1 else f"{name}#{count}"
            self._open.setdefault(name, []).append(row)
            self._started.setdefault(row, None)
            if not torch.is_grad_enabled():
                return None
            args, kwargs, done = self._alias(row, args, kwargs, name in self.copy_inputs)
            return (args, kwargs) if done else None

        return hook

    def _alias(self, row: str, args: tuple[Any, ...], kwargs: dict[str, Any], copy: bool
               ) -> tuple[Any, Any, bool]:
        """Replace the first floating input that needs a gradient by an alias whose gradient is tallied (a view,
        or a copy for a module that modifies its input in place)."""
        def wrap(t: torch.Tensor) -> torch.Tensor:
            alias = t.clone() if copy else t.view_as(t)
            alias.register_hook(self._grad(row))
            return alias

        for i, value in enumerate(args):
            if isinstance(value, torch.Tensor) and value.is_floating_point() and value.requires_grad:
                return args[:i] + (wrap(value),) + args[i + 1:], kwargs, True
        for key, value in kwargs.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and value.requires_grad:
                return args, {**kwargs, key: wrap(value)}, True
        return args, kwargs, False

    def _grad(self, row: str) -> Any:
        def hook(grad: torch.Tensor) -> None:
            self._bp[row] = self._reduced(grad, maps=False)
            self.eps.setdefault(("bp", row), _eps(grad.dtype))

        return hook

    def _post(self, name: str) -> Any:
        def hook(module: torch.nn.Module, args: tuple[Any, ...], out: Any) -> None:
            stack = self._open.get(name)
            row = stack.pop() if stack else name
            tensor, _ = pick_tensor(out, self.root_key if name == "" else None)
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                self._fp[row] = self._reduced(tensor)
                self.eps.setdefault(("fp", row), _eps(tensor.dtype))
                if row not in self.calls:
                    depth = 0 if name == "" else name.count(".") + 1
                    self.calls[row] = Call(row, type(module).__name__, depth, tuple(tensor.shape), self._finished)
            self._finished += 1

        return hook
