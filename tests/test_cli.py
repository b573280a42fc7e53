"""Every command and every class of bad input, through click's CliRunner."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import normstats
from normstats import api
from normstats.cli import main
from normstats.engine.sample_count import parse_samples

STAT_KEYS = {
    "estimate", "se", "ci95", "reference", "reference_kind", "published", "published_text", "published_agrees", "z",
}


def run(*args: str, code: int = 0) -> Result:
    """Invoke the CLI and check its exit code; on a mismatch show everything it printed."""
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, (
        f"exit {result.exit_code} != {code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}\n"
        f"exception: {result.exception!r}"
    )
    return result


def run_bad(*args: str) -> str:
    """Bad input: exit code 2 and exactly one line on stderr, no traceback, nothing on stdout."""
    result = run(*args, code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("normstats: error: ")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    return lines[0]


def test_help_and_version() -> None:
    assert "Exit codes" in run("--help").stdout
    assert "--samples" in run("simulate", "-h").stdout
    assert normstats.__version__ in run("--version").stdout


def test_list_shows_every_layer_with_parameters_and_reference_kind() -> None:
    out = run("list").stdout
    for name in normstats.list_layers():
        assert name in out
    assert "--k" in out and "closed form" in out and "quadrature" in out
    data = json.loads(run("list", "--format", "json").stdout)
    assert [d["layer"] for d in data] == normstats.list_layers()
    pool = next(d for d in data if d["layer"] == "maxpool")
    assert pool["params"][0]["option"] == "--k" and pool["params"][0]["allowed"] == "an integer in [1, 32]"
    assert pool["reference_kind"]["fp_mean"] == "quadrature"


def test_simulate_json_follows_the_documented_shape() -> None:
    doc = json.loads(run("simulate", "--layer", "maxpool", "--k", "3", "-n", "2e4", "--format", "json").stdout)
    assert set(doc) >= {"normstats", "seed", "rows"}
    assert doc["seed"] == api.DEFAULT_SEED and doc["normstats"] == normstats.__version__
    (row,) = doc["rows"]
    assert row["layer"] == "maxpool" and row["samples"] == 20_000
    assert row["params"] == {"k": 3, "stride": 3, "padding": 0, "size": "interior"}
    for stat in ("fp_mean", "fp_std", "bp_mean", "bp_std"):
        assert set(row[stat]) == STAT_KEYS | ({"exact"} if stat in ("bp_mean", "bp_std") else set())
    assert row["bp_mean"]["exact"] is True  # dy integrated out: 0 in every draw
    assert row["bp_std"]["exact"] is True  # dy integrated out: each window routes g = 1, sqrt(1/9) every draw
    fp = row["fp_mean"]
    assert fp["reference_kind"] == "quadrature" and fp["published"] == 1.485 and fp["published_agrees"] is True
    assert fp["published_text"] == "1.4850"  # as printed: the trailing zero is its precision
    assert fp["ci95"][0] < fp["estimate"] < fp["ci95"][1]
    assert fp["z"] == pytest.approx((fp["estimate"] - fp["reference"]) / fp["se"])


def test_simulate_accepts_option_spellings() -> None:
    a = run("simulate", "--layer", "dropout", "--p=0.9", "--samples", "10_000", "--format", "json").stdout
    b = run("simulate", "-l", "dropout", "--p", "0.9", "-n", "1e4", "--format", "json").stdout
    assert a == b
    assert json.loads(a)["rows"][0]["params"] == {"p": 0.9, "convention": "sqrt"}


def test_simulate_table_output_names_the_run() -> None:
    out = run("simulate", "--layer", "sigmoid", "-n", "1e4", "--seed", "3").stdout
    assert "sigmoid · 10,000 draws · seed 3" in out
    assert "0.2123 ✗" in out  # the published bp std is wrong beyond its printed rounding
    assert "fp scale" in out


def test_table_has_every_published_row_in_each_format() -> None:
    result = run("table", "-n", "5000", "--format", "json")
    assert result.stderr.strip() == "every row: 5,000 draws (mc), stopped by samples"
    doc = json.loads(result.stdout)
    rows = [(r["layer"], r["params"]) for r in doc["rows"]]
    for pool in ("maxpool", "avgpool"):
        for k, stride in ((3, 3), (2, 2), (3, 2)):
            assert (pool, {"k": k, "stride": stride, "padding": 0, "size": "interior"}) in rows
    assert ("dropout", {"p": 0.9, "convention": "inverted"}) in rows
    assert {r[0] for r in rows} >= {"linear", "relu", "sigmoid", "dropout"}
    lines = list(csv.DictReader(io.StringIO(run("table", "-n", "5000", "--format", "csv").stdout)))
    assert len(lines) == 4 * len(rows)
    assert lines[0]["seed"] == "0" and lines[0]["samples"] == "5000"
    markdown = run("table", "-n", "5000", "--format", "markdown").stdout
    assert markdown.count("\n| maxpool |") == 3 * 4 + 3  # 4 statistics and 1 constants line per row
    assert "1.0291 ✗" in markdown  # published 2x2 max-pool mean disagrees with the reference 1.0293754


def test_output_file_is_written_whole(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    result = run("simulate", "--layer", "relu", "-n", "1e4", "--format", "json", "--output", str(target))
    assert result.stdout == "" and "wrote" in result.stderr
    assert json.loads(target.read_text())["rows"][0]["layer"] == "relu"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left behind


def test_unwritable_output_fails_before_any_work_and_leaves_nothing(tmp_path: Path) -> None:
    line = run_bad("table", "--output", str(tmp_path / "missing" / "t.csv"))
    assert "--output must be in an existing directory" in line
    assert not (tmp_path / "missing").exists()
    line = run_bad("table", "--output", str(tmp_path))
    assert "not a directory" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_read_only_directory_is_refused(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        assert "permission denied" in run_bad("table", "--output", str(tmp_path / "t.csv"))
    finally:
        tmp_path.chmod(0o700)


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "t.json"
    target.write_text("old")

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    line = run_bad("simulate", "--layer", "relu", "-n", "100", "--format", "json", "-o", str(target))
    assert "No space left on device" in line
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_new_output_file_follows_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        run("simulate", "--layer", "relu", "-n", "100", "--format", "json", "-o", str(tmp_path / "t.json"))
    finally:
        os.umask(old)
    assert (tmp_path / "t.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_an_overwritten_file_keeps_its_mode_and_a_symlink_is_written_through(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    run("simulate", "--layer", "relu", "-n", "100", "--format", "json", "-o", str(link))
    assert link.is_symlink() and link.resolve() == target
    assert json.loads(target.read_text())["rows"][0]["layer"] == "relu"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


@pytest.mark.parametrize("args", [["list"], ["list", "--format", "json"], ["simulate", "--layer", "relu", "-n", "100"]])
def test_a_closed_pipe_ends_quietly(args: list[str]) -> None:
    """``normstats list | true``: the reader is gone before the first write; exit 141 (128 + SIGPIPE), and
    stderr keeps the summary of the run, without a traceback."""
    import subprocess
    import sys

    reader = subprocess.Popen(["true"], stdin=subprocess.PIPE)
    reader.wait()
    proc = subprocess.run([sys.executable, "-m", "normstats.cli", *args], stdout=reader.stdin,
                          stderr=subprocess.PIPE, text=True, timeout=60)
    assert reader.stdin is not None
    reader.stdin.close()
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception" not in proc.stderr
    if args[0] == "simulate":
        assert proc.stderr == "relu: 100 draws (mc), stopped by samples\n"
    else:
        assert proc.stderr == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["simulate", "--layer", "maxpoool"], "unknown layer 'maxpoool'"),
        (["simulate", "--layer", "maxpoool"], "did you mean maxpool"),
        (["simulate", "--layer", "relu", "--k", "3"], "layer 'relu' has no parameter --k"),
        (["simulate", "--layer", "maxpool", "--p", "0.5"], "its parameters: --k, --stride"),
        (["simulate", "--layer", "relu", "--sample", "10"], "did you mean --samples?"),
        (["simulate", "--layer", "maxpool", "--k", "0"], "--k of layer 'maxpool' must be an integer in [1, 32]; got '0'"),
        (["simulate", "--layer", "maxpool", "--k", "abc"], "must be an integer in [1, 32]; got 'abc'"),
        (["simulate", "--layer", "maxpool", "--k"], "--k of layer 'maxpool' needs a value"),
        (["simulate", "--layer", "maxpool", "3"], "unexpected argument '3'"),
        (["simulate", "--layer", "dropout", "--p", "1.5"], "--p of layer 'dropout' must be a number in (0, 1]; got '1.5'"),
        (["simulate", "--layer", "relu", "--samples", "0"], "--samples must be a whole number in [2, 1e12]"),
        (["simulate", "--layer", "relu", "--samples", "-5"], "got '-5'"),
        (["simulate", "--layer", "relu", "--samples", "lots"], "got 'lots'"),
        (["simulate", "--layer", "relu", "--samples", "1e13"], "got '1e13'"),
        (["simulate", "--layer", "relu", "--samples", "1.5"], "got '1.5'"),
        (["simulate", "--layer", "relu", "--seed", "x"], "--seed must be an integer in [0, 2^63); got 'x'"),
        (["simulate", "--layer", "relu", "--seed", "-1"], "--seed must be an integer in [0, 2^63); got '-1'"),
        (["simulate", "--layer", "relu", "--format", "xml"], "'xml' is not one of 'table', 'json', 'csv', 'markdown'"),
        (["simulate", "--layer", "sigmoid", "--reference", "formula"], None),
        (["simulate", "--layer", "avgpool", "--reference", "quadrature"], "has no quadrature reference"),
        (["simulate"], "give exactly one of --layer NAME, --expr FORMULA and --torch MODULE:NAME"),
        (["table", "--samples", "0"], "--samples must be"),
        (["table", "--bogus"], "No such option '--bogus'"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(args: list[str], expected: str | None) -> None:
    if expected is None:  # not bad input: a forced path that covers part of the statistics
        run(*args, "-n", "100")
        return
    assert expected in run_bad(*args)


def test_interrupt_exits_130_without_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "simulate", interrupted)
    result = run("simulate", "--layer", "relu", code=130)
    assert "interrupted" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "count"),
    [("1e7", 10**7), ("10000000", 10**7), ("10_000_000", 10**7), ("10M", 10**7), ("2e5", 200_000),
     ("1.5e3", 1500), ("250k", 250_000), ("1G", 10**9), (" 42 ", 42), (10**6, 10**6)],
)
def test_sample_counts(text: str | int, count: int) -> None:
    assert parse_samples(text) == count
