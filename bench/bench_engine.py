"""Benchmark: normstats against a plain numpy script on the same N, and the random-number floor.

Not a test; run by hand, on a quiet machine (on shared machines repeat with --repeat and read the medians):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/bench_engine.py

Every contender runs in its own subprocess; its wall time is measured from outside (the median of --repeat
runs), and its peak memory, in one more run, is the largest total proportional set size (PSS) of the process
and all its children (workers included), sampled every 100 ms. The two are kept apart because reading /proc
costs CPU: sampling during a timed run would slow a contender that uses every core and not one that uses one.
The numpy script draws all N samples at once and calls mean/std, as the published figures were made: once with
the legacy ``np.random.randn`` (MT19937, what numpy offered then) and once with today's ``default_rng``.
A careful user's chunked loop (default_rng, reused buffers, numpy alone, the same fp and bp work minus the error
bars: dy drawn, the backward pass run) is the first contender, and speed-ups are against it. Before them: the
generator floor, the hot loop of each against the loop in one process (one core), and the start-up of a
process. The last tables compare the time to a target se (every statistic at or below it; --targets, 1e-4 and
1e-5 by default): the loop at the N its worst statistic needs, normstats with --target-se and its defaults
(qmc on the layer's exact shortcut); as processes, start-up included, and in one process with the imports done.
A loop that would run longer than --max-loop-seconds is timed on a hundredth of its draws and extrapolated
(marked). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

from normstats.engine.sources import BIT_GENERATOR

BASELINE = {
    "sigmoid": """
        import numpy as np
        from scipy.special import expit
        rng = np.random.default_rng(0)
        x = rng.standard_normal(N)
        dy = rng.standard_normal(N)
        y = expit(x)
        print(y.mean(), y.std())
        dx = y * (1 - y) * dy
        print(dx.mean(), dx.std())
    """,
    "maxpool": """
        import numpy as np
        rng = np.random.default_rng(0)
        x = rng.standard_normal((N, 9))
        dy = rng.standard_normal(N)
        arg = x.argmax(axis=1)
        y = x[np.arange(N), arg]
        print(y.mean(), y.std())
        dx = np.zeros_like(x)
        dx[np.arange(N), arg] = dy
        print(dx.mean(), dx.std())
    """,
}
#: A careful user's loop: chunks of 2^16 values into reused buffers, the same work as normstats' default run
#: minus the error bars (fp and bp, dy drawn, the backward pass run), numpy alone (no scipy import), operations
#: in place and the sums by einsum (a BLAS dot would start OpenBLAS threads on every call: 5x slower on a busy
#: machine): the values, their squares, pooled.
CHUNKED = {
    "sigmoid": """
        import numpy as np
        rng = np.random.default_rng(0)
        C = 1 << 15  # draws a chunk: x and dy, 2^16 values
        x, dy, y, dx = (np.empty(C) for _ in range(4))
        s = np.zeros(4)
        for start in range(0, N, C):
            m = min(C, N - start)
            xm, dym, ym, dxm = x[:m], dy[:m], y[:m], dx[:m]
            rng.standard_normal(out=xm); rng.standard_normal(out=dym)
            np.negative(xm, out=ym); np.exp(ym, out=ym); ym += 1.0; np.divide(1.0, ym, out=ym)
            np.subtract(1.0, ym, out=dxm); dxm *= ym; dxm *= dym
            s += (ym.sum(), np.einsum("i,i->", ym, ym), dxm.sum(), np.einsum("i,i->", dxm, dxm))
        print(s[0] / N, np.sqrt(s[1] / N - (s[0] / N) ** 2), s[2] / N, np.sqrt(s[3] / N - (s[2] / N) ** 2))
    """,
    "maxpool": """
        import numpy as np
        rng = np.random.default_rng(0)
        C = 1 << 13  # windows a chunk: 2^16 values of x
        x, dx = np.empty((C, 9)), np.zeros((C, 9))
        dy = np.empty(C)
        rows = np.arange(C)
        s = np.zeros(4)
        for start in range(0, N, C):
            m = min(C, N - start)
            xm, dxm, dym = x[:m], dx[:m], dy[:m]
            rng.standard_normal(out=xm); rng.standard_normal(out=dym)
            arg = xm.argmax(axis=1)
            y = xm[rows[:m], arg]
            dxm.fill(0.0)
            dxm[rows[:m], arg] = dym
            flat = dxm.ravel()
            s += (y.sum(), np.einsum("i,i->", y, y), flat.sum(), np.einsum("i,i->", flat, flat))
        n = 9 * N
        print(s[0] / N, np.sqrt(s[1] / N - (s[0] / N) ** 2), s[2] / n, np.sqrt(s[3] / n - (s[2] / n) ** 2))
    """,
}
NORMSTATS = {"sigmoid": ["--layer", "sigmoid"], "maxpool": ["--layer", "maxpool", "--k", "3"]}


def tree_memory(pid: int) -> int:
    """Proportional set size (PSS: shared pages split between the processes that share them) of ``pid`` and
    all its descendants, in bytes (Linux /proc). Summing RSS instead would count numpy and scipy once per
    worker."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def wall_time(cmd: list[str]) -> float:
    """Wall seconds of a command, with nothing else running here (no memory sampling: reading /proc costs
    CPU, which a contender using every core would pay for and a single-threaded one would not)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.decode()}")
    return elapsed


def peak_memory(cmd: list[str]) -> int:
    """Peak PSS of a command's process tree in bytes, sampled every 100 ms in a run of its own."""
    peak = 0
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_memory(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err.decode()}")
    return peak


