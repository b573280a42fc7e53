"""What a network's ``± se`` describes (issue 23, item 5): by default the architecture (8 independent networks, the
se including the init-to-init spread); with ``--inits 1`` one network, labelled as that network."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import normstats
from normstats.networks.run import DEFAULT_INITS, default_inits
from normstats.published.default_table import DEPTH_DRAWS

SPEC = "10*(linear relu)"


def test_the_default_se_covers_the_average_over_other_networks() -> None:
    """No NormProp, 20 layers at width 32: the default run (seed 0, 8 networks) and an average over 48 other
    networks (seed 1) agree at the last layer within 4 combined se, for the fp and the bp std. One network
    (``inits=1``) has an se far below the architecture's: its fp std sits more than 4 combined se from the
    average, which is why it is not the default."""
    default = normstats.network(SPEC, input=32, samples=800, seed=0)
    others = normstats.network(SPEC, input=32, samples=4800, seed=1, inits=48)
    one = normstats.network(SPEC, input=32, samples=800, seed=0, inits=1)
    assert default.inits == DEFAULT_INITS == 8 and default.describes == "architecture"
    assert one.describes == "one network"
    for name in ("fp_std", "bp_std"):
        ours, theirs = default.layers[-1].stats[name], others.layers[-1].stats[name]
        assert abs(ours.estimate - theirs.estimate) <= 4 * math.hypot(ours.se, theirs.se), name
        assert one.layers[-1].stats[name].se < ours.se / 3, name
    single, theirs = one.layers[-1].stats["fp_std"], others.layers[-1].stats["fp_std"]
    assert abs(single.estimate - theirs.estimate) > 4 * math.hypot(single.se, theirs.se)


def test_the_default_networks_fit_the_draws_and_a_target_se_runs_one() -> None:
    assert default_inits(None, "mc", None) == 8 and default_inits(DEPTH_DRAWS, "mc", None) == 8
    assert default_inits(6, "mc", None) == 3 and default_inits(3, "mc", None) == 1
    assert default_inits(64, "qmc", None) == 4 and default_inits(10**4, "mc", 1e-3) == 1


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "normstats.cli", "network", SPEC, "--input", "16", "-n", "400",
                           *args], capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"})


def test_one_network_says_so_in_the_title_the_json_and_the_closing_line() -> None:
    out = _cli("--inits", "1", "--seed", "3", "-q").stdout
    assert "400 draws · one network (seed 3)" in out
    assert "one network (seed 3): its se leaves out the init-to-init spread" in out
    doc = json.loads(_cli("--inits", "1", "--seed", "3", "--format", "json", "-q").stdout)
    assert doc["inits"] == 1 and doc["describes"] == "one network"
    md = _cli("--inits", "1", "--seed", "3", "--format", "markdown", "-q").stdout
    assert "one network (seed 3): its se leaves out the init-to-init spread" in md


def test_the_default_says_it_describes_the_architecture() -> None:
    result = _cli()
    assert "400 draws · 8 networks (seed 0)" in result.stdout
    assert "it describes the architecture" in result.stdout
    assert "400 draws over 8 networks (mc)" in result.stderr
    doc = json.loads(_cli("--format", "json", "-q").stdout)
    assert doc["inits"] == 8 and doc["describes"] == "architecture"


def test_a_time_limit_is_shared_equally_by_the_networks(monkeypatch) -> None:
    """``--max-time`` with K networks: they run in turn, each with an equal share of the time left when it starts
    (before, network 0 ran on one shared clock until the limit and the others got one checkpoint each). The rule
    on a fake clock, then the run's calls."""
    from normstats.engine import stopping

    clock = [100.0]
    monkeypatch.setattr(stopping.time, "monotonic", lambda: clock[0])
    rule = stopping.StopRule(max_time=8.0, started=100.0)
    first = rule.share(4)
    assert (first.max_time, first.started) == (2.0, 100.0)
    clock[0] = 105.0  # the first network overran its 2 s: 3 s are left for the last 2
    second = rule.share(2)
    assert (second.max_time, second.started) == (1.5, 105.0)
    assert second.check({}) is None
    clock[0] = 106.5
    assert second.check({}) == stopping.MAX_TIME
    clock[0] = 120.0
    assert rule.share(1).max_time == 0.0
    untimed = stopping.StopRule(target_se=1e-3)
    assert untimed.share(3) is untimed

    parts: list[int] = []
    share = stopping.StopRule.share
    monkeypatch.setattr(stopping.StopRule, "share", lambda self, n: parts.append(n) or share(self, n))
    result = normstats.network("linear relu", input=8, samples=64, seed=0, inits=4, max_time=3600)
    assert parts == [4, 3, 2, 1] and result.inits == 4
