"""The PyTorch front end: a user's own ``nn.Module`` measured module by module at initialization.

``sources.py`` turns a SOURCE (``timm:NAME``, ``torchvision:NAME``, ``package.module:callable``) into a factory
that builds the model without downloading anything; ``tap.py`` walks a model with hooks that reduce every
module's output, and the gradient at its input, to a few numbers per draw on the device; ``run.py`` is the draw
loop (inits, inputs, the output tensor, the upstream gradient) that turns those numbers into a
:class:`~normstats.output.results.model.ModelResult`; ``init_audit.py`` audits each parameter's init.

torch is an optional dependency (``normstats[torch]``): nothing here imports it at module level except the
modules that need it, and nothing outside this package imports those, so ``import normstats`` and every other
command run without torch. :func:`require_torch` says in one line how to install it.

May import: ``output``, ``engine``, ``errors`` and the foundation below them; never ``api`` or ``cli``.
"""

from __future__ import annotations

from normstats.errors import NormstatsError

#: What to install when torch is missing.
INSTALL_HINT = "normstats model needs PyTorch: pip install 'normstats[torch]' (or pip install torch)"


def require_torch() -> None:
    """Raise a one-line :class:`NormstatsError` when torch cannot be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise NormstatsError(INSTALL_HINT) from None
