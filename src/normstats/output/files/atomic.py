"""Writing files so that nothing is ever half-written or replaced when it is no regular file: checks before the
work, then every file of a set to a temporary name beside its target, then all renamed over their targets.

A path that exists and is no regular file (``/dev/null``, a FIFO, a terminal) or names an open descriptor
(``/dev/stdout``) is written through, as a shell redirect would write it: opened, truncated and written in place,
never replaced (a socket cannot be opened so: an error). That write cannot be atomic; it is the one exception to
"whole or not at all".
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import stat as file_stat
import tempfile
import threading
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from normstats.errors import NormstatsError

Content = str | bytes
PathLike = str | os.PathLike[str]


def check_writable(path: PathLike, option: str = "--output") -> Path:
    """Fail early, before any work, if ``path`` cannot be written; ``option`` names it in the message."""
    target = Path(path)
    if target.is_dir():
        raise NormstatsError(f"{option} must be a file path, not a directory; got {str(path)!r}")
    if _written_through(target):
        if not os.access(target, os.W_OK):
            raise NormstatsError(f"{option} must be a writable path; got {str(path)!r} (permission denied)")
        return target
    parent = target.parent
    if not parent.is_dir():
        why = "is not a directory" if parent.exists() else "does not exist"
        raise NormstatsError(f"{option} must be in an existing directory; got {str(path)!r} ({str(parent)!r} {why})")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise NormstatsError(f"{option} must be a writable path; got {str(path)!r} (permission denied)")
    return target


def check_directory(directory: PathLike, names: Iterable[str], option: str = "--output-dir") -> Path:
    """Fail early if ``directory`` (given as ``option``) is not an existing folder where every file of ``names``
    can be written."""
    folder = Path(directory)
    if not folder.is_dir():
        why = "it is a file" if folder.exists() else "no such folder"
        raise NormstatsError(f"{option} must be an existing directory; got {str(directory)!r} ({why})")
    for name in names:
        path = folder / name
        if path.is_dir():
            raise NormstatsError(f"{option} {str(directory)!r} cannot take {name}: a directory of that name is in "
                                 f"the way ({str(path)!r})")
        check_writable(path, option)
    return folder


def write_atomic(path: PathLike, text: Content, option: str = "--output") -> None:
    """Write ``text`` to ``path`` atomically: a temporary file beside it, renamed over it, so that readers see the
    old file or the complete new one, never a part (see :func:`write_files`)."""
    write_files({path: text}, option)


def write_files(texts: Mapping[PathLike, Content], option: str | Mapping[PathLike, str] = "--output") -> list[Path]:
    """Write every ``path: text`` of ``texts`` as one set, whole or not at all; return the paths.

    First every text goes to a temporary file beside its target (written and synced), and each existing target
    gets a hard link (a copy where links are not allowed) as its backup; an error or an interrupt there removes
    the temporaries and leaves every old file as it was. Then all are renamed over their targets, with Ctrl-C and
    SIGTERM held back until the last rename: should a rename fail, the files already renamed get their backups
    back. Paths that are no regular files are written through (see the module) between the two steps.

    A file gets the mode a plain ``open(path, "w")`` would give it: an existing file keeps its mode, a new one
    gets ``0o666`` less the umask. A symlink is written through: its target is replaced, the link stays.
    ``option`` (one for all, or one per path) names the files in messages."""
    plan = [_Planned(Path(p), _option(option, p), content) for p, content in texts.items()]
    staged: list[_Planned] = []
    try:
        for item in plan:
            item.target = _resolve(item.path, item.option)
            if item.target is not None:
                staged.append(item)
                item.stage()
        for item in plan:
            if item.target is None:
                item.write_through()
        with _signals_held():
            try:
                for item in staged:
                    item.rename()
            except BaseException:
                for item in staged:
                    item.discard()
                raise
            for item in staged:
                item.keep()
    except BaseException as exc:
        with _signals_held():
            for item in staged:
                item.discard()
        if isinstance(exc, OSError):
            failed = next((i for i in plan if i.failed), plan[0])
            kept = "" if len(plan) == 1 else f"; {_kept(plan)}"
            raise NormstatsError(f"{failed.option} could not be written: {str(failed.path)!r} "
                                 f"({exc.strerror or exc}){kept}") from None
        raise
    return [item.path for item in plan]


@dataclass
class _Planned:
    """One file of a set, from its temporary file to its rename."""

    path: Path
    option: str
    content: Content
    target: Path | None = None  # the real path (symlinks followed); None until resolved
    tmp: str | None = None
    backup: str | None = None
    renamed: bool = False
    failed: bool = False
    written: bool = False

    def stage(self) -> None:
        """The text into a temporary file beside the target (synced), and a backup of the old file."""
        assert self.target is not None
        self.failed = True
        mode = _file_mode(self.target)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent)
        binary = isinstance(self.content, bytes)
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")) as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(self.content)
            fh.flush()
            os.fsync(fh.fileno())
        if self.target.exists():
            self.backup = _backup(self.target)
        self.failed = False

    def write_through(self) -> None:
        """Open the path as ``>`` would and write the text in place."""
        self.failed = True
        binary = isinstance(self.content, bytes)
        with (open(self.path, "wb") if binary else open(self.path, "w", encoding="utf-8", newline="")) as fh:
            fh.write(self.content)
        self.failed, self.written = False, True

    def rename(self) -> None:
        assert self.target is not None and self.tmp is not None
        self.failed = True
        os.replace(self.tmp, self.target)
        self.tmp, self.renamed, self.failed = None, True, False

    def discard(self) -> None:
        """Undo: remove the temporary file; a renamed file gets its backup back (a new one is removed). Each step
        is tried whatever the others did (this runs while an error is being reported)."""
        if self.tmp is not None:
            with suppress(OSError):
                Path(self.tmp).unlink(missing_ok=True)
            self.tmp = None
        if self.renamed and self.target is not None:
            with suppress(OSError):
                if self.backup is not None:
                    os.replace(self.backup, self.target)
                    self.backup = None
                else:
                    self.target.unlink(missing_ok=True)
            self.renamed = False
        self.drop_backup()

    def keep(self) -> None:
        """The set is whole: the new file stays, its backup goes."""
        self.renamed = False
        self.drop_backup()

    def drop_backup(self) -> None:
        if self.backup is not None:
            with suppress(OSError):
                Path(self.backup).unlink(missing_ok=True)
            self.backup = None


def _option(option: str | Mapping[PathLike, str], path: PathLike) -> str:
    return option if isinstance(option, str) else option[path]


def _resolve(path: Path, option: str) -> Path | None:
    """The real file a temporary file is renamed over (symlinks followed), checked; None for a path that is
    written through (:func:`_written_through`)."""
    check_writable(path, option)
    if _written_through(path):
        return None
    return check_writable(os.path.realpath(path), option)


def _written_through(path: Path) -> bool:
    """Whether ``path`` is written in place: it exists and is no regular file (a device, FIFO or socket), or it
    names an open descriptor (``/dev/stdout``, ``/dev/fd/1``: whatever the descriptor was opened on, which a
    rename would not reach)."""
    return (path.exists() and not path.is_file()) or _descriptor_alias(path)


def _descriptor_alias(path: Path) -> bool:
    """Whether ``path`` reaches its file through ``/proc/<pid>/fd`` (``/dev/stdout``, ``/dev/fd/1``)."""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on symlinks followed
        folder = os.path.realpath(os.path.dirname(current))
        if folder.startswith("/proc/"):
            return True
        current = os.path.join(folder, os.path.basename(current))
        if not os.path.islink(current):
            return False
        current = os.path.join(folder, os.readlink(current))
    return False


def _backup(target: Path) -> str:
    """A hard link to ``target`` under a new name beside it (a copy where the file system has no hard links)."""
    while True:
        name = str(target.parent / f".{target.name}.{secrets.token_hex(4)}.old")
        try:
            os.link(target, name)
            return name
        except FileExistsError:
            continue
        except OSError:
            shutil.copy2(target, name)
            return name


def _kept(plan: list[_Planned]) -> str:
    """What a failed set left: every regular file as it was; what was written through before the failure."""
    through = [str(i.path) for i in plan if i.written]
    note = f" ({', '.join(through)} had been written through)" if through else ""
    return f"none of its {len(plan)} files was written: each old one is as it was{note}"


def _file_mode(target: Path) -> int:
    """The permission bits of an existing ``target``, else those of a new file under the process's umask."""
    try:
        return file_stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)  # reading the umask means setting it; put it straight back
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while a set is renamed (or put back), then deliver one that came: the set is
    then whole, and the interrupt ends the run as usual. Only the main thread receives Python's signals, so
    elsewhere nothing is needed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    signums = (signal.SIGINT, signal.SIGTERM)
    previous: dict[int, Any] = {}
    try:
        for signum in signums:
            previous[signum] = signal.signal(signum, lambda s, f: came.append(s))
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        if came:
            signal.raise_signal(came[0])
