"""Where a model comes from: a SOURCE string turned into a factory that builds the model, never downloading
weights.

* ``timm:NAME``: ``timm.create_model(NAME, pretrained=False, **args)``;
* ``torchvision:NAME``: ``torchvision.models.get_model(NAME, weights=None, **args)``;
* ``package.module:callable``: any importable factory or class that returns an ``nn.Module`` (the convention of
  uvicorn and gunicorn), called with ``**args``.

Hugging Face's hub is put in offline mode (``HF_HUB_OFFLINE=1``) before timm or a user's factory is imported, so
a factory that would fetch a config or weights fails at once, and says so in one line.
"""

from __future__ import annotations

import difflib
import importlib
import os
from typing import Any, Callable

from normstats.errors import NormstatsError

#: The prefixes a SOURCE may start with, besides a module path.
PREFIXES = ("timm", "torchvision")
#: Longest message of a user's code quoted in an error line.
QUOTE_CHARS = 160
#: Keyword arguments that would ask a factory for weights.
WEIGHT_ARGS = ("pretrained", "weights", "pretrained_cfg_overlay", "checkpoint_path")


def shorten(text: str, limit: int = QUOTE_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def quote_error(exc: BaseException) -> str:
    """An exception as ``Type: message`` on one line."""
    message = shorten(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def offline() -> None:
    """No download from the Hugging Face hub in this process (read by huggingface_hub when it is imported)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def parse_source(source: str) -> tuple[str, str]:
    """``(kind, name)``: kind ``timm``, ``torchvision`` or ``callable`` (name ``package.module:attribute``)."""
    text = str(source).strip()
    prefix, colon, name = text.partition(":")
    if colon and prefix in PREFIXES and name:
        return prefix, name
    if colon and name and all(part.isidentifier() for part in prefix.split(".")) \
            and all(part.isidentifier() for part in name.split(".")):
        return "callable", text
    raise NormstatsError(f"SOURCE must be timm:NAME, torchvision:NAME or package.module:callable; got {text!r}")


def make_factory(source: str, args: dict[str, Any] | None = None) -> Callable[[], Any]:
    """A zero-argument factory for ``source`` (checked now: an unknown name is an error before any work)."""
    kind, name = parse_source(source)
    args = dict(args or {})
    for key in WEIGHT_ARGS:
        if key in args and args[key] not in (None, False):
            raise NormstatsError(f"--arg {key}: normstats never downloads or loads weights (it measures the model "
                                 f"at initialization); got {key}={args[key]!r}")
    offline()
    if kind == "timm":
        return _timm(name, args)
    if kind == "torchvision":
        return _torchvision(name, args)
    return _callable(name, args)


def _import(package: str, source: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise NormstatsError(f"SOURCE {source!r} needs the package {package!r}, which cannot be imported "
                             f"({quote_error(exc)}): pip install {package}") from None


def _suggest(name: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(near)}?" if near else ""


def _timm(name: str, args: dict[str, Any]) -> Callable[[], Any]:
    timm = _import("timm", f"timm:{name}")
    if not timm.is_model(name):
        raise NormstatsError(f"SOURCE timm:{name}: timm has no model {name!r}{_suggest(name, timm.list_models())}")

    def factory() -> Any:
        return timm.create_model(name, pretrained=False, **args)

    return _guarded(factory, f"timm:{name}")


def _with_working_directory() -> None:
    """Put the working directory on ``sys.path`` (first, once), as ``python -m`` and uvicorn's default
    ``--app-dir .`` do: ``normstats model mypackage.models:build`` finds the user's own code where it is run."""
    import sys

    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


def _torchvision(name: str, args: dict[str, Any]) -> Callable[[], Any]:
    models = _import("torchvision", f"torchvision:{name}").models
    known = models.list_models()
    if name not in known:
        raise NormstatsError(f"SOURCE torchvision:{name}: torchvision has no model {name!r}{_suggest(name, known)}")

    def factory() -> Any:
        return models.get_model(name, weights=None, **args)

    return _guarded(factory, f"torchvision:{name}")


def _callable(text: str, args: dict[str, Any]) -> Callable[[], Any]:
    module_name, _, attribute = text.partition(":")
    _with_working_directory()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise NormstatsError(f"SOURCE {text!r}: cannot import {module_name!r} ({quote_error(exc)})") from None
    except Exception as exc:  # the module's own code failed as it was imported
        raise NormstatsError(f"SOURCE {text!r}: importing {module_name!r} raised {quote_error(exc)}") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(target) if not n.startswith("_")]
            raise NormstatsError(f"SOURCE {text!r}: {module_name!r} has no attribute {attribute!r}"
                                 f"{_suggest(part, names)}")
        target = getattr(target, part)
    if not callable(target):
        raise NormstatsError(f"SOURCE {text!r}: {attribute!r} is not callable (a factory or an nn.Module class)")

    def factory() -> Any:
        return target(**args)

    return _guarded(factory, text)


#: Exceptions (by class name) with which the Hugging Face hub says, in offline mode, that it would have to
#: download: transformers wraps them in an ``OSError`` ("We couldn't connect to 'https://huggingface.co'...").
OFFLINE_ERRORS = ("LocalEntryNotFoundError", "OfflineModeIsEnabled")


def needs_network(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says that building needed the network: a download
    refused in offline mode, or a connection that failed."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        names = {cls.__name__ for cls in type(current).__mro__}
        if names & set(OFFLINE_ERRORS) or isinstance(current, ConnectionError) or "URLError" in names \
                or "offline" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


def _guarded(factory: Callable[[], Any], label: str) -> Callable[[], Any]:
    """``factory`` whose exceptions become one line quoting them, and whose result must be an ``nn.Module``."""
    import torch

    def build() -> Any:
        try:
            model = factory()
        except NormstatsError:
            raise
        except Exception as exc:
            text = quote_error(exc)
            if needs_network(exc):
                raise NormstatsError(f"SOURCE {label} needs the network to build ({text}); normstats never "
                                     "downloads weights or configs") from None
            raise NormstatsError(f"SOURCE {label}: the factory raised {text}") from None
        if not isinstance(model, torch.nn.Module):
            raise NormstatsError(f"SOURCE {label} must return a torch.nn.Module; got {type(model).__name__}")
        return model

    return build
