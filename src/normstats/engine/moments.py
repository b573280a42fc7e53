"""Streaming moments with pairwise merges, and the standard errors computed from them.

:class:`Moments` holds count, mean and the sums of 2nd, 3rd and 4th powers of deviations from the mean of a
stream of values; two partial results merge exactly (Chan et al. 1979 for the 2nd power, Pebay 2008 for the
3rd and 4th), so a stream can be cut into chunks of any size and merged in any grouping with only float
rounding as the difference.

:class:`CoMoments` does the same for pairs ``(a, q)``; it serves the standard errors of a :class:`Tally`.

:class:`ConditionalTally` is the :class:`Tally` of input gradients whose upstream gradient was integrated out
(the conditional estimator): a draw contributes ``a = 0`` and ``q = mean_i E[dx_i^2 | x]``, the same pair with
the same expectations, so the same delta method gives its errors.

:class:`Tally` is what the engine keeps for one quantity (a layer's outputs, or its input gradients). A draw
contributes ``width`` values that need not be independent (the gradients within one pooling window, the
outputs of a linear layer that share one x). The estimates pool every value; the standard errors treat the
draw as the independent unit. For ``width == 1`` they are the textbook iid formulas (mean: ``s / sqrt(n)``;
std: the delta method with the 4th central moment). For ``width > 1`` each draw is summarized by its mean
``a`` and its mean square ``q``; the pooled mean is ``E a`` and the pooled variance ``E q - (E a)^2``, and the
delta method over the draws' covariance of ``(a, q)`` gives the errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Two-sided 95% normal quantile, ``scipy.stats.norm.ppf(0.975)``.
Z95 = 1.959963984540054


def row_squares(batch: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The sum of squares of each row of ``batch`` (``(draws, width)``, any layout), into ``out``: ``np.vecdot``
    where numpy has it (2.0 on), otherwise ``einsum``. At width 512, 408 rows: 40 us against einsum's 63-70 us
    (one core); the two differ by float rounding (a few ulps of the sum)."""
    if _VECDOT is not None:
        return _VECDOT(batch, batch, out=out)
    return np.einsum("ij,ij->i", batch, batch, out=out)


_VECDOT = getattr(np, "vecdot", None)

try:  # the power sums in one pass, where the package was built with a C compiler (setup.py)
    from normstats.engine import _power_sums
except ImportError:  # numpy's passes instead: the same sums up to float rounding
    _power_sums = None


def power_sums_version() -> str | None:
    """The compiled power-sum loop that runs: ``"avx2"``, ``"plain"`` (C), or ``None`` (not built: numpy)."""
    return _power_sums.current() if _power_sums is not None else None


def vector_row_sums() -> bool:
    """Whether :func:`row_sums` runs its vectorized (AVX2) loop, the only one faster than two vectorized passes
    (torch's, numpy's): the plain C loop takes a value at a time, about 0.9 ns a float32 value in cache against
    0.4 for two torch passes and 0.1 to 0.2 for the AVX2 loop (one core)."""
    return power_sums_version() == "avx2"


def row_sums(values: np.ndarray, width: int) -> tuple[float, float, float]:
    """One pass over ``values`` (C-contiguous float32 or float64) seen as rows of ``width`` values: the sum, the
    sum of squares, and the sum over rows of the squared row sum, accumulated in float64 (the AVX2 loop sums
    float32 values in float32 within spans of 512, 16 values to a lane, first: at most 16 float32 roundings a
    term more; a span whose float32 sums are not finite is summed again in float64). Compiled; only where
    :func:`power_sums_version` is not ``None``. Raises
    ``ValueError`` for other items (or byte order), a ``width`` that does not divide the values, or a strided
    array."""
    if _power_sums is None:
        raise RuntimeError("normstats was built without its compiled loops: no row_sums")
    return _power_sums.row_sums(values, width)


