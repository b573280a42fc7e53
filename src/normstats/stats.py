"""The four statistics every layer (and every layer of a network) reports, in the order they are shown.

``fp`` is the forward pass: the mean and standard deviation of the output ``y``; ``bp`` is the backward pass:
the mean and standard deviation of the input gradient ``dx``, under ``x ~ N(0, I)`` and an upstream gradient
``dy ~ N(0, I)`` independent of ``x``.
"""

from __future__ import annotations

STATS: tuple[str, ...] = ("fp_mean", "fp_std", "bp_mean", "bp_std")
