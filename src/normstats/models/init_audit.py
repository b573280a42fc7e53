"""The init audit: for each parameter of a PyTorch model, which common init rule its values match.

A rule fixes a law (normal or uniform, mean 0) and a std from the parameter's fans. A parameter matches a rule
when

- the law fits: the sample excess kurtosis ``g2`` lies within :data:`Z` se of the law's (normal 0, uniform
  -6/5); with few values both fit, and the audit says "normal or uniform";
- the sample std ``s`` lies within :data:`Z` se of the rule's std ``sigma``, where the se is that of a sample std
  of ``n`` iid values of the rule's law: ``Var(s^2) ~ (mu4 - sigma^4) / n``, so by the delta method
  ``se(s) = sigma sqrt((kappa - 1) / (4 (n - 1)))`` with ``kappa = mu4 / sigma^4`` (normal 3: ``sigma /
  sqrt(2 (n - 1))``; uniform 9/5: ``sigma / sqrt(5 (n - 1))``);
- the sample mean lies within :data:`Z` se (``sigma / sqrt(n)``) of 0.

The se of ``g2`` is ``sqrt(24 / n)`` for a normal and ``sqrt(1152 / (875 n))`` for a uniform: the delta method
on ``b2 = m4 / m2^2`` for a symmetric law gives ``n Var(b2) -> (mu8 - mu4^2) / mu2^4 - 4 mu4 (mu6 - mu2 mu4) /
mu2^5 + 4 mu4^2 (mu4 - mu2^2) / mu2^6``; with U(-1, 1)'s ``mu_2k = 1 / (2k + 1)`` that is ``1296/225 - 7776/525 +
11664/1125 = 1152/875`` (a normal's moments 1, 3, 15, 105 give 24). ``tests/test_init_audit.py`` checks both
se by simulation.

Zeros, ones and other constants are matched exactly. A ``bias`` beside a ``weight`` in the same module takes the
weight's fans, as PyTorch's default bias init does. Names matter for one convention: GPT-2 scales the init of
its residual projections (``c_proj``) by ``1/sqrt(2 n_layer)``; where ``n_layer`` is known (given, or on the
model's ``config`` as transformers sets it) each ``*c_proj.weight`` is expected to match that rule, and one that
does not is flagged (the bug of transformers issue #47458, where the scaled init never ran).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from normstats.errors import NormstatsError
from normstats.layers.torch_activation import import_torch
from normstats.output.results.init_audit import NONE_OF_THESE, ParamAudit

#: How many se a statistic may lie from a rule's value and still match it.
Z = 4.0
NORMAL, UNIFORM = "normal", "uniform"
#: mu4 / sigma^4 of each law: 3 for a normal, 9/5 for a uniform (E U^4 / (E U^2)^2 = (1/5) / (1/3)^2).
KURTOSIS = {NORMAL: 3.0, UNIFORM: 9.0 / 5.0}
#: Fewest values whose kurtosis is taken to tell the laws apart: at 100 a normal's g2 has se 0.49 and bias
#: -6/(n+1) = -0.06, a uniform's se 0.11, so the two sit 1.2 apart, over 2 normal se, with room for the
#: asymptotic se's error at that n.
MIN_LAW_VALUES = 100
#: n Var(g2) for large n (see the module docstring).
KURTOSIS_VAR = {NORMAL: 24.0, UNIFORM: 1152.0 / 875.0}

# Sources of the rules.
_TORCH_DEFAULT = ("PyTorch's default for nn.Linear and nn.ConvNd weights: kaiming_uniform_(a=sqrt(5)) in "
                  "reset_parameters (torch/nn/modules/linear.py, conv.py); bound = sqrt(6 / ((1 + a^2) fan_in)) = "
                  "1/sqrt(fan_in), Var = 1/(3 fan_in)")
_TORCH_BIAS = ("PyTorch's default bias for nn.Linear and nn.ConvNd: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with the "
               "weight's fan_in (reset_parameters, torch/nn/modules/linear.py)")
_KAIMING = ("He et al., Delving Deep into Rectifiers, ICCV 2015; torch.nn.init.kaiming_normal_/kaiming_uniform_ "
            "with nonlinearity='relu' (gain sqrt(2)): Var = 2/fan")
_XAVIER = ("Glorot & Bengio, Understanding the difficulty of training deep feedforward neural networks, AISTATS "
           "2010; torch.nn.init.xavier_normal_/xavier_uniform_ (gain 1): Var = 2/(fan_in + fan_out)")
_LECUN = ("LeCun et al., Efficient BackProp, 1998 (the init SELU assumes: Klambauer et al. 2017): "
          "Var = 1/fan_in")
_FIXED = ("a fixed std: GPT-2 and BERT draw weights from N(0, initializer_range) with initializer_range = 0.02 "
          "(transformers' GPT2Config and BertConfig default)")
_GPT2_SCALED = ("GPT-2's scaled init of the residual projections: Radford et al., Language Models are Unsupervised "
                "Multitask Learners, 2019, sec. 2.3 (scale by 1/sqrt(N), N = 2 n_layer residual layers); "
                "transformers GPT2PreTrainedModel._init_weights draws c_proj.weight from N(0, initializer_range / "
                "sqrt(2 n_layer))")
_EMBEDDING = "PyTorch's default for nn.Embedding: N(0, 1) (reset_parameters, torch/nn/modules/sparse.py)"
_EXACT = "an exact value: zeros_/ones_/constant_ (nn.LayerNorm and BatchNorm: weight ones, bias zeros)"


#: transformers' ``Conv1D`` (GPT-2's projections) stores its weight as ``(in_features, out_features)``, the transpose
#: of ``nn.Linear``'s, so torch.nn.init's fans, kept as they are, are swapped for it.
CONV1D_NOTE = ("transformers Conv1D stores its weight as (in, out): torch.nn.init's fan_in is the layer's fan_out, "
               "so rules by fan read it transposed")


@dataclass(frozen=True)
class Rule:
    """An init rule for one parameter: a law with mean 0 and the std it gives, and the rule's source."""

    name: str
    law: str
    std: float
    source: str


