"""Exceptions for bad input.

Every error a user can cause is a :class:`NormstatsError`; its message is one line that names what is wrong,
what is allowed and what was received. The CLI prints that line and exits with code 2.
"""

from __future__ import annotations


class NormstatsError(ValueError):
    """Bad input: a layer, parameter, sample count or option the tool cannot use."""


class UnknownLayerError(NormstatsError):
    """A layer name that is not in the registry."""


class ParameterError(NormstatsError):
    """A layer parameter that the layer does not have, or a value outside its allowed range."""