def generator_floor(bit_generator: type, seconds: float = 1.0) -> float:
    """Standard normals per second per core into a preallocated 256 kB buffer."""
    gen = np.random.Generator(bit_generator(0))
    buf = np.empty(1 << 15)
    rates = []
    for _ in range(5):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            for _ in range(20):
                gen.standard_normal(out=buf)
            n += 20 * buf.size
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def hot_loop_rate(layer_name: str, estimator: str, **params: object) -> tuple[float, float]:
    """Normals and draws per second through the engine's block loop (one core, in this process)."""
    from threadpoolctl import threadpool_limits

    from normstats.engine import blocks as engine
    from normstats.registry import make_layer

    layer = make_layer(layer_name, **params)
    job = engine.Job(layer, 0, "mc", engine.default_chunk_draws(layer), estimator)
    draws = engine.block_draws(layer)
    rates = []
    with threadpool_limits(1):
        engine.run_block(job, engine.Block(0, draws))
        for i in range(7):
            start = time.perf_counter()
            engine.run_block(job, engine.Block(i, draws))
            rates.append(draws / (time.perf_counter() - start))
    rate = statistics.median(rates)
    return rate * engine.random_width(layer, estimator), rate


def loop_rate(layer: str, draws: int) -> float:
    """Draws per second of the chunked loop (:data:`CHUNKED`) run here, numpy imported (one core): the median
    of 5 runs of ``draws``."""
    from threadpoolctl import threadpool_limits

    code = compile(textwrap.dedent(CHUNKED[layer]), "<loop>", "exec")
    rates = []
    with threadpool_limits(1), open(os.devnull, "w") as sink:
        for _ in range(5):
            start = time.perf_counter()
            with contextlib.redirect_stdout(sink):
                exec(code, {"N": draws})
            rates.append(draws / (time.perf_counter() - start))
    return statistics.median(rates)


