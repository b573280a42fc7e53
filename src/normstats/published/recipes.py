"""The published residual-scaling recipes for deep transformers: each one's constants as a function of depth,
with where they come from. :mod:`normstats.networks.recipes` applies them to a spec.

``N`` is the number of transformer blocks (one attention sublayer and one feed-forward sublayer each), as every
one of these papers counts layers (nanoGPT's ``n_layer``, torchscale's ``encoder_layers``/``decoder_layers``,
T-Fixup's ``N``); ``2N`` is the number of residual branches (sublayers). Sources, checked against the text:

* ``gpt2`` (Radford et al. 2019, GPT-2, section 2.3: "we scale the weights of residual layers at
  initialization by a factor of 1/sqrt(N) where N is the number of residual layers"; the code everybody copies is
  karpathy/nanoGPT ``model.py``: every ``nn.Linear`` ``torch.nn.init.normal_(..., std=0.02)``, then every
  ``c_proj.weight`` (attention's output projection and the MLP's second linear)
  ``std=0.02/math.sqrt(2 * config.n_layer)``). Pre-LN. Q, K and V come from one linear ``c_attn`` of std 0.02.
* ``deepnorm`` (Wang et al. 2022, "DeepNet: Scaling Transformers to 1,000 Layers", arXiv:2203.00555, figure 2
  and table 1; microsoft/torchscale ``torchscale/architecture/encoder.py`` and ``decoder.py``): post-LN
  ``x <- LN(alpha x + G(x))``; the FFN's two linears and attention's value and output projections Xavier normal
  with gain ``beta``, Q and K Xavier normal with gain 1. Encoder-only and decoder-only: ``alpha = (2N)^(1/4)``,
  ``beta = (8N)^(-1/4)`` (torchscale: ``self.alpha = math.pow(2.0 * args.encoder_layers, 0.25)``; the weights
  divided by ``init_scale = math.pow(8.0 * args.encoder_layers, 0.25)``, and the same with ``decoder_layers``).
  Encoder-decoder (``N`` encoder and ``M`` decoder blocks; not applied here, normstats has no cross-attention):
  encoder ``alpha = 0.81 (N^4 M)^(1/16)``, ``beta = 0.87 (N^4 M)^(-1/16)`` (the paper's figure 2), decoder
  ``alpha = (3M)^(1/4)``, ``beta = (12M)^(-1/4)``: :func:`deepnorm_encoder_decoder`. torchscale's
  ``encoder.py`` has the same alpha but divides the encoder's weights by ``init_scale = (N^4 M)^(1/16) / 1.15``,
  that is ``beta = 1.15 (N^4 M)^(-1/16)``, not ``0.87 = 1 / 1.15`` times it: the code and the paper differ by
  ``1.15^2 = 1.32``; both are given.
* ``admin`` (Liu et al. 2020, "Understanding the Difficulty of Training Transformers", EMNLP, the Admin initialization):
  post-LN ``x_i = LN(omega_i x_{i-1} + f_i(x_{i-1}))`` with ``omega_i^2 = sum_{j<i} Var f_j(x_{j-1})``, the
  variances taken by a profiling pass over a batch of data. normstats has no data to profile on, so it takes
  the closed form the authors ship for that purpose in their package microsoft/admin-torch
  (``admin_torch/admin.py``, ``calculate_init``, the default ``output_change_scale='O(logn)'``):
  ``omega = sqrt((n + 1) / ln(n + 1) - 1)`` with ``n`` the number of residual layers (``2N`` for ``N`` blocks:
  "Typical n-layer Transformer encoder has 2n residual layers"), the same for every sublayer. Weights: the
  network's own init (Admin changes only omega).
* ``tfixup`` and ``tfixup-decoder`` (Huang et al. 2020, "Improving Transformer Optimization Through Better
  Initialization", ICML, the T-Fixup procedure; code layer6ai-labs/T-Fixup): no layer norm; Xavier init everywhere; in each
  encoder attention the value and output projections and both weights of each encoder MLP scaled by
  ``0.67 N^(-1/4)``; in the decoder the same matrices by ``(9N)^(-1/4)``. (T-Fixup also scales the input
  embeddings; normstats' input is N(0, I) and has no embedding.)
* ``depth-mup`` (Yang, Yu, Zhu and Hayou 2023, "Tensor Programs VI: Feature Learning in Infinite-Depth Neural
  Networks", arXiv:2310.02244, Depth-muP: each residual block's output multiplied by ``a / sqrt(L)``, ``L`` the
  number of blocks, ``a = 1``; Bordelon et al. 2023, arXiv:2309.16620, the same ``1/sqrt(L)`` branch scale for
  pre-LN vision transformers). A transformer's residual branch is one sublayer, so ``L = 2N``. Weights: the
  network's own init.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

GPT2_STD = 0.02  # nanoGPT model.py: torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
TFIXUP_ENCODER = 0.67  # Huang et al. 2020, T-Fixup: encoder scale 0.67 N^(-1/4)
DEEPNORM_ENC_DEC_ALPHA = 0.81  # torchscale encoder.py: ... * 0.81
DEEPNORM_ENC_DEC_BETA = 0.87  # DeepNet figure 2: encoder beta = 0.87 (N^4 M)^(-1/16)
DEEPNORM_ENC_DEC_BETA_DIVISOR = 1.15  # torchscale encoder.py: weights divided by (N^4 M)^(1/16) / 1.15

#: The block layouts a recipe fits: pre-LN ``res(layernorm attention) res(layernorm linear ACT linear)``,
#: post-LN ``res(attention) layernorm res(linear ACT linear) layernorm``, no-LN ``res(attention) res(linear ACT
#: linear)``.
LAYOUTS = ("pre-ln", "post-ln", "no-ln")


@dataclass(frozen=True)
class Recipe:
    """A published recipe: the block layout it is for, its constants at ``N`` blocks, where they come from."""

    name: str
    title: str
    layout: str
    source: str
    constants: Callable[[int], dict[str, float]]
    summary: str


def gpt2(n: int) -> dict[str, float]:
    """nanoGPT: every weight N(0, 0.02^2), the two output projections (``c_proj``) N(0, (0.02 / sqrt(2N))^2)."""
    return {"std": GPT2_STD, "out_std": GPT2_STD / math.sqrt(2 * n)}


def deepnorm(n: int) -> dict[str, float]:
    """DeepNet, encoder-only or decoder-only: ``alpha = (2N)^(1/4)``, ``beta = (8N)^(-1/4)``."""
    return {"alpha": (2.0 * n) ** 0.25, "beta": (8.0 * n) ** -0.25}


def deepnorm_encoder_decoder(n: int, m: int) -> dict[str, float]:
    """DeepNet, an encoder of ``n`` blocks and a decoder of ``m`` (not applied: no cross-attention here)."""
    root = (n ** 4 * m) ** (1 / 16)
    return {"encoder_alpha": DEEPNORM_ENC_DEC_ALPHA * root, "encoder_beta": DEEPNORM_ENC_DEC_BETA / root,
            "encoder_beta_torchscale": DEEPNORM_ENC_DEC_BETA_DIVISOR / root,
            "decoder_alpha": (3.0 * m) ** 0.25, "decoder_beta": (12.0 * m) ** -0.25}


def admin(n: int) -> dict[str, float]:
    """admin-torch's default ``omega = sqrt((2N + 1) / ln(2N + 1) - 1)`` for ``2N`` residual layers."""
    layers = 2 * n
    return {"omega": math.sqrt((layers + 1) / math.log(layers + 1) - 1)}


