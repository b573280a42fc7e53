"""The first command (issue 23, item 9): ``normstats table`` with no options is at least as precise as 10^6 plain
draws a row, by the fastest honest route (qmc on the exact shortcuts, stopped at per-statistic targets), and
``--samples N`` keeps meaning N plain draws."""

from __future__ import annotations

import math

from normstats import api
from normstats.published.default_table import DEFAULT_ROWS

#: Plain draws of the independent measure of the 10^6-draw se (another seed than the table's pilot).
CHECK_DRAWS = 1 << 15


def test_every_se_of_the_default_table_is_at_most_that_of_a_million_plain_draws() -> None:
    """Each row's se against the se of 10^6 plain draws on the layer's own passes, measured independently: a
    plain run of 2^15 draws (seed 12345) scaled by sqrt(2^15 / 10^6). Statistics whose plain draws are all the
    same (se 0) may differ by float rounding only (api.ROUNDING_SE)."""
    table = api.table()
    assert table.metadata["pilot"] == api.PILOT_DRAWS and table.metadata["method"] == "qmc"
    for (name, params), row in zip(DEFAULT_ROWS, table.rows):
        assert row.method == "qmc" and row.stop == "target-se", row.layer
        plain = api.simulate(name, samples=CHECK_DRAWS, seed=12345, method="mc", **params)
        for stat, ours in row.stats().items():
            theirs = plain.stats()[stat]
            million = theirs.se * math.sqrt(CHECK_DRAWS / api.PLAIN_DRAWS)
            floor = api.ROUNDING_SE * max(1.0, abs(theirs.estimate))
            assert ours.se <= million + floor, (row.layer, row.params, stat, ours.se, million)


def test_samples_keeps_its_meaning() -> None:
    table = api.table(samples=3000, rows=DEFAULT_ROWS[:3])
    assert "pilot" not in table.metadata
    assert all(row.method == "mc" and row.samples == 3000 and row.stop == "samples" for row in table.rows)
