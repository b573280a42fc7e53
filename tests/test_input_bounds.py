"""Accepted input never ends in a traceback: every number a layer accepts stays inside what the samplers, the
closed forms and the quadrature handle; formulas, Dask addresses and a terminal's encoding likewise."""

from __future__ import annotations

import math
import re
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest
from click.testing import CliRunner

import normstats
from normstats.cli import main
from normstats.errors import ParameterError
from normstats.params import SCALE_BOUND
from normstats.registry import get_layer, list_layers, make_layer
from normstats.stats import STATS

#: Every float parameter of every registered layer.
FLOAT_PARAMS = [(name, p) for name in list_layers() for p in get_layer(name).params if p.type is float]


def _bad(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("normstats: error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(("layer", "param"), FLOAT_PARAMS, ids=[f"{n}-{p.name}" for n, p in FLOAT_PARAMS])
def test_every_float_parameter_is_bounded(layer: str, param: Any) -> None:
    assert param.low is not None and param.high is not None, f"{layer} --{param.name} has no range"
    for value in (1e308, -1e308):
        with pytest.raises(ParameterError, match=f"must be .*; got {re.escape(repr(value))}"):
            make_layer(layer, **{param.name: value})


def _edges(layer: str) -> list[dict[str, float]]:
    """The layer at each end of each float parameter's range (the others at their defaults)."""
    out = []
    for p in get_layer(layer).params:
        if p.type is not float:
            continue
        for edge in (p.low, p.high):
            assert edge is not None
            value = edge * (1 - 1e-9) if (edge == p.low and p.low_open) or (edge == p.high and p.high_open) else edge
            if value == 0 and p.low_open:
                value = 1e-9
            params = {p.name: float(value)}
            if layer == "hardtanh":  # a window of width 1 inside the range
                params = {"min_val": value - 1, "max_val": value} if edge == p.high else {"min_val": value,
                                                                                           "max_val": value + 1}
            if p.name == "gain":  # the gain of weight standardization applies only with it
                params["normalize"] = "ws"
            out.append(params)
    return out


EDGE_CASES = [(n, e) for n in sorted({n for n, _ in FLOAT_PARAMS}) for e in _edges(n)]


@pytest.mark.parametrize(("layer", "params"), EDGE_CASES, ids=[f"{n}-{e}" for n, e in EDGE_CASES])
def test_the_ends_of_every_range_run_without_warnings(layer: str, params: dict[str, float]) -> None:
    """Warnings are errors here (pytest's filterwarnings): no overflow, no roundoff warning of quad; the
    estimates agree with their references."""
    row = normstats.simulate(layer, samples=4096, seed=1, **params)
    for s in STATS:
        stat = getattr(row, s)
        assert math.isfinite(stat.estimate)
        if stat.z is not None:
            assert abs(stat.z) < 5, (s, stat)


def test_list_shows_the_ranges() -> None:
    out = CliRunner().invoke(main, ["list", "--format", "json"]).stdout
    assert f"a number in [-{SCALE_BOUND:g}, {SCALE_BOUND:g}]" in out


def test_overflowing_parameter_on_the_command_line() -> None:
    line = _bad("simulate", "--layer", "elu", "--alpha", "1e308")
    assert line.endswith("--alpha of layer 'elu' must be a number in [-1e+06, 1e+06]; got '1e308'")


@pytest.mark.parametrize("expr", ["1e80*x", "x**80", "exp(x)**20"])
def test_formulas_whose_powers_overflow_are_refused(expr: str) -> None:
    assert "is too large at x = " in _bad("simulate", "--expr", expr)


@pytest.mark.parametrize(
    ("address", "needle"),
    [("nonsense", "must be a scheduler address"), ("localhost:abc", "must be a scheduler address"),
     ("tcp://host:99999", "PORT in [1, 65535]"), ("tcp://", "must be a scheduler address"),
     ("nosuchhost.invalid:8786", "unknown host 'nosuchhost.invalid'")],
)
def test_a_malformed_dask_address_fails_at_once(address: str, needle: str) -> None:
    assert needle in _bad("simulate", "--layer", "relu", "--dask", address)


def _listener(reply: bytes) -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        conn.sendall(reply)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_an_unreachable_or_foreign_dask_address_fails_in_one_line() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    assert "Connection refused" in _bad("simulate", "--layer", "relu", "--dask", f"tcp://127.0.0.1:{port}")
    server, port = _listener(b"HTTP/1.0 200 OK\r\n\r\nnot dask")
    try:
        assert "not as a Dask scheduler" in _bad("simulate", "--layer", "relu", "--dask", f"127.0.0.1:{port}")
    finally:
        server.close()


def test_a_tcp_dask_scheduler_still_works() -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        processes=False, protocol="tcp://", n_workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0"
    ) as cluster:  # any free port: with None the scheduler's HTTP server takes 8787, or warns when it is taken
        row = normstats.simulate("relu", samples=1000, dask=cluster.scheduler_address)
    assert row.samples == 1000


@pytest.mark.parametrize("command", [["simulate", "--layer", "maxpool", "--k", "3", "-n", "1000"], ["list"],
                                     ["audit"], ["solve", "--layer", "elu", "--free", "alpha"]])
def test_an_ascii_terminal_gets_a_plain_ascii_rendering(command: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "normstats.cli", *command], capture_output=True, timeout=120,
        env={"PYTHONIOENCODING": "ascii", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode("ascii")  # raises if a byte is not ASCII
    assert "?" not in out.replace("?)", "")  # nothing fell back to the replacement character
    if command[0] == "simulate":
        assert "1.4850 yes" in out and " +- " in out


@pytest.mark.parametrize(("args", "figure"), [
    (["--in-channels", "1024", "--out-channels", "1024", "--k", "15"], "5.0 GB"),
    (["--in-channels", "4", "--k", "15", "--size", "300"], "569 MB"),
])
def test_a_conv_beyond_the_memory_bound_is_refused_with_the_figure(args: list[str], figure: str) -> None:
    from normstats.layers.conv import MAX_MEMORY, work_bytes

    line = _bad("simulate", "--layer", "conv", *args)
    assert "within 256 MB" in line and line.endswith(figure)
    conv = make_layer("conv", in_channels=1024, out_channels=1024, k=3)  # just inside: 150 MB
    assert work_bytes(conv.values, conv.grid) <= MAX_MEMORY
