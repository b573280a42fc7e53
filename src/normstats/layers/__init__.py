"""The layers: the ``Layer`` base class, the built-in layers (one module per family) and the activation built
from a formula (``--expr``). Importing this package registers the built-in layers; a new layer module adds one
import here.

May import: ``exact`` (the Gaussian integrals a layer's references are made of) and the foundation modules.
"""

from normstats.layers import activations, conv, dropout, linear, norms, pooling, softmax  # noqa: F401
from normstats.layers.base import Elementwise, Layer

__all__ = ["Elementwise", "Layer"]