def machine() -> str:
    from threadpoolctl import threadpool_info

    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = ", ".join(f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})" for i in threadpool_info())
    coretype = os.environ.get("OPENBLAS_CORETYPE", "unset")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())  # a shared machine's noise, for the record
    return (
        f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; Python "
        f"{platform.python_version()}, numpy {np.__version__}; BLAS: {blas or 'none loaded'}; "
        f"OPENBLAS_CORETYPE={coretype}; load average before the run {load}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sigmoid-n", type=float, default=1e8)
    ap.add_argument("--maxpool-n", type=float, default=2e7, help="3x3 max pool draws (numpy needs ~80 B x 9 each)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender; medians are reported")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--layers", nargs="+", choices=sorted(BASELINE), default=sorted(BASELINE)[::-1],
                    help="which end-to-end comparisons to run")
    ap.add_argument("--targets", nargs="+", type=float, default=[1e-4, 1e-5], help="target se of the last tables")
    ap.add_argument("--max-loop-seconds", type=float, default=90.0,
                    help="a loop at equal se expected to run longer is extrapolated from its measured rate")
    args = ap.parse_args()

    floors = {name: generator_floor(bg) for name, bg in (("PCG64", np.random.PCG64), ("SFC64", np.random.SFC64))}
    floor = floors[BIT_GENERATOR.__name__]
    print(f"Machine: {machine()}\n")
    print("| generator floor (normals/s/core) | PCG64 | SFC64 |\n|---|---:|---:|")
    print(f"| standard_normal into a 256 kB buffer | {floors['PCG64'] / 1e6:.0f} M | {floors['SFC64'] / 1e6:.0f} M |\n")
    print(f"Hot loop, fp+bp, one core, in this process ({BIT_GENERATOR.__name__}; normals drawn per second and their "
          "share of the floor; against the chunked loop run here, numpy imported, with PCG64 as default_rng "
          "gives):\n")
    print("| layer | contender | normals per draw | normals/s | of the floor | draws/s | / loop |")
    print("|---|---|---:|---:|---:|---:|---:|")
    loops = {"sigmoid": loop_rate("sigmoid", 4_000_000), "maxpool": loop_rate("maxpool", 500_000)}
    for name, params in (("sigmoid", {}), ("relu", {}), ("maxpool", {"k": 3})):
        label = "maxpool 3x3" if name == "maxpool" else name
        if name in loops:
            normals = 2 if name == "sigmoid" else 10
            print(f"| {label} | numpy chunked loop | {normals} | {loops[name] * normals / 1e6:.0f} M | | "
                  f"{loops[name] / 1e6:.1f} M | 1.0x |")
        for estimator in ("sampled", "conditional"):
            normals, draws = hot_loop_rate(name, estimator, **params)
            ratio = f"{draws / loops[name]:.1f}x" if name in loops else ""
            print(f"| {label} | normstats, --estimator {estimator} | {normals / draws:.0f} | {normals / 1e6:.0f} M | "
                  f"{normals / floor:.0%} | {draws / 1e6:.1f} M | {ratio} |")
    print()

    python = sys.executable
    print("Start-up (wall s of a process that does next to nothing):\n")
    print("| process | wall s |\n|---|---:|")
    starts = {
        "python -c 'import numpy'": [python, "-c", "import numpy"],
        "normstats simulate --layer sigmoid -n 2 (mc)": [python, "-m", "normstats.cli", "simulate", "--layer",
                                                          "sigmoid", "-n", "2", "-q", "-j", "1"],
        "normstats simulate --layer sigmoid -n 32 --method qmc": [python, "-m", "normstats.cli", "simulate",
                                                                  "--layer", "sigmoid", "-n", "32", "--method",
                                                                  "qmc", "-q", "-j", "1"],
    }
    for label, cmd in starts.items():
        print(f"| {label} | {statistics.median(wall_time(cmd) for _ in range(max(3, args.repeat))):.2f} |", flush=True)
    print()

    print("| layer | N | contender | wall s | peak MB | draws/s | speed-up |")
    print("|---|---:|---|---:|---:|---:|---:|")
    sizes = {"sigmoid": int(args.sigmoid_n), "maxpool": int(args.maxpool_n)}
    for layer in args.layers:
        n = sizes[layer]
        script = textwrap.dedent(BASELINE[layer])
        legacy = script.replace("rng = np.random.default_rng(0)", "np.random.seed(0); rng = np.random")
        legacy = legacy.replace("rng.standard_normal((N, 9))", "rng.randn(N, 9)").replace("rng.standard_normal(N)", "rng.randn(N)")
        ours = [python, "-m", "normstats.cli", "simulate", *NORMSTATS[layer], "-n", str(n), "-q", "--format", "json"]
        j = str(args.workers)
        chunked = [python, "-c", f"N = {n}\n" + textwrap.dedent(CHUNKED[layer])]
        contenders = {
            "numpy chunked loop (default_rng, 2^16 values a chunk), fp and bp": chunked,
            "numpy np.random.randn (legacy), all at once": [python, "-c", f"N = {n}\n" + legacy],
            "numpy default_rng, all at once": [python, "-c", f"N = {n}\n" + script],
            "normstats, 1 worker": [*ours, "-j", "1"],
            f"normstats, {j} worker threads (the default)": [*ours, "-j", j],
            f"normstats, {j} worker processes": [*ours, "-j", j, "--processes"],
            "normstats, 1 worker, --estimator sampled": [*ours, "-j", "1", "--estimator", "sampled"],
            f"normstats, {j} worker threads, --estimator sampled": [*ours, "-j", j, "--estimator", "sampled"],
        }
        if layer == "maxpool":  # the exact shortcut: one uniform per window instead of 9 normals and an argmax
            contenders[f"normstats, {j} worker threads, --sampler order-statistics"] = [
                *ours, "-j", j, "--sampler", "order-statistics"
            ]
        base = None
        for label, cmd in contenders.items():
            wall = statistics.median(wall_time(cmd) for _ in range(args.repeat))
            peak = peak_memory(cmd)
            base = base or wall
            print(f"| {layer} | {n:.0e} | {label} | {wall:.2f} | {peak / 2**20:.0f} | {n / wall / 1e6:.1f} M | "
                  f"{base / wall:.1f}x |", flush=True)
    print("\n(speed-up: against the chunked loop, the first line of each layer)\n")
    for target in args.targets:
        equal_se(python, args, target)


