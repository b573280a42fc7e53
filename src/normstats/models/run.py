"""The draw loop of ``normstats model``: independent inits of the model, draws of an input batch forward and an
upstream gradient back, and the rows of every module with their standard errors.

A draw: ``x ~ N(0, I)`` of shape ``(batch, *input)`` (or token ids uniform over the first embedding's
vocabulary, ``--input ids:T``) forward through the model; the output tensor picked (``output_key``, else
``logits`` where there is one, else the first floating tensor); ``dy ~ N(0, I)`` of its shape back through
autograd with ``torch.autograd.grad(output, x, dy)``: only the gradients on the way to the input are computed
(not the parameters' gradients, which the statistics do not need), and no ``.grad`` of the user's model is
touched. The :class:`~normstats.models.tap.Tap` reduces every module's output and input gradient as they come.

With ``inits = K > 1`` the draws are split over K independent inits: a factory called again under a seed of its
own (``torch.manual_seed`` inside ``torch.random.fork_rng``, so the caller's global generator is left as it was),
or, for a module passed in, a deep copy re-initialized by every submodule's ``reset_parameters()``. Every figure
is then the mean of the K per-init estimates and its se their spread over sqrt(K) (Student's t on K - 1 degrees
of freedom for the interval), as in ``normstats network``: the se holds the init-to-init spread. With one init
the se is over the draws only (:class:`~normstats.engine.moments.ConditionalTally` on each draw's mean and mean
square) and leaves that spread out.

A statistic whose per-draw values all lie within a rounding bound of one value (``ROUNDING_EPS`` machine
epsilons of the values' dtype times their scale, the root mean square or the mean square; :func:`rounding_exact`)
is reported as exact to rounding: the value rounded to the bound's decade, se 0, never z-tested. Nothing is
declared from theory (the model is the user's); what is seen is a batch norm's output mean in train mode, a
softmax's, a zero-initialized layer's output, each the same in every draw, where an ``estimate ± se`` would be
rounding noise.

Memory is that of one forward and backward pass of the batch whatever the number of draws: the tap keeps a few
numbers per module and draw. Before the run, one forward pass of a single input (no gradients) checks the input
shape and estimates the memory a draw needs, once for all the inits of one architecture (:class:`Probed`); a run
above :data:`MEMORY_BOUND` (or the caller's bound) is refused with the figure it would need.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from normstats.engine.moments import ConditionalTally, CoMoments
from normstats.engine.progress import NULL_PROGRESS, Progress
from normstats.errors import NormstatsError
from normstats.models.init_audit import audit_parameters
from normstats.models.sources import quote_error, shorten
from normstats.models.tap import Tap, inplace_modules, no_inplace, pick_tensor
from normstats.output.results.model import ModelResult, ModuleStats
from normstats.output.results.table import Stat, interval_quantile

#: Draws of a model run unless told otherwise (a draw: one batch forward and one gradient back).
DEFAULT_DRAWS = 32
DEFAULT_INITS = 8
MAX_INITS = 1000
MAX_BATCH = 1 << 20
MODES = ("train", "eval")
#: The memory a run may need unless the caller allows more: parameters plus one batch's activations.
MEMORY_BOUND = 8 * 2**30


def parse_model_input(text: Any) -> tuple[str, tuple[int, ...]]:
    """``("normal", shape)`` for ``3x224x224`` or ``512``; ``("ids", (T,))`` for ``ids:T``."""
    spelled = str(text).strip().lower()
    kind = "normal"
    if spelled.startswith("ids:"):
        kind, spelled = "ids", spelled[4:]
    try:
        shape = tuple(int(part) for part in spelled.split("x"))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape) or (kind == "ids" and len(shape) != 1):
        raise NormstatsError(f"--input must be a shape of positive integers (3x224x224, 512) or ids:T (T token "
                             f"ids per input); got {text!r}")
    return kind, shape


def check_device(device: Any) -> torch.device:
    try:
        dev = torch.device(str(device))
    except RuntimeError:
        raise NormstatsError(f"--device must be cpu or cuda (cuda:N); got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise NormstatsError(f"--device must be cpu or cuda (cuda:N); got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise NormstatsError(f"--device {device}: torch sees no CUDA GPU here (torch {torch.__version__}, "
                                 f"CUDA build {torch.version.cuda or 'none'}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise NormstatsError(f"--device {device}: there are {torch.cuda.device_count()} CUDA devices")
    return dev


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise NormstatsError(f"{name} must be an integer in [{low}, {high}]; got {value!r}")
    return value


def _seed(seed: int, stream: int, init: int) -> int:
    """Independent seeds for init ``init``'s weights (stream 0) and draws (stream 1), from the run's seed."""
    return int(np.random.SeedSequence(seed, spawn_key=(7, stream, init)).generate_state(1, np.uint64)[0] >> 1)


def _reset(model: torch.nn.Module) -> None:
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()


def _vocabulary(model: torch.nn.Module) -> int | None:
    return next((m.num_embeddings for m in model.modules() if isinstance(m, torch.nn.Embedding)), None)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


class _Inputs:
    """Draws of the model's input and of the upstream gradient, from a generator on the device."""

    def __init__(self, kind: str, shape: tuple[int, ...], batch: int, vocabulary: int | None,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.kind, self.shape, self.batch, self.vocabulary = kind, shape, batch, vocabulary
        self.device, self.dtype = device, dtype

    def x(self, generator: torch.Generator | None, batch: int | None = None) -> torch.Tensor:
        size = (batch or self.batch, *self.shape)
        if self.kind == "ids":
            assert self.vocabulary is not None
            return torch.randint(0, self.vocabulary, size, generator=generator, device=self.device)
        return torch.randn(size, generator=generator, device=self.device, dtype=self.dtype)


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.get_default_dtype())


