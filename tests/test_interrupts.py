"""Ctrl-C and SIGTERM on a real process: an interrupted run writes no file (an existing one keeps its
contents), says so in one line without a traceback, and exits 130 (SIGINT) or 143 (SIGTERM), also while the
program is still importing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from normstats.output.files.layers import FILE_NAMES


def _spawn(*args: str) -> subprocess.Popen[str]:
    """The console script's entry in a child whose SIGINT is the default (pytest may run with it ignored)."""
    return subprocess.Popen(
        [sys.executable, "-c", "import sys, normstats_entry; sys.stderr.write('started\\n'); sys.stderr.flush(); "
         "normstats_entry.main()", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _interrupt(proc: subprocess.Popen[str], signum: int, after: float) -> tuple[str, str]:
    assert proc.stderr is not None
    assert proc.stderr.readline() == "started\n"
    time.sleep(after)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert proc.returncode == 128 + signum, err
    return out, err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_export_writes_nothing_and_keeps_the_old_files(tmp_path: Path, signum: int) -> None:
    for name in FILE_NAMES.values():
        (tmp_path / name).write_text("old")
    proc = _spawn("export", "--all", "--output-dir", str(tmp_path), "-n", "1e8")
    _, err = _interrupt(proc, signum, after=3)
    assert f"nothing exported to {tmp_path}" in err and "wrote" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILE_NAMES.values())  # no temporary files
    assert all((tmp_path / name).read_text() == "old" for name in FILE_NAMES.values())


@pytest.mark.parametrize("command", [["simulate", "--layer", "relu"], ["table"]])
def test_interrupted_output_file_keeps_its_contents(tmp_path: Path, command: list[str]) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    proc = _spawn(*command, "-n", "1e11", "-j", "1", "--format", "json", "-o", str(target))
    _, err = _interrupt(proc, signal.SIGTERM, after=2)
    assert f"nothing written to {target} (it keeps its contents)" in err
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_ctrl_c_during_start_up_has_no_traceback() -> None:
    """The signal arrives while ``normstats.cli`` is being imported (about 0.3 s)."""
    _, err = _interrupt(_spawn("list"), signal.SIGINT, after=0.02)
    assert err.strip() == "normstats: interrupted during start-up"
