"""Benchmark: ``normstats network`` against a plain numpy script (and PyTorch's, when it is installed) pushing the
same draws forward and backward through the same layers, beside the matrix-product floor.

Not a test; run by hand (on a shared machine with --repeat, and read the ratios, which come from one run):

    env -u OPENBLAS_CORETYPE .venv/bin/python bench/bench_network.py --repeat 3

Two networks, both under ``--normprop fp`` (every ReLU and max pool shifted by its exact fp mean and divided by
its fp std; weights with unit-norm rows):

* ``mlp``: ``20*(linear relu)`` at width 512, N = 20,000 draws (2 x 20 products of 512 x 512 a draw);
* ``conv``: ``conv(16, k=3, padding=1) relu maxpool(k=2) conv(32, k=3, padding=1) relu`` on 3x16x16, N = 50,000.

Contenders, each a fresh process timed from outside: wall seconds and CPU seconds (user + system of the process
and its threads; on a shared machine the less noisy of the two), the median of --repeat rounds that run every
contender in turn (so a change of load falls on all of them); peak memory, the proportional set size of the
process tree, from one more run sampled every 100 ms, as in bench_engine.py:

* normstats, 2 worker threads (the default) and 1 worker: every layer's fp and bp mean and std with their
  standard errors, and the channel figures of the maps; and once more with ReLU's compiled loops turned off
  (``NORMSTATS_SUMMED_PASSES=0``: its passes, the NormProp shift and scale and the row summaries in numpy);
* the numpy script: the same layers written out by hand (im2col for the convolutions, a reshape for the 2x2
  pool), batches of ``--batch`` draws, the batch mean and variance of every layer's output and input gradient
  (``y.mean()``, ``y.var()``) combined over batches; numpy's default BLAS threads;
* the PyTorch script: the same in torch (float64, its default threads), skipped when torch is not installed;
* the floor: the same matrix products alone (no im2col, no activation, no statistics) on the same batches, as
  two threads of one BLAS thread each (what normstats runs) and as one thread of the default BLAS threads; the
  faster is the floor.

Ratios are to the floor and to the numpy script. Every command pays for starting Python and importing its
modules, and normstats also for drawing each worker's weights and the mean-field references: the start-up rows
time normstats at ``-n 2`` and the floor at N = 0, and a second table gives the ratios with each contender's
start-up subtracted (what a longer run tends to). Peak memory of normstats is also measured at 4N, to show it
flat in N.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import machine, peak_memory  # noqa: E402

NETWORKS = {
    "mlp": {"spec": "20*(linear relu)", "input": "512", "n": 20_000},
    "conv": {
        "spec": "conv(out_channels=16,k=3,padding=1) relu maxpool(k=2) conv(out_channels=32,k=3,padding=1) relu",
        "input": "3x16x16",
        "n": 50_000,
    },
}

# The layers of both scripts, written out as a user would (the NormProp constants are substituted: RELU_SHIFT ...).
COMMON = """
    import math, sys
    import numpy as np
    N, B = {n}, {batch}
    rng = np.random.default_rng(0)
    def unit_rows(w):
        return w / np.sqrt((w * w).sum(axis=1, keepdims=True))
    stats = {{}}
    def tally(name, v):  # batch mean and variance, combined over batches
        s = stats.setdefault(name, [0.0, 0.0, 0])
        s[0] += float(v.mean()) * len(v); s[1] += float(v.var()) * len(v); s[2] += len(v)
"""

MLP_NUMPY = """
    W = [unit_rows(rng.standard_normal((512, 512))) for _ in range(20)]
    for start in range(0, N, B):
        m = min(B, N - start)
        h = rng.standard_normal((m, 512))
        keep = []
        for i, w in enumerate(W):
            z = h @ w.T
            tally(f"lin{{i}} fp", z)
            h = (np.maximum(z, 0.0) - {relu_shift!r}) * {relu_scale!r}
            tally(f"relu{{i}} fp", h)
            keep.append(z)
        g = rng.standard_normal((m, 512))
        for i in reversed(range(20)):
            g = (keep[i] > 0) * g * {relu_scale!r}
            tally(f"relu{{i}} bp", g)
            g = g @ W[i]
            tally(f"lin{{i}} bp", g)
    print(len(stats), stats["lin0 bp"][1] / N if N else 0)
