"""Width sweeps (``normstats network SPEC --width 64,128,256``, :func:`normstats.width_sweep`): the slope of log std
against log width, its fit against numpy's, the slopes theory predicts (an MLP's fan-in scaling, attention logits
under ``1/sqrt(d_head)`` and muP's ``1/d_head``), the attention logits' statistic against its definition, and bad
input through the command line."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import normstats
from normstats.cli import main
from normstats.networks.build import build_network
from normstats.networks.propagate import NetworkSampler, weight_rng
from normstats.networks.width_sweep import fit_slope, parse_widths
from normstats.output.results.width_sweep import MAX_WIDTHS

#: A slope is within this many of its se of what theory says.
Z = 4.0


def _within(slope: normstats.Slope, value: float) -> None:
    assert slope.estimate is not None and slope.se is not None
    assert abs(slope.estimate - value) < Z * slope.se, (slope, value)


def test_the_fit_is_numpys_weighted_polyfit() -> None:
    """Against ``numpy.polyfit`` with weights ``1 / s`` (its ``w`` multiplies the residuals) and
    ``cov="unscaled"`` (the covariance with the given errors taken as known): the same slope, se and chi2."""
    widths = [64, 128, 256, 512]
    est = np.array([1.3, 0.95, 0.7, 0.52])
    se = np.array([0.02, 0.01, 0.015, 0.004])
    x, y, s = np.log(widths), np.log(est), se / est
    coef, cov = np.polyfit(x, y, 1, w=1 / s, cov="unscaled")
    chi2 = float((((y - np.polyval(coef, x)) / s) ** 2).sum())
    slope = fit_slope(widths, est, se)
    assert slope.estimate == pytest.approx(coef[0], rel=1e-12)
    assert slope.se == pytest.approx(math.sqrt(cov[0, 0]), rel=1e-12)
    assert slope.chi2 == pytest.approx(chi2, rel=1e-10) and slope.dof == 2
    assert slope.z == pytest.approx(coef[0] / math.sqrt(cov[0, 0]))


def test_the_fit_on_a_power_law_and_at_two_widths() -> None:
    """``c w^(-1/2)`` exactly: slope -1/2 and chi2 0. Two widths: the slope through both points, its se
    ``sqrt(s_1^2 + s_2^2) / log(w_2 / w_1)`` (the se of a difference of logs over the log ratio)."""
    widths = [32, 64, 128]
    exact = fit_slope(widths, [3.0 * w**-0.5 for w in widths], [0.01, 0.01, 0.01])
    assert exact.estimate == pytest.approx(-0.5, abs=1e-12) and exact.chi2 == pytest.approx(0.0, abs=1e-20)
    two = fit_slope([100, 400], [2.0, 1.5], [0.02, 0.03])
    assert two.estimate == pytest.approx(math.log(1.5 / 2.0) / math.log(4.0), rel=1e-12)
    assert two.se == pytest.approx(math.hypot(0.02 / 2.0, 0.03 / 1.5) / math.log(4.0), rel=1e-12)
    assert two.dof == 0 and two.chi2 == pytest.approx(0.0, abs=1e-20)


def test_exact_and_logless_points() -> None:
    """se 0 at every width on a line: an exact slope; off a line: the slope and no se; an estimate of 0 (no log):
    no slope, and a note that says why."""
    on_line = fit_slope([10, 20, 40], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    assert on_line.exact and on_line.estimate == 0.0 and on_line.se == 0.0
    off_line = fit_slope([10, 20, 40], [1.0, 2.0, 1.0], [0.0, 0.0, 0.0])
    assert not off_line.exact and off_line.se is None and "not a power law" in off_line.note
    zero = fit_slope([10, 20], [0.0, 0.0], [0.0, 0.0])
    assert zero.estimate is None and "width 10" in zero.note


def test_a_fan_in_mlp_does_not_depend_on_width_but_its_input_gradient_does() -> None:
    """``4*(linear relu)`` with fan-in (He) weights on a 64-value input: every layer's fp std and every hidden
    layer's bp std keep their scale as the width grows (slope 0). The gradient at the input, ``W_1^T g`` with
    ``W_1`` of width x 64 entries of variance ``1/64``, has variance ``(width / 64) E[g^2]``: slope 1/2."""
    result = normstats.width_sweep("4*(linear relu)", input=64, widths="64,128,256", samples=400, seed=0)
    assert [r.width for r in result.runs] == [64, 128, 256] and all(r.input == (64,) for r in result.runs)
    for position, layer in enumerate(result.layers):
        _within(layer.slopes["fp_std"], 0.0)
        _within(layer.slopes["bp_std"], 0.5 if position == 0 else 0.0)
        assert layer.slopes["fp_std"].se < 0.05 and layer.slopes["bp_std"].se < 0.05


@pytest.mark.parametrize("scale, expected", [("sqrt", 0.0), ("mup", -0.5)])
def test_attention_logits_scale_as_their_factor_says(scale: str, expected: float) -> None:
    """A linear layer (fan-in weights: features of unit variance at every width) into attention with 2 heads, so
    ``d_head = width / 2``. ``S = c q . k`` sums ``d_head`` products of independent unit-variance entries (``W_q``
    and ``W_k`` are drawn independently): ``E[S^2] = c^2 d_head``, std ``c sqrt(d_head)``: 1 under ``1/sqrt(d)``
    (slope 0), ``d^(-1/2)`` under muP's ``1/d`` (slope -1/2)."""
    result = normstats.width_sweep(f"linear attention(heads=2, logit_scale={scale})", input="8x16",
                                   widths=[32, 64, 128, 256], samples=160, seed=3)
    slope = result.layers[1].slopes["attention_logit_std"]
    _within(slope, expected)
    assert slope.se < 0.03
    widest = result.stat(1, "attention_logit_std")[-1]
    assert abs(widest.estimate - (1.0 if scale == "sqrt" else 128**-0.5)) < 0.1 * widest.estimate