def probe(model: torch.nn.Module, inputs: _Inputs, input_text: str, output_key: str | None
          ) -> tuple[str, int, set[str]]:
    """One forward pass of a single input without gradients (every module in eval mode, then as it was): the
    input shape is checked (the model's own message where it fails) and the output tensor found. Returns the
    output's name, the bytes of every leaf module's output for one input (what autograd keeps, roughly) and the
    modules that modify their input in place (:func:`~normstats.models.tap.inplace_modules`)."""
    total = [0]
    result: list[Any] = []

    def count(module: torch.nn.Module, args: Any, out: Any) -> None:
        for t in (out if isinstance(out, (tuple, list)) else out.values() if isinstance(out, dict) else [out]):
            if isinstance(t, torch.Tensor):
                total[0] += t.numel() * t.element_size()

    training = {m: m.training for m in model.modules()}
    handles = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        model.eval()
        with torch.no_grad():
            inplace = inplace_modules(model, lambda: result.append(model(inputs.x(None, batch=1))))
        out = result[0]
    except NormstatsError:
        raise
    except Exception as exc:
        raise NormstatsError(f"--input {input_text}: the model rejects an input of shape "
                             f"{list((1, *inputs.shape))} ({quote_error(exc)})") from None
    finally:
        for h in handles:
            h.remove()
        for m, flag in training.items():
            m.training = flag
    tensor, name = pick_tensor(out, output_key)
    if tensor is None:
        what = ("returns a single tensor, which has no key" if isinstance(out, torch.Tensor) else
                f"has no output {output_key!r}") if output_key is not None else "returns no floating tensor"
        keys = list(out.keys()) if isinstance(out, dict) else None
        raise NormstatsError(f"--output-key {output_key}: the model {what}" + (f" (its outputs: {', '.join(map(str, keys))})"
                                                                   if keys else ""))
    if not tensor.is_floating_point():
        raise NormstatsError(f"the model has no differentiable output: its output {name} is of type {tensor.dtype}"
                             " (--output-key names another)")
    return name, total[0], inplace


