"""Which compiled loops run (``normstats.compiled()``): each is ``"avx2"``, ``"plain"`` or ``None`` (built without
a C compiler), and is what the loop itself reports. Where ``NORMSTATS_REQUIRE_COMPILED=1`` (set by ``.ci/run``,
whose machine has a C compiler), all must be there: otherwise a failed build would only skip their tests."""

from __future__ import annotations

import os

import normstats
from normstats.engine import moments
from normstats.layers import gelu_kernels, relu_kernels


def test_compiled_names_the_loops_that_run() -> None:
    got = normstats.compiled()
    assert set(got) == {"relu_passes", "gelu_passes", "power_sums"}
    assert all(v in ("avx2", "plain", None) for v in got.values()), got
    assert got["relu_passes"] == (relu_kernels._kernels.current() if relu_kernels.AVAILABLE else None)
    assert got["gelu_passes"] == (gelu_kernels._kernels.current() if gelu_kernels.AVAILABLE else None)
    assert got["power_sums"] == (moments._power_sums.current() if moments._power_sums is not None else None)
    if os.environ.get("NORMSTATS_REQUIRE_COMPILED") == "1":
        assert None not in got.values(), f"the C extensions were not built: {got}"
