"""The one compiled part of normstats: ReLU's network passes fused with the NormProp shift and scale and the
engine's row summaries (``normstats.layers._relu_kernels``). Everything else is in ``pyproject.toml``.

The extension is optional: where it does not compile (no C compiler, no Python headers) the install goes on
without it, and networks run the same passes in numpy (the same numbers up to float rounding of the sums,
measured slower: see the README's network benchmark). ``normstats.layers.relu_kernels.AVAILABLE`` tells which.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "normstats.layers._relu_kernels",
            ["src/normstats/layers/_relu_kernels.c"],
            optional=True,
        )
    ]
)