@pytest.mark.parametrize("causal", ["false", "true"])
def test_the_logit_std_is_the_std_of_the_scaled_logits(causal: str) -> None:
    """Per draw, against numpy: the logits ``c Q_h K_h^T`` of every head computed from the weights, their std
    (ddof 0) over heads, queries and the keys a query sees; 0 in every draw for ``q_init=zeros``."""
    t, d, heads = 5, 6, 3
    sampler = NetworkSampler(build_network(f"attention(heads={heads}, causal={causal})", (t, d)), weight_rng(4, 0))
    x = np.random.default_rng(8).standard_normal((4, t * d))
    out = sampler(x, np.zeros_like(x), np.empty((4, 0)))
    w = sampler.passes["1"].w_qkv
    w_q, w_k, dh = w[:d], w[d:2 * d], d // heads
    tokens = x.reshape(4, t, d)
    logits = np.stack([(tokens @ w_q[h * dh:(h + 1) * dh].T) @ (tokens @ w_k[h * dh:(h + 1) * dh].T).transpose(0, 2, 1)
                       for h in range(heads)], axis=1) / math.sqrt(dh)
    seen = np.tril(np.ones((t, t), dtype=bool)) if causal == "true" else np.ones((t, t), dtype=bool)
    want = [np.std(row[:, seen]) for row in logits]
    np.testing.assert_allclose(out[sampler.index[("1", "attention_logit_std")]][:, 0], want, rtol=1e-10)
    zero = NetworkSampler(build_network("attention(heads=3, q_init=zeros)", (t, d)), weight_rng(4, 0))
    assert not zero(x, np.zeros_like(x), np.empty((4, 0)))[zero.index[("1", "attention_logit_std")]].any()


def test_parse_widths() -> None:
    assert parse_widths("64,128, 256") == (64, 128, 256)
    assert parse_widths(128) == (128,) and parse_widths([32, 16]) == (32, 16)
    with pytest.raises(normstats.NormstatsError, match="twice"):
        parse_widths([8, 8])


def _bad(*args: str, tmp_path: Path) -> str:
    out = tmp_path / "out.json"
    result = CliRunner().invoke(main, ["network", *args, "--format", "json", "-o", str(out)])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("normstats: error: ") and "Traceback" not in result.stderr
    assert result.stdout == "" and not out.exists()
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["linear relu", "--width", "0,64"], "--width must be an integer in [1, 16384]; got 0 in '0,64'"),
    (["linear relu", "--width", "64,-8"], "--width must be an integer in [1, 16384]; got -8 in '64,-8'"),
    (["linear relu", "--width", "64,128,64"], "--width lists 64 twice in '64,128,64'"),
    (["linear relu", "--width", "64,12.5"], "--width must be a positive integer or a comma list of them"),
    (["linear relu", "--width", "64,"], "got '64,'"),
    (["linear relu", "--width", ",".join(str(8 * (i + 1)) for i in range(MAX_WIDTHS + 1))],
     f"--width takes at most {MAX_WIDTHS} widths"),
    (["linear relu", "--width", "8,16", "--max-time", "10s"], "cannot be combined with --max-time"),
    (["4*(relu)", "--width", "8,16"], "no layer of '4*relu' takes its width from --width"),
    (["linear relu", "--width", "8,99999"], "--width must be an integer in [1, 16384]; got 99999 in '8,99999'"),
])
def test_bad_widths_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    assert message in _bad(*args, "--input", "8", "--samples", "20", tmp_path=tmp_path)


