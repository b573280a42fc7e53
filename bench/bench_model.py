"""Benchmark: the cost of ``normstats model``'s statistics against a bare loop of forward and backward passes of
the same model, batch, device and thread count, in the same process; and its peak memory at two draw counts.

Not a test; run by hand:

    PYTHONPATH=src .venv/bin/python bench/bench_model.py --model timm:resnet18 --input 3x224x224 --batch 8 -n 8

Contenders, timed in turn in every round (so a change of load on a shared machine falls on all of them), the
median of --repeat rounds:

* ``bare (input grad)``: x ~ N(0, I), ``y = model(x)``, ``torch.autograd.grad(y, x, dy)``, the same autograd
  call ``normstats model`` makes (the gradients on the way to the input, not the parameters');
* ``bare (backward)``: ``model(x).backward(dy)``, what a training step's backward computes (parameter
  gradients too), for scale;
* ``normstats``: ``normstats.model(module, inits=1, samples=n)`` on the same module: the tap's hooks and
  reductions, the input aliases, and the one probe pass of a single input it makes before the draws;
* with ``--compare-tap FILE``, ``normstats (FILE)``: the same with the tap of another version
  (``git show REV:src/normstats/models/tap.py > FILE``) loaded in place of this one, for a before/after
  comparison in one run;
* with ``--draw-pairs K``, after the rounds (``--repeat 0``: none), K pairs of single draws, bare and through
  normstats' draw loop, and the probe pass timed apart (:func:`draw_pairs`): the per-draw overhead, with a far
  tighter interval than whole calls give on a noisy machine.

The overhead is normstats's time over the ``bare (input grad)`` loop's, in wall seconds and in CPU seconds of
the process (``time.process_time``: on a shared machine the less noisy of the two, since other processes' load
stretches the wall clock but not this process's CPU time): the medians over the rounds; the fastest round of
each contender against the fastest bare round (under a load that changes from round to round, the fastest
rounds are the least disturbed); and round by round, the median of each round's CPU ratio to that round's bare
loop, with a 95% interval for it from the ratios' order statistics (the sign test's, which needs no assumption
about the noise; with 9 rounds or more it is narrower than the lowest and highest ratio). A round's contenders
run next to each other, in an order that turns around every round, so a change of load falls on all of them
and a ratio is less noisy than either time. The process keeps freed memory for reuse as ``normstats``' command
line does (:func:`normstats.engine.allocator.keep_freed_memory`; ``--system-allocator`` leaves glibc's
thresholds alone), for every contender alike: otherwise a freed activation is handed back to the system and the
next draw's pages fault in again, which the minor page faults a round show. Peak memory (the maximum resident
set size, ``resource.getrusage``) comes from two fresh processes, with the same allocator setting, that run
``normstats.model`` at ``-n N`` and ``-n 4N``: flat in N, since nothing of a draw is kept.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

import normstats
from normstats.engine.allocator import keep_freed_memory
from normstats.models.sources import make_factory

CHILD = """
import json, resource, sys, torch
import normstats
from normstats.engine.allocator import keep_freed_memory
if {keep}:
    keep_freed_memory()
torch.set_num_threads({threads})
normstats.model({model!r}, input={input!r}, batch={batch}, samples={n}, inits=1, seed=0)
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def bare(model: torch.nn.Module, shape: tuple[int, ...], n: int, input_grad: bool) -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        x = torch.randn(shape, generator=g, requires_grad=input_grad)
        y = model(x)
        dy = torch.randn(y.shape, generator=g)
        if input_grad:
            torch.autograd.grad(y, [x], dy)
        else:
            y.backward(dy)


def load_tap(path: str) -> Any:
    """The module in ``path`` (another version's ``models/tap.py``, which imports only torch), loaded aside."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("other_tap", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["other_tap"] = module
    spec.loader.exec_module(module)
    return module


def with_tap(module: Any, run: Any) -> Any:
    """``run`` with ``module.Tap`` in place of the draw loop's own while it runs."""
    from normstats.models import run as model_run

    class Other(module.Tap):  # type: ignore[name-defined, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not hasattr(self, "eps"):  # a tap from before the rounding rule: float32 values
                self.eps = collections.defaultdict(lambda: float(torch.finfo(torch.float32).eps))

    def go() -> None:
        own = model_run.Tap
        model_run.Tap = Other
        try:
            run()
        finally:
            model_run.Tap = own

    return go


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """A distribution-free interval for the median of ``values`` (sorted) from their order statistics: the
    k-th lowest and k-th highest, k the largest with ``P(Binomial(n, 1/2) < k) <= (1 - level) / 2``, so that
    the interval covers the median with probability at least ``level`` whatever the distribution (the sign
    test's interval), and that probability. With too few values for that (fewer than 6 at 95%), the lowest and
    the highest, which cover it less often (the probability says how often)."""
    n = len(values)
    tail, k = 0.0, 0
    while k < n and tail + math.comb(n, k) / 2**n <= (1 - level) / 2:
        tail += math.comb(n, k) / 2**n
        k += 1
    k = max(k, 1)
    coverage = 1 - 2 * sum(math.comb(n, j) for j in range(k)) / 2**n
    return values[k - 1], values[n - k], coverage


