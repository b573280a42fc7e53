"""The options that several commands take mean the same in each: the same flags, help, default, and the same
one-line message for the same bad value (they are declared once, in ``normstats.cli.options``); and an option
that a command lacks is reported as an unknown option, never as a layer parameter."""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner

from normstats.cli import main

#: A valid invocation of every command that runs draws (before the option under test).
COMMANDS: dict[str, list[str]] = {
    "simulate": ["simulate", "--layer", "relu"],
    "table": ["table"],
    "network": ["network", "2*(linear relu)", "--input", "8"],
    "export": ["export", "--format", "json"],
    "jacobian": ["jacobian", "2*(linear tanh)", "--input", "4"],
    "meanfield": ["meanfield", "--layer", "tanh", "--sigma-w2", "1.5"],
    "model": ["model", "tests.model_factories:tiny_mlp", "--input", "8"],
}

#: The shared options each command takes: all that apply to it (meanfield runs no engine: no sample count,
#: workers or stopping rule; jacobian's draw count is bounded and has no stopping rule; a table has no plot;
#: model: torch runs its own threads (--threads), a draw count has no stopping rule, and --dask runs one task per
#: init).
RUN = ("--samples", "--seed", "--workers", "--processes", "--dask", "--quiet", "--format", "--output")
APPLIES: dict[str, tuple[str, ...]] = {
    "simulate": (*RUN, "--target-se", "--max-time"),
    "table": (*RUN, "--target-se", "--max-time"),
    "network": (*RUN, "--target-se", "--max-time", "--plot"),
    "export": (*RUN, "--target-se", "--max-time"),
    "jacobian": (*RUN, "--plot"),
    "meanfield": ("--seed", "--format", "--output", "--plot"),
    "model": ("--samples", "--seed", "--dask", "--quiet", "--format", "--output", "--plot"),
}

#: Per option: its flags, a bad value and the message every command gives for it.
BAD: dict[str, tuple[tuple[str, ...], str, str]] = {
    "--seed": (("--seed",), "-1", "--seed must be an integer in [0, 2^63); got '-1'"),
    "--workers": (("--workers", "-j"), "0", "--workers must be an integer in [1, 1024]; got '0'"),
    "--target-se": (("--target-se",), "-1", "--target-se must be"),
    "--max-time": (("--max-time",), "soon", "--max-time must be"),
    "--output": (("--output", "-o"), "/no/such/folder/x.json", "--output must be in an existing directory; got "
                 "'/no/such/folder/x.json'"),
    "--plot": (("--plot",), "figure.pdf", "--plot must name a .png file; got 'figure.pdf'"),
    "--format": (("--format",), "xml", "Invalid value for '--format': 'xml' is not one of"),
    "--dask": (("--dask",), "no address", "--dask"),
}

PAIRS = [(command, option) for command, opts in APPLIES.items() for option in opts]


def _option(command: str, name: str) -> click.Option:
    cmd = main.commands[command]  # type: ignore[attr-defined]
    found = [p for p in cmd.params if isinstance(p, click.Option) and name in p.opts]
    assert len(found) == 1, (command, name)
    return found[0]


def _stderr(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stderr.strip()


@pytest.mark.parametrize(("command", "option"), PAIRS, ids=[f"{c} {o}" for c, o in PAIRS])
def test_every_command_that_runs_draws_takes_the_shared_options_that_apply(command: str, option: str) -> None:
    _option(command, option)


@pytest.mark.parametrize("option", sorted({o for opts in APPLIES.values() for o in opts}))
def test_a_shared_option_has_the_same_flags_help_and_default_everywhere(option: str) -> None:
    declared = [_option(c, option) for c, opts in APPLIES.items() if option in opts]

    def same(p: click.Option) -> Any:
        help_text = p.help or ""
        if option == "--samples":  # what one draw is differs by command (and the cap needs --target-se)
            help_text = help_text.split("): ", 1)[1].split(" With --target-se")[0]
        if option == "--plot":  # the figure's name differs by command
            help_text = help_text.split(" to FILE.png", 1)[1]
        default = None if option in ("--samples", "--format") else p.default
        return tuple(p.opts), tuple(p.secondary_opts), p.is_flag, help_text, default, p.metavar
    assert len({same(p) for p in declared}) == 1, [same(p) for p in declared]


BAD_PAIRS = [(c, o) for c, o in PAIRS if o in BAD]


@pytest.mark.parametrize(("command", "option"), BAD_PAIRS, ids=[f"{c} {o}" for c, o in BAD_PAIRS])
def test_a_bad_value_gets_the_same_one_line_message_everywhere(command: str, option: str) -> None:
    flags, value, message = BAD[option]
    for flag in flags:
        code, line = _stderr([*COMMANDS[command], flag, value])
        assert code == 2, (flag, line)
        assert "\n" not in line and line.startswith("normstats: error: ")
        assert message in line, (flag, line)


@pytest.mark.parametrize("command", [c for c, opts in APPLIES.items() if "--samples" in opts])
def test_samples_mentions_the_cap_exactly_where_the_command_has_a_stopping_rule(command: str) -> None:
    has_cap = "With --target-se or --max-time: the cap (default 1e12)." in (_option(command, "--samples").help or "")
    assert has_cap == ("--target-se" in APPLIES[command])


@pytest.mark.parametrize("command", ["simulate", "table", "network", "export", "jacobian"])
def test_a_bad_sample_count_names_the_option_and_its_range(command: str) -> None:
    code, line = _stderr([*COMMANDS[command], "-n", "many"])
    assert code == 2 and "\n" not in line
    assert "--samples must be" in line and "got 'many'" in line


@pytest.mark.parametrize(("command", "option"), [("meanfield", "--quiet"), ("meanfield", "--workers"),
                                                 ("solve", "--quiet"), ("meanfield", "--samples")])
def test_an_option_the_command_lacks_is_an_unknown_option_not_a_layer_parameter(command: str, option: str) -> None:
    args = {"meanfield": COMMANDS["meanfield"], "solve": ["solve", "--layer", "tanh"]}[command]
    code, line = _stderr([*args, option, "1"] if option != "--quiet" else [*args, option])
    assert code == 2
    assert line == f"normstats: error: no such option {option} for '{command}' (its options: 'normstats {command} --help')"
    assert "parameter" not in line
