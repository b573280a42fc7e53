"""Where quasi-Monte Carlo helps: standard errors of ``mc`` and ``qmc`` on the same number of draws.

Not a test; run by hand:

    .venv/bin/python bench/bench_qmc.py            # about a minute on 2 cores

For each layer both methods take the same N draws on one worker. ``gain`` is the variance ratio
``(se_mc / se_qmc)^2`` of a statistic: how many times more plain Monte Carlo draws would give the qmc se.
``worth`` also counts the time: ``gain * t_mc / t_qmc``, the speed-up at equal precision (above 1 qmc wins).
The bp mean is left out: it is 0 by symmetry for every layer here. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import math
import time

import normstats
from normstats.engine import draw_width
from normstats.registry import make_layer

LAYERS = (
    ("relu", {}),
    ("sigmoid", {}),
    ("dropout", {"p": 0.5}),
    ("maxpool", {"k": 2}),
    ("maxpool", {"k": 3}),
    ("maxpool", {"k": 5}),
    ("maxpool", {"k": 8}),
    ("maxpool", {"k": 16}),
    ("avgpool", {"k": 3}),
    ("avgpool", {"k": 16}),
    ("linear", {"fan_in": 128, "fan_out": 64}),
)
SHOWN = ("fp_mean", "fp_std", "bp_std")


def run(name: str, params: dict, method: str, samples: int, seed: int) -> tuple[dict[str, float], float]:
    start = time.perf_counter()
    row = normstats.simulate(name, samples=samples, seed=seed, method=method, workers=1, **params)
    return {s: getattr(row, s).se for s in SHOWN}, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scalars", type=float, default=2**25, help="random numbers per run (N = this / draw width)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("| layer | numbers per draw | N | gain fp mean | gain fp std | gain bp std | t mc s | t qmc s | worth |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, params in LAYERS:
        width = draw_width(make_layer(name, **params))
        n = 16 << max(0, int(math.log2(args.scalars / width / 16)))  # a power of two per qmc replicate
        se_mc, t_mc = run(name, params, "mc", n, args.seed)
        se_qmc, t_qmc = run(name, params, "qmc", n, args.seed)
        gains = [(se_mc[s] / se_qmc[s]) ** 2 if se_qmc[s] > 0 else math.inf for s in SHOWN]
        worth = min(gains) * t_mc / t_qmc
        label = name + "".join(f" {k}={v}" for k, v in params.items())
        cells = " | ".join(f"{g:,.0f}" if g >= 10 else f"{g:.1f}" for g in gains)
        print(f"| {label} | {width} | {n:,} | {cells} | {t_mc:.2f} | {t_qmc:.2f} | {worth:,.1f} |", flush=True)


if __name__ == "__main__":
    main()
