"""Typed layer parameters: a name, a type, a default, an allowed range, and their validation.

A layer declares its parameters once as a tuple of :class:`Param`; the registry, the CLI and ``normstats list``
all read that declaration, so a parameter's range is written in one place.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

from normstats.errors import ParameterError

#: The largest magnitude accepted for a scale-like layer parameter (a slope, alpha, beta, a clip value).
#: A factor of a million either way covers every parametrization in use (PyTorch's defaults lie in
#: [0.01, 20]); beyond it the statistics are those of the limiting layer (relu, identity) to double precision,
#: and near 1e77 the fourth powers the engine sums overflow.
SCALE_BOUND = 1e6


@dataclass(frozen=True)
class Param:
    """One parameter of a layer.

    ``type`` is ``int``, ``float`` or ``str``; a ``str`` parameter takes one of ``choices``, or has its own
    syntax: ``parse`` returns the value in canonical form (or ``None`` when the text is not valid) and
    ``syntax`` says in words what is allowed. Bounds are
    inclusive unless ``low_open``/``high_open`` is set. A ``default`` of ``None`` means the layer derives the
    value from the others (for instance a pooling stride that defaults to the kernel size); ``default_text``
    says how, for ``normstats list``.
    """

    name: str
    type: type
    default: Any
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    default_text: str | None = None
    parse: Callable[[str], Any] | None = None
    syntax: str | None = None

    @property
    def option(self) -> str:
        """The CLI spelling: ``fan_in`` -> ``--fan-in``."""
        return "--" + self.name.replace("_", "-")

    def allowed(self) -> str:
        """The allowed values in words, e.g. ``an integer in [1, 32]`` or ``one of: sqrt, inverted``."""
        if self.choices is not None:
            return "one of: " + ", ".join(self.choices)
        if self.syntax is not None:
            return self.syntax
        kind = "an integer" if self.type is int else "a number"
        if self.low is None and self.high is None:
            return kind
        if self.high is None:
            return f"{kind} {'>' if self.low_open else '>='} {_fmt(self.low)}"
        if self.low is None:
            return f"{kind} {'<' if self.high_open else '<='} {_fmt(self.high)}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"{kind} in {left}{_fmt(self.low)}, {_fmt(self.high)}{right}"

    def default_display(self) -> str:
        if self.default_text is not None:
            return self.default_text
        return str(self.default)

    def validate(self, value: Any, layer: str) -> Any:
        """Return ``value`` converted to this parameter's type, or raise :class:`ParameterError`."""
        converted = self._convert(value)
        if converted is None or not self._in_range(converted):
            raise ParameterError(
                f"parameter {self.option} of layer '{layer}' must be {self.allowed()}; got {value!r}"
            )
        return converted

    def _convert(self, value: Any) -> Any:
        if self.type is str:
            if not isinstance(value, str):
                return None
            return value if self.parse is None else self.parse(value)
        if isinstance(value, bool):
            return None
        if isinstance(value, str):
            text = value.strip().replace("_", "")
            try:
                value = int(text) if self.type is int else float(text)
            except ValueError:
                return None
        if self.type is int:
            return int(value) if isinstance(value, numbers.Integral) else None
        if isinstance(value, numbers.Real) and math.isfinite(float(value)):
            return float(value)
        return None

    def _in_range(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return False
        return True


def _fmt(x: float | None) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)
