"""The rows of the default table (``normstats table``): the layers of the published NormProp table, then the
layers networks run beside them (overlapping 3x3 pooling with stride 2, inverted dropout), and the normalization
layers and softmax of modern networks at the sizes they run at."""

from __future__ import annotations

from typing import Any

#: ``(layer, params)`` of every default row: the published table in its order, then the practitioner's rows.
DEFAULT_ROWS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("linear", {"fan_in": 128, "fan_out": 64, "normalize": "fan-in"}),
    ("linear", {"fan_in": 128, "fan_out": 64, "normalize": "fan-out"}),
    ("relu", {}),
    ("sigmoid", {}),
    ("maxpool", {"k": 3}),
    ("maxpool", {"k": 2}),
    ("avgpool", {"k": 3}),
    ("avgpool", {"k": 2}),
    ("dropout", {"p": 0.5}),
    ("maxpool", {"k": 3, "stride": 2}),
    ("avgpool", {"k": 3, "stride": 2}),
    ("dropout", {"p": 0.5, "convention": "inverted"}),
    ("dropout", {"p": 0.9, "convention": "inverted"}),
    ("batchnorm", {"batch": 8}),
    ("batchnorm", {"batch": 32}),
    ("layernorm", {"features": 64}),
    ("layernorm", {"features": 768}),
    ("rmsnorm", {"features": 768}),
    ("softmax", {"n": 16}),
)

#: The depth table (``normstats export --depth``): ``(spec, input, normprop)`` of every run, 20 dense ReLU layers
#: at width 512 in each NormProp mode, then an NF-ResNet-style stack of residual blocks.
DEPTH_RUNS: tuple[tuple[str, int, str], ...] = (
    ("20*(linear relu)", 512, "none"),
    ("20*(linear relu)", 512, "fp"),
    ("20*(linear relu)", 512, "bp"),
    ("20*(linear relu)", 512, "split"),
    ("16*res(linear relu linear, alpha=0.2, beta=auto)", 512, "fp"),
)
#: Draws of every depth run (one network each, seed 0).
DEPTH_DRAWS = 5000
