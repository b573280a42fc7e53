"""Sample counts: the allowed range, and parsing of ``1e7``, ``10000000``, ``10_000_000`` and ``10M``."""

from __future__ import annotations

import re
from typing import Any

from normstats.errors import NormstatsError

MIN_SAMPLES = 2
MAX_SAMPLES = 10**12
_SUFFIX = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9, "T": 10**12}
#: Significant digits a count may have (1e12 needs 13; more only as trailing decimals like 1000000.000...).
_MAX_DIGITS = 40
_PATTERN = re.compile(r"^\s*(\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+]?\d+)?)\s*([kKMGBT]?)\s*$")


def allowed() -> str:
    return f"a whole number in [{MIN_SAMPLES}, 1e12] (e.g. 1e7, 10_000_000, 10M)"


def parse_samples(value: Any, option: str = "--samples") -> int:
    """An integer sample count from an int or a string, checked against the allowed range."""
    count: int | None = None
    if isinstance(value, bool):
        count = None
    elif isinstance(value, int):
        count = value
    elif isinstance(value, float) and value.is_integer():
        count = int(value)
    elif isinstance(value, str):
        count = _parse_text(value)
    if count is None or not MIN_SAMPLES <= count <= MAX_SAMPLES:
        raise NormstatsError(f"{option} must be {allowed()}; got {value!r}")
    return count


def _parse_text(text: str) -> int | None:
    match = _PATTERN.match(text)
    if not match:
        return None
    number, suffix = match.groups()
    number = number.replace("_", "")
    mantissa, _, exponent = number.lower().partition("e")
    whole, _, frac = mantissa.partition(".")
    if len((whole + frac).lstrip("0")) > _MAX_DIGITS or len(exponent.lstrip("+0")) > 3:
        # far beyond 1e12 (or a 5,000-digit count that int() refuses): out of range without computing it;
        # 10**(10**8) alone would take minutes
        return None
    # Exact decimal arithmetic: 1.5e3 is 1500, 1.5 is not a whole number.
    digits = int(whole + frac)
    power = int(exponent or 0) - len(frac)
    scale = _SUFFIX[suffix]
    if power >= 0:
        return digits * 10**power * scale
    divisor = 10**-power
    total = digits * scale
    return total // divisor if total % divisor == 0 else None
