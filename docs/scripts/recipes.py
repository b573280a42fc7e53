"""The published residual-scaling recipes compared at depth (issue 25, item 6): a 48-block transformer, D = 256,
T = 64 tokens, 4 heads, input tokens of cosine 0.1, under post-LN, pre-LN, pre-LN + GPT-2, DeepNorm and depth-muP.

Run from the repository root (about 15 minutes on two busy cores)::

    PYTHONPATH=src python docs/scripts/recipes.py --draws 128 --inits 32

It prints the Markdown table (``--table PATH`` also writes it; docs/guide/transformers.md shows it) and writes
``docs/transformer_recipes.png`` (residual-stream std, input-gradient std and token cosine against depth, 95%
bands). Per block ``b``: the residual stream is the output of the block's
last top-level layer (pre-LN: the MLP's residual block; post-LN and DeepNorm: the layer norm closing the block),
the input gradient is the bp std at the block's input (its first top-level layer's). The MLP is
``linear gelu linear`` at width D (no 4x expansion). Every figure is the mean over ``--inits`` independent
networks and its se their spread over sqrt(K): it describes the architecture, init-to-init spread included.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import normstats
from normstats.output.results.numbers import pm

BLOCKS = 48
PRE_LN = f"{BLOCKS}*(res(layernorm attention(heads=4)) res(layernorm linear gelu linear))"
POST_LN = f"{BLOCKS}*(res(attention(heads=4)) layernorm res(linear gelu linear) layernorm)"
#: (label, spec, recipe, top-level rows per block)
SETUPS = (
    ("post-LN", POST_LN, None, 4),
    ("pre-LN", PRE_LN, None, 2),
    ("pre-LN + GPT-2", PRE_LN, "gpt2", 2),
    ("DeepNorm", POST_LN, "deepnorm", 4),
    ("depth-muP", PRE_LN, "depth-mup", 2),
)
SHOWN = (1, 24, 48)


def per_block(result: normstats.NetworkResult, rows_per_block: int) -> list[dict]:
    """For each block: the stream's fp std and token cosine (its last row), the bp std at its input (first row)."""
    rows = result.top_level()
    out = []
    for b in range(BLOCKS):
        first, last = rows[b * rows_per_block], rows[(b + 1) * rows_per_block - 1]
        out.append({"fp": last.stats["fp_std"], "bp": first.stats["bp_std"], "cos": last.stats["token_cosine"]})
    return out


def cell(stat) -> str:
    """``estimate ± se`` as normstats' own tables write it (the estimate to the se's second digit)."""
    return pm(stat.estimate, stat.se)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=128)
    ap.add_argument("--inits", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default="docs/transformer_recipes.png", help="the figure (PNG)")
    ap.add_argument("--table", help="also write the Markdown table here")
    args = ap.parse_args()
    results = {}
    for label, spec, recipe, per in SETUPS:
        t = time.time()
        res = normstats.network(spec, input="64x256", input_correlation=0.1, samples=args.draws, inits=args.inits,
                                seed=args.seed, recipe=recipe)
        results[label] = (res, per_block(res, per))
        print(f"{label}: {time.time() - t:.0f} s", flush=True)
    head = ("| set-up | stream std, block 1 | block 24 | block 48 | input-gradient std, block 1 | block 24 | block 48 "
            "| token cosine, block 48 |")
    lines = [head, "|" + "---|" * 8]
    for label, (res, blocks) in results.items():
        fp = [cell(blocks[b - 1]["fp"]) for b in SHOWN]
        bp = [cell(blocks[b - 1]["bp"]) for b in SHOWN]
        lines.append(f"| {label} | " + " | ".join(fp + bp + [cell(blocks[-1]["cos"])]) + " |")
    recipes = [f"- {label}: `{res.recipe['name']}`, N = {res.recipe['blocks']}, "
               + ", ".join(f"{k} = {v:.4g}" for k, v in res.recipe["constants"].items())
               for label, (res, _) in results.items() if res.recipe]
    text = "\n".join(lines) + "\n\n" + "\n".join(recipes) + (
        f"\n\n{args.draws} draws over {args.inits} networks per set-up (seed {args.seed}); ± se over the networks.\n")
    if args.table:
        Path(args.table).write_text(text, encoding="utf-8")
    print(text)
    plot(results, Path(args.plot), args)


def plot(results: dict, path: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    depth = list(range(1, BLOCKS + 1))
    styles = ("-", "-", "--", ":", "-.")  # GPT-2 and DeepNorm lie on each other at 1: dashed and dotted
    for (label, (_, blocks)), style in zip(results.items(), styles):
        for ax, key in zip(axes, ("fp", "bp", "cos")):
            est = [b[key].estimate for b in blocks]
            half = [b[key].quantile * b[key].se for b in blocks]  # Student t over the networks: a 95% band
            line, = ax.plot(depth, est, style, label=label, lw=1.8)
            ax.fill_between(depth, [e - h for e, h in zip(est, half)], [e + h for e, h in zip(est, half)],
                            color=line.get_color(), alpha=0.25, lw=0)
    axes[0].set_ylabel("residual stream std (fp)")
    axes[1].set_ylabel("input-gradient std (bp)")
    axes[2].set_ylabel("token cosine of the stream")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("block")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=9)
    fig.suptitle(f"48-block transformer, D=256, T=64, 4 heads, input cosine 0.1: {args.draws} draws over "
                 f"{args.inits} networks, 95% bands", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
