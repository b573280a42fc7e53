"""Files, signals and a closed stdout, on real processes (issue 23, item 2): a path that is no regular file is
written through, never replaced; an interrupted run writes no file (figures and the depth table included) and
exits 130 or 143; a set of files is written whole or not at all; a path that cannot be written is refused
before the run, under its own option's name; a closed stdout is an error."""

from __future__ import annotations

import os
import pty
import re
import resource
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from normstats.errors import NormstatsError
from normstats.output.files import atomic
from normstats import api
from normstats.output.files.layers import FILE_NAMES, WRITERS
from normstats.output.files.network import depth_file_names
from normstats.published.default_table import DEPTH_RUNS

CLI = [sys.executable, "-m", "normstats.cli"]

#: The longest any one child may take before the test gives up on it (a guard against a hang, not a measure).
GUARD = 300


def run(*args: str, **popen: Any) -> subprocess.CompletedProcess[str]:
    """The CLI in a child; stdout and stderr captured unless ``popen`` redirects them."""
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.run([*CLI, *args], text=True, timeout=GUARD, **streams)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line on stderr of a refused command (exit 2, nothing on stdout, no traceback)."""
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("normstats: error: "), result.stderr
    return lines[0]


#: The progress bar once a block of draws has been merged: the engine's loop is running, so an interrupt now is
#: one the engine catches (it returns what it merged, marked partial), the case where files were written.
RUNNING = re.compile(rb"[1-9][0-9,]* draws")
#: The progress bar, at any count: the program has started (its imports are done) and runs.
STARTED = re.compile(rb"[0-9] draws")


class Terminal:
    """The CLI in a child whose stderr is a terminal (a pseudo-terminal read by a thread), so that it shows its
    progress bar: the signal is sent once the bar counts draws (:data:`RUNNING`). ``command``: how the CLI is
    started (``python -m normstats.cli``, or the console script's entry)."""

    def __init__(self, *args: str, command: tuple[str, ...] = tuple(CLI)) -> None:
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [*command, *args], stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # pytest may run with it ignored
        )
        os.close(slave)
        self._master, self._seen = master, bytearray()
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 4096)
            except OSError:  # the child closed the terminal (EIO)
                chunk = b""
            with self._changed:
                if not chunk:
                    self._seen += b"\0"  # the end
                    self._changed.notify_all()
                    return
                self._seen += chunk
                self._changed.notify_all()

    def wait_for(self, pattern: re.Pattern[bytes]) -> None:
        with self._changed:
            found = self._changed.wait_for(lambda: pattern.search(self._seen) or self._seen.endswith(b"\0"), GUARD)
            assert found and pattern.search(self._seen), self.stderr()

    def interrupt(self, signum: int, once: re.Pattern[bytes] = RUNNING) -> tuple[int, str, str]:
        """Send ``signum`` once stderr shows ``once`` (by default: the run has merged draws); return the exit
        status, stdout and stderr."""
        self.wait_for(once)
        self.proc.send_signal(signum)
        try:
            out, _ = self.proc.communicate(timeout=GUARD)
        except subprocess.TimeoutExpired:  # the run ignored the signal: end it, and fail
            self.proc.kill()
            self.proc.communicate()
            raise
        self._reader.join(GUARD)
        os.close(self._master)
        err = self.stderr()
        assert "Traceback" not in err, err
        return self.proc.returncode, out.decode(), err

    def stderr(self) -> str:
        text = bytes(self._seen).rstrip(b"\0").decode(errors="replace")
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every entry of ``folder`` by name, with a file's bytes (temporaries and backups included: none may be left)."""
    return {p.name: p.read_bytes() if p.is_file() else b"<dir>" for p in folder.iterdir()}


# --- 1. a path that is no regular file is written through, never replaced -------------------------------------


@pytest.mark.skipif(not hasattr(os, "mknod") or os.geteuid() != 0, reason="making a device node needs root")
def test_output_onto_a_character_device_writes_through_and_keeps_the_node(tmp_path: Path) -> None:
    """``-o /dev/null`` run as root: the node stays a character device. First on a null device of the test's
    own (the same device number as /dev/null: 1, 3), so that a regression fails there and never replaces the
    machine's; then on /dev/null itself."""
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    for path in (node, Path("/dev/null")):
        result = run("simulate", "--layer", "relu", "-n", "1000", "--format", "json", "-o", str(path))
        assert result.returncode == 0, result.stderr
        assert f"wrote {path}" in result.stderr and result.stdout == ""
        info = os.stat(path)
        assert stat.S_ISCHR(info.st_mode) and info.st_rdev == os.makedev(1, 3)
        assert [p.name for p in tmp_path.iterdir()] == ["null"]  # no temporary file either


def test_output_onto_a_fifo_writes_the_document_through_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # Opened read-write, the FIFO always has a reader, so the child's open never waits; the document (2 KB) fits
    # in the pipe's buffer, and a regression that replaced the FIFO would leave it empty (BlockingIOError).
    reader = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        result = run("simulate", "--layer", "relu", "-n", "1000", "--format", "json", "-o", str(fifo))
        assert result.returncode == 0, result.stderr
        received = os.read(reader, 1 << 20).decode()
    finally:
        os.close(reader)
    assert '"layer": "relu"' in received and received.rstrip().endswith("}")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and [p.name for p in tmp_path.iterdir()] == ["pipe"]


