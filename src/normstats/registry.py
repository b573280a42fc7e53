"""The layer registry: ``@register_layer`` adds a layer class under a name; lookups go through here alone.

Adding a layer takes one class in ``normstats/layers/`` with the decorator, plus the module's import line in
``normstats/layers/__init__.py``. Importing :mod:`normstats` registers every built-in layer.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from typing import Any, Callable, TypeVar

from normstats.errors import UnknownLayerError

#: A registered class: a subclass of :class:`normstats.layers.base.Layer`. The registry sits below the layers
#: package and does not import it; ``normstats/__init__.py`` imports the built-in layers, which registers them.
L = TypeVar("L", bound=type)

_LAYERS: dict[str, type] = {}
_ALIASES: dict[str, str] = {}


def register_layer(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[L], L]:
    """Class decorator: register a :class:`~normstats.layers.base.Layer` subclass under ``name``.

    A name or alias that is already taken is a programming error and raises ``ValueError``.
    """

    def decorate(cls: L) -> L:
        for key in (name, *aliases):
            if key in _LAYERS or key in _ALIASES:
                raise ValueError(f"layer name {key!r} is already registered")
        cls.name = name
        _LAYERS[name] = cls
        for alias in aliases:
            _ALIASES[alias] = name
        return cls

    return decorate


def get_layer(name: str) -> Any:
    """The layer class registered as ``name`` (or an alias); unknown names suggest close matches."""
    key = _ALIASES.get(name, name)
    if key in _LAYERS:
        return _LAYERS[key]
    matches = difflib.get_close_matches(name, [*_LAYERS, *_ALIASES], n=6, cutoff=0.5)
    close = list(dict.fromkeys(_ALIASES.get(m, m) for m in matches))[:3]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownLayerError(
        f"unknown layer {name!r}: choose one of {', '.join(list_layers())}{hint}"
    )


def list_layers(pattern: str = "*") -> list[str]:
    """Registered layer names matching the fnmatch ``pattern``, in natural sort order."""
    return sorted((n for n in _LAYERS if fnmatch.fnmatchcase(n, pattern)), key=_natural_key)


def make_layer(name: str, **params: Any) -> Any:
    """An instance of the layer ``name`` with validated ``params`` (defaults fill the rest)."""
    return get_layer(name)(**params)


def _natural_key(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]