def _fans(tensor: Any) -> tuple[int, int] | None:
    """``torch.nn.init._calculate_fan_in_and_fan_out`` (None for fewer than 2 dimensions, where it has none)."""
    import torch

    if tensor.dim() < 2:
        return None
    return torch.nn.init._calculate_fan_in_and_fan_out(tensor)


def _both(name: str, std: float, source: str) -> list[Rule]:
    """The normal and the uniform variant of a rule (``name`` holds ``{}`` for ``normal`` or ``uniform``)."""
    return [Rule(name.format(law), law, std, source) for law in (NORMAL, UNIFORM)]


def rules_for(fans: tuple[int, int] | None, is_bias: bool, n_layer: int | None, initializer_range: float,
              c_proj: bool, embedding: bool = False) -> list[Rule]:
    """The candidate rules for a parameter with ``fans`` (a bias's are its weight's), in the order of
    preference: where several match (``fan_in == fan_out`` makes Kaiming's two modes one), all are named.
    GPT-2's scaled rule is a candidate for a ``c_proj`` weight only, N(0, 1) for an ``nn.Embedding``'s only."""
    out: list[Rule] = []
    if fans is not None:
        fan_in, fan_out = fans
        if is_bias:
            out.append(Rule("uniform(±1/sqrt(fan_in)) (PyTorch default bias)", UNIFORM, 1 / math.sqrt(3 * fan_in),
                            _TORCH_BIAS))
        else:
            out.append(Rule("kaiming_uniform(a=sqrt(5)) (PyTorch default)", UNIFORM, 1 / math.sqrt(3 * fan_in),
                            _TORCH_DEFAULT))
            out += _both("kaiming_{}(relu)", math.sqrt(2 / fan_in), _KAIMING)
            out += _both("kaiming_{}(relu, fan_out)", math.sqrt(2 / fan_out), _KAIMING)
            out += _both("xavier_{}", math.sqrt(2 / (fan_in + fan_out)), _XAVIER)
            out += _both("lecun_{}", math.sqrt(1 / fan_in), _LECUN)
    if n_layer is not None and c_proj:
        out.append(Rule(gpt2_scaled_name(initializer_range), NORMAL, initializer_range / math.sqrt(2 * n_layer),
                        _GPT2_SCALED))
    out.append(Rule(f"normal(std={initializer_range:g})", NORMAL, initializer_range, _FIXED))
    if embedding:
        out.append(Rule("normal(std=1) (nn.Embedding default)", NORMAL, 1.0, _EMBEDDING))
    return out


