"""What every figure shares: matplotlib imported on demand with the file backend (``Agg``: no display here
or in CI), one clear line when it is not installed, and the save that leaves no half-written PNG behind (or,
inside :func:`rendered`, keeps the PNG in memory, so that the CLI writes it with the run's other files as one
set).

Each figure lives in a module of its own and is one function ``plot_...(result, path) -> None``.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

from normstats.errors import NormstatsError
from normstats.output.files.atomic import check_writable, write_atomic

INSTALL_HINT = "--plot needs matplotlib: pip install 'normstats[plot]' (or pip install matplotlib)"
#: Resolution of every PNG.
DPI = 120

#: Where :func:`save` puts PNGs inside :func:`rendered` (path: bytes); None: it writes them.
_RENDERED: ContextVar[dict[str, bytes] | None] = ContextVar("rendered", default=None)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend; a :class:`NormstatsError` (one line) without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        raise NormstatsError(INSTALL_HINT) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def check_png_path(path: str) -> str:
    """A ``--plot`` path must end in ``.png`` and be writable (:func:`~normstats.output.files.atomic.check_writable`:
    no directory in the way, an existing folder, permission), checked before the run."""
    if not str(path).lower().endswith(".png"):
        raise NormstatsError(f"--plot must name a .png file; got {path!r}")
    check_writable(path, option="--plot")
    return str(path)


@contextmanager
def rendered() -> Iterator[dict[str, bytes]]:
    """Inside, :func:`save` writes nothing: each figure's PNG goes into the dict yielded, under its path."""
    token = _RENDERED.set({})
    try:
        yield _RENDERED.get()  # type: ignore[misc]
    finally:
        _RENDERED.reset(token)


def save(fig: Any, path: str) -> None:
    """Render ``fig`` as a PNG and write it to ``path`` atomically (:func:`normstats.output.files.atomic.write_atomic`:
    an error or Ctrl-C leaves the old file, or none, never half a PNG; the mode a plain ``open`` would give),
    or keep it in memory inside :func:`rendered`; then close it."""
    plt = pyplot()
    try:
        buf = io.BytesIO()
        fig.savefig(buf, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    kept = _RENDERED.get()
    if kept is not None:
        kept[path] = buf.getvalue()
    else:
        write_atomic(path, buf.getvalue(), option="--plot")
