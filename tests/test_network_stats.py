"""A network's statistics: honest error bars (coverage across seeds where every network has the same exact
values), the mean-field limit against networks of growing width, and the run's Ctrl-C and export paths."""

from __future__ import annotations

import json
import math

import jsonschema
import numpy as np
import pytest

import normstats
from normstats.networks.build import build_network
from normstats.networks.wide_limit import mean_field
from normstats.output.files import schema as export
from tests.test_cli import run

#: ``linear relu`` with unit-norm rows and a square W: every statistic is the same for every W. The linear
#: outputs are N(0, 1) whatever W (unit rows), so the relu's are its single-layer constants; the gradient at
#: the linear's input is W^T (relu'(h) dy), whose pooled variance is |W|^2 / (2 fan_in) = 1/2.
EXACT = {
    ("1", "fp_mean"): 0.0, ("1", "fp_std"): 1.0, ("1", "bp_std"): math.sqrt(0.5),
    ("2", "fp_mean"): math.sqrt(1 / (2 * math.pi)), ("2", "fp_std"): math.sqrt(0.5 - 1 / (2 * math.pi)),
    ("2", "bp_std"): math.sqrt(0.5),
}


def test_the_mean_field_limit_is_exact_where_every_network_agrees() -> None:
    mf = mean_field(build_network("linear relu", (8,)))
    for (label, stat), value in EXACT.items():
        assert mf[f"{label}|{stat}"] == pytest.approx(value, rel=1e-12, abs=1e-15)


@pytest.mark.slow
def test_95_percent_intervals_cover_the_exact_values_across_seeds() -> None:
    """300 seeds (each its own network) of 400 draws: the share of 95% intervals holding the exact value must
    be within 3 binomial standard deviations of 0.95, for every statistic."""
    seeds = range(300)
    hits = {key: 0 for key in EXACT}
    for seed in seeds:
        r = normstats.network("linear relu", input=8, samples=400, seed=seed)
        for (label, stat), value in EXACT.items():
            s = next(row for row in r.layers if row.index == label).stats[stat]
            lo, hi = s.ci95
            hits[(label, stat)] += lo <= value <= hi
    n = len(seeds)
    band = 3 * math.sqrt(0.95 * 0.05 / n)
    for key, count in hits.items():
        assert abs(count / n - 0.95) <= band, (key, count / n)


def test_estimates_approach_the_mean_field_limit_as_the_width_grows() -> None:
    """``6*(linear relu)`` with fp NormProp, 64 to 16 networks per width: the last layer's fp std is 1 in the limit;
    at finite width it sits above, by less the wider the network (a factor of 2 at least per 4x in width), and
    the limit is not z-tested (the reference kind says mean_field, z is None)."""
    diffs = []
    for width, inits in ((32, 64), (128, 32), (512, 16)):
        r = normstats.network("6*(linear relu)", input=width, normprop="fp", samples=250 * inits, inits=inits,
                              seed=1)
        top = r.layers[-1].stats["fp_std"]
        assert top.reference_kind == "mean_field" and top.z is None
        diffs.append((top.difference, top.se))
    for (wide, se_wide), (narrow, se_narrow) in zip(diffs[1:], diffs[:-1]):
        assert wide < narrow / 2
        assert narrow - wide > 3 * math.hypot(se_wide, se_narrow)
    assert abs(diffs[-1][0]) < 0.02


def test_the_fp_mode_gradient_grows_as_the_mean_field_says() -> None:
    """The issue's headline: fp NormProp keeps the forward std at 1 and multiplies the gradient's std by
    sqrt(1/2) / sqrt(1/2 - 1/(2 pi)) = 1.2113 per ReLU."""
    mf = mean_field(build_network("20*(linear relu)", (512,), normprop="fp"))
    rate = math.sqrt(0.5) / math.sqrt(0.5 - 1 / (2 * math.pi))
    for k in range(1, 21):
        assert mf[f"{2 * k}|fp_std"] == pytest.approx(1.0, rel=1e-12)
        assert mf[f"{2 * k}|bp_std"] == pytest.approx(rate ** (21 - k), rel=1e-10)
    split = mean_field(build_network("20*(linear relu)", (512,), normprop="split"))
    assert all(split[f"{i}|bp_std"] == pytest.approx(1.0, rel=1e-12) for i in range(1, 41))


