"""Messages a new user meets: help without arguments, whole command descriptions, suggestions drawn from what
exists where the typo was made, a progress bar with an ETA for --target-se, and which row a table is on."""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner
from rich.console import Console

import normstats
from normstats.cli import main
from normstats.engine.progress import BarProgress, eta


def test_no_arguments_prints_the_help_and_exits_0() -> None:
    result = CliRunner().invoke(main, [])
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ") and "Commands:" in result.stdout
    assert "error:" not in result.stdout + result.stderr and result.stderr == ""


def test_the_command_list_is_never_cut_mid_sentence() -> None:
    out = CliRunner().invoke(main, ["--help"]).stdout
    commands = out.split("Commands:")[1].split("\n\n")[0]
    assert "..." not in commands
    flat = "".join(commands.split())  # the wrapping may break a line at a hyphen
    for name, command in main.commands.items():  # type: ignore[attr-defined]
        described = "".join((command.short_help or command.help or "").split("\n\n")[0].split())
        assert f"{name}{described}" in flat


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--layer", "relu", "--k", "3"], "layer 'relu' has no parameter --k (its parameters: none)"),
        (["--layer", "relu", "--seeds", "3"], "no such option --seeds for 'simulate'; did you mean --seed?"),
        (["--layer", "maxpool", "--strid", "2"], "did you mean --stride?"),
        (["--layer", "relu", "--sample", "10"], "did you mean --samples?"),
    ],
)
def test_typos_are_matched_against_what_exists_there(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(main, ["simulate", *args])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.endswith(expected) and "\n" not in line
    assert "--dask" not in line


def test_eta_follows_the_decay_of_the_se() -> None:
    # se ~ 1/sqrt(draws): at se = 2 x target, four times the draws are needed: three times the time so far
    assert eta(10.0, 1000, 4000) == pytest.approx(30.0)
    assert eta(10.0, 0, 4000) is None
    buf = io.StringIO()
    bar = BarProgress(Console(file=buf, force_terminal=True, width=160, color_system=None))
    bar.start("relu", 10**12, 1e-5)
    bar.update(10**6, 2e-5)
    assert bar._bar is not None
    shown = bar._bar.tasks[0].fields["eta"]
    bar.stop()
    assert shown.startswith("ETA 0:") and "-:--" not in shown


class _Recorder:
    def __init__(self) -> None:
        self.labels: list[str] = []

    def start(self, label: str, samples: int, target_se: float | None) -> None:
        self.labels.append(label)

    def update(self, draws: int, worst_se: float) -> None:
        pass

    def stop(self) -> None:
        pass


def test_a_table_says_which_row_it_is_on() -> None:
    recorder = _Recorder()
    normstats.table(samples=100, rows=[("relu", {}), ("maxpool", {"k": 3}), ("sigmoid", {})], progress=recorder)
    assert recorder.labels == ["row 1/3 relu", "row 2/3 maxpool", "row 3/3 sigmoid"]
