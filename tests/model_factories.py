"""Small PyTorch models for tests/test_model.py, importable as SOURCE strings (``tests.model_factories:NAME``)."""

from __future__ import annotations

import torch
from torch import nn


def unit_rows(layer: nn.Module) -> nn.Module:
    """The weight of a Linear or Conv2d drawn N(0, 1) with each output's row scaled to unit l2 norm: normstats'
    default ``init=normal, normalize=fan-in`` (``layers/weights.py``)."""
    with torch.no_grad():
        w = torch.randn_like(layer.weight)
        flat = w.reshape(w.shape[0], -1)
        flat /= flat.norm(dim=1, keepdim=True)
        layer.weight.copy_(flat.reshape(layer.weight.shape))
    return layer


def tiny_mlp(width: int = 16) -> nn.Module:
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 4))


def raises(depth: int = 3) -> nn.Module:
    raise ValueError(f"depth {depth} is not supported\nsecond line")


def not_a_module() -> int:
    return 3


class Overflow(nn.Module):
    """A linear layer, then exp(100 x): infinite at the second module."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 8)
        self.blow = Exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blow(self.linear(x))


class Exp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(100.0 * x)


class ArgMax(nn.Module):
    """A model whose output is integer: nothing to differentiate."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).argmax(dim=-1)


def gpt2_tiny() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=32,
                                      bos_token_id=0, eos_token_id=0))


def dropout_mlp(width: int = 16) -> nn.Module:
    """Dropout draws from torch's global generator in train mode: the inits must leave it as a lone init would."""
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Dropout(0.5), nn.Linear(width, 4))


def norm_softmax() -> nn.Module:
    """A batch norm (its output's mean is 0 in every draw in train mode) and a softmax (its output's mean is
    1/4 in every draw) after layers whose statistics vary from draw to draw."""
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4), nn.Softmax(dim=-1))
