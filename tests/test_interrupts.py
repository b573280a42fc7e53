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
from tests.test_files_and_signals import STARTED, Terminal


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


#: The console script's entry (what ``normstats`` runs), for :class:`Terminal`.
ENTRY = (sys.executable, "-c", "import normstats_entry; normstats_entry.main()")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_export_writes_nothing_and_keeps_the_old_files(tmp_path: Path, signum: int) -> None:
    """The signal goes once the progress bar shows (after a fixed sleep, a loaded machine could still be
    starting the program, a case of its own: see the last test)."""
    for name in FILE_NAMES.values():
        (tmp_path / name).write_text("old")
    status, _, err = Terminal("export", "--all", "--output-dir", str(tmp_path), "-n", "1e8",
                              command=ENTRY).interrupt(signum, once=STARTED)
    assert status == 128 + signum, err
    assert f"nothing exported to {tmp_path}" in err and "wrote" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILE_NAMES.values())  # no temporary files
    assert all((tmp_path / name).read_text() == "old" for name in FILE_NAMES.values())


@pytest.mark.parametrize("command", [["simulate", "--layer", "relu"], ["table"]])
def test_interrupted_output_file_keeps_its_contents(tmp_path: Path, command: list[str]) -> None:
    """The signal goes once the run has merged draws (the bar counts them), not after a fixed sleep."""
    target = tmp_path / "out.json"
    target.write_text("old")
    status, _, err = Terminal(*command, "-n", "1e11", "-j", "1", "--format", "json", "-o", str(target),
                              command=ENTRY).interrupt(signal.SIGTERM)
    assert status == 143, err
    assert f"nothing written to {target} (it keeps its contents)" in err
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_an_interrupt_before_any_draw_is_merged_still_says_the_file_is_untouched(tmp_path: Path) -> None:
    """The signal goes as soon as the progress bar shows, typically before the first block of draws is merged,
    when the run has no results to print: the line still names the output file and says it keeps its contents
    (and the plot that was not created), as after a partial run."""
    target, figure = tmp_path / "out.json", tmp_path / "f.png"
    target.write_text("old")
    status, _, err = Terminal("network", "8*(linear relu)", "--input", "64", "-n", "1e9", "-j", "1", "--format",
                              "json", "-o", str(target), "--plot", str(figure),
                              command=ENTRY).interrupt(signal.SIGINT, once=STARTED)
    assert status == 130, err
    assert f"nothing written to {target} (it keeps its contents) or {figure} (it was not created)" in err, err
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_ctrl_c_during_start_up_has_no_traceback() -> None:
    """The signal arrives while ``normstats.cli`` is being imported (about 0.3 s)."""
    _, err = _interrupt(_spawn("list"), signal.SIGINT, after=0.02)
    assert err.strip() == "normstats: interrupted during start-up"