def timed(run: Any) -> tuple[float, float, int]:
    """Wall and CPU seconds (this process, all its threads) of ``run()``, and the minor page faults it took (the
    kernel mapping fresh memory: a freed block that the allocator gave back to the system costs them again)."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return (time.perf_counter() - wall, time.process_time() - cpu,
            resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)


def draw_pairs(model: torch.nn.Module, shape: tuple[int, ...], pairs: int) -> None:
    """``pairs`` rounds of one bare draw (forward, ``torch.autograd.grad``) and one draw of normstats' loop
    (``normstats.models.run._draws`` of one draw, the tap's hooks and reductions, out-of-place modules), in an
    order that turns every round, on the CPU; then the median of the per-round CPU ratios with its sign-test
    interval, and the fixed cost of a run (the probe pass, once per run: the inits of one architecture share it),
    timed apart. With the draws paired one by one the ratio is far tighter than the rounds' of whole calls: a
    change of load lasts longer than a draw. The overhead of a run of N draws is about the per-draw ratio plus the fixed cost over N bare draws."""
    from normstats.engine.progress import NULL_PROGRESS
    from normstats.models import run as model_run
    from normstats.models.tap import no_inplace

    dtype = next(model.parameters()).dtype
    inputs = model_run._Inputs("normal", shape[1:], shape[0], None, torch.device("cpu"), dtype)
    text = "x".join(map(str, shape[1:]))
    generator = torch.Generator().manual_seed(1)
    with no_inplace(model):
        out_name, _, inplace = model_run.probe(model, inputs, text, None)

    def tapped() -> None:
        with no_inplace(model):
            model_run._draws(model, inputs, generator, 1, None, out_name, inplace, NULL_PROGRESS, 0)

    def probe() -> None:
        with no_inplace(model):
            model_run.probe(model, inputs, text, None)

    contenders = {"bare": lambda: bare(model, shape, 1, True), "normstats": tapped, "probe": probe}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(pairs):
        for name in ("bare", "normstats", "probe") if r % 2 == 0 else ("normstats", "bare", "probe"):
            times[name].append(timed(contenders[name])[1])
    ratios = sorted(t / b for t, b in zip(times["normstats"], times["bare"]))
    lo, hi, cover = median_interval(ratios)
    base, fixed = statistics.median(times["bare"]), statistics.median(times["probe"])
    print(f"  draws paired one by one ({pairs} pairs, CPU s): bare draw median {base:.3f} s, normstats' draw "
          f"x{statistics.median(ratios):.3f} [{lo:.3f}, {hi:.3f}] ({cover:.0%}, sign test); the probe pass, once per "
          f"run: {fixed:.3f} s, {fixed / base:.2f} bare draws")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="timm:resnet18")
    parser.add_argument("--input", default="3x224x224")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("-n", type=int, default=8, help="draws per timing")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of whole calls (0: none)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--compare-tap", metavar="FILE", help="another version's models/tap.py, run as well")
    parser.add_argument("--draw-pairs", type=int, default=0, metavar="K",
                        help="also time K pairs of single draws, bare and normstats' (see draw_pairs)")
    parser.add_argument("--system-allocator", action="store_true",
                        help="leave glibc's allocator as it is (by default it keeps freed blocks, as in normstats' "
                             "command line: normstats.engine.allocator)")
    args = parser.parse_args()
    kept = False if args.system_allocator else keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = make_factory(args.model)()
    model.train()
    shape = (args.batch, *map(int, args.input.split("x")))
    runs = {
        "bare (input grad)": lambda: bare(model, shape, args.n, True),
        "bare (backward)": lambda: bare(model, shape, args.n, False),
        "normstats": lambda: normstats.model(model, input=args.input, batch=args.batch, samples=args.n, inits=1,
                                             seed=0),
    }
    if args.compare_tap:
        runs[f"normstats ({args.compare_tap})"] = with_tap(load_tap(args.compare_tap), runs["normstats"])
    times: dict[str, list[tuple[float, float, int]]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(args.repeat):
        for name in names if r % 2 == 0 else names[::-1]:  # each contender first and last in turn
            times[name].append(timed(runs[name]))
            model.zero_grad(set_to_none=True)
    print(f"{args.model} · batch {args.batch} · input {args.input} · {args.n} draws · {args.threads} threads · "
          f"torch {torch.__version__} · {args.repeat} interleaved rounds (wall s, CPU s) · freed memory "
          f"{'kept (as the command line keeps it)' if kept else 'given back (the system allocator as it is)'}")
    bare_times = times["bare (input grad)"]
    base = [statistics.median(t[i] for t in bare_times) for i in (0, 1)] if bare_times else [0.0, 0.0]
    low = min((t[1] for t in bare_times), default=0.0)
    for name, values in times.items() if bare_times else ():  # --repeat 0: no rounds (--draw-pairs alone)
        wall, cpu = (statistics.median(t[i] for t in values) for i in (0, 1))
        fastest = min(t[1] for t in values)
        ratios = sorted(t[1] / b[1] for t, b in zip(values, bare_times))
        lo, hi, cover = median_interval(ratios)
        print(f"  {name:<24} median wall {wall:7.2f} s x{wall / base[0]:.3f}   CPU {cpu:7.2f} s x{cpu / base[1]:.3f}   "
              f"fastest CPU x{fastest / low:.3f}   round by round (CPU) x{statistics.median(ratios):.3f} "
              f"[{lo:.3f}, {hi:.3f}] ({cover:.0%})")
        print(f"  {'':<24} rounds (CPU s): {', '.join(f'{t[1]:.2f}' for t in values)}; minor page faults a round, "
              f"median {statistics.median(t[2] for t in values):.0f}")
    if args.draw_pairs:
        draw_pairs(model, shape, args.draw_pairs)
    if not args.no_memory:
        for n in (args.n, 4 * args.n):
            code = CHILD.format(model=args.model, input=args.input, batch=args.batch, n=n, threads=args.threads,
                                keep=kept)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            print(f"  peak RSS at -n {n:<4} {json.loads(out.stdout.strip().splitlines()[-1]) / 1024:8.0f} MiB")


if __name__ == "__main__":
    main()
