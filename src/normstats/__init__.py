"""normstats: the mean and standard deviation of every layer's output and input gradient under
x ~ N(0, I), dy ~ N(0, I), by Monte Carlo with honest standard errors, checked against exact references.

>>> import normstats
>>> row = normstats.simulate("maxpool", k=3, samples=10**5, seed=0)
>>> round(row.fp_mean.reference, 4)
1.485
"""

from normstats import layers as _layers  # noqa: F401  (registers the built-in layers)
from normstats.api import (
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    LayerInfo,
    audit,
    compiled,
    init_audit,
    jacobian,
    layers,
    meanfield,
    model,
    network,
    simulate,
    solve,
    table,
    version,
    width_sweep,
)
from normstats.errors import NormstatsError, ParameterError, UnknownLayerError
from normstats.output.results.init_audit import ParamAudit
from normstats.output.results.jacobian import JacobianResult
from normstats.output.results.model import ModelResult, ModuleStats
from normstats.output.results.network import LayerStats, NetworkResult
from normstats.output.results.table import Row, Stat, Table
from normstats.output.results.width_sweep import Slope, WidthSweepResult
from normstats.registry import get_layer, list_layers, make_layer, register_layer

__version__ = version()

__all__ = [
    "DEFAULT_SAMPLES",
    "DEFAULT_SEED",
    "JacobianResult",
    "LayerInfo",
    "LayerStats",
    "ModelResult",
    "ModuleStats",
    "NetworkResult",
    "NormstatsError",
    "ParamAudit",
    "ParameterError",
    "Row",
    "Slope",
    "Stat",
    "Table",
    "UnknownLayerError",
    "WidthSweepResult",
    "audit",
    "compiled",
    "get_layer",
    "init_audit",
    "layers",
    "list_layers",
    "network",
    "make_layer",
    "jacobian",
    "meanfield",
    "model",
    "register_layer",
    "simulate",
    "solve",
    "table",
    "width_sweep",
]