"""

MLP_TORCH = """
    import torch
    torch.manual_seed(0)
    W = [torch.nn.functional.normalize(torch.randn(512, 512, dtype=torch.float64), dim=1) for _ in range(20)]
    with torch.no_grad():
        for start in range(0, N, B):
            m = min(B, N - start)
            h = torch.randn(m, 512, dtype=torch.float64)
            keep = []
            for i, w in enumerate(W):
                z = h @ w.T
                tally(f"lin{{i}} fp", z)
                h = (torch.relu(z) - {relu_shift!r}) * {relu_scale!r}
                tally(f"relu{{i}} fp", h)
                keep.append(z)
            g = torch.randn(m, 512, dtype=torch.float64)
            for i in reversed(range(20)):
                g = (keep[i] > 0) * g * {relu_scale!r}
                tally(f"relu{{i}} bp", g)
                g = g @ W[i]
                tally(f"lin{{i}} bp", g)
    print(len(stats), stats["lin0 bp"][1] / N if N else 0)
"""

CONV_NUMPY = """
    from numpy.lib.stride_tricks import sliding_window_view
    W1 = unit_rows(rng.standard_normal((16, 27)))
    W2 = unit_rows(rng.standard_normal((32, 144)))
    def conv_fwd(x, w):  # x (m, C, H, W), 3x3, padding 1 -> (m, O, H, W)
        m, c, hh, ww = x.shape
        p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        cols = sliding_window_view(p, (3, 3), axis=(2, 3)).transpose(0, 2, 3, 1, 4, 5).reshape(m * hh * ww, -1)
        return (cols @ w.T).reshape(m, hh, ww, -1).transpose(0, 3, 1, 2)
    def conv_bwd(g, w, c):  # g (m, O, H, W) -> dx (m, C, H, W)
        m, o, hh, ww = g.shape
        dcols = (g.transpose(0, 2, 3, 1).reshape(-1, o) @ w).reshape(m, hh, ww, c, 3, 3)
        dp = np.zeros((m, c, hh + 2, ww + 2))
        for i in range(3):
            for j in range(3):
                dp[:, :, i:i + hh, j:j + ww] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
        return dp[:, :, 1:-1, 1:-1]
    for start in range(0, N, B):
        m = min(B, N - start)
        x = rng.standard_normal((m, 3, 16, 16))
        z1 = conv_fwd(x, W1); tally("conv1 fp", z1)
        a1 = (np.maximum(z1, 0.0) - {relu_shift!r}) * {relu_scale!r}; tally("relu1 fp", a1)
        win = a1.reshape(m, 16, 8, 2, 8, 2).transpose(0, 1, 2, 4, 3, 5).reshape(m, 16, 8, 8, 4)
        arg = win.argmax(axis=4)
        p1 = (np.take_along_axis(win, arg[..., None], 4)[..., 0] - {pool_shift!r}) * {pool_scale!r}
        tally("pool fp", p1)
        z2 = conv_fwd(p1, W2); tally("conv2 fp", z2)
        a2 = (np.maximum(z2, 0.0) - {relu_shift!r}) * {relu_scale!r}; tally("relu2 fp", a2)
        g = rng.standard_normal((m, 32, 8, 8))
        g = (z2 > 0) * g * {relu_scale!r}; tally("relu2 bp", g)
        g = conv_bwd(g, W2, 16); tally("conv2 bp", g)
        g = g * {pool_scale!r}
        dwin = np.zeros((m, 16, 8, 8, 4))
        np.put_along_axis(dwin, arg[..., None], g[..., None], 4)
        g = dwin.reshape(m, 16, 8, 8, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(m, 16, 16, 16); tally("pool bp", g)
        g = (z1 > 0) * g * {relu_scale!r}; tally("relu1 bp", g)
        g = conv_bwd(g, W1, 3); tally("conv1 bp", g)
    print(len(stats), stats["conv1 bp"][1] / N if N else 0)
"""

# The same matrix products alone, on the same batches: two threads of one BLAS thread each, or one thread.
FLOOR = """
    import sys, threading, time
    import numpy as np
    from threadpoolctl import threadpool_limits
    N, B, THREADS = {n}, {batch}, int(sys.argv[1])
    SHAPES = {shapes!r}  # (rows per draw, k, n) of each product, forward and backward
    rng = np.random.default_rng(0)
    mats = [(r, rng.standard_normal((k, n))) for r, k, n in SHAPES]
    def work(batches):
        bufs = {{}}  # one input and one output buffer per shape
        for r, w in mats:
            if (r, w.shape) not in bufs:
                bufs[r, w.shape] = (np.full((B * r, w.shape[0]), 0.01), np.empty((B * r, w.shape[1])))
        for m in batches:
            for r, w in mats:
                a, out = bufs[r, w.shape]
                np.matmul(a[: m * r], w, out=out[: m * r])
    sizes = [min(B, N - s) for s in range(0, N, B)]
    if THREADS == 1:
        work(sizes)
    else:
        with threadpool_limits(1):
            ts = [threading.Thread(target=work, args=(sizes[i::THREADS],)) for i in range(THREADS)]
            [t.start() for t in ts]; [t.join() for t in ts]
"""


FLOOR2 = "floor: the matrix products, 2 threads x 1 BLAS thread"
FLOOR1 = "floor: the matrix products, 1 thread x default BLAS threads"
SCRIPT = "numpy script, batches, default BLAS threads"
OURS2 = "normstats, 2 worker threads (the default)"
OURS1 = "normstats, 1 worker"
NUMPY_PASSES = "normstats, 2 worker threads, numpy passes (NORMSTATS_SUMMED_PASSES=0)"
START_FLOOR = "start-up of the floor (N = 0: imports, weights)"
START_SCRIPT = "start-up of the numpy script (N = 0: imports, weights)"
START_OURS = "start-up of normstats (the same command at -n 2)"


def products(name: str) -> list[tuple[int, int, int]]:
    """``(rows per draw, k, n)`` of every matrix product one draw of the network costs, forward and backward."""
    if name == "mlp":
        return [(1, 512, 512)] * 40
    # conv1: 256 positions, 27 -> 16 and back; conv2: 64 positions, 144 -> 32 and back
    return [(256, 27, 16), (256, 16, 27), (64, 144, 32), (64, 32, 144)]


def constants() -> dict[str, float]:
    """NormProp fp constants of ReLU and the 2x2 max pool, from normstats' exact references."""
    from normstats.exact.references import reference_moments
    from normstats.registry import make_layer

    out = {}
    for key, layer in (("relu", make_layer("relu")), ("pool", make_layer("maxpool", k=2))):
        refs = reference_moments(layer)
        out[f"{key}_shift"] = refs["fp_mean"].value
        out[f"{key}_scale"] = 1.0 / refs["fp_std"].value
    return out


def timed(cmd: list[str]) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of a command: wall from outside, CPU the user + system time of the process and its
    threads (what the kernel accounts to a finished child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.decode()}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def have_torch(python: str) -> bool:
    import subprocess

    return subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--networks", nargs="+", choices=sorted(NETWORKS), default=["mlp", "conv"])
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender; medians are reported")
    ap.add_argument("--batch", type=int, default=1000, help="draws per batch of the scripts and the floor")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every network's N by this")
    args = ap.parse_args()
    python = sys.executable
    consts = constants()
    torch = have_torch(python)
    print(f"Machine: {machine()}\n")
    print(f"Command: {' '.join(['bench/bench_network.py', *sys.argv[1:]])}\n")
    print("| network | N | contender | wall s | CPU s | peak MB | wall / floor | CPU / floor | wall / numpy script |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    net_rows = []
    for name in args.networks:
        cfg = NETWORKS[name]
        n = int(cfg["n"] * args.scale)
        common = textwrap.dedent(COMMON.format(n=n, batch=args.batch))
        body = {"mlp": MLP_NUMPY, "conv": CONV_NUMPY}[name]
        script = common + textwrap.dedent(body.format(**consts))
        floor = textwrap.dedent(FLOOR.format(n=n, batch=args.batch, shapes=products(name)))
        floor_start = textwrap.dedent(FLOOR.format(n=0, batch=args.batch, shapes=products(name)))
        ours = [python, "-m", "normstats.cli", "network", cfg["spec"], "--input", cfg["input"], "--normprop", "fp",
                "-q", "--format", "json"]
        contenders: dict[str, list[str]] = {
            FLOOR2: [python, "-c", floor, "2"],
            FLOOR1: [python, "-c", floor, "1"],
            SCRIPT: [python, "-c", script],
        }
        if name == "mlp" and torch:
            contenders["PyTorch script, batches, default threads"] = [
                python, "-c", common + textwrap.dedent(MLP_TORCH.format(**consts))
            ]
        contenders[OURS2] = [*ours, "-n", str(n), "-j", "2"]
        contenders[OURS1] = [*ours, "-n", str(n), "-j", "1"]
        contenders[NUMPY_PASSES] = ["env", "NORMSTATS_SUMMED_PASSES=0", *ours, "-n", str(n), "-j", "2"]
        contenders[START_FLOOR] = [python, "-c", floor_start, "2"]
        contenders[START_SCRIPT] = [python, "-c", common.replace(f"N, B = {n},", "N, B = 0,")
                                    + textwrap.dedent(body.format(**consts))]
        contenders[START_OURS] = [*ours, "-n", "2", "-j", "2"]
        runs: dict[str, list[tuple[float, float]]] = {label: [] for label in contenders}
        for _ in range(args.repeat):  # rounds: every contender in turn
            for label, cmd in contenders.items():
                runs[label].append(timed(cmd))
        wall = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
        cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
        floor_key = min((FLOOR2, FLOOR1), key=lambda k: wall[k])
        floor_cpu_key = min((FLOOR2, FLOOR1), key=lambda k: cpu[k])
        for label, cmd in contenders.items():
            peak = peak_memory(cmd)
            draws = {START_OURS: 2, START_FLOOR: 0, START_SCRIPT: 0}.get(label, n)
            print(f"| {name} | {draws:,} "
                  f"| {label} | {wall[label]:.2f} | {cpu[label]:.2f} | {peak / 2**20:.0f} | "
                  f"{wall[label] / wall[floor_key]:.2f} | {cpu[label] / cpu[floor_cpu_key]:.2f} | "
                  f"{wall[label] / wall[SCRIPT]:.2f} |", flush=True)
        if not torch and name == "mlp":
            print(f"| {name} | {n:,} | PyTorch script | not installed | | | | | |")
        big = [*ours, "-n", str(4 * n), "-j", "2"]
        print(f"| {name} | {4 * n:,} | {OURS2} (memory only: flat in N) | | | "
              f"{peak_memory(big) / 2**20:.0f} | | | |", flush=True)
        net_rows.append((name, n, wall[OURS2] - wall[START_OURS], wall[FLOOR2] - wall[START_FLOOR],
                         wall[SCRIPT] - wall[START_SCRIPT], cpu[OURS2] - cpu[START_OURS],
                         cpu[FLOOR2] - cpu[START_FLOOR]))
    print("\nfloor: the faster of the two floor layouts (by wall time for the wall ratios, by CPU time for the CPU "
          "ratios); peak MB: the process tree's proportional set size; every time the median of "
          f"{args.repeat} round(s).")
    print("\nWith each command's start-up subtracted (normstats: its run at -n 2; the floor and the numpy script: "
          "their run at N = 0, imports, weights and buffers), 2 threads each:\n")
    print("| network | N | normstats wall s | floor wall s | wall / floor | wall / numpy script | normstats CPU s | "
          "floor CPU s | CPU / floor |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, ours_w, floor_w, script_w, ours_c, floor_c in net_rows:
        print(f"| {name} | {n:,} | {ours_w:.2f} | {floor_w:.2f} | {ours_w / floor_w:.2f} | {ours_w / script_w:.2f} | "
              f"{ours_c:.2f} | {floor_c:.2f} | {ours_c / floor_c:.2f} |")


if __name__ == "__main__":
    main()
