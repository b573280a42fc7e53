"""The init audit's result: one :class:`ParamAudit` per parameter of a PyTorch model (computed by
:mod:`normstats.models.init_audit`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: What ``rule`` says when no rule matches.
NONE_OF_THESE = "none of these"


@dataclass(frozen=True)
class ParamAudit:
    """One parameter: its shape, its fans, the statistics of its values, the law they follow and the init rules
    they match.

    ``fan_in`` and ``fan_out`` are ``torch.nn.init._calculate_fan_in_and_fan_out``'s; a 1-D parameter has none,
    except a ``bias`` beside a ``weight`` in the same module, which takes that weight's (``fan_source``), as
    PyTorch's default bias init does. ``std`` is the sample std (``n - 1``), ``scaled`` is ``std * sqrt(fan_in)``.
    ``law`` is what the excess kurtosis says (normal 0, uniform -1.2, each within 4 se): ``normal``,
    ``uniform``, ``normal or uniform`` (too few values to tell), ``neither``, ``constant``. ``matches`` lists every
    rule whose law fits and whose std the sample std matches within 4 se (the se of a sample std under that
    rule's law) with a mean within 4 se of 0; ``rule`` joins them with "or", or says "none of these".
    ``rule_std``, ``se`` and ``z`` are those of the first match. ``expected`` is the rule a convention expects for
    the parameter's name (GPT-2's ``c_proj``), ``expected_std`` its std, ``ok`` whether it matched, and ``note``
    says what went wrong where it did not."""

    name: str
    shape: tuple[int, ...]
    numel: int
    fan_in: int | None
    fan_out: int | None
    fan_source: str | None
    mean: float
    std: float
    scaled: float | None
    excess_kurtosis: float | None
    law: str
    matches: tuple[str, ...]
    rule: str
    rule_std: float | None
    se: float | None
    z: float | None
    source: str | None
    expected: str | None = None
    expected_std: float | None = None
    ok: bool | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``$defs/param_audit`` of the schema); a number that is not finite (the std of a
        parameter with no values) is ``null``."""
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in self._fields().items()}

    def _fields(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "numel": self.numel,
            "fan_in": self.fan_in,
            "fan_out": self.fan_out,
            "fan_source": self.fan_source,
            "mean": self.mean,
            "std": self.std,
            "std_times_sqrt_fan_in": self.scaled,
            "excess_kurtosis": self.excess_kurtosis,
            "law": self.law,
            "matches": list(self.matches),
            "rule": self.rule,
            "rule_std": self.rule_std,
            "se": self.se,
            "z": self.z,
            "source": self.source,
            "expected": self.expected,
            "expected_std": self.expected_std,
            "ok": self.ok,
            "note": self.note,
        }
