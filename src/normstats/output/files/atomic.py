"""Writing files so that nothing is ever half-written: checks before the work, then a temporary file beside
the target renamed over it."""

from __future__ import annotations

import os
import stat as file_stat
import tempfile
from pathlib import Path
from typing import Iterable

from normstats.errors import NormstatsError


def check_directory(directory: str | os.PathLike[str], names: Iterable[str]) -> Path:
    """Fail early if ``--output-dir`` is not an existing folder where every file of ``names`` can be written."""
    folder = Path(directory)
    if not folder.is_dir():
        raise NormstatsError(f"--output-dir must be an existing directory; got {str(directory)!r}")
    for name in names:
        check_writable(folder / name)
    return folder


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail early, before any work, if ``path`` cannot be written."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise NormstatsError(f"--output must be a file path, not a directory; got {str(path)!r}")
    if not parent.is_dir():
        raise NormstatsError(f"--output must be in an existing directory; got {str(path)!r}")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise NormstatsError(f"--output must be a writable path; got {str(path)!r} (permission denied)")
    return target


def write_atomic(path: str | os.PathLike[str], text: str | bytes, option: str = "--output") -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: readers see the old
    file or the complete new one, never a part.

    The file gets the mode a plain ``open(path, "w")`` would give it: an existing file keeps its mode, a new
    one gets ``0o666`` less the umask (``mkstemp`` alone would make it ``0o600``). A symlink is written
    through: its target is replaced, the link stays."""
    check_writable(path)
    target = check_writable(os.path.realpath(path))
    mode = _file_mode(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        binary = isinstance(text, bytes)
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")) as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise NormstatsError(f"{option} could not be written: {str(path)!r} ({exc.strerror})") from None
        raise


def _file_mode(target: Path) -> int:
    """The permission bits of an existing ``target``, else those of a new file under the process's umask."""
    try:
        return file_stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)  # reading the umask means setting it; put it straight back
        os.umask(umask)
        return 0o666 & ~umask




def write_files(texts: dict[Path, str]) -> list[Path]:
    """Write every ``path: text`` of ``texts``, each atomically (:func:`write_atomic`); return the paths."""
    for path, text in texts.items():
        write_atomic(path, text)
    return list(texts)