def run_model(
    make: Callable[[int], torch.nn.Module], *, source: str, init_method: str, input: Any, batch: int, draws: int,
    inits: int, mode: str, seed: int, device: Any, output_key: str | None, version: str,
    max_memory: float | None = None, progress: Progress = NULL_PROGRESS, restore: Callable[[], None] | None = None,
    threads: int | None = None, params: bool = False, spread: Callable[..., list[Any]] | None = None,
) -> ModelResult:
    """Run the model that ``make(k)`` builds for init ``k`` (called under that init's seed), on ``threads`` CPU
    threads (``torch.set_num_threads`` for the run, then as it was; default: torch's own). ``params``: also audit
    the parameters of init 0 as built, before any draw (:mod:`normstats.models.init_audit`). ``spread``: where
    the inits run elsewhere (:mod:`normstats.models.spread`), ``spread(run_init, spec, progress)`` returns every
    init's :class:`InitResult` in init order."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(_check_int("--threads", threads, 1, 1024))
    try:
        return _run(make, source=source, init_method=init_method, input=input, batch=batch, draws=draws,
                    inits=inits, mode=mode, seed=seed, device=device, output_key=output_key, version=version,
                    max_memory=max_memory, progress=progress, restore=restore, params=params, spread=spread)
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class InitSpec:
    """What every init of a run needs, checked (picklable: a worker of a cluster gets it)."""

    kind: str
    shape: tuple[int, ...]
    input_text: str
    batch: int
    per_init: int
    mode: str
    seed: int
    device: str
    output_key: str | None
    bound: float
    params: bool


@dataclass(frozen=True)
class Probed:
    """What :func:`probe` found for a model (its output's name, the bytes of one input's activations, the modules
    that modify their input in place), and the architecture it found it for (:func:`architecture`)."""

    architecture: tuple[Any, ...]
    out_name: str
    per_input: int
    inplace: frozenset[str]


def architecture(model: torch.nn.Module) -> tuple[Any, ...]:
    """Every module's name and class with its own parameters' and buffers' names, shapes and dtypes: what the
    probe's findings depend on. Two inits of a SOURCE, a factory or a module's copies have the same one; a factory
    that builds another network each call does not, and is probed again."""
    return tuple(
        (name, type(m).__module__, type(m).__qualname__,
         tuple((n, tuple(t.shape), t.dtype) for n, t in (*m.named_parameters(recurse=False),
                                                         *m.named_buffers(recurse=False))))
        for name, m in model.named_modules()
    )


@dataclass(frozen=True)
class InitResult:
    """One init's per-module estimates (with their se over its draws), the module calls seen, the init audit
    (init 0 with ``params``), the output's name, the vocabulary drawn from, the model's dtype and the CPU threads
    it ran on."""

    estimates: dict[str, dict[str, tuple[float, float]]]
    calls: list[Any]
    audit: tuple[Any, ...] | None
    out_name: str
    vocabulary: int | None
    dtype: str
    threads: int
    probed: Probed | None = None


def run_init(make: Callable[[int], torch.nn.Module], k: int, spec: InitSpec,
             progress: Progress = NULL_PROGRESS, probed: Probed | None = None) -> InitResult:
    """Init ``k``: the model built by ``make(k)`` under the init's seed, its probe, and its ``spec.per_init``
    draws under a generator of the init's own. Nothing here depends on another init or on the caller's global
    generator, so an init gives the same numbers whether it runs here, after other inits, or on a worker.
    ``probed``: an earlier init's probe, taken instead of probing again where this model's architecture is the
    same (a later init probes under a fork of the generator, so skipping it changes no number)."""
    dev = torch.device(spec.device)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(_seed(spec.seed, 0, k))
        model = make(k)
        audit = tuple(audit_parameters(model)) if k == 0 and spec.params else None
        model.to(dev)
        vocabulary = _vocabulary(model) if spec.kind == "ids" else None
        if spec.kind == "ids" and vocabulary is None:
            raise NormstatsError(f"--input {spec.input_text}: the model has no nn.Embedding to draw token ids "
                                 "for; give an input shape such as 3x224x224")
        inputs = _Inputs(spec.kind, spec.shape, spec.batch, vocabulary, dev, _model_dtype(model))
        with no_inplace(model):
            # Init 0's probe draws its input from the init's global generator (as it always has, so the numbers
            # of a model with dropout stay those of earlier versions); a later init probes under a fork of it,
            # which leaves the generator as init 0 alone would find it.
            arch = architecture(model)
            if probed is None or k == 0 or probed.architecture != arch:
                with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else [], enabled=k > 0):
                    out_name, per_input, inplace = probe(model, inputs, spec.input_text, spec.output_key)
                probed = Probed(arch, out_name, per_input, frozenset(inplace))
            out_name, per_input, inplace = probed.out_name, probed.per_input, set(probed.inplace)
            weights = sum(p.numel() * p.element_size() for p in model.parameters())
            need = weights + spec.batch * per_input
            if need > spec.bound:
                raise NormstatsError(
                    f"--batch {spec.batch}: a draw needs about {gib(need)} (parameters {gib(weights)}, one "
                    f"batch's activations {gib(spec.batch * per_input)}), over the bound of {gib(spec.bound)}; "
                    "lower --batch or the input size, or raise --max-memory")
            model.train(spec.mode == "train")
            generator = torch.Generator(device=dev)
            generator.manual_seed(_seed(spec.seed, 1, k))
            per_draw, calls_k = _draws(model, inputs, generator, spec.per_init, spec.output_key, out_name, inplace,
                                       progress, k * spec.per_init)
        estimates = _estimates(per_draw)
        del model
    return InitResult(estimates, list(calls_k), audit, out_name, vocabulary,
                      str(inputs.dtype).removeprefix("torch."), torch.get_num_threads(), probed)


def _run(
    make: Callable[[int], torch.nn.Module], *, source: str, init_method: str, input: Any, batch: int, draws: int,
    inits: int, mode: str, seed: int, device: Any, output_key: str | None, version: str,
    max_memory: float | None, progress: Progress, restore: Callable[[], None] | None, params: bool = False,
    spread: Callable[..., list[InitResult]] | None = None,
) -> ModelResult:
    kind, shape = parse_model_input(input)
    input_text = ("ids:" if kind == "ids" else "") + "x".join(map(str, shape))
    batch = _check_int("--batch", batch, 1, MAX_BATCH)
    inits = _check_int("--inits", inits, 1, MAX_INITS)
    draws = _check_int("--samples", draws, 1, 10**9)
    if draws < max(inits, 2):
        raise NormstatsError(f"--samples must give each of the {inits} inits at least one draw, and be at least 2; "
                             f"got {draws}")
    if mode not in MODES:
        raise NormstatsError(f"--mode must be one of {', '.join(MODES)}; got {mode!r}")
    dev = check_device(device)
    per_init = math.ceil(draws / inits)
    spec = InitSpec(kind, shape, input_text, batch, per_init, mode, seed, str(dev), output_key,
                    MEMORY_BOUND if max_memory is None else max_memory, params)
    results: list[InitResult] = []
    progress.start(f"model {source}", per_init * inits, None)
    try:
        if spread is not None:
            results = spread(run_init, spec, progress)
        else:
            for k in range(inits):  # one probe for all the inits of one architecture
                results.append(run_init(make, k, spec, progress, results[-1].probed if results else None))
    finally:
        progress.stop()
        if restore is not None:
            restore()
    calls: dict[str, Any] = {}
    for r in results:
        calls.update({c.name: c for c in r.calls if c.name not in calls})
    first = results[0]
    quantile = float(_t975(inits)) if inits > 1 else interval_quantile("mc")
    combined = _combine([r.estimates for r in results])
    order = {name: i for i, name in enumerate(calls)}
    rows = tuple(
        ModuleStats(c.name, c.module, c.depth, c.shape, c.finish,
                    {s: _stat(s, v, quantile) for s, v in combined.get(c.name, {}).items()})
        for c in sorted(calls.values(), key=lambda c: order[c.name])
    )
    meta = {"torch": torch.__version__, "threads": first.threads if spread is not None else torch.get_num_threads(),
            "dtype": first.dtype}
    return ModelResult(version, seed, source, shape, kind, first.vocabulary, batch, mode, inits, init_method,
                       per_init * inits, str(dev), first.out_name, rows, meta, params=first.audit)


def _t975(k: int) -> float:
    from normstats.lazy import special

    return float(special.stdtrit(k - 1, 0.975))


def _draws(model: torch.nn.Module, inputs: _Inputs, generator: torch.Generator, count: int,
           output_key: str | None, out_name: str, inplace: set[str], progress: Progress, done: int) -> tuple[dict[str, list[Any]], Any]:
    """``count`` draws through ``model``; per row name the list of each draw's ``(fp, bp)`` figures."""
    per_draw: dict[str, list[Any]] = {}
    with Tap(model, root_key=output_key, copy_inputs=inplace) as tap:
        for i in range(count):
            x = inputs.x(generator)
            leaves: list[torch.Tensor] = []
            if x.is_floating_point():
                x.requires_grad_(True)
                leaves.append(x)
                hooks = []
            else:  # token ids: the gradient goes back to the embeddings' outputs
                def keep(module: Any, args: Any, out: Any) -> None:
                    if isinstance(out, torch.Tensor) and out.requires_grad:
                        leaves.append(out)

                hooks = [m.register_forward_hook(keep) for m in model.modules() if isinstance(m, torch.nn.Embedding)]
            tap.begin()
            try:
                out = model(x)
            finally:
                for h in hooks:
                    h.remove()
            y, _ = pick_tensor(out, output_key)
            del out
            if y is None or not y.requires_grad or not leaves:
                tap.begin()
                raise NormstatsError(f"the model has no differentiable output: its output {out_name} does not depend "
                                     "differentiably on the input" + (" (are the embeddings frozen?)"
                                                                       if not x.is_floating_point() else ""))
            dy = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
            torch.autograd.grad(y, leaves, dy, allow_unused=True)
            del x, y, dy, leaves
            fp, bp = tap.end()
            for name, values in fp.items():
                per_draw.setdefault(name, []).append(("fp", values, tap.eps[("fp", name)]))
            for name, values in bp.items():
                per_draw.setdefault(name, []).append(("bp", values, tap.eps[("bp", name)]))
            progress.update(done + i + 1, math.nan)  # no se until the end (over the inits): the bar shows none
        return per_draw, tap.ordered_calls()


