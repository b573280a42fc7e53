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
  comparison in one run.

The overhead is normstats's time over the ``bare (input grad)`` loop's, in wall seconds and in CPU seconds of
the process (``time.process_time``: on a shared machine the less noisy of the two, since other processes' load
stretches the wall clock but not this process's CPU time): the medians over the rounds, and the fastest round of
each contender against the fastest bare round (under a load that changes from round to round, the fastest
rounds are the least disturbed). Peak memory (the maximum resident set size, ``resource.getrusage``) comes from
two fresh processes that run ``normstats.model`` at ``-n N`` and ``-n 4N``: flat in N, since nothing of a draw
is kept.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

import normstats
from normstats.models.sources import make_factory

CHILD = """
import json, resource, sys, torch
import normstats
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


def timed(run: Any) -> tuple[float, float]:
    """Wall and CPU seconds (this process, all its threads) of ``run()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="timm:resnet18")
    parser.add_argument("--input", default="3x224x224")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("-n", type=int, default=8, help="draws per timing")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--compare-tap", metavar="FILE", help="another version's models/tap.py, run as well")
    args = parser.parse_args()
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
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, run in runs.items():
            times[name].append(timed(run))
            model.zero_grad(set_to_none=True)
    print(f"{args.model} · batch {args.batch} · input {args.input} · {args.n} draws · {args.threads} threads · "
          f"torch {torch.__version__} · median of {args.repeat} interleaved rounds (wall s, CPU s)")
    base = [statistics.median(t[i] for t in times["bare (input grad)"]) for i in (0, 1)]
    low = min(t[1] for t in times["bare (input grad)"])
    for name, values in times.items():
        wall, cpu = (statistics.median(t[i] for t in values) for i in (0, 1))
        fastest = min(t[1] for t in values)
        print(f"  {name:<24} wall {wall:7.2f} s x{wall / base[0]:.3f}   CPU {cpu:7.2f} s x{cpu / base[1]:.3f}   "
              f"fastest CPU x{fastest / low:.3f}   rounds (CPU): {', '.join(f'{t[1]:.2f}' for t in values)}")
    if not args.no_memory:
        for n in (args.n, 4 * args.n):
            code = CHILD.format(model=args.model, input=args.input, batch=args.batch, n=n, threads=args.threads)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            print(f"  peak RSS at -n {n:<4} {json.loads(out.stdout.strip().splitlines()[-1]) / 1024:8.0f} MiB")


if __name__ == "__main__":
    main()