def test_output_to_dev_stdout_goes_to_whatever_stdout_is(tmp_path: Path) -> None:
    """``-o /dev/stdout`` writes through the descriptor, a pipe or a file: a file that stdout was redirected to
    is not replaced behind the shell's back (its inode stays)."""
    piped = run("simulate", "--layer", "relu", "-n", "1000", "--format", "csv", "-o", "/dev/stdout")
    assert piped.returncode == 0 and piped.stdout.startswith("layer,params,statistic"), piped.stderr
    log = tmp_path / "log.csv"
    log.write_text("")
    inode = log.stat().st_ino
    with open(log, "w") as fh:
        result = run("simulate", "--layer", "relu", "-n", "1000", "--format", "csv", "-o", "/dev/stdout", stdout=fh)
    assert result.returncode == 0, result.stderr
    assert log.read_text() == piped.stdout and log.stat().st_ino == inode
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]


def test_a_socket_is_refused_and_left_in_place(tmp_path: Path) -> None:
    """A socket cannot be opened as a file: one line naming --output, and the socket is still there."""
    path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        line = error_line(run("simulate", "--layer", "relu", "-n", "1000", "-o", str(path)))
    finally:
        server.close()
    assert line.startswith(f"normstats: error: --output could not be written: {str(path)!r}"), line
    assert stat.S_ISSOCK(os.stat(path).st_mode)


# --- 2, 3. an interrupted run writes no file ----------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_depth_export_stops_and_keeps_every_old_file(tmp_path: Path, signum: int) -> None:
    names = depth_file_names(DEPTH_RUNS)
    assert len(names) == 7
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(f"old {i}\n".encode())
    before = snapshot(tmp_path)
    child = Terminal("export", "--depth", "--output-dir", str(tmp_path), "-n", "1e9", "-j", "1")
    status, out, err = child.interrupt(signum)
    assert status == 128 + signum, err
    assert "wrote" not in err and out == ""
    assert snapshot(tmp_path) == before


def test_interrupted_network_writes_neither_its_plot_nor_its_output(tmp_path: Path) -> None:
    (tmp_path / "old.png").write_bytes(b"old figure")
    (tmp_path / "old.json").write_bytes(b"old document")
    before = snapshot(tmp_path)
    child = Terminal("network", "4*(linear relu)", "--input", "64", "-n", "1e11", "-j", "1", "--format", "json",
                     "--plot", str(tmp_path / "old.png"), "-o", str(tmp_path / "old.json"))
    status, out, err = child.interrupt(signal.SIGTERM)
    assert status == 143, err
    assert "wrote" not in err and out == ""
    assert snapshot(tmp_path) == before


def test_interrupted_network_prints_its_partial_table_but_writes_no_plot(tmp_path: Path) -> None:
    (tmp_path / "old.png").write_bytes(b"old figure")
    child = Terminal("network", "4*(linear relu)", "--input", "64", "-n", "1e11", "-j", "1", "--format", "json",
                     "--plot", str(tmp_path / "old.png"))
    status, out, err = child.interrupt(signal.SIGINT)
    assert status == 130, err
    assert '"partial": true' in out and "stopped by interrupted" in err
    assert f"nothing written to {tmp_path / 'old.png'} (it keeps its contents)" in err and "wrote" not in err
    assert snapshot(tmp_path) == {"old.png": b"old figure"}


def test_interrupted_jacobian_writes_neither_its_plot_nor_its_output(tmp_path: Path) -> None:
    (tmp_path / "old.png").write_bytes(b"old figure")
    (tmp_path / "old.json").write_bytes(b"old document")
    child = Terminal("jacobian", "8*linear", "--input", "256", "-n", "1e5", "-j", "1", "--format", "json",
                     "--plot", str(tmp_path / "old.png"), "-o", str(tmp_path / "old.json"))
    status, out, err = child.interrupt(signal.SIGTERM)
    assert status == 143, err
    assert "wrote" not in err and out == ""
    assert snapshot(tmp_path) == {"old.png": b"old figure", "old.json": b"old document"}


# --- 4. a set of files is written whole or not at all ------------------------------------------------------