#: The rounding bound of :func:`rounding_exact`, in units of the values' machine epsilon times their root mean
#: square (of the mean square, for the second-moment figures).
ROUNDING_EPS = 32


def _estimates(per_draw: dict[str, list[Any]]) -> dict[str, dict[str, tuple[Any, ...]]]:
    """Per row name: ``{statistic: (estimate, se over the draws, span)}``, the span being ``(lowest, highest,
    bound)`` of the statistic's per-draw values and their rounding bound (:func:`_spans`)."""
    out: dict[str, dict[str, tuple[Any, ...]]] = {}
    for name, entries in per_draw.items():
        stats: dict[str, tuple[Any, ...]] = {}
        for p in ("fp", "bp"):
            values = np.array([v for what, v, _ in entries if what == p], dtype=np.float64)
            if not len(values):
                continue
            eps = max(e for what, _, e in entries if what == p)
            with np.errstate(all="ignore"):
                found = _mean_std(p, values[:, 0], values[:, 1])
                if p == "fp" and values.shape[1] == 4:
                    for j, figure in ((2, "channel_mean_sq"), (3, "channel_var")):
                        c = values[:, j]
                        found[figure] = (float(c.mean()), float(c.std(ddof=1) / math.sqrt(len(c)))
                                         if len(c) > 1 else math.nan)
                spans = _spans(p, values, eps)
            stats.update({stat: (e, se, spans.get(stat)) for stat, (e, se) in found.items()})
        out[name] = stats
    return out


