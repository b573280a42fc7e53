"""The compiled parts of normstats, two small C extensions (everything else is in ``pyproject.toml``):

* ``normstats.layers._relu_kernels``: ReLU's network passes fused with the NormProp shift and scale and the
  engine's row summaries (``normstats.layers.relu_kernels`` checks their arguments);
* ``normstats.engine._power_sums``: the engine's power sums of a chunk in one pass (``moments.PowerSums``).

Both are optional: where they do not compile (no C compiler, no Python headers) the install goes on without
them, and normstats runs the same arithmetic in numpy (the same numbers up to float rounding of the sums,
measured slower: see the README's benchmarks).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "normstats.layers._relu_kernels",
            ["src/normstats/layers/_relu_kernels.c"],
            optional=True,
        ),
        Extension("normstats.engine._power_sums", ["src/normstats/engine/_power_sums.c"], optional=True),
    ]
)
