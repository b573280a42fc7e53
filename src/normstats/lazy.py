"""Lazy imports of scipy's submodules: ``scipy.special``, ``integrate`` and ``optimize`` cost about 0.1-0.25 s
to import, and a run that needs none of them (most Monte Carlo runs of a registered layer) should not pay for
them. A :class:`LazyModule` imports its module on the first attribute access."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module ``name`` and imports it when an attribute is first asked for."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


special: Any = LazyModule("scipy.special")
integrate: Any = LazyModule("scipy.integrate")
optimize: Any = LazyModule("scipy.optimize")
