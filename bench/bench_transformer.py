"""Benchmark: ``normstats network`` on a 12-block pre-LN transformer (D = 256, T = 64, 4 heads) against PyTorch
running the same model (the same weights, float64) on as many draws with as many threads, beside the floor of its
matrix products.

Not a test; run by hand (on a shared machine with --repeat, and read the ratios, which come from one run):

    env -u OPENBLAS_CORETYPE PYTHONPATH=src .venv/bin/python bench/bench_transformer.py --repeat 3 --threads 1 2

The model is ``12*(res(layernorm attention(heads=4)) res(layernorm linear gelu linear))`` on ``--input 64x256``:
layer norm without gain or bias (eps 1e-5), four bias-free D x D projections per attention, softmax over the
keys, a D x D MLP with exact (erf) GELU. A draw is one sequence x ~ N(0, I) pushed forward and one dy ~ N(0, I)
at the output pushed back to the input (the input gradient: no weight gradients, which normstats never forms).

Contenders, each in a fresh process with glibc's freed memory kept for reuse (``keep_freed_memory()``, as the
command line sets it for itself; here for every contender) that runs once untimed (imports, lazy loads, the BLAS
pool) and then times its work with ``time.perf_counter`` (wall) and ``time.process_time`` (CPU: every thread of the process; on a
shared machine the less noisy of the two); the median of --repeat rounds that run every contender in turn (so
a change of load falls on all of them):

* normstats: ``normstats.network(spec, input="64x256", samples=N, inits=1, workers=threads)``, all of it:
  weights, mean-field references, draws, both passes, and every layer's fp and bp mean and std with their
  standard errors, the branch variance of each residual block, the token cosine of every layer's output and
  the attention entropy of every attention layer (the per-draw reductions its tallies keep);
* torch: the same layers written as a user would (``F.layer_norm``, ``F.gelu``, ``softmax``, products),
  float64, the weights normstats draws (``item.layer.passes(rng)`` from the run's weight generator: the same
  numbers), ``torch.set_num_threads(threads)``, batches of --batch draws (default: normstats' chunk), x and dy
  drawn with ``torch.randn``; forward, then ``torch.autograd.grad`` of the output against the input of every
  layer and block (each stage reads its input through its own view, so its gradient is the stage's own,
  as normstats' bp record), and the same reductions: per draw, the mean and mean square of every layer's
  output and input gradient and of each block's branch, summed into the five sums a mean, a std and their
  se need; the token cosine of every output; the attention entropy (``xlogy``) of every attention;
* floor: the matrix products of both passes alone, with numpy on float64 arrays of the same shapes, on batches of
  --batch draws: per block forward ``x W_qkv^T`` (T x D x 3D), per head ``Q K^T`` (T x d x T) and ``P V``
  (T x T x d), ``O W_o^T`` and the MLP's two (T x D x D); backward ``dY W_o``, per head ``P^T dO``, ``dO V^T``,
  ``dS K``, ``dS^T Q`` and ``dQKV W_qkv`` (T x 3D x D), the MLP's two; as ``threads`` threads of one BLAS thread
  each (what normstats runs) and as one thread of ``threads`` BLAS threads; the faster of the two is the floor.

Before timing, torch's model is checked against normstats' passes on the same two draws (x, dy): the largest
relative difference of the output and of the input gradient, printed (rounding, about 1e-13).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

SPEC = "12*(res(layernorm attention(heads=4)) res(layernorm linear gelu linear))"
INPUT = "64x256"
SEED = 0
HERE = Path(__file__).resolve()


# -- the model, as normstats builds it --------------------------------------------------------------------------
def network() -> Any:
    from normstats.networks.build import build_network
    from normstats.networks.shapes import parse_input

    return build_network(SPEC, parse_input(INPUT))


def normstats_weights(net: Any) -> dict[str, Any]:
    """Every stage's passes by label, built from the run's weight generator in walk order: the weights
    ``normstats.network(..., seed=SEED, inits=1)`` draws (as its engine builds them)."""
    from normstats.networks.build import Stage
    from normstats.networks.propagate import weight_rng

    rng = weight_rng(SEED, 0)
    return {item.label: item.layer.passes(rng) for item in net.walk() if isinstance(item, Stage)}


def products(net: Any) -> list[tuple[int, int, int, int]]:
    """``(matrices per draw, m, k, n)`` of every matrix product a draw costs, forward and backward: ``count``
    products of ``m x k`` by ``k x n`` (one for a projection of the T tokens, H for a per-head product)."""
    from normstats.networks.build import Stage

    out = []
    for item in net.walk():
        if not isinstance(item, Stage):
            continue
        t, d = item.in_shape
        if item.name == "linear":
            out += [(1, t, d, item.out_shape[1]), (1, t, item.out_shape[1], d)]
        elif item.name == "attention":
            h = item.layer.values["heads"]
            dh = d // h
            out += [(1, t, d, 3 * d), (h, t, dh, t), (h, t, t, dh), (1, t, d, d)]  # forward
            out += [(1, t, d, d), (h, t, t, dh), (h, t, dh, t), (h, t, t, dh), (h, t, t, dh), (1, t, 3 * d, d)]
    return out


# -- contenders (each runs in its own process: ``--child KIND``) --------------------------------------------------
def run_normstats(draws: int, threads: int, batch: int) -> Callable[[], None]:
    import normstats

    def work(n: int) -> None:
        normstats.network(SPEC, input=INPUT, samples=n, inits=1, workers=threads, seed=SEED)

    work(2)
    return lambda: work(draws)


class TorchModel:
    """The network in torch, float64, on normstats' weights; :meth:`run` pushes a batch forward and back and
    tallies the reductions (module docstring)."""

    def __init__(self, net: Any) -> None:
        import torch

        from normstats.networks.build import Block

        self.torch = torch
        self.net = net
        self.Block = Block
        passes = normstats_weights(net)
        self.weights: dict[str, tuple[Any, ...]] = {}
        for item in net.walk():
            if isinstance(item, Block):
                if item.alpha != 1.0 or item.beta != 1.0:
                    raise SystemExit("the torch model has plain residual sums only")
                continue
            p = passes[item.label]
            if item.name == "attention":
                self.weights[item.label] = (torch.from_numpy(p.w_qkv.T.copy()), torch.from_numpy(p.w_o.T.copy()),
                                            p.heads, p.scale)
            elif item.name == "linear":
                self.weights[item.label] = (torch.from_numpy(p.weight.T.copy()),)
            elif item.name == "layernorm":
                self.weights[item.label] = (item.layer.values["eps"],)
            elif item.name != "gelu" or item.layer.values["approximate"] != "none":
                raise SystemExit(f"the torch model has no layer {item.name}")
        self.tokens, self.features = net.input
        self.sums: dict[str, Any] = {}

    def _stage(self, item: Any, h: Any) -> tuple[Any, Any]:
        torch, f = self.torch, self.torch.nn.functional
        w = self.weights.get(item.label)
        p = None
        if item.name == "layernorm":
            y = f.layer_norm(h, (h.shape[-1],), eps=w[0])
        elif item.name == "linear":
            y = h @ w[0]
        elif item.name == "gelu":
            y = f.gelu(h)
        else:
            w_qkv, w_o, heads, scale = w
            b, t, d = h.shape
            qkv = (h @ w_qkv).reshape(b, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            p = torch.softmax((q @ k.transpose(-1, -2)) * scale, dim=-1)
            y = (p @ v).transpose(1, 2).reshape(b, t, d) @ w_o
        return y, p

    def _forward(self, items: Any, h: Any, ins: list[tuple[str, Any]], outs: list[tuple[str, Any]],
                 probs: list[tuple[str, Any]]) -> Any:
        for item in items:
            a = h.view_as(h)  # its own node: its gradient is this item's alone
            ins.append((item.label, a))
            if isinstance(item, self.Block):
                branch = self._forward(item.branch, a, ins, outs, probs)
                outs.append((item.label + "|branch", branch))
                y = a + branch
            else:
                y, p = self._stage(item, a)
                if p is not None:
                    probs.append((item.label, p))
            outs.append((item.label + "|fp", y))
            h = y
        return h

    def _tally(self, key: str, values: Any) -> None:
        """Sum of ``a``, ``q``, ``a^2``, ``q^2``, ``a q`` over draws, ``a`` and ``q`` a draw's mean and mean
        square (for a figure of one value a draw, ``a`` is it)."""
        torch = self.torch
        v = values.reshape(len(values), -1)
        a = v.mean(dim=1)
        q = (v * v).mean(dim=1)
        s = torch.stack([a.sum(), q.sum(), (a * a).sum(), (q * q).sum(), (a * q).sum()])
        if key in self.sums:
            self.sums[key] += s
        else:
            self.sums[key] = s

    def _cosine(self, y: Any) -> Any:
        torch = self.torch
        norms = torch.linalg.vector_norm(y, dim=-1, keepdim=True)
        u = torch.where(norms > 0, y / norms, torch.zeros_like(y))
        total = u.sum(dim=1)
        t = y.shape[1]
        return ((total * total).sum(dim=1) - (norms[..., 0] > 0).sum(dim=1)) / (t * (t - 1))

    def run(self, x: Any, dy: Any, tally: bool = True) -> tuple[Any, Any]:
        torch = self.torch
        ins: list[tuple[str, Any]] = []
        outs: list[tuple[str, Any]] = []
        probs: list[tuple[str, Any]] = []
        x = x.requires_grad_(True)
        y = self._forward(self.net.items, x, ins, outs, probs)
        grads = torch.autograd.grad(y, [x] + [a for _, a in ins], dy)
        if tally:
            with torch.no_grad():
                for key, v in outs:
                    self._tally(key, v)
                    if key.endswith("|fp"):
                        self._tally(key[:-3] + "|token_cosine", self._cosine(v))
                t = self.tokens
                for label, p in probs:
                    ent = -torch.special.xlogy(p, p).sum(dim=(1, 2, 3)) / (p.shape[1] * t * torch.log(
                        torch.tensor(float(t), dtype=torch.float64)))
                    self._tally(label + "|attention_entropy", ent)
                for (label, _), g in zip(ins, grads[1:]):
                    self._tally(label + "|bp", g)
        return y.detach(), grads[0]


def run_torch(draws: int, threads: int, batch: int) -> Callable[[], None]:
    import torch

    torch.set_num_threads(threads)
    model = TorchModel(network())
    t, d = model.tokens, model.features
    gen = torch.Generator().manual_seed(SEED)

    def work(n: int) -> None:
        with torch.enable_grad():
            for start in range(0, n, batch):
                m = min(batch, n - start)
                x = torch.randn((m, t, d), generator=gen, dtype=torch.float64)
                dy = torch.randn((m, t, d), generator=gen, dtype=torch.float64)
                model.run(x, dy)

    work(2)
    model.sums.clear()
    return lambda: work(draws)


def run_floor(draws: int, threads: int, batch: int, layout: str) -> Callable[[], None]:
    import threading

    import numpy as np
    from threadpoolctl import threadpool_limits

    shapes = products(network())
    sizes = [min(batch, draws - s) for s in range(0, draws, batch)]

    def buffers() -> list[tuple[int, Any, Any, Any]]:
        rng = np.random.default_rng(SEED)
        out = []
        for count, m, k, n in shapes:  # per product: left (batch * count, m, k), right, output
            if count == 1:
                out.append((count, np.full((batch * m, k), 0.01), rng.standard_normal((k, n)),
                            np.empty((batch * m, n))))
            else:
                out.append((count, np.full((batch * count, m, k), 0.01), np.full((batch * count, k, n), 0.01),
                            np.empty((batch * count, m, n))))
        return out

    def work(chunks: list[int]) -> None:
        bufs = buffers()
        for b in chunks:
            for count, left, right, out in bufs:
                if count == 1:
                    rows = b * (len(left) // batch)
                    np.matmul(left[:rows], right, out=out[:rows])
                else:
                    np.matmul(left[: b * count], right[: b * count], out=out[: b * count])

    def timed_work(chunks: list[int]) -> None:
        if layout == "blas":  # one thread, `threads` BLAS threads
            with threadpool_limits(threads):
                work(chunks)
            return
        with threadpool_limits(1):  # `threads` threads of one BLAS thread each, as normstats runs
            ts = [threading.Thread(target=work, args=(chunks[i::threads],)) for i in range(threads)]
            for th in ts:
                th.start()
            for th in ts:
                th.join()

    timed_work([min(batch, draws)] * threads)
    return lambda: timed_work(sizes)


def child(kind: str, draws: int, threads: int, batch: int) -> None:
    from normstats.engine.allocator import keep_freed_memory

    keep_freed_memory()  # as the command line does, in every contender's process (torch's allocator is malloc too)
    if kind == "normstats":
        work = run_normstats(draws, threads, batch)
    elif kind == "torch":
        work = run_torch(draws, threads, batch)
    else:
        work = run_floor(draws, threads, batch, kind.split(":")[1])
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu]))


# -- the parent -------------------------------------------------------------------------------------------------
def check() -> tuple[float, float]:
    """The largest relative difference between torch's and normstats' output and input gradient on the same
    two draws."""
    import numpy as np
    import torch

    from normstats.networks.propagate import NetworkSampler

    net = network()
    model = TorchModel(net)
    sampler = NetworkSampler(net, passes=normstats_weights(net))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 64 * 256))
    dy = rng.standard_normal(x.shape)
    y_ns, dx_ns = sampler.ends(x, dy, np.empty((2, 0)))
    y_t, dx_t = model.run(torch.from_numpy(x.reshape(2, 64, 256)), torch.from_numpy(dy.reshape(2, 64, 256)),
                          tally=False)

    def rel(a: Any, b: Any) -> float:
        return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))

    return rel(y_t.numpy().reshape(2, -1), y_ns), rel(dx_t.numpy().reshape(2, -1), dx_ns)


def timed(kind: str, draws: int, threads: int, batch: int) -> tuple[float, float]:
    cmd = [sys.executable, str(HERE), "--child", kind, "--draws", str(draws), "--threads", str(threads),
           "--batch", str(batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    wall, cpu = json.loads(proc.stdout.strip().splitlines()[-1])
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=104, help="draws per contender (sequences)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to run each at")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    ap.add_argument("--batch", type=int, default=0, help="draws per batch of torch and the floor (0: normstats' "
                                                         "chunk)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    net = network()
    batch = args.batch or net.chunk_draws()
    if args.child:
        child(args.child, args.draws, args.threads[0], batch)
        return
    sys.path.insert(0, str(HERE.parent))
    from bench_engine import machine

    print(f"Machine: {machine()}\n")
    print(f"Command: {' '.join(['bench/bench_transformer.py', *sys.argv[1:]])}")
    flops = 2 * sum(c * m * k * n for c, m, k, n in products(net))
    print(f"Model: {SPEC} on {INPUT}; {args.draws} draws; batches of {batch} draws (normstats' chunk: "
          f"{net.chunk_draws()}); matrix products {flops / 1e9:.3f} GFLOP a draw (forward and backward)")
    y_err, dx_err = check()
    print(f"torch against normstats' passes on the same 2 draws: largest relative difference {y_err:.1e} (output), "
          f"{dx_err:.1e} (input gradient)\n")
    kinds = {"normstats": "normstats", "torch": "torch", "floor:threads": "floor (threads x 1 BLAS thread)",
             "floor:blas": "floor (1 thread x BLAS threads)"}
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(args.repeat):  # rounds: every contender in turn
        for threads in args.threads:
            for kind in kinds:
                if kind == "floor:blas" and threads == 1:
                    continue
                runs.setdefault((kind, threads), []).append(timed(kind, args.draws, threads, batch))
    print("| threads | contender | wall s | CPU s | GFLOP/s (wall) | wall / floor | CPU / floor | "
          "normstats / torch (wall, CPU) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for threads in args.threads:
        med = {kind: (statistics.median(w for w, _ in runs[kind, threads]),
                      statistics.median(c for _, c in runs[kind, threads]))
               for kind in kinds if (kind, threads) in runs}
        floor_w = min(med[k][0] for k in med if k.startswith("floor"))
        floor_c = min(med[k][1] for k in med if k.startswith("floor"))
        for kind, (wall, cpu) in med.items():
            ratio = f"{med['normstats'][0] / med['torch'][0]:.2f}, {med['normstats'][1] / med['torch'][1]:.2f}" \
                if kind == "normstats" else ""
            print(f"| {threads} | {kinds[kind]} | {wall:.2f} | {cpu:.2f} | {flops * args.draws / wall / 1e9:.1f} | "
                  f"{wall / floor_w:.2f} | {cpu / floor_c:.2f} | {ratio} |", flush=True)
    print(f"\nfloor: the faster floor layout (by wall for the wall ratio, by CPU for the CPU ratio); every time the "
          f"median of {args.repeat} round(s); load average after the run "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}.")


if __name__ == "__main__":
    main()