def gpt2_scaled_name(initializer_range: float) -> str:
    return f"normal(std={initializer_range:g}/sqrt(2 n_layer)) (GPT-2 scaled)"


def std_se(sigma: float, law: str, n: int) -> float:
    """The se of the sample std of ``n`` iid values of ``law`` with std ``sigma`` (delta method)."""
    return sigma * math.sqrt((KURTOSIS[law] - 1.0) / (4.0 * (n - 1)))


def which_law(g2: float, n: int) -> str:
    """``normal``, ``uniform``, ``normal or uniform`` or ``neither``: which law's excess kurtosis ``g2`` fits.
    Below :data:`MIN_LAW_VALUES` values the se above are no guide (the sample kurtosis is bounded and biased
    there) and both laws are kept."""
    if n < MIN_LAW_VALUES:
        return f"{NORMAL} or {UNIFORM}"
    fits = [law for law in (NORMAL, UNIFORM)
            if abs(g2 - (KURTOSIS[law] - 3.0)) <= Z * math.sqrt(KURTOSIS_VAR[law] / n)]
    return " or ".join(fits) if fits else "neither"


def _context(module: Any, n_layer: int | None, initializer_range: float | None) -> tuple[int | None, float]:
    """``n_layer`` and ``initializer_range``: as given, else from a transformers ``config`` on the module
    (``config.n_layer``, ``config.initializer_range``), else unknown and 0.02."""
    config = getattr(module, "config", None)
    if n_layer is None:
        found = getattr(config, "n_layer", None)
        n_layer = found if isinstance(found, int) and not isinstance(found, bool) and found > 0 else None
    elif isinstance(n_layer, bool) or not isinstance(n_layer, int) or n_layer < 1:
        raise NormstatsError(f"n_layer must be a positive integer; got {n_layer!r}")
    if initializer_range is None:
        found = getattr(config, "initializer_range", None)
        initializer_range = float(found) if isinstance(found, (int, float)) and found > 0 else 0.02
    elif not isinstance(initializer_range, (int, float)) or not 0 < initializer_range < math.inf:
        raise NormstatsError(f"initializer_range must be a positive number; got {initializer_range!r}")
    return n_layer, float(initializer_range)


def audit_parameters(module: Any, *, n_layer: int | None = None,
                     initializer_range: float | None = None) -> list[ParamAudit]:
    """One :class:`ParamAudit` per parameter of ``module`` (a ``torch.nn.Module``), in ``named_parameters``
    order (a tied parameter once). ``n_layer`` and ``initializer_range`` are GPT-2's settings; by default
    they are read from ``module.config`` where transformers put one there (see :func:`_context`)."""
    torch = import_torch("the init audit")
    if not isinstance(module, torch.nn.Module):
        raise NormstatsError(f"the init audit needs a torch.nn.Module; got {type(module).__name__}")
    n_layer, initializer_range = _context(module, n_layer, initializer_range)
    owners = dict(module.named_modules())
    out = []
    for name, param in module.named_parameters():
        owner_name, _, leaf = name.rpartition(".")
        owner = owners.get(owner_name)
        fans, fan_source = _fans(param), None
        if fans is None and leaf == "bias" and owner is not None:
            weight = getattr(owner, "weight", None)
            if isinstance(weight, torch.Tensor) and weight.dim() >= 2:
                fans = _fans(weight)
                fan_source = f"{owner_name}.weight" if owner_name else "weight"
        c_proj = name.endswith("c_proj.weight")
        rules = rules_for(fans, fan_source is not None, n_layer, initializer_range, c_proj,
                          isinstance(owner, torch.nn.Embedding))
        values = param.detach().to("cpu", torch.float64).reshape(-1).numpy()
        entry = audit_values(name, tuple(param.shape), values, fans, fan_source, rules)
        if fans is not None and type(owner).__name__ == "Conv1D" and hasattr(owner, "nf"):
            from dataclasses import replace

            entry = replace(entry, note=CONV1D_NOTE)
        if c_proj and n_layer is not None:
            scaled = next(r for r in rules if r.name == gpt2_scaled_name(initializer_range))
            entry = _expect(entry, scaled, f"{initializer_range:g}/sqrt(2 n_layer)")
        out.append(entry)
    return out


