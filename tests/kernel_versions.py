"""The engine's compiled loops (``engine/_power_sums.c``) for their tests: the module, the versions this machine
can run (plain C always, AVX2 where the CPU has it), and a fixture that runs a test under each in turn."""

from __future__ import annotations

from typing import Iterator

import pytest

from normstats.engine import moments

kernel = moments._power_sums
#: For a test module's ``pytestmark``: its tests need the compiled loops.
needs_kernel = pytest.mark.skipif(kernel is None, reason="normstats was built without its compiled loops")
VERSIONS = ["plain"] + (["avx2"] if kernel is not None and kernel.current() == "avx2" else [])


@pytest.fixture(params=VERSIONS)
def version(request: pytest.FixtureRequest) -> Iterator[str]:
    """The kernel switched to one version for the test, and back after it."""
    before = kernel.current()
    kernel.use(request.param)
    yield request.param
    kernel.use(before)