@dataclass(frozen=True)
class Moments:
    """Count, mean and sums of powers of deviations ``sum (v - mean)^p`` for p = 2, 3, 4."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    m4: float = 0.0

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0:
            return cls()
        mean = float(v.mean())
        d = v - mean
        d2 = d * d
        return cls(v.size, mean, float(d2.sum()), float(np.dot(d2, d)), float(np.dot(d2, d2)))

    def merge(self, other: Moments) -> Moments:
        """The moments of both streams together (Pebay 2008, eq. 3.1 with 2.1)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        na, nb = self.n, other.n
        n = na + nb
        delta = other.mean - self.mean
        d_n = delta / n
        mean = self.mean + d_n * nb
        m2 = self.m2 + other.m2 + delta * d_n * na * nb
        m3 = (
            self.m3
            + other.m3
            + delta * d_n * d_n * na * nb * (na - nb)
            + 3.0 * d_n * (na * other.m2 - nb * self.m2)
        )
        m4 = (
            self.m4
            + other.m4
            + delta * d_n**3 * na * nb * (na * na - na * nb + nb * nb)
            + 6.0 * d_n * d_n * (na * na * other.m2 + nb * nb * self.m2)
            + 4.0 * d_n * (na * other.m3 - nb * self.m3)
        )
        return Moments(n, mean, m2, m3, m4)

    @property
    def var(self) -> float:
        """Population (1/n) variance of the values seen."""
        return self.m2 / self.n if self.n else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    def se_mean(self) -> float:
        """Standard error of the mean for iid values: ``s / sqrt(n)``."""
        return math.sqrt(self.var / self.n) if self.n > 1 else math.nan

    def se_std(self) -> float:
        """Standard error of the standard deviation for iid values (delta method):
        ``Var(s^2) ~ (mu4 - sigma^4) / n`` and ``se(s) = sqrt(Var(s^2)) / (2 s)``."""
        if self.n < 2:
            return math.nan
        var = self.var
        if var <= 0.0:
            return 0.0
        mu4 = self.m4 / self.n
        return math.sqrt(max(mu4 - var * var, 0.0) / self.n) / (2.0 * math.sqrt(var))


