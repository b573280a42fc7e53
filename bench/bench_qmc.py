"""Where quasi-Monte Carlo helps: standard errors of ``mc`` and ``qmc`` on the same number of draws.

Not a test; run by hand:

    .venv/bin/python bench/bench_qmc.py            # about a minute on 2 cores

For each layer both methods take the same N draws on one worker. ``gain`` is the variance ratio
``(se_mc / se_qmc)^2`` of a statistic: how many times more plain Monte Carlo draws would give the qmc se.
``worth`` also counts the time: ``gain * t_mc / t_qmc``, the speed-up at equal precision (above 1 qmc wins).
The bp mean is left out: it is 0 by symmetry for every layer here. ``--estimator`` picks how the bp std is
estimated (default: ``conditional``, dy integrated out); where it is exact under both methods (se 0, e.g. average
pooling) the gain shows as "exact" and does not enter ``worth``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import math
import time

import normstats
from normstats.engine.blocks import random_width
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
    ("maxpool", {"k": 3, "stride": 2}),
    ("avgpool", {"k": 3}),
    ("avgpool", {"k": 16}),
    ("linear", {"fan_in": 128, "fan_out": 64}),
)
#: Rows run with an exact shortcut (``--sampler``) instead of the layer's own passes.
SHORTCUTS = (
    ("maxpool", {"k": 3}, "order-statistics"),
    ("maxpool", {"k": 16}, "order-statistics"),
)
SHOWN = ("fp_mean", "fp_std", "bp_std")


def run(
    name: str, params: dict, method: str, samples: int, seed: int, estimator: str, sampler: str
) -> tuple[dict[str, float], float]:
    start = time.perf_counter()
    row = normstats.simulate(
        name, samples=samples, seed=seed, method=method, estimator=estimator, workers=1, sampler=sampler,
        **params,
    )
    return {s: getattr(row, s).se for s in SHOWN}, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scalars", type=float, default=2**25, help="random numbers per run (N = this / draw width)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--estimator", choices=("conditional", "sampled"), default="conditional")
    args = ap.parse_args()
    print("| layer | numbers per draw | N | gain fp mean | gain fp std | gain bp std | t mc s | t qmc s | worth |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, params, sampler in [(name, params, "layer") for name, params in LAYERS] + list(SHORTCUTS):
        width = random_width(make_layer(name, **params).shortcut(sampler), args.estimator)
        n = 16 << max(0, int(math.log2(args.scalars / width / 16)))  # a power of two per qmc replicate
        se_mc, t_mc = run(name, params, "mc", n, args.seed, args.estimator, sampler)
        se_qmc, t_qmc = run(name, params, "qmc", n, args.seed, args.estimator, sampler)
        gains = [
            math.nan if se_mc[s] == se_qmc[s] == 0 else (se_mc[s] / se_qmc[s]) ** 2 if se_qmc[s] > 0 else math.inf
            for s in SHOWN
        ]
        worth = min(g for g in gains if not math.isnan(g)) * t_mc / t_qmc
        label = name + "".join(f" {k}={v}" for k, v in params.items())
        label += f", --sampler {sampler}" if sampler != "layer" else ""
        cells = " | ".join("exact" if math.isnan(g) else f"{g:,.0f}" if g >= 10 else f"{g:.1f}" for g in gains)
        print(f"| {label} | {width} | {n:,} | {cells} | {t_mc:.2f} | {t_qmc:.2f} | {worth:,.1f} |", flush=True)


if __name__ == "__main__":
    main()