#: What normstats runs at a target se besides its defaults (``--method auto``: qmc on the layer's exact
#: shortcut where it has one), at the first target only: plain mc, and for max pooling qmc on its own passes.
TARGET_RUNS = {
    "sigmoid": [[], ["--method", "mc"]],
    "maxpool": [[], ["--method", "mc"], ["--method", "qmc", "--sampler", "layer"]],
}
#: normstats in one process, imports done: a first run at the target loads what the run needs (the Sobol core,
#: scipy.special), then the timed one.
IN_PROCESS = """
import json, sys, time
import normstats
layer, params, target, workers = json.loads(sys.argv[1])
normstats.simulate(layer, target_se=target, workers=workers, seed=1, **params)
start = time.perf_counter()
row = normstats.simulate(layer, target_se=target, workers=workers, **params)
print(json.dumps([time.perf_counter() - start, row.samples]))
"""
#: The chunked loop in one process, numpy imported, timed without its start.
LOOP_IN_PROCESS = """
import json, sys, time
import numpy as np
N = int(sys.argv[1])
code = sys.stdin.read()
_t0 = time.perf_counter()
exec(code)
print(json.dumps(time.perf_counter() - _t0), file=sys.stderr)
"""


def _pilot_need(python: str, layer: str, target: float) -> int:
    """Draws the chunked loop needs for every se <= ``target``: from the standard errors normstats reports for
    the loop's estimator (plain mc, dy drawn) at 10^6 draws (se ~ 1/sqrt(N))."""
    pilot = 10**6
    out = subprocess.run([python, "-m", "normstats.cli", "simulate", *NORMSTATS[layer], "-n", str(pilot), "-q",
                          "--format", "json", "--estimator", "sampled", "--method", "mc"], capture_output=True,
                         check=True)
    row = json.loads(out.stdout)["rows"][0]
    worst = max(row[s]["se"] for s in ("fp_mean", "fp_std", "bp_mean", "bp_std"))
    return int(pilot * (worst / target) ** 2) + 1


def _loop_in_process(python: str, layer: str, n: int) -> float:
    proc = subprocess.run([python, "-c", LOOP_IN_PROCESS, str(n)], input=textwrap.dedent(CHUNKED[layer]),
                          capture_output=True, text=True, check=True)
    return float(proc.stderr.strip().splitlines()[-1])


def equal_se(python: str, args: argparse.Namespace, target: float) -> None:
    """Time to every se <= ``target``: the chunked loop at the N its statistics need (:func:`_pilot_need`),
    normstats with ``--target-se``, which stops on its own se; as processes (start-up included) and in one
    process with the imports done. A loop expected to take longer than ``--max-loop-seconds`` is not run: its
    time is extrapolated from its rate at a tenth of the draws (marked)."""
    j = str(args.workers)
    first = target == args.targets[0]
    print(f"Time to every se <= {target:g} (the chunked loop at the N its worst statistic needs; normstats with "
          f"--target-se {target:g}, -j {j}):\n")
    print("| layer | contender | N | wall s, process | speed-up | wall s, in-process (imports done) | speed-up |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for layer in args.layers:
        need = _pilot_need(python, layer, target)
        trial = max(10**6, need // 100)
        trial_wall = _loop_in_process(python, layer, trial)
        mark = ""
        if trial_wall * need / trial > args.max_loop_seconds:
            start_up = statistics.median(wall_time([python, "-c", "import numpy"]) for _ in range(3))
            inside = trial_wall * need / trial
            base, base_in, mark = start_up + inside, inside, " (extrapolated)"
        else:
            base = statistics.median(
                wall_time([python, "-c", f"N = {need}\n" + textwrap.dedent(CHUNKED[layer])]) for _ in range(args.repeat)
            )
            base_in = _loop_in_process(python, layer, need)
        print(f"| {layer} | numpy chunked loop{mark} | {need:,} | {base:.2f} | 1.0x | {base_in:.2f} | 1.0x |", flush=True)
        for extra in TARGET_RUNS[layer] if first else TARGET_RUNS[layer][:1]:
            cmd = [python, "-m", "normstats.cli", "simulate", *NORMSTATS[layer], *extra, "--target-se", str(target),
                   "-q", "--format", "json", "-j", j]
            wall = statistics.median(wall_time(cmd) for _ in range(args.repeat))
            row = json.loads(subprocess.run(cmd, capture_output=True, check=True).stdout)["rows"][0]
            inside = " | "
            if not extra:  # the defaults, in-process too
                params = {"k": 3} if layer == "maxpool" else {}
                spec = json.dumps([layer, params, target, args.workers])
                out = subprocess.run([python, "-c", IN_PROCESS, spec], capture_output=True, check=True)
                seconds, _ = json.loads(out.stdout)
                inside = f"{seconds:.3f} | {base_in / seconds:.0f}x"
            label = " ".join(extra) or "(defaults)"
            print(f"| {layer} | normstats {label}: {row['method']}, sampler {row['sampler']} | {row['samples']:,} | "
                  f"{wall:.2f} | {base / wall:.1f}x | {inside} |", flush=True)
    print()


if __name__ == "__main__":
    main()