def test_residual_blocks_grow_the_variance_as_one_plus_k_alpha_squared() -> None:
    mf = mean_field(build_network("16*res(linear relu linear, alpha=0.2, beta=auto)", (64,), normprop="fp"))
    for k in range(1, 17):
        assert mf[f"{k}|fp_std"] ** 2 == pytest.approx(1 + k * 0.04, rel=1e-12)
        assert mf[f"{k}|branch_var"] == pytest.approx(1.0, rel=1e-12)


def test_layers_without_a_limit_have_none_and_block_the_backward_limit() -> None:
    mf = mean_field(build_network("conv(out_channels=2,k=3,padding=1) relu maxpool(k=2) relu", (1, 6, 6)))
    assert mf["1|fp_std"] is None  # a padded map: border windows see part of W
    assert all(v is None for k, v in mf.items() if k.endswith("bp_std"))
    unpadded = mean_field(build_network("conv(out_channels=2,k=3) relu", (1, 6, 6)))
    assert unpadded["1|fp_std"] == pytest.approx(1.0) and unpadded["2|bp_std"] == pytest.approx(math.sqrt(0.5))


def test_the_json_document_follows_the_schema_and_says_what_it_ran() -> None:
    out = run("network", "2*res(linear relu linear, alpha=0.2, beta=auto) relu", "--input", "16", "--normprop",
              "split", "-n", "320", "--format", "json", "-q").stdout
    doc = json.loads(out)
    jsonschema.Draft202012Validator(export.schema()).validate(doc)
    assert doc["network"] == "2*res(linear relu linear, alpha=0.2, beta=auto) relu"
    assert doc["normprop"] == "split" and doc["true_gradient"] is False and doc["draws"] == 320
    assert doc["inits"] == 8 and doc["describes"] == "architecture"
    assert [row["index"] for row in doc["layers"]] == ["1", "1.1", "1.2", "1.3", "2", "2.1", "2.2", "2.3", "3"]
    block = doc["layers"][0]
    assert block["layer"] == "res" and block["params"]["beta"] == "auto" and "branch_var" in block
    assert all(row["fp_std"]["z"] is None for row in doc["layers"])


def test_csv_and_markdown_hold_every_layer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    csv_text = run("network", "3*(linear relu)", "--input", "8", "-n", "200", "--format", "csv", "-q").stdout
    lines = csv_text.splitlines()
    assert lines[0].startswith("network,input,index,layer,params,shape,statistic,estimate,se")
    assert len(lines) == 1 + 6 * 4
    md = tmp_path / "net.md"
    run("network", "3*(linear relu)", "--input", "8", "-n", "200", "--format", "markdown", "-o", str(md), "-q")
    text = md.read_text()
    assert text.count("\n| ") >= 7
    assert "bp std stays within" in text or "bp std leaves" in text


def test_the_table_names_the_run_and_says_where_the_std_leaves_the_band() -> None:
    out = run("network", "20*(linear relu)", "--input", "32", "--normprop", "fp", "-n", "500", "--inits", "1", "-q")
    assert "network 20*(linear relu) · input 32 · normprop fp · 500 draws · one network (seed 0)" in out.stdout
    assert "fp std stays within [0.5, 2] at every layer" in out.stdout
    assert "bp std leaves [0.5, 2] first at layer" in out.stdout
    assert "500 draws over 1 network (mc), stopped by samples" in out.stderr


def test_target_se_stops_a_network_run() -> None:
    r = normstats.network("linear relu", input=8, target_se=0.01, seed=0, workers=1)
    assert r.stop == "target-se"
    assert max(s.se for row in r.layers for s in row.stats.values()) <= 0.01