def tfixup(n: int) -> dict[str, float]:
    """T-Fixup's encoder scale ``0.67 N^(-1/4)``."""
    return {"scale": TFIXUP_ENCODER * n ** -0.25}


def tfixup_decoder(n: int) -> dict[str, float]:
    """T-Fixup's decoder scale ``(9N)^(-1/4)``."""
    return {"scale": (9.0 * n) ** -0.25}


def depth_mup(n: int) -> dict[str, float]:
    """Depth-muP's branch multiplier ``1 / sqrt(L)``, ``L = 2N`` residual branches."""
    return {"branch": 1.0 / math.sqrt(2 * n)}


NANOGPT = "karpathy/nanoGPT model.py (std=0.02; c_proj std=0.02/math.sqrt(2 * config.n_layer)); GPT-2 section 2.3"
TORCHSCALE = ("Wang et al. 2022, DeepNet (arXiv:2203.00555) figure 2; microsoft/torchscale architecture/encoder.py, "
              "decoder.py")
ADMIN_TORCH = ("Liu et al. 2020, Understanding the Difficulty of Training Transformers; "
               "microsoft/admin-torch admin_torch/admin.py calculate_init (O(logn))")
TFIXUP = "Huang et al. 2020, Improving Transformer Optimization Through Better Initialization (ICML), T-Fixup"
DEPTH_MUP = "Yang et al. 2023, Tensor Programs VI (arXiv:2310.02244); Bordelon et al. 2023 (arXiv:2309.16620)"

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("gpt2", "GPT-2 / nanoGPT", "pre-ln", NANOGPT, gpt2,
           "weights N(0, 0.02^2); attention's and the MLP's output projections N(0, (0.02/sqrt(2N))^2)"),
    Recipe("deepnorm", "DeepNorm (encoder-only or decoder-only)", "post-ln", TORCHSCALE, deepnorm,
           "LN(alpha x + G(x)), alpha = (2N)^(1/4); Xavier, FFN, value and output projections gain beta = "
           "(8N)^(-1/4)"),
    Recipe("admin", "Admin (admin-torch's closed form)", "post-ln", ADMIN_TORCH, admin,
           "LN(omega x + f(x)), omega = sqrt((2N+1)/ln(2N+1) - 1)"),
    Recipe("tfixup", "T-Fixup (encoder)", "no-ln", TFIXUP, tfixup,
           "no layer norm; Xavier; value, output and MLP weights times 0.67 N^(-1/4)"),
    Recipe("tfixup-decoder", "T-Fixup (decoder)", "no-ln", TFIXUP, tfixup_decoder,
           "no layer norm; Xavier; value, output and MLP weights times (9N)^(-1/4)"),
    Recipe("depth-mup", "Depth-muP", "pre-ln", DEPTH_MUP, depth_mup,
           "each residual branch times 1/sqrt(L), L = 2N branches"),
)}
