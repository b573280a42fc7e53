"""A held-out corpus of hostile inputs (issue 23, "Done when"), written by someone who did not write the commands:
absurd numbers, huge, empty, unicode and control-character specs and names, repeated and conflicting options,
paths that are devices, folders, missing or symlinks to folders, an ASCII-only stdout, tiny and huge sample
counts, across every command. Each invocation ends in one of two ways:

* exit 0 with a finite, labelled answer (no ``nan`` shown as a number);
* exit 2 with exactly one line on stderr, starting ``normstats: error: `` and naming the parameter.

Never exit 1 and never a ``Traceback``. In process (click's CliRunner) but for the stdout encoding and the
signal, which need a real process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from normstats.cli import main

HUGE_INT = "1" + "0" * 5000
#: A shown ``nan`` (an answer that is no number) as a whole word, as opposed to the words that say it.
NAN = re.compile(r"(?<![\w.])[-+]?nan(?![\w])", re.IGNORECASE)

#: (args, the parameter a refusal must name; "unknown layer" where the layer's name is the parameter). ``{dir}``, ``{missing}``, ``{dirlink}`` are paths made per test.
CORPUS: list[tuple[list[str], str]] = [
    # simulate: absurd numbers
    (["simulate", "--layer", "relu", "-n", "1e308"], "--samples"),
    (["simulate", "--layer", "relu", "-n", "-0"], "--samples"),
    (["simulate", "--layer", "relu", "-n", "nan"], "--samples"),
    (["simulate", "--layer", "relu", "-n", "inf"], "--samples"),
    (["simulate", "--layer", "relu", "-n", "1e-320"], "--samples"),
    (["simulate", "--layer", "relu", "-n", HUGE_INT], "--samples"),
    (["simulate", "--layer", "relu", "-n", "1e99999999"], "--samples"),  # 10**(10**8) took ten minutes
    (["simulate", "--layer", "relu", "-n", "1", "-q"], "--samples"),
    (["simulate", "--layer", "relu", "-n", "1000", "--seed", "nan"], "--seed"),
    (["simulate", "--layer", "relu", "-n", "1000", "--seed", "-1"], "--seed"),
    (["simulate", "--layer", "relu", "-n", "1000", "--seed", HUGE_INT], "--seed"),
    (["simulate", "--layer", "softmax", "-n", "1000", "--temperature", "1e308"], "--temperature"),
    (["simulate", "--layer", "softmax", "-n", "1000", "--temperature", "-0"], "--temperature"),
    (["simulate", "--layer", "softmax", "-n", "1000", "--temperature", "nan"], "--temperature"),
    (["simulate", "--layer", "softmax", "-n", "1000", "--temperature", "1e-320"], "--temperature"),
    (["simulate", "--layer", "batchnorm", "-n", "1000", "--batch", "1e3"], "--batch"),
    (["simulate", "--layer", "batchnorm", "-n", "1000", "--eps", "inf"], "--eps"),
    (["simulate", "--layer", "linear", "-n", "1000", "--fan-in", "9" * 30], "--fan-in"),
    (["simulate", "--layer", "relu", "--target-se", "0"], "--target-se"),
    (["simulate", "--layer", "relu", "--target-se", "nan"], "--target-se"),
    (["simulate", "--layer", "relu", "--target-se", "-1e-3"], "--target-se"),
    (["simulate", "--layer", "relu", "--max-time", "-1"], "--max-time"),
    (["simulate", "--layer", "relu", "--max-time", "1e308s", "-n", "1000"], "--max-time"),
    (["simulate", "--layer", "relu", "-n", "1000", "-j", "0"], "--workers"),
    (["simulate", "--layer", "relu", "-n", "1000", "-j", HUGE_INT], "--workers"),
    # simulate: names and formulas
    (["simulate", "--layer", "", "-n", "1000"], "unknown layer"),
    (["simulate", "--layer", "relu\x00", "-n", "1000"], "unknown layer"),
    (["simulate", "--layer", "r\u00e9lu", "-n", "1000"], "unknown layer"),
    (["simulate", "--layer", "\x1b[31mrelu\nrelu", "-n", "1000"], "unknown layer"),
    (["simulate", "--layer", "x" * 100_000, "-n", "1000"], "unknown layer"),
    (["simulate", "--layer", "relu", "--layer", "tanh", "-n", "1000"], "--layer"),
    (["simulate", "--layer", "relu", "--expr", "x", "-n", "1000"], "--expr"),
    (["simulate", "--expr", "x**", "-n", "1000"], "--expr"),
    (["simulate", "--expr", "__import__('os').system('true')", "-n", "1000"], "--expr"),
    (["simulate", "--expr", "x+" * 50_000 + "x", "-n", "1000"], "--expr"),
    (["simulate", "--expr", "(" * 5000 + "x" + ")" * 5000, "-n", "1000"], "--expr"),
    (["simulate", "--expr", "exp(exp(exp(x)))", "-n", "1000"], "--expr"),
    (["simulate", "--expr", "x**1e308", "-n", "1000"], "--expr"),
    (["simulate", "--layer", "relu", "-n", "1000", "--sampler", "\x1b[31m"], "--sampler"),
    (["simulate", "--layer", "relu", "-n", "1000", "--format", "yaml"], "--format"),
    # simulate: paths
    (["simulate", "--layer", "relu", "-n", "1000", "-o", "{dir}"], "--output"),
    (["simulate", "--layer", "relu", "-n", "1000", "-o", "{missing}/out.json"], "--output"),
    (["simulate", "--layer", "relu", "-n", "1000", "-o", "{dirlink}"], "--output"),
    (["simulate", "--layer", "relu", "-n", "1000", "-o", "/dev/full"], "--output"),
    (["simulate", "--layer", "relu", "-n", "1000", "-o", ""], "--output"),
    # table
    (["table", "-n", "0"], "--samples"),
    (["table", "-n", "100", "--constants", "bogus"], "--constants"),
    (["table", "-n", "100", "--max-time", "0"], "--max-time"),
    (["table", "-n", "100", "-q", "--format", "csv", "-o", "/dev/null"], "--output"),
    # network
    (["network", "", "--input", "8"], "spec"),
    (["network", "(" * 10_000 + "relu" + ")" * 10_000, "--input", "8"], "spec"),
    (["network", "relu " * 20_000, "--input", "8", "-n", "4"], "spec"),
    (["network", HUGE_INT + "*relu", "--input", "8"], "spec"),
    (["network", "linear", "--input", "0"], "--input"),
    (["network", "linear", "--input", "1e308"], "--input"),
    (["network", "linear", "--input", "-8"], "--input"),
    (["network", "linear", "--input", "8x8x8x8x8x8x8"], "--input"),
    (["network", "linear(fan_out=nan)", "--input", "8"], "spec"),
    (["network", "res(linear, alpha=nan)", "--input", "8"], "spec"),
    (["network", "res(linear, alpha=-0)", "--input", "8", "-n", "20"], "spec"),
    (["network", "res(linear, beta=1e-320)", "--input", "8", "-n", "20"], "spec"),
    (["network", "res(linear, alpha=1e200)", "--input", "8", "-n", "20"], "alpha"),
    (["network", "2*res(linear, alpha=-1e308)", "--input", "8", "-n", "20"], "alpha"),
    (["network", "4*res(linear, alpha=1e100)", "--input", "8", "-n", "20"], "alpha"),
    (["network", "lin\u00e9ar", "--input", "8"], "spec"),
    (["network", "\u202erelu", "--input", "8"], "spec"),
    (["network", "relu\x00relu", "--input", "8"], "spec"),
    (["network", "linear relu", "--input", "8", "-n", "20", "--band", "2,1"], "--band"),
    (["network", "linear", "--input", "8", "-n", "20", "--band", "nan,inf"], "--band"),
    (["network", "linear", "--input", "8", "-n", "20", "--inits", "0"], "--inits"),
    (["network", "linear", "--input", "8", "-n", "20", "--inits", HUGE_INT], "--inits"),
    (["network", "linear", "--input", "8", "-n", "20", "--width", "0"], "--width"),
    (["network", "linear", "--input", "8", "-n", "20", "--plot", "{dir}"], "--plot"),
    (["network", "linear", "--input", "8", "-n", "20", "--plot", "{missing}/f.png"], "--plot"),
    (["network", "3*linear", "--input", "8", "-n", "2"], "--samples"),
    (["network", "linear", "--input", "8", "-n", "20", "--normprop", "fp", "--normprop", "bp"], "--normprop"),
    # export
    (["export", "--all"], "--output-dir"),
    (["export", "--all", "--output-dir", "/dev/null"], "--output-dir"),
    (["export", "--all", "--output-dir", "{missing}"], "--output-dir"),
    (["export", "--depth", "--format", "latex", "--output-dir", "{dir}"], "--format"),
    (["export", "--format", "latex", "-n", "100", "-o", "{dirlink}"], "--output"),
    # meanfield
    (["meanfield", "--layer", "tanh", "--sigma-w2", "nan"], "--sigma-w2"),
    (["meanfield", "--layer", "tanh", "--sigma-w2", "-0"], "--sigma-w2"),
    (["meanfield", "--layer", "tanh", "--sigma-w2", "1e-320"], "--sigma-w2"),
    (["meanfield", "--layer", "tanh", "--q0", "-1"], "--q0"),
    (["meanfield", "--layer", "tanh", "--c0", "2"], "--c0"),
    (["meanfield", "--layer", "tanh", "--depth", HUGE_INT], "--depth"),
    (["meanfield", "--layer", "tanh", "--depth", "0"], "--depth"),
    (["meanfield", "--layer", "softmax"], "--layer"),
    (["meanfield", "--layer", "\u0000"], "unknown layer"),
    (["meanfield", "--layer", "tanh", "--expr", "x"], "--expr"),
    # jacobian
    (["jacobian", "linear", "--input", "0"], "--input"),
    (["jacobian", "linear", "--input", "8", "--sigma-w2", "inf"], "--sigma-w2"),
    (["jacobian", "4*linear", "--input", "8", "-n", "20", "--depths", "0"], "--depths"),
    (["jacobian", "4*linear", "--input", "8", "-n", "20", "--depths", "5"], "--depths"),
    (["jacobian", "4*linear", "--input", "8", "-n", "20", "--depths", "1,,2"], "--depths"),
    (["jacobian", "linear", "--input", "8", "-n", "1"], "--samples"),
    (["jacobian", "", "--input", "8"], "spec"),
    # solve, list, schema, audit, the group
    (["solve", "--layer", "relu", "--free", "nonexistent"], "--free"),
    (["solve", "--layer", ""], "unknown layer"),
    (["solve", "--layer", "linear"], "--layer"),
    (["list", "--format", "json"], "--format"),
    (["list", "--format", "\u2603"], "--format"),
    (["schema", "extra"], "extra"),
    (["audit", "--format", "xml"], "--format"),
    (["frobnicate"], "frobnicate"),
    (["simulate", "--no-such-option"], "--no-such-option"),
]


def _paths(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "folder"
    folder.mkdir()
    link = tmp_path / "link"
    link.symlink_to(folder, target_is_directory=True)
    return {"dir": str(folder), "missing": str(tmp_path / "missing"), "dirlink": str(link)}


def check_outcome(code: int, stdout: str, stderr: str, name: str, written: str | None = None) -> None:
    """Exit 0 with a finite answer (on stdout, unless ``written`` to that file), or exit 2 with one error line
    naming ``name``; never anything else."""
    assert "Traceback" not in stdout + stderr, stderr[-2000:]
    assert code in (0, 2), (code, stderr[-2000:])
    if code == 2:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("normstats: error: "), stderr[-2000:]
        assert name in lines[0], lines[0][:500]
    elif written is None:
        assert stdout.strip(), "exit 0 with nothing on stdout"
        assert not NAN.search(stdout), stdout[:2000]


@pytest.mark.parametrize("args, name", CORPUS, ids=[f"{i}-{a[0]}" for i, (a, _) in enumerate(CORPUS)])
def test_a_hostile_invocation_ends_in_an_answer_or_one_line(args: list[str], name: str, tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    argv = [a.format(**paths) if "{" in a and "}" in a and len(a) < 100 else a for a in args]
    before = {p: os.lstat(p) for p in paths.values() if os.path.lexists(p)}
    result = CliRunner().invoke(main, argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: the failure, shown as such
    written = argv[argv.index("-o") + 1] if "-o" in argv else None
    check_outcome(result.exit_code, result.stdout, result.stderr, name, written)
    for path, st in before.items():  # nothing replaced: the folder, the link to it
        now = os.lstat(path)
        assert (now.st_ino, now.st_mode) == (st.st_ino, st.st_mode), path
    assert not os.path.exists(paths["missing"])


def _child(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "normstats.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env}, errors="replace")


@pytest.mark.parametrize("args", [
    ["simulate", "--layer", "relu", "-n", "1000", "-q"],
    ["list"],
    ["network", "linear relu", "--input", "8", "-n", "20", "-q"],
    ["meanfield", "--layer", "tanh", "--sigma-w2", "1.5"],
])
def test_an_ascii_only_stdout_gets_an_answer_or_one_line(args: list[str]) -> None:
    """``PYTHONIOENCODING=ascii``: the table's ``±`` and box characters cannot be encoded. The answer comes
    (in characters stdout can take), or one line says why; never a ``UnicodeEncodeError`` traceback."""
    result = _child(args, PYTHONIOENCODING="ascii", COLUMNS="120")
    check_outcome(result.returncode, result.stdout, result.stderr, "encod")


def test_sigterm_during_a_run_keeps_the_old_output(tmp_path: Path) -> None:
    """SIGTERM while ``network ... -o old.json`` runs: exit 143, no traceback, the old file untouched."""
    old = tmp_path / "old.json"
    old.write_text("old contents\n")
    # the console script's entry, which says when it has started (its signal handlers set), as tests/
    # test_interrupts.py does: a signal before that would be Python's default, not the tool's
    proc = subprocess.Popen([sys.executable, "-c", "import sys, normstats_entry; sys.stderr.write('started\\n'); "
                             "sys.stderr.flush(); normstats_entry.main()", "network", "40*(linear relu)", "--input",
                             "256", "-n", "1e9", "-q", "--format", "json", "-o", str(old)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None and proc.stderr.readline() == "started\n"
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert old.read_text() == "old contents\n"
    assert [p.name for p in tmp_path.iterdir()] == ["old.json"]