@dataclass(frozen=True)
class CoMoments:
    """Count, means and co-moment sums ``sum da^2, sum dq^2, sum da dq`` of a stream of pairs ``(a, q)``."""

    n: int = 0
    mean_a: float = 0.0
    mean_q: float = 0.0
    caa: float = 0.0
    cqq: float = 0.0
    caq: float = 0.0

    @classmethod
    def of(cls, a: np.ndarray, q: np.ndarray) -> CoMoments:
        a = np.asarray(a, dtype=np.float64).ravel()
        q = np.asarray(q, dtype=np.float64).ravel()
        if a.size == 0:
            return cls()
        ma, mq = float(a.mean()), float(q.mean())
        da, dq = a - ma, q - mq
        return cls(a.size, ma, mq, float(np.dot(da, da)), float(np.dot(dq, dq)), float(np.dot(da, dq)))

    def merge(self, other: CoMoments) -> CoMoments:
        """Both streams together (Chan, Golub and LeVeque 1979, extended to a cross term)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        na, nb = self.n, other.n
        n = na + nb
        da = other.mean_a - self.mean_a
        dq = other.mean_q - self.mean_q
        w = na * nb / n
        return CoMoments(
            n,
            self.mean_a + da * nb / n,
            self.mean_q + dq * nb / n,
            self.caa + other.caa + da * da * w,
            self.cqq + other.cqq + dq * dq * w,
            self.caq + other.caq + da * dq * w,
        )


@dataclass(frozen=True)
class Tally:
    """Everything kept about one quantity: pooled moments of its values and, when a draw contributes more
    than one value, the per-draw summaries that give honest standard errors."""

    width: int
    values: Moments
    units: CoMoments | None = None

    @classmethod
    def empty(cls, width: int) -> Tally:
        return cls(width, Moments(), CoMoments() if width > 1 else None)

    @classmethod
    def of(cls, batch: np.ndarray) -> Tally:
        """Tally a batch of shape ``(draws, width)``."""
        batch = np.asarray(batch, dtype=np.float64)
        width = batch.shape[1]
        units = None
        if width > 1:
            units = CoMoments.of(batch.mean(axis=1), row_squares(batch) / width)
        return cls(width, Moments.of(batch), units)

    def merge(self, other: Tally) -> Tally:
        units = None if self.units is None else self.units.merge(other.units)  # type: ignore[arg-type]
        return Tally(self.width, self.values.merge(other.values), units)

    @property
    def draws(self) -> int:
        return self.values.n // self.width

    @property
    def mean(self) -> float:
        return self.values.mean

    @property
    def std(self) -> float:
        return self.values.std

    def se_mean(self) -> float:
        if self.units is None:
            return self.values.se_mean()
        return cluster_se_mean(self.units)

    def se_std(self) -> float:
        if self.units is None:
            return self.values.se_std()
        return cluster_se_std(self.units)


@dataclass(frozen=True)
class ConditionalTally:
    """The tally of a quantity known through its per-draw conditional moments ``a = E[mean_i v_i | x] = 0``
    and ``q = E[mean_i v_i^2 | x]`` (input gradients with ``dy`` integrated out). The interface of
    :class:`Tally`; the mean is exactly 0 (se 0) and the std is ``sqrt(E q)`` with the delta-method se."""

    width: int
    units: CoMoments

    @classmethod
    def empty(cls, width: int) -> ConditionalTally:
        return cls(width, CoMoments())

    def merge(self, other: ConditionalTally) -> ConditionalTally:
        return ConditionalTally(self.width, self.units.merge(other.units))

    @property
    def draws(self) -> int:
        return self.units.n

    @property
    def mean(self) -> float:
        return self.units.mean_a if self.units.n else math.nan

    @property
    def std(self) -> float:
        u = self.units
        return math.sqrt(max(u.mean_q - u.mean_a * u.mean_a, 0.0)) if u.n else math.nan

    def se_mean(self) -> float:
        return cluster_se_mean(self.units)

    def se_std(self) -> float:
        return cluster_se_std(self.units)


def cluster_se_mean(u: CoMoments) -> float:
    """Standard error of ``E a`` from iid draws of ``(a, q)``: ``sd(a) / sqrt(n)``."""
    return math.sqrt(u.caa / u.n / u.n) if u.n > 1 else math.nan


def cluster_se_std(u: CoMoments) -> float:
    """Delta-method standard error of ``sqrt(E q - (E a)^2)`` from iid draws of ``(a, q)``.

    With ``s = sqrt(Q - A^2)`` the gradient is ``(-A / s, 1 / (2 s))``; ``Var(s_hat) = g' C g / n`` with
    ``C`` the covariance of ``(a, q)`` over draws.
    """
    if u.n < 2:
        return math.nan
    var = u.mean_q - u.mean_a * u.mean_a
    if var <= 0.0:
        return 0.0
    s = math.sqrt(var)
    ga, gq = -u.mean_a / s, 0.5 / s
    quad = (ga * ga * u.caa + 2.0 * ga * gq * u.caq + gq * gq * u.cqq) / u.n
    return math.sqrt(max(quad, 0.0) / u.n)


class PowerSums:
    """The engine's hot-loop accumulator for one quantity: raw power sums about a fixed shift, chunk by chunk.

    :meth:`add` costs one pass of compiled code (``_power_sums.c``, where the package was built with a C
    compiler: 14 against 91 us for 2^16 values, one core), or else a handful of numpy passes over preallocated
    scratch buffers; it allocates nothing. The shift is the mean of the first chunk, so the sums stay small and
    converting them to central moments
    (:meth:`tally`) loses nothing worth speaking of. The result depends on the chunk size only through float
    rounding. For ``width > 1`` the per-draw summaries ``a`` (mean) and ``q`` (mean square) are accumulated
    the same way for the cluster-robust standard errors of :class:`Tally`.
    """

    def __init__(self, width: int, capacity: int) -> None:
        self.width = width
        self.n = 0
        self.shift: float | None = None
        self.sums = [0.0, 0.0, 0.0, 0.0]  # sum d, d^2, d^3, d^4 with d = v - shift
        self._d = np.empty(capacity * width)
        self._d2 = np.empty(capacity * width)
        self._ones = np.ones(capacity * width)  # sums as dot products: BLAS ddot beats numpy's sum here
        if width > 1:
            self._row_weights = np.full(width, 1.0 / width)
            self.unit_shift: tuple[float, float] | None = None
            self.unit_sums = [0.0, 0.0, 0.0, 0.0, 0.0]  # sum da, dq, da^2, dq^2, da dq
            self._a = np.empty(capacity)
            self._q = np.empty(capacity)

    def add(self, batch: np.ndarray) -> None:
        """Add a batch of shape ``(draws, width)`` (any memory layout)."""
        m = batch.shape[0]
        k = m * self.width
        if k == 0:
            return
        if self.shift is None:
            self.shift = float(batch.mean())
        s = self.sums
        if _power_sums is not None and batch.dtype == np.float64 and batch.flags.c_contiguous:
            p = _power_sums.power_sums(batch, self.shift)  # one pass (compiled), the same up to rounding
            s[0] += p[0]
            s[1] += p[1]
            s[2] += p[2]
            s[3] += p[3]
        else:
            d, d2 = self._d[:k], self._d2[:k]
            np.subtract(batch, self.shift, out=d.reshape(batch.shape))
            np.multiply(d, d, out=d2)
            s[0] += float(np.dot(d, self._ones[:k]))
            s[1] += float(np.dot(d, d))
            s[2] += float(np.dot(d2, d))
            s[3] += float(np.dot(d2, d2))
        self.n += k
        if self.width > 1:
            self._add_units(batch, m)

    def _add_units(self, batch: np.ndarray, m: int) -> None:
        a, q = self._a[:m], self._q[:m]
        np.dot(batch, self._row_weights, out=a)  # BLAS gemv: ~9x faster than add.reduce along a short row
        row_squares(batch, out=q)
        q *= 1.0 / self.width
        if self.unit_shift is None:
            self.unit_shift = (float(a.mean()), float(q.mean()))
        a -= self.unit_shift[0]
        q -= self.unit_shift[1]
        u = self.unit_sums
        ones = self._ones[:m]
        u[0] += float(np.dot(a, ones))
        u[1] += float(np.dot(q, ones))
        u[2] += float(np.dot(a, a))
        u[3] += float(np.dot(q, q))
        u[4] += float(np.dot(a, q))

    def tally(self) -> Tally:
        """The sums as a :class:`Tally` (central moments about the mean)."""
        if self.n == 0:
            return Tally.empty(self.width)
        n = self.n
        s1, s2, s3, s4 = self.sums
        mu = s1 / n
        values = Moments(
            n,
            self.shift + mu,  # type: ignore[operator]
            s2 - n * mu * mu,
            s3 - 3.0 * mu * s2 + 2.0 * n * mu**3,
            s4 - 4.0 * mu * s3 + 6.0 * mu * mu * s2 - 3.0 * n * mu**4,
        )
        units = None
        if self.width > 1:
            draws = n // self.width
            sa, sq, saa, sqq, saq = self.unit_sums
            ma, mq = sa / draws, sq / draws
            shift_a, shift_q = self.unit_shift  # type: ignore[misc]
            units = CoMoments(
                draws, shift_a + ma, shift_q + mq, saa - draws * ma * ma, sqq - draws * mq * mq,
                saq - draws * ma * mq,
            )
        return Tally(self.width, values, units)


class ConditionalSums:
    """The hot-loop accumulator of :class:`ConditionalTally`: per draw ``q = mean_i g_i`` of the conditional
    second moments ``g`` (``draws x width``), summed with its square about a fixed shift (the first chunk's
    mean), allocation-free like :class:`PowerSums`. Only the row means of ``g`` enter, so a sampler that knows
    them in summary may pass fewer columns with the same row means (one column: ``q`` itself)."""

    def __init__(self, width: int, capacity: int) -> None:
        self.width = width
        self.draws = 0
        self.shift: float | None = None
        self.sums = [0.0, 0.0]  # sum dq, dq^2 with dq = q - shift
        self._q = np.empty(capacity)
        self._ones = np.ones(capacity)

    def add(self, g: np.ndarray) -> None:
        m = g.shape[0]
        if m == 0:
            return
        q = self._q[:m]
        if self.shift is None:
            self.shift = float(g.mean())
        if g.shape[1] == 1:
            np.subtract(g[:, 0], self.shift, out=q)
        else:
            # add.reduce, not a (faster) BLAS gemv: equal rows must give bit-equal sums, or a g that does not
            # vary (linear, average pooling) would show a rounding-level se instead of an exact 0
            np.add.reduce(g, axis=1, out=q)
            q *= 1.0 / g.shape[1]
            q -= self.shift
        self.sums[0] += float(np.dot(q, self._ones[:m]))
        self.sums[1] += float(np.dot(q, q))
        self.draws += m

    def tally(self) -> ConditionalTally:
        if self.draws == 0:
            return ConditionalTally.empty(self.width)
        n = self.draws
        s1, s2 = self.sums
        mq = s1 / n
        return ConditionalTally(
            self.width, CoMoments(n, 0.0, self.shift + mq, 0.0, max(s2 - n * mq * mq, 0.0), 0.0)  # type: ignore[operator]
        )


class DrawSums:
    """A lighter :class:`PowerSums` for quantities of many values per draw (a network's records, all of them at
    once): only each draw's summaries ``a`` (mean) and ``q`` (mean square) are formed, two passes over the
    values (a BLAS gemv and :func:`row_squares`) instead of eight, and everything else follows from them.

    The pooled moments come from the draws' summaries: with ``w`` values a draw and ``mu`` the pooled mean,
    ``sum_ij (v_ij - mu)^2 = w sum_i (q_i - a_i^2) + w sum_i (a_i - mu)^2`` (within draws, then between them),
    so ``n``, the mean and ``m2`` are those of :class:`PowerSums` up to float rounding (the within-draw term
    cancels only at the scale of one draw's mean against its spread). The 3rd and 4th powers are not kept
    (``m3 = m4 = nan``): with ``width > 1`` no standard error uses them (:class:`Tally` takes them from the
    per-draw covariance of ``(a, q)``).

    The summaries of every record wait in one ``(records, draws)`` buffer of :attr:`PENDING` draws (or the
    chunk, if larger), and the arithmetic on them runs once a buffer, for all records together: a dozen numpy
    calls, where one record at a time took a dozen per record and chunk (on ``20*(linear relu)`` at width 512,
    80 records: about 2% of the run). The sums about the first buffer's means are those of :class:`PowerSums`
    up to float rounding. A chunk is framed by :meth:`begin` and :meth:`end`, and every record gets its values
    once in between (:meth:`add` or :meth:`rows`, in any order).
    """

    #: Draws whose summaries are buffered before they are summed.
    PENDING = 2048

    def __init__(self, widths: list[int] | tuple[int, ...], capacity: int) -> None:
        if any(w < 2 for w in widths):
            raise ValueError("DrawSums tallies quantities of at least 2 values a draw; use PowerSums")
        self.widths = tuple(widths)
        count = len(self.widths)
        size = max(capacity, self.PENDING)
        self.draws = 0
        self._inv_width = 1.0 / np.array(self.widths, dtype=np.float64)[:, None]
        self._row_weights = {w: np.full(w, 1.0 / w) for w in set(self.widths)}
        self.unit_shift: tuple[np.ndarray, np.ndarray] | None = None
        self.unit_sums = np.zeros((5, count))  # sum da, dq, da^2, dq^2, da dq by record
        self.within = np.zeros(count)  # sum_i (q_i - a_i^2) by record
        self._a = np.empty((count, size))
        self._q = np.empty((count, size))
        self._t = np.empty((count, size))
        self._pending = 0
        self._chunk = 0

    def begin(self, draws: int) -> None:
        """Open a chunk of ``draws`` draws (summing what is buffered first, if they would not fit)."""
        if self._pending + draws > self._a.shape[1]:
            self._flush()
        self._chunk = draws

    def add(self, record: int, batch: np.ndarray) -> None:
        """Record ``record``'s values over the open chunk, ``(draws, width)`` in any memory layout (read before
        this returns)."""
        k, m = self._pending, self._chunk
        if batch.shape[0] != m:
            raise ValueError(f"record {record} got {batch.shape[0]} draws in a chunk of {m}")
        np.dot(batch, self._row_weights[self.widths[record]], out=self._a[record, k : k + m])
        row_squares(batch, out=self._q[record, k : k + m])

    def rows(self, record: int) -> tuple[np.ndarray, np.ndarray]:
        """Where the row means and the row sums of squares of ``record``'s values over the open chunk go: a pass
        that computes them as it writes the values (ReLU's compiled loops) puts them here instead of
        :meth:`add`."""
        k, m = self._pending, self._chunk
        return self._a[record, k : k + m], self._q[record, k : k + m]

    def end(self) -> None:
        """Close the chunk: every record has had its values."""
        self._pending += self._chunk
        self._chunk = 0

    def _flush(self) -> None:
        """Sum the buffered summaries of every record."""
        m = self._pending
        if m == 0:
            return
        a, q, t = self._a[:, :m], self._q[:, :m], self._t[:, :m]
        q *= self._inv_width
        np.multiply(a, a, out=t)
        np.subtract(q, t, out=t)
        self.within += t.sum(axis=1)
        if self.unit_shift is None:
            self.unit_shift = (a.mean(axis=1), q.mean(axis=1))
        a -= self.unit_shift[0][:, None]
        q -= self.unit_shift[1][:, None]
        u = self.unit_sums
        u[0] += a.sum(axis=1)
        u[1] += q.sum(axis=1)
        for row, (left, right) in enumerate(((a, a), (q, q), (a, q)), start=2):
            np.multiply(left, right, out=t)
            u[row] += t.sum(axis=1)
        self.draws += m
        self._pending = 0

    def tallies(self) -> list[Tally]:
        """Every record's :class:`Tally`."""
        self._flush()
        if self.draws == 0:
            return [Tally.empty(w) for w in self.widths]
        draws = self.draws
        sa, sq, saa, sqq, saq = (row.tolist() for row in self.unit_sums)
        shift_a, shift_q = (v.tolist() for v in self.unit_shift)  # type: ignore[union-attr]
        within = self.within.tolist()
        out = []
        for r, w in enumerate(self.widths):
            ma, mq = sa[r] / draws, sq[r] / draws
            caa = saa[r] - draws * ma * ma
            units = CoMoments(draws, shift_a[r] + ma, shift_q[r] + mq, caa, sqq[r] - draws * mq * mq,
                              saq[r] - draws * ma * mq)
            values = Moments(draws * w, shift_a[r] + ma, w * (within[r] + caa), math.nan, math.nan)
            out.append(Tally(w, values, units))
        return out
