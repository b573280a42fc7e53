"""Statistics that are exact in every draw, and how a run reports them.

Some statistics take the same value in every draw, whatever the draw: a centred normalization's outputs sum to 0
in every group, so its fp mean is 0 in every draw; a softmax's outputs sum to 1, so its fp mean is ``1/n``; under
the ``conditional`` estimator the upstream gradient is integrated out and ``E[dx | x] = J^T E[dy] = 0``, so the bp
mean is 0 in every draw. Such a statistic has no sampling error. Its estimate differs from the exact value only by
float rounding, and its "standard error" is the spread of rounding errors: ``1.2e-18 ± 1.6e-19`` with a 95% interval
that excludes the exact 0 about four times in five. So it is reported as exact: the value, se 0, said in words,
and never z-tested as noise.

How the engine knows: the layer declares it (:meth:`normstats.layers.base.Layer.exact_statistics`, which says so
for its settings, e.g. a centred normalization without an affine shift), and the estimator adds the bp mean when
it integrates ``dy`` out, with what the layer declares exact under that estimator only
(:meth:`~normstats.layers.base.Layer.conditional_exact_statistics`: a draw's ``E[dx^2 | x]`` pooled is the same
for every ``x`` where the Jacobian does not depend on ``x``, as a linear layer's or average pooling's, or routes
each output to one input, as max pooling's). Nothing is inferred from the numbers; but a declaration is checked against the run: an
estimate farther than :data:`ROUNDING` from the declared value is reported as it came (with its se and z), so a
wrong declaration or a broken pass shows instead of being hidden.
"""

from __future__ import annotations

import math

from normstats.layers.base import Layer

#: How far (relative to ``max(1, |value|)``) an estimate may sit from the declared exact value and still be
#: rounding: float64 sums of up to 2^40 terms lose far less than this.
ROUNDING = 1e-9


def exact_statistics(layer: Layer, estimator: str) -> dict[str, float]:
    """``{statistic: value}`` of every statistic of ``layer`` (the layer reported, not a shortcut's stand-in)
    that is exact in every draw under ``estimator``."""
    out = dict(layer.exact_statistics())
    if estimator == "conditional":
        for name, value in layer.conditional_exact_statistics().items():
            out.setdefault(name, value)
        out.setdefault("bp_mean", 0.0)  # E[dx | x] = J^T E[dy] = 0, whatever x
    return out


def agrees(estimate: float, value: float) -> bool:
    """Whether ``estimate`` is ``value`` up to float rounding."""
    return math.isfinite(estimate) and abs(estimate - value) <= ROUNDING * max(1.0, abs(value))