def test_export_all_that_runs_out_of_room_keeps_every_old_file(tmp_path: Path) -> None:
    """A real write failure in the middle of the set: the child may write no file larger than the first file of
    the set (RLIMIT_FSIZE; a larger write fails with EFBIG, as on a full disk), so that one is staged and a
    larger one after it is not. Every old file is kept byte for byte, and no temporary file or backup is left."""
    table = api.table(samples=1000)  # what the child will write (the same seed)
    sizes = {name: len(WRITERS[fmt](table).encode()) for fmt, name in FILE_NAMES.items()}
    order = list(FILE_NAMES.values())  # the order the set is staged in
    limit = sizes[order[0]] + 1
    assert max(sizes.values()) > limit  # a later file fails after the first was staged
    for name in order:
        (tmp_path / name).write_text(f"old {name}\n")
    before = snapshot(tmp_path)
    result = run("export", "--all", "--output-dir", str(tmp_path), "-n", "1000",
                 preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    line = error_line(result)
    assert "--output-dir could not be written" in line and "File too large" in line, line
    assert "none of its 5 files was written" in line
    assert snapshot(tmp_path) == before


def test_a_set_whose_rename_fails_puts_the_renamed_files_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """The rename step itself fails (the third of five renames): the two files already renamed get their old
    contents back, the new file among them is removed, and nothing temporary is left."""
    names = ["a.txt", "b.txt", "c.txt", "d.txt", "new.txt"]
    for name in names[:-1]:
        (tmp_path / name).write_text(f"old {name}")
    before = snapshot(tmp_path)
    real, calls = os.replace, []

    def replace(src: Any, dst: Any) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    texts = {tmp_path / name: f"new {name}" for name in ["new.txt", *names[:-1]]}
    with pytest.raises(NormstatsError, match=r"could not be written: .*b\.txt.*none of its 5 files was written"):
        atomic.write_files(texts, "--output-dir")
    assert len(calls) > 3  # the two renamed files were put back (by renames of their backups)
    assert snapshot(tmp_path) == before
    monkeypatch.setattr(os, "replace", real)
    atomic.write_files(texts, "--output-dir")
    assert snapshot(tmp_path) == {p.name: t.encode() for p, t in texts.items()}


def test_a_signal_during_the_renames_waits_until_the_set_is_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    """Ctrl-C between two renames of a set: the renames finish (no set is left half old, half new), then the
    interrupt arrives as usual, and nothing temporary is left."""
    texts = {tmp_path / f"{name}.txt": f"new {name}" for name in "abc"}
    for path in texts:
        path.write_text("old")
    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name == "b.txt":
            signal.raise_signal(signal.SIGINT)
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            atomic.write_files(texts)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert snapshot(tmp_path) == {p.name: t.encode() for p, t in texts.items()}


# --- 5. a path that cannot be written is refused before the run, under its own name -------------------------


def test_an_unwritable_plot_is_refused_before_the_run_as_plot(tmp_path: Path) -> None:
    (tmp_path / "x.png").mkdir()
    (tmp_path / "file").write_text("")
    net = ["network", "2*(linear relu)", "--input", "8", "-n", "100", "--plot"]
    cases = {
        str(tmp_path / "x.png"): "--plot must be a file path, not a directory",
        str(tmp_path / "missing" / "x.png"): "--plot must be in an existing directory",
        str(tmp_path / "file" / "x.png"): "is not a directory",
    }
    for path, message in cases.items():
        line = error_line(run(*net, path))
        assert message in line and "--output" not in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "x.png"]


def test_an_unwritable_output_dir_is_refused_before_the_run_as_output_dir(tmp_path: Path) -> None:
    (tmp_path / "table.json").mkdir()
    (tmp_path / "depth.md").mkdir()
    for args, message in [
        (("--all", "--output-dir", str(tmp_path)), "--output-dir"),
        (("--depth", "--output-dir", str(tmp_path)), "--output-dir"),
        (("--all", "--output-dir", str(tmp_path / "missing")), "--output-dir must be an existing directory"),
    ]:
        line = error_line(run("export", *args, "-n", "1e9"))  # refused at once, or this would run for hours
        assert message in line and "--output " not in line, line


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_a_plot_in_a_read_only_folder_is_refused_before_the_run(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        line = error_line(run("network", "2*(linear relu)", "--input", "8", "--plot", str(tmp_path / "x.png")))
    finally:
        tmp_path.chmod(0o700)
    assert "--plot must be a writable path" in line and "permission denied" in line


# --- 6. a closed stdout ---------------------------------------------------------------------------------------


def _close_stdout() -> None:
    os.close(1)


def test_a_closed_stdout_is_an_error() -> None:
    result = subprocess.run([*CLI, "table", "-n", "1000"], stdout=None, stderr=subprocess.PIPE, text=True, timeout=GUARD,
                            preexec_fn=_close_stdout)
    assert result.returncode == 141, result.stderr
    assert result.stderr.splitlines() == [
        "normstats: error: stdout is closed, so the output has nowhere to go (to discard it, redirect it to "
        "/dev/null)"]


def test_a_closed_stdout_writes_no_file_and_a_run_that_prints_nothing_is_fine(tmp_path: Path) -> None:
    plot = tmp_path / "f.png"
    failed = subprocess.run([*CLI, "network", "2*linear", "--input", "4", "-n", "10", "--plot", str(plot)],
                            stderr=subprocess.PIPE, text=True, timeout=GUARD, preexec_fn=_close_stdout)
    assert failed.returncode == 141 and not plot.exists(), failed.stderr
    quiet = subprocess.run([*CLI, "simulate", "--layer", "relu", "-n", "1000", "-o", str(tmp_path / "t.txt")],
                           stderr=subprocess.PIPE, text=True, timeout=GUARD, preexec_fn=_close_stdout)
    assert quiet.returncode == 0, quiet.stderr
    assert "relu" in (tmp_path / "t.txt").read_text()
