"""The layers: the ``Layer`` base class, the built-in layers (one module per family) and the activation built
from a formula (``--expr``). Importing this package registers the built-in layers; a new layer module adds one
import here.

May import: ``exact`` (the Gaussian integrals a layer's references are made of) and the foundation modules.
"""

from normstats.layers import (  # noqa: F401
    activations,
    attention,
    conv,
    dropout,
    linear,
    norms,
    pooling,
    softmax,
    tokens,
)
from normstats.layers.base import Elementwise, Layer

__all__ = ["Elementwise", "Layer"]