def _spans(p: str, values: np.ndarray, eps: float) -> dict[str, tuple[float, float, float]]:
    """``(lowest, highest, bound)`` over the draws of each statistic's per-draw value and of its rounding bound
    ``ROUNDING_EPS * eps * scale``: for the mean, the draw's mean ``a`` at the scale of its root mean square
    ``sqrt(q)``; for the std, the draw's variance ``q - a^2`` at the scale of ``q``; for the channel figures,
    the figure at the scale of ``q``. Statistics with a value that is not finite have none."""
    a, q = values[:, 0], values[:, 1]
    if not (np.isfinite(values).all() and (q >= 0).all()):
        return {}
    per_draw = {f"{p}_mean": (a, np.sqrt(q)), f"{p}_std": (q - a * a, q)}
    if values.shape[1] == 4:
        per_draw.update(channel_mean_sq=(values[:, 2], q), channel_var=(values[:, 3], q))
    return {stat: (float(x.min()), float(x.max()), float(ROUNDING_EPS * eps * scale.max()))
            for stat, (x, scale) in per_draw.items()}


def rounding_exact(span: tuple[float, float, float] | None) -> bool:
    """Whether a statistic counts as exact to rounding: every draw's value lies within the rounding bound of one
    value (``highest - lowest <= 2 bound``).

    The model front end cannot know from theory that a statistic is exact in every draw (a batch norm's output
    mean in train mode is 0 in every draw; a softmax's is ``1/n``; a zero-initialized layer's output is 0), so it
    looks at the draws: a statistic whose per-draw values agree to ``ROUNDING_EPS`` machine epsilons of the
    values' scale has no sampling error that float arithmetic could show, and its ``estimate ± se`` would be
    rounding noise (``-1.2e-10 ± 1.2e-12``, with an interval that misses the exact value). A statistic that
    truly varies from draw to draw passes only if its sampling spread is below that bound: for the mean of n
    independent values, ``1/sqrt(n) < 32 eps`` needs n above 5e10 in float32, far beyond one batch."""
    return span is not None and span[1] - span[0] <= 2 * span[2]


