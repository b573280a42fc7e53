"""What every figure shares: matplotlib imported on demand with the file backend (``Agg``: no display here
or in CI), one clear line when it is not installed, and the save that leaves no half-written PNG behind.

Each figure lives in a module of its own and is one function ``plot_...(result, path) -> None``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from normstats.errors import NormstatsError

INSTALL_HINT = "--plot needs matplotlib: pip install 'normstats[plot]' (or pip install matplotlib)"
#: Resolution of every PNG.
DPI = 120


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
    """A ``--plot`` path must end in ``.png`` and lie in an existing directory."""
    if not str(path).lower().endswith(".png"):
        raise NormstatsError(f"--plot must name a .png file; got {path!r}")
    folder = Path(path).parent
    if not folder.is_dir():
        raise NormstatsError(f"--plot must be in an existing directory; got {path!r} ({str(folder)!r} does not exist)")
    return str(path)


def save(fig: Any, path: str) -> None:
    """Render ``fig`` as a PNG and write it to ``path`` atomically (:func:`normstats.output.files.atomic.write_atomic`:
    an error or Ctrl-C leaves the old file, or none, never half a PNG; the mode a plain ``open`` would give),
    then close it."""
    from normstats.output.files.atomic import write_atomic

    plt = pyplot()
    try:
        buf = io.BytesIO()
        fig.savefig(buf, dpi=DPI, format="png")
        write_atomic(path, buf.getvalue(), option="--plot")
    finally:
        plt.close(fig)
