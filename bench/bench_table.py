"""Time to precision: the whole default table to every se <= 1e-5, and how honest its intervals are there.

Not a test; run by hand:

    .venv/bin/python bench/bench_table.py                   # the command, then each row alone (about 2 min)
    .venv/bin/python bench/bench_table.py --coverage 40     # 40 seeds of the whole table (about 4 min)

1. ``normstats table --target-se 1e-5`` as a user runs it (a fresh process, the defaults: ``--method auto``,
   so qmc on each row's exact shortcut, on every core), ``--repeat`` times; its wall time (median and range),
   whether every se is at or below the target, and the largest |z|.
2. Each default row alone, in this process with the imports done, on the same workers: its samples and seconds
   to 1e-5 with the defaults, and (``--layer-too``) with ``--method qmc --sampler layer``, the path of the
   previous version (the layer's own passes), so that both are measured in the same run; and plain Monte
   Carlo on the layer's passes, *extrapolated*: 10^6 draws are run and timed, and the draws to the target are
   ``10^6 (worst se / target)^2`` at the same rate (running them would take hours).
3. ``--coverage SEEDS``: the whole table to the target for seeds 0, 1, ...; for every statistic with a
   reference and an se above 0, how often ``estimate +- t_15 se`` covered the reference. A run that stops on a
   target stops where its estimated se came out small, so this is the check that the intervals of a stopped
   run are still honest, beyond the fixed-size coverage tests of the suite.

Prints Markdown tables and one line about the machine.
"""

from __future__ import annotations

import argparse
import collections
import csv
import io
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import normstats
from normstats.engine.blocks import QMC_T95
from normstats.published.default_table import DEFAULT_ROWS

NORMSTATS = str(Path(sys.executable).with_name("normstats"))


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy "
            f"{__import__('numpy').__version__}, load average {os.getloadavg()[0]:.1f}")


def whole_command(target: float, repeat: int) -> None:
    times, worst_se, worst_z = [], 0.0, 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run([NORMSTATS, "table", "--target-se", str(target), "--format", "csv", "-q"],
                              capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        rows = list(csv.DictReader(io.StringIO(proc.stdout)))
        worst_se = max(worst_se, max(float(r["se"]) for r in rows))
        worst_z = max(worst_z, max(abs(float(r["z"])) for r in rows if r["z"]))
    print(f"`normstats table --target-se {target:g}`: median {statistics.median(times):.2f} s "
          f"(range {min(times):.2f}-{max(times):.2f} s over {repeat} runs); largest se {worst_se:.2e}, "
          f"largest |z| {worst_z:.2f}\n")


def rows_alone(target: float, layer_too: bool) -> None:
    normstats.simulate("relu", method="qmc", samples=1 << 14)  # imports (scipy.stats for qmc) done before timing
    paths = [("defaults", {})] + ([("qmc, sampler layer", {"method": "qmc", "sampler": "layer"}),
                                   ("mc, extrapolated", {"method": "mc", "samples": 10**6})] if layer_too else [])
    print("| row | path | sampler | samples | s | max \\|z\\| |")
    print("|---|---|---|---:|---:|---:|")
    totals = collections.Counter()
    for name, params in DEFAULT_ROWS:
        for label, options in paths:
            start = time.perf_counter()
            extrapolate = "samples" in options
            table = normstats.table(rows=[(name, params)], target_se=None if extrapolate else target,
                                    sampler=options.get("sampler"),
                                    **{k: v for k, v in options.items() if k != "sampler"})
            seconds = time.perf_counter() - start
            row = table.rows[0]
            samples = row.samples
            if extrapolate:  # the draws and seconds to the target at the measured rate and se
                factor = max(1.0, (max(s.se for s in row.stats().values()) / target) ** 2)
                samples, seconds = int(samples * factor), seconds * factor
            totals[label] += seconds
            z = max((abs(s.z) for s in row.stats().values() if s.z is not None), default=0.0)
            shown = ";".join(f"{k}={v}" for k, v in params.items())
            print(f"| {name} {shown} | {label} | {row.sampler} | {samples:,} | {seconds:.2f} | {z:.2f} |")
    print()
    for label, total in totals.items():
        print(f"rows alone, {label}: {total:.1f} s in all")
    print()


def coverage(target: float, seeds: int) -> None:
    hits, seen = collections.Counter(), collections.Counter()
    for seed in range(seeds):
        for row in normstats.table(target_se=target, seed=seed).rows:
            for stat, value in row.stats().items():
                if value.reference is None or not value.se or value.se <= 0:
                    continue
                key = (row.layer, ";".join(f"{k}={v}" for k, v in row.params.items()), stat)
                seen[key] += 1
                hits[key] += abs(value.estimate - value.reference) <= QMC_T95 * value.se
    total_hits, total = sum(hits.values()), sum(seen.values())
    print(f"coverage over seeds 0-{seeds - 1}: {total_hits} of {total} intervals ({total_hits / total:.1%})\n")
    print("| row | statistic | covered |")
    print("|---|---|---:|")
    for (layer, params, stat), n in seen.items():
        print(f"| {layer} {params} | {stat} | {hits[(layer, params, stat)]}/{n} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", type=float, default=1e-5)
    ap.add_argument("--repeat", type=int, default=5, help="runs of the whole command")
    ap.add_argument("--layer-too", action="store_true", help="also each row on the layer's own passes (slow)")
    ap.add_argument("--coverage", type=int, default=0, metavar="SEEDS", help="only the coverage check")
    args = ap.parse_args()
    print(machine(), "\n")
    if args.coverage:
        coverage(args.target, args.coverage)
        return
    whole_command(args.target, args.repeat)
    rows_alone(args.target, args.layer_too)
    print(machine())


if __name__ == "__main__":
    main()