def audit_values(name: str, shape: tuple[int, ...], values: np.ndarray, fans: tuple[int, int] | None,
                 fan_source: str | None, rules: list[Rule]) -> ParamAudit:
    """The audit of one parameter's values (float64, flat) against ``rules``."""
    n = values.size
    fan_in, fan_out = fans if fans is not None else (None, None)
    common = dict(name=name, shape=shape, numel=n, fan_in=fan_in, fan_out=fan_out, fan_source=fan_source)
    if n == 0 or not np.all(np.isfinite(values)):
        bad = "no values" if n == 0 else "values that are not finite"
        return ParamAudit(**common, mean=math.nan if n == 0 else float(np.mean(values)), std=math.nan, scaled=None,
                          excess_kurtosis=None, law="undefined", matches=(), rule=f"{NONE_OF_THESE} ({bad})",
                          rule_std=None, se=None, z=None, source=None)
    first = values[0]
    if np.all(values == first):
        label = "zeros" if first == 0 else "ones" if first == 1 else f"constant({float(first):g})"
        return ParamAudit(**common, mean=float(first), std=0.0, scaled=0.0 if fan_in else None, excess_kurtosis=None,
                          law="constant", matches=(label,), rule=label, rule_std=0.0, se=0.0, z=None, source=_EXACT)
    mean = float(np.mean(values))
    centred = values - mean
    m2 = float(np.mean(centred**2))
    g2 = float(np.mean(centred**4)) / (m2 * m2) - 3.0
    std = math.sqrt(m2 * n / (n - 1))
    law = which_law(g2, n)
    matches = []
    for rule in rules:
        if rule.law not in law.split(" or "):
            continue
        se = std_se(rule.std, rule.law, n)
        if abs(std - rule.std) <= Z * se and abs(mean) <= Z * rule.std / math.sqrt(n):
            matches.append(rule)
    best = matches[0] if matches else None
    se = std_se(best.std, best.law, n) if best else None
    return ParamAudit(
        **common, mean=mean, std=std, scaled=std * math.sqrt(fan_in) if fan_in else None, excess_kurtosis=g2,
        law=law, matches=tuple(r.name for r in matches),
        rule=" or ".join(r.name for r in matches) if matches else NONE_OF_THESE,
        rule_std=best.std if best else None, se=se, z=(std - best.std) / se if best and se else None,
        source=best.source if best else None,
    )


def _expect(entry: ParamAudit, rule: Rule, formula: str) -> ParamAudit:
    """``entry`` with the rule its name calls for (its std written as ``formula``), and a note where it did not
    match."""
    from dataclasses import replace

    ok = rule.name in entry.matches
    note = entry.note
    if not ok:
        found = entry.rule if entry.law == "constant" else f"{entry.law} std {entry.std:.3g}"
        if entry.matches and entry.law != "constant":
            found += f" ({entry.rule})"
        flag = f"{found}; expected {formula} = {rule.std:.3g} for c_proj (GPT-2's scaled init)"
        note = f"{flag}. {note}" if note else flag
    return replace(entry, expected=rule.name, expected_std=rule.std, ok=ok, note=note)