def test_the_plot_of_maps_has_a_panel_per_pass_and_the_nf_resnet_figures(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from normstats.output.figures.signal import (
        BP_COLOUR,
        FP_COLOUR,
        MEAN_SQ_COLOUR,
        VAR_COLOUR,
    )
    from tests.test_plotting import panel_colours

    path = tmp_path / "sp.png"
    run("network", "conv(out_channels=4,k=3,padding=1) relu conv(out_channels=4,k=3,padding=1) relu", "--input",
        "2x8x8", "-n", "200", "--plot", str(path), "-q")
    colours = (FP_COLOUR, BP_COLOUR, MEAN_SQ_COLOUR, VAR_COLOUR)
    fp, bp, nf = panel_colours(path, 3, colours)
    assert fp[FP_COLOUR] > 50 and bp[BP_COLOUR] > 50, (fp, bp)
    assert nf[MEAN_SQ_COLOUR] > 50 and nf[VAR_COLOUR] > 50, nf
    for panel, own in ((fp, (FP_COLOUR,)), (bp, (BP_COLOUR,)), (nf, (MEAN_SQ_COLOUR, VAR_COLOUR))):
        assert all(panel[c] == 0 for c in colours if c not in own), panel


TABLES = __import__("pathlib").Path(__file__).resolve().parent.parent / "tables"


def _depth_doc(name: str) -> dict:
    return json.loads((TABLES / name).read_text())


def test_the_committed_depth_table_holds_every_run_and_follows_the_schema() -> None:
    from normstats.published.default_table import DEPTH_DRAWS, DEPTH_RUNS

    validator = jsonschema.Draft202012Validator(export.schema())
    for spec, width, mode in DEPTH_RUNS:
        doc = _depth_doc(f"depth_{'res' if 'res(' in spec else 'dense'}_{mode}.json")
        validator.validate(doc)
        assert (doc["network"], doc["input"], doc["normprop"], doc["draws"]) == (spec, [width], mode, DEPTH_DRAWS)
    assert (TABLES / "depth.md").read_text().count("normstats ") == len(DEPTH_RUNS)


@pytest.mark.slow
def test_the_committed_depth_table_is_what_the_documented_command_writes() -> None:
    """One run of it (the fp mode: the others differ only in the mode) regenerated and compared up to float
    rounding (tests.rounding); regenerating all five would take the suite about 25 s more."""
    from tests.rounding import same_up_to_rounding

    result = normstats.network("20*(linear relu)", input=512, normprop="fp", samples=5000, seed=0)
    text = export.dumps(result.to_dict())
    assert same_up_to_rounding(text, (TABLES / "depth_dense_fp.json").read_text()) is None


def test_the_networks_guide_quotes_the_depth_table() -> None:
    from normstats.output.results.numbers import pm

    readme = (TABLES.parent / "docs" / "guide" / "networks.md").read_text()
    for mode in ("fp", "bp", "split", "none"):
        rows = {r["index"]: r for r in _depth_doc(f"depth_dense_{mode}.json")["layers"]}
        fp, bp = rows["40"]["fp_std"], rows["1"]["bp_std"]
        line = next(line for line in readme.splitlines() if line.startswith(f"| `{mode}`"))
        assert pm(fp["estimate"], fp["se"]) in line and pm(bp["estimate"], bp["se"]) in line, line




def test_statistics_a_layer_declares_exact_are_exact_in_a_network_too() -> None:
    """A layer norm's outputs and input gradients sum to 0 over every token, so its fp and bp means are 0 in
    every draw: the network shows them as exact (se 0, never z-tested), not as rounding noise such as
    ``-2.4e-18 ± 7.6e-19``; the linear layer before it keeps its estimate and se; a layer the network scales
    (a NormProp-shifted ReLU) keeps its sampled figures, since the declaration is for the layer as it is."""
    result = normstats.network("linear layernorm relu", input=16, samples=64, inits=2, seed=0, normprop="fp")
    rows = {row.layer: row.stats for row in result.layers}
    for name in ("fp_mean", "bp_mean"):
        assert rows["layernorm"][name].exact and rows["layernorm"][name].estimate == 0.0
        assert rows["layernorm"][name].se == 0.0 and rows["layernorm"][name].z is None
        assert not rows["linear"][name].exact and rows["linear"][name].se > 0
    assert not any(stat.exact for stat in rows["relu"].values())
    doc = result.to_dict()
    layer_norm = next(layer for layer in doc["layers"] if layer["layer"] == "layernorm")
    assert layer_norm["fp_mean"]["exact"] is True and "exact" not in layer_norm["fp_std"]
