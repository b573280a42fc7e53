"""Normalizing constants published in other people's code, with their sources, and their audit against the
exact references.

Two tables:

* **NFNet gammas** (``nonlinearities`` in google-deepmind/deepmind-research ``nfnets/base.py``, copied
  verbatim as ``_nonlin_gamma`` in huggingface/pytorch-image-models ``timm/models/nfnet.py``). Each is meant
  to be ``1 / std f(X)`` for ``X ~ N(0, 1)`` and is compared with our ``nfnet_gamma`` (1/fp std). DeepMind
  applies them to ``jax.nn`` activations, whose defaults we match (``jax.nn.gelu`` defaults to the tanh
  approximation); timm applies the same gelu figure to PyTorch's exact (erf) GELU, audited as its own row.
* **PyTorch gains** (``torch.nn.init.calculate_gain`` in pytorch/pytorch ``torch/nn/init.py``; the selu
  value was added in pytorch/pytorch#50664 as "found empirically"). A gain multiplies the weight std of the
  *next* layer; the quantity it should equal to preserve the variance of the next pre-activation is
  ``1/sqrt(E f(X)^2)`` (our ``gain``). tanh's 5/3, sigmoid's 1 and selu's 3/4 are heuristics for other
  goals (gradient flow), so large deviations there are expected and are not errors in PyTorch's code.

A figure "exceeds its precision" when it differs from the reference by more than half a unit in its last
printed digit; an exact expression (5/3, sqrt(2)) is held to float rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from normstats.published.conventions import from_moments
from normstats.published.figures import Figure

DEEPMIND = "google-deepmind/deepmind-research nfnets/base.py (nonlinearities)"
DEEPMIND_AND_TIMM = DEEPMIND + "; same figures in huggingface/pytorch-image-models timm/models/nfnet.py"
TIMM = "huggingface/pytorch-image-models timm/models/nfnet.py (_nonlin_gamma['gelu'] on torch.nn.GELU)"
PYTORCH = "pytorch/pytorch torch/nn/init.py (calculate_gain)"
PYTORCH_SELU = PYTORCH + "; selu added in pytorch/pytorch#50664"


@dataclass(frozen=True)
class PublishedConstant:
    """One published constant: which convention, for which activation (a registered layer with parameters,
    or a special case such as glu), the figure and its source."""

    convention: str  # "nfnet_gamma" or "gain"
    name: str  # the name used by the source
    layer: str | None  # registered layer, or None for a special case
    params: dict[str, Any]
    figure: Figure
    note: str = ""

    def label(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.layer or self.name}({args})" if args else (self.layer or self.name)


def _printed(text: str, source: str) -> Figure:
    return Figure(float(text), text, len(text.split(".")[1]) if "." in text else 0, source)


def _exact(value: float, text: str, source: str) -> Figure:
    return Figure(value, text, None, source)


_NFNET = (
    ("identity", "identity", {}, "1.0"),
    ("celu", "celu", {"alpha": 1.0}, "1.270926833152771"),
    ("elu", "elu", {"alpha": 1.0}, "1.2716004848480225"),
    ("gelu", "gelu", {"approximate": "tanh"}, "1.7015043497085571"),
    ("glu", None, {}, "1.8484294414520264"),
    ("leaky_relu", "leaky_relu", {"slope": 0.01}, "1.70590341091156"),
    ("log_sigmoid", "log_sigmoid", {}, "1.9193484783172607"),
    ("log_softmax", None, {}, "1.0002083778381348"),
    ("relu", "relu", {}, "1.7139588594436646"),
    ("relu6", "relu6", {}, "1.7131484746932983"),
    ("selu", "selu", {}, "1.0008515119552612"),
    ("sigmoid", "sigmoid", {}, "4.803835391998291"),
    ("silu", "silu", {}, "1.7881293296813965"),
    ("soft_sign", "softsign", {}, "2.338853120803833"),
    ("softplus", "softplus", {}, "1.9203323125839233"),
    ("tanh", "tanh", {}, "1.5939117670059204"),
)

_NOTES = {
    "glu": "glu(x) = a * sigmoid(b) for the two halves a, b of x: gamma = 1/sqrt(E sigmoid(X)^2)",
    "log_softmax": "not elementwise: its std depends on the softmax width, which the source does not state",
}

#: Every published constant that ``normstats audit`` checks.
PUBLISHED_CONSTANTS: tuple[PublishedConstant, ...] = (
    *(
        PublishedConstant("nfnet_gamma", name, layer, params, _printed(text, DEEPMIND_AND_TIMM),
                          _NOTES.get(name, ""))
        for name, layer, params, text in _NFNET
    ),
    PublishedConstant(
        "nfnet_gamma", "gelu", "gelu", {"approximate": "none"}, _printed("1.7015043497085571", TIMM),
        "timm uses the gamma of JAX's tanh-approximate gelu for PyTorch's exact gelu",
    ),
    PublishedConstant("gain", "linear", "identity", {}, _exact(1.0, "1", PYTORCH)),
    PublishedConstant("gain", "sigmoid", "sigmoid", {}, _exact(1.0, "1", PYTORCH), "heuristic"),
    PublishedConstant("gain", "tanh", "tanh", {}, _exact(5.0 / 3.0, "5/3", PYTORCH), "heuristic"),
    PublishedConstant("gain", "relu", "relu", {}, _exact(math.sqrt(2.0), "sqrt(2)", PYTORCH)),
    PublishedConstant(
        "gain", "leaky_relu", "leaky_relu", {"slope": 0.01},
        _exact(math.sqrt(2.0 / (1.0 + 0.01**2)), "sqrt(2/(1 + 0.01^2))", PYTORCH),
    ),
    PublishedConstant(
        "gain", "selu", "selu", {}, _exact(0.75, "3/4", PYTORCH_SELU),
        "heuristic for gradient flow; PyTorch's SELU docs advise nonlinearity='linear' (gain 1) instead",
    ),
)


@dataclass(frozen=True)
class AuditEntry:
    """A published constant next to its exact reference."""

    constant: PublishedConstant
    reference: float | None
    compared_with: str
    note: str = field(default="")

    @property
    def deviation(self) -> float | None:
        """``(published - reference) / reference``."""
        if self.reference is None:
            return None
        return (self.constant.figure.value - self.reference) / self.reference

    @property
    def exceeds_precision(self) -> bool | None:
        """Whether the figure misses the reference by more than its own printed precision allows."""
        if self.reference is None:
            return None
        return not self.constant.figure.agrees(self.reference)

    @property
    def digits(self) -> float | None:
        """Correct significant digits, ``-log10 |deviation|`` (None when exact to float rounding)."""
        dev = self.deviation
        if dev is None or abs(dev) < 1e-15:
            return None
        return -math.log10(abs(dev))

    def to_dict(self) -> dict[str, Any]:
        c = self.constant
        return {
            "convention": c.convention,
            "name": c.name,
            "layer": c.layer,
            "params": dict(c.params),
            "published": c.figure.value,
            "published_text": c.figure.text,
            "source": c.figure.source,
            "reference": self.reference,
            "compared_with": self.compared_with,
            "relative_deviation": self.deviation,
            "exceeds_printed_precision": self.exceeds_precision,
            "note": self.note,
        }


_COMPARED = {"nfnet_gamma": "1/std f(X)", "gain": "1/sqrt(E f(X)^2)"}


def audit() -> list[AuditEntry]:
    """Every published constant with its reference (None where normstats has none)."""
    from normstats.exact.quadrature import gaussian_mean_std
    from normstats.exact.references import reference_moments
    from normstats.registry import make_layer

    out = []
    for c in PUBLISHED_CONSTANTS:
        reference: float | None = None
        if c.layer is not None:
            refs = reference_moments(make_layer(c.layer, **c.params))
            reference = from_moments(refs["fp_mean"].value, refs["fp_std"].value)[c.convention]  # type: ignore[union-attr]
        elif c.name == "glu":
            from scipy import special

            mean, std = gaussian_mean_std(special.expit)
            reference = 1.0 / math.sqrt(mean * mean + std * std)
        out.append(AuditEntry(c, reference, _COMPARED[c.convention], c.note))
    return out