def test_the_command_line_sweep_writes_every_format(tmp_path: Path) -> None:
    """JSON that the schema accepts (and ``normstats schema`` prints the definition of), CSV and Markdown with a
    line per layer, statistic and width, the table with the slopes, and the plot (read back)."""
    import jsonschema
    from matplotlib.image import imread

    from normstats.output.files.schema import schema

    args = ["network", "linear relu linear attention(heads=2)", "--input", "4x8", "--width", "16,32",
            "--samples", "40", "--seed", "2"]
    doc = json.loads(CliRunner().invoke(main, [*args, "--format", "json"]).stdout)
    jsonschema.Draft202012Validator(schema()).validate(doc)
    assert "width_sweep_document" in CliRunner().invoke(main, ["schema"]).stdout
    assert doc["widths"] == [16, 32] and [r["width"] for r in doc["runs"]] == [16, 32]
    assert set(doc["slopes"][3]["slopes"]) == {"fp_std", "bp_std", "attention_logit_std"}
    assert doc["slopes"][0]["slopes"]["fp_std"]["dof"] == 0
    rows = list(csv.DictReader(io.StringIO(CliRunner().invoke(main, [*args, "--format", "csv"]).stdout)))
    assert len(rows) == 2 * (3 * 2 + 3) and {r["width"] for r in rows} == {"16", "32"}
    markdown = CliRunner().invoke(main, [*args, "--format", "markdown"]).stdout
    assert "| width 16 | width 32 | slope ± se |" in markdown and "logit std" in markdown
    png = tmp_path / "sweep.png"
    table = CliRunner().invoke(main, [*args, "--plot", str(png)])
    assert table.exit_code == 0 and "slope ± se" in table.stdout and "width 32" in table.stdout
    image = imread(png)
    assert image.ndim == 3 and image.shape[1] > 2 * image.shape[0]


def test_one_width_keeps_its_meaning_and_the_api_names_the_sweep() -> None:
    one = CliRunner().invoke(main, ["network", "linear", "--input", "8", "--width", "16", "--samples", "20",
                                    "--format", "json"])
    assert json.loads(one.stdout)["width"] == 16
    with pytest.raises(normstats.NormstatsError, match="width_sweep"):
        normstats.network("linear", input=8, width=[16, 32])


def test_an_interrupted_sweep_says_so_and_fits_the_widths_it_ran() -> None:
    """Ctrl-C stops the sweep after the run it interrupts: the result is partial, its slopes are over the widths
    run, and the closing lines say which."""
    import dataclasses

    from normstats.networks.width_sweep import sweep_result
    from normstats.output.results.width_sweep import sweep_lines

    done = normstats.width_sweep("linear relu", input=8, widths="8,16,32", samples=40, seed=1)
    cut = sweep_result(done.widths, [done.runs[0], dataclasses.replace(done.runs[1], stop="interrupted")])
    assert cut.partial and cut.run_widths == (8, 16) and cut.to_dict()["partial"]
    assert cut.layers[0].slopes["fp_std"].dof == 0
    assert "interrupted: widths 8,16 run" in "\n".join(sweep_lines(cut))
    assert not done.partial and done.to_dict()["partial"] is False


def test_a_narrow_terminal_gets_a_stacked_list_with_nothing_cut() -> None:
    from rich.console import Console

    from normstats.output.terminal.width_sweep import sweep_table

    result = normstats.width_sweep("linear relu", input=8, widths="8,16,32", samples=40, seed=1)
    console = Console(file=io.StringIO(), width=60)
    console.print(sweep_table(result, 60))
    text = console.file.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 60
    assert text.count("slope ± se") == 4 and "  width 32" in text


def test_ctrl_c_in_a_sweep_prints_the_partial_document_and_writes_no_plot(tmp_path: Path) -> None:
    import signal

    from tests.test_files_and_signals import Terminal

    (tmp_path / "old.png").write_bytes(b"old figure")
    child = Terminal("network", "4*(linear relu)", "--input", "64", "--width", "64,128", "-n", "1e11", "-j", "1",
                     "--format", "json", "--plot", str(tmp_path / "old.png"))
    status, out, err = child.interrupt(signal.SIGINT)
    assert status == 130, err
    doc = json.loads(out)
    assert doc["partial"] is True and len(doc["runs"]) == 1 and doc["runs"][0]["stop"] == "interrupted"
    assert "draws over 1 width (mc), stopped by interrupted" in err
    assert "wrote" not in err and (tmp_path / "old.png").read_bytes() == b"old figure"
