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


#: NF-ResNets' ReLU gain (Brock, De and Smith 2021, "Characterizing signal propagation to close the performance gap
#: in unnormalized ResNets", arXiv:2101.08692, section 4.1): gamma relu(z) has unit variance for z ~ N(0, 1), since
#: Var relu(z) = (1 - 1/pi) / 2.
NF_RELU_GAMMA = (2 / (1 - 1 / torch.pi)) ** 0.5


class ScaledWSConv2d(nn.Conv2d):
    """Scaled weight standardization (the same paper, section 4.2): each output's weights centred and scaled to
    unit l2 norm when used (``(W - mean) / (std sqrt(fan_in))``), so the output has zero mean and the input's
    variance for uncorrelated inputs."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1) -> None:
        super().__init__(cin, cout, k, stride=stride, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (w - mean) / torch.sqrt(var * w[0].numel() + 1e-12)
        return nn.functional.conv2d(x, w, None, self.stride, self.padding)


class NFBlock(nn.Module):
    """The paper's residual block, ``h + alpha f(h / beta)`` with ``beta`` the expected std of ``h``; at a
    transition (stride or width change) the shortcut is a strided 1x1 standardized conv of the normalized,
    activated input, so the expected variance restarts at ``1 + alpha^2`` (the paper's design; timm's NF-ResNets
    pool instead)."""

    def __init__(self, cin: int, cout: int, stride: int, beta: float, alpha: float) -> None:
        super().__init__()
        self.beta, self.alpha = beta, alpha
        self.conv1 = ScaledWSConv2d(cin, cout, 3, stride)
        self.conv2 = ScaledWSConv2d(cout, cout, 3)
        self.shortcut = ScaledWSConv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = NF_RELU_GAMMA * nn.functional.relu(x / self.beta)
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(NF_RELU_GAMMA * nn.functional.relu(self.conv1(out)))
        return skip + self.alpha * out


def nf_resnet_paper(alpha: float = 0.2, widths: tuple[int, ...] = (16, 32, 64, 128), blocks: int = 2) -> nn.Module:
    """A small NF-ResNet as the paper designs it: a standardized 3x3 stem, four stages of ``blocks`` blocks (the
    first of stages 1-3 with stride 2), each block's beta from the expected variance (``+ alpha^2`` a block,
    ``1 + alpha^2`` after a transition), then a global pool and a linear head."""
    stages, var, cin = [], 1.0, widths[0]
    for s, cout in enumerate(widths):
        blocks_s = []
        for b in range(blocks):
            stride = 2 if b == 0 and s > 0 else 1
            blocks_s.append(NFBlock(cin, cout, stride, var ** 0.5, alpha))
            var = 1 + alpha**2 if cin != cout or stride != 1 else var + alpha**2
            cin = cout
        stages.append(nn.Sequential(*blocks_s))
    from collections import OrderedDict

    return nn.Sequential(OrderedDict(stem=ScaledWSConv2d(3, widths[0], 3), stages=nn.Sequential(*stages),
                                     pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(),
                                     fc=nn.Linear(widths[-1], 10)))
