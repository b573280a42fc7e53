"""Built-in layers. Importing this package registers them all; a new layer module adds one import here."""

from normstats.layers import activations, conv, dropout, linear, pooling  # noqa: F401
from normstats.layers.base import STATS, Elementwise, Layer

__all__ = ["STATS", "Elementwise", "Layer"]
