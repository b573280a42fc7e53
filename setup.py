"""The compiled parts of normstats, three small C extensions (everything else is in ``pyproject.toml``):

* ``normstats.layers._relu_kernels``: ReLU's network passes fused with the NormProp shift and scale and the
  engine's row summaries (``normstats.layers.relu_kernels`` checks their arguments);
* ``normstats.layers._gelu_kernels``: exact GELU's network passes, the same (``normstats.layers.gelu_kernels``);
* ``normstats.engine._power_sums``: the engine's power sums of a chunk in one pass (``moments.PowerSums``).

All are optional: where they do not compile (no C compiler, no Python headers) the install goes on without
them, and normstats runs the same arithmetic in numpy (the same numbers up to float rounding of the sums,
measured slower: see the README's benchmarks).
"""

import sys

from setuptools import Extension, setup

#: What every extension shares (``use`` and ``current``: the choice of loops its tests make).
LOOP_CHOICE = "src/normstats/_loop_choice.h"
#: What the two activations' passes share: their row summaries and buffer checks.
FUSED_PASS = "src/normstats/layers/_fused_pass.h"

setup(
    ext_modules=[
        Extension(
            "normstats.layers._relu_kernels",
            ["src/normstats/layers/_relu_kernels.c"],
            depends=[LOOP_CHOICE, FUSED_PASS],
            optional=True,
        ),
        Extension(
            "normstats.layers._gelu_kernels",
            ["src/normstats/layers/_gelu_kernels.c"],
            depends=[LOOP_CHOICE, FUSED_PASS],
            # erfc and exp; dlopen (libmvec's, where glibc has them)
            libraries=["m", "dl"] if sys.platform.startswith("linux") else ["m"] if sys.platform != "win32" else [],
            # a product and a sum rounded apart, as numpy's passes round them (no FMA where it is the default)
            extra_compile_args=["-ffp-contract=off"] if sys.platform != "win32" else [],
            optional=True,
        ),
        Extension(
            "normstats.engine._power_sums", ["src/normstats/engine/_power_sums.c"], depends=[LOOP_CHOICE], optional=True
        ),
    ]
)
