"""When a run stops: after its samples, at a target standard error, after a time limit, or on Ctrl-C.

``--samples`` is the plan: without ``--target-se`` or ``--max-time`` a run takes exactly that many draws (for
``qmc`` rounded up so that each replicate holds a power of two). With a target or a time limit it is the cap,
and the default cap is :data:`~normstats.engine.sample_count.MAX_SAMPLES`.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from normstats.errors import NormstatsError

#: Stop reasons, as reported in the output (``stop`` key of a row).
SAMPLES = "samples"
TARGET_SE = "target-se"
MAX_TIME = "max-time"
INTERRUPTED = "interrupted"

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*$")


def parse_duration(value: Any, option: str = "--max-time") -> float:
    """Seconds from ``30s``, ``2m``, ``1h``, ``90`` (seconds) or a positive number."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise NormstatsError(f"{option} must be a positive duration such as 30s, 2m, 1h or 90 (seconds); got {value!r}")
    return seconds


def check_target_se(value: Any, option: str = "--target-se") -> float:
    try:
        target = float(value)
    except (TypeError, ValueError):
        target = math.nan
    if isinstance(value, bool) or not math.isfinite(target) or target <= 0:
        raise NormstatsError(f"{option} must be a positive number such as 1e-5; got {value!r}")
    return target


@dataclass
class StopRule:
    """Stop once every standard error is at or below ``target_se`` (or each named one at or below its own
    target in ``targets``, ``{statistic: se}``: the default table's, :func:`normstats.api.table`) or after
    ``max_time`` seconds."""

    target_se: float | None = None
    max_time: float | None = None
    started: float = field(default_factory=time.monotonic)
    targets: dict[str, float] | None = None

    @property
    def open_ended(self) -> bool:
        """Whether the sample count is only a cap."""
        return self.target_se is not None or self.max_time is not None or self.targets is not None

    def share(self, parts: int) -> StopRule:
        """The rule for the next of ``parts`` runs made in turn under this one (a network's inits): the same
        targets, and an equal share of the time this rule has left, counted from now (none left: each later run
        stops at its first checkpoint). Without a time limit, this rule itself."""
        if self.max_time is None:
            return self
        now = time.monotonic()
        left = max(self.max_time - (now - self.started), 0.0)
        return StopRule(self.target_se, left / max(parts, 1), now, self.targets)

    def check(self, estimates: dict[str, tuple[float, float]]) -> str | None:
        """The reason to stop now, or None to go on."""
        if self.target_se is not None and all(se <= self.target_se for _, se in estimates.values()):
            return TARGET_SE
        if self.targets is not None and all(estimates[name][1] <= se for name, se in self.targets.items()):
            return TARGET_SE
        if self.max_time is not None and time.monotonic() - self.started >= self.max_time:
            return MAX_TIME
        return None