def _stat(name: str, value: tuple[Any, ...], quantile: float) -> Stat:
    """The :class:`Stat` of statistic ``name`` from ``(estimate, se, span)``: exact to rounding
    (:func:`rounding_exact`) with se 0 and the estimate rounded to the decade of its bound (a mean of
    ``-1.2e-10`` with a bound of ``4e-6`` is 0; a std's bound is its variance's carried through the square
    root), else as estimated."""
    estimate, se, span = value
    if not rounding_exact(span):
        return Stat(estimate, se, quantile=quantile)
    bound = span[2]
    if name.endswith("_std"):
        bound = bound / (max(estimate, 0.0) + math.sqrt(bound)) if bound > 0 else 0.0
    if bound > 0 and math.isfinite(estimate):
        place = 10.0 ** math.floor(math.log10(bound))
        estimate = round(estimate / place) * place + 0.0
    return Stat(estimate, 0.0, quantile=quantile, exact=True, exact_by="rounding")


def _mean_std(p: str, a: np.ndarray, q: np.ndarray) -> dict[str, tuple[float, float]]:
    if not (np.isfinite(a).all() and np.isfinite(q).all()):
        mean = float(a.mean())
        std = math.sqrt(float(q.mean()) - mean * mean) if math.isfinite(mean) and math.isfinite(q.mean()) \
            else float(q.mean()) if np.isinf(q).any() and not np.isnan(q).any() else math.nan
        return {f"{p}_mean": (mean, math.nan), f"{p}_std": (std, math.nan)}
    tally = ConditionalTally(1, CoMoments.of(a, q))
    return {f"{p}_mean": (tally.mean, tally.se_mean()), f"{p}_std": (tally.std, tally.se_std())}


def _combine(per_init: list[dict[str, dict[str, tuple[Any, ...]]]]) -> dict[str, dict[str, tuple[Any, ...]]]:
    """One init's estimates as they are; several: the mean of the per-init estimates and their spread over
    sqrt(K) as the se, and the per-draw spans joined (the lowest and highest over every draw of every init)."""
    if len(per_init) == 1:
        return per_init[0]
    out: dict[str, dict[str, tuple[Any, ...]]] = {}
    for name in per_init[0]:
        out[name] = {}
        for stat in per_init[0][name]:
            found = [r[name][stat] for r in per_init if stat in r.get(name, {})]
            values = np.array([f[0] for f in found])
            spans = [f[2] for f in found]
            span = None if any(s is None for s in spans) else \
                (min(s[0] for s in spans), max(s[1] for s in spans), max(s[2] for s in spans))
            with np.errstate(all="ignore"):
                se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
                out[name][stat] = (float(values.mean()), se, span)
    return out


def model_maker(target: Any, inits: int, source_args: dict[str, Any] | None = None
                ) -> tuple[Callable[[int], torch.nn.Module], str, str, Callable[[], None] | None]:
    """``(make, source label, init method, restore)`` for a module, a zero-argument factory or a SOURCE string.

    A module passed in is used as it is for one init; several inits use deep copies, each re-initialized by
    ``reset_parameters()``. Its mode, buffers (batch norm's running statistics) and device are restored
    afterwards, so the caller's module is left as it was found."""
    from normstats.models.sources import make_factory

    if isinstance(target, str):
        factory = make_factory(target, source_args)
        return (lambda k: factory()), target, "factory", None
    if isinstance(target, torch.nn.Module):
        module = target
        training = {m: m.training for m in module.modules()}
        buffers = {n: b.detach().clone() for n, b in module.named_buffers()}
        where = next((p.device for p in module.parameters()), None)

        def restore() -> None:
            if where is not None:
                module.to(where)
            with torch.no_grad():
                for n, b in module.named_buffers():
                    if n in buffers:
                        b.copy_(buffers[n])
            for m, flag in training.items():
                m.training = flag

        def make(k: int) -> torch.nn.Module:
            if inits == 1:
                return module
            clone = copy.deepcopy(module)
            _reset(clone)
            return clone

        return make, type(module).__name__, "as given" if inits == 1 else "reset_parameters", restore
    if callable(target):
        label = getattr(target, "__qualname__", type(target).__name__)

        def build(k: int) -> torch.nn.Module:
            try:
                model = target()
            except NormstatsError:
                raise
            except Exception as exc:
                raise NormstatsError(f"the factory {label} raised {quote_error(exc)}") from None
            if not isinstance(model, torch.nn.Module):
                raise NormstatsError(f"the factory {label} must return a torch.nn.Module; got {type(model).__name__}")
            return model

        return build, shorten(label, 80), "factory", None
    raise NormstatsError(f"normstats.model takes an nn.Module, a zero-argument factory or a SOURCE string; got "
                         f"{type(target).__name__}")
