"""``normstats model`` and ``normstats.model``: a PyTorch model's per-module statistics at initialization.

Two independent paths agree (an ``nn.Sequential`` of layers normstats knows against ``normstats.network`` on the
same spec); real models (GPT-2 from transformers, a timm ViT and NF-ResNet) run and give sane, well-formed
results; a seed fixes the numbers; the tap keeps nothing of a draw and leaves the model as it was found; every bad
input is one line and exit 2 through the CLI, and nothing is written.
"""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the test extra installs it; see pyproject.toml
from torch import nn  # noqa: E402

import normstats  # noqa: E402
from normstats.models.tap import Tap  # noqa: E402
from normstats.output.files.schema import schema  # noqa: E402
from tests.torch_threads import one_thread  # noqa: F401 (autouse: one torch thread in every test here)
from tests.model_factories import unit_rows  # noqa: E402
from tests.test_cli import run, run_bad  # noqa: E402

#: Largest |z| accepted where two estimates are compared: each se comes from 16 inits (Student's t on 15
#: degrees of freedom each), so the difference over its combined se has P(|z| > 5) below 1e-4 per comparison.
Z_MAX = 5.0



# -- (a) two independent paths: torch layers against normstats' own network ------------------------------------
ARCHITECTURES: dict[str, tuple[str, Any, str, int]] = {
    # spec, torch factory, input, batch
    "mlp-norms": (
        "linear(fan_out=32) batchnorm(batch=8) relu linear(fan_out=32) tanh linear(fan_out=16) layernorm "
        "dropout(p=0.8, convention=inverted) softmax",
        lambda: nn.Sequential(unit_rows(nn.Linear(64, 32, bias=False)), nn.BatchNorm1d(32), nn.ReLU(),
                              unit_rows(nn.Linear(32, 32, bias=False)), nn.Tanh(),
                              unit_rows(nn.Linear(32, 16, bias=False)), nn.LayerNorm(16), nn.Dropout(0.2),
                              nn.Softmax(dim=-1)),
        "64", 8,
    ),
    "conv-maxpool": (
        "conv(out_channels=8,k=3,padding=1) relu maxpool(k=2) conv(out_channels=8,k=3,padding=1) tanh",
        lambda: nn.Sequential(unit_rows(nn.Conv2d(3, 8, 3, padding=1, bias=False)), nn.ReLU(), nn.MaxPool2d(2),
                              unit_rows(nn.Conv2d(8, 8, 3, padding=1, bias=False)), nn.Tanh()),
        "3x8x8", 4,
    ),
    "conv-batchnorm": (
        "conv(out_channels=4,k=3,padding=1) batchnorm(batch=4) relu maxpool(k=2)",
        lambda: nn.Sequential(unit_rows(nn.Conv2d(2, 4, 3, padding=1, bias=False)), nn.BatchNorm2d(4), nn.ReLU(),
                              nn.MaxPool2d(2)),
        "2x6x6", 4,
    ),
}


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_a_sequential_agrees_with_the_network_of_the_same_spec(arch: str) -> None:
    spec, factory, shape, batch = ARCHITECTURES[arch]
    net = normstats.network(spec, input=shape, inits=16, samples=3200, seed=1)
    mod = normstats.model(factory, input=shape, batch=batch, samples=256, inits=16, seed=2)
    leaves = [m for m in mod.modules if m.depth == 1]
    assert [m.module for m in leaves] == [type(m).__name__ for m in factory()]
    assert len(leaves) == len(net.layers)
    compared = 0
    for layer, module in zip(net.layers, leaves):
        for name in ("fp_mean", "fp_std", "bp_mean", "bp_std", "channel_mean_sq", "channel_var"):
            if name not in layer.stats:
                assert name not in module.stats or name.startswith("channel"), (module.name, name)
                continue
            a, b = layer.stats[name], module.stats[name]
            diff = a.estimate - b.estimate
            if abs(diff) <= 1e-6 * max(1.0, abs(a.estimate)):  # exact in every draw on both sides (softmax's mean)
                continue
            z = diff / math.hypot(a.se, b.se)
            assert abs(z) < Z_MAX, (arch, module.name, layer.layer, name, a.estimate, a.se, b.estimate, b.se)
            compared += 1
    assert compared >= 3 * len(leaves)


# -- (b) real models run, with sane and well-formed results ----------------------------------------------------
def test_b_gpt2_from_a_small_config_takes_token_ids() -> None:
    pytest.importorskip("transformers")
    result = normstats.model("tests.model_factories:gpt2_tiny", input="ids:16", batch=2, samples=4, inits=2, seed=0)
    assert (result.input_kind, result.input, result.vocabulary, result.output_key) == ("ids", (16,), 100, "logits")
    rows = {m.name: m for m in result.modules}
    assert rows[""].module == "GPT2LMHeadModel" and rows[""].shape == (2, 16, 100)
    assert "bp_std" not in rows["transformer.wte"].stats  # token ids: no gradient reaches the embedding's input
    assert {"transformer.h.0", "transformer.h.1", "transformer.h.1.attn.c_proj", "lm_head"} <= set(rows)
    # a LayerNorm with weight 1 and bias 0 has std sqrt(v / (v + eps)) for an input of variance v: just below 1,
    # here visibly so since GPT-2's residual stream starts small (embeddings of std 0.02: v of order 1e-3)
    for name in ("transformer.h.0.ln_1", "transformer.h.1.ln_2", "transformer.ln_f"):
        assert 0.99 < rows[name].stats["fp_std"].estimate <= 1.0, name
    for row in result.modules:
        for stat in row.stats.values():
            assert math.isfinite(stat.estimate)
    assert result.first_nonfinite() == {"fp": None, "bp": None}
    jsonschema.Draft202012Validator(schema()).validate(json.loads(json.dumps(result.to_dict())))


def test_b_a_timm_vit_has_unit_layernorm_outputs() -> None:
    pytest.importorskip("timm")
    result = normstats.model("timm:vit_tiny_patch16_224", args={"img_size": 32}, input="3x32x32", batch=2,
                             samples=4, inits=2, seed=0)
    norms = [m for m in result.modules if m.module == "LayerNorm"]
    assert len(norms) == 2 * 12 + 1  # norm1 and norm2 in each of the 12 blocks, and the final norm
    for m in norms:
        assert abs(m.stats["fp_std"].estimate - 1.0) < 1e-3, m.name  # LayerNorm at init: weight 1, bias 0
    assert result.modules[0].shape == (2, 1000) and result.output_key == "(tensor)"
    assert [m.name for m in result.modules if m.depth == 2 and m.name.startswith("blocks.")] == \
        [f"blocks.{i}" for i in range(12)]


def test_b_an_nf_resnet_as_the_paper_designs_it_keeps_its_signal_through_every_stage() -> None:
    """The NF-ResNet paper's own design (Brock et al. 2021: scaled weight standardization, gamma-scaled ReLU,
    ``h + alpha f(h / beta)`` with beta the expected std, and a strided 1x1 standardized conv on the normalized
    input at each transition: ``tests/model_factories.py``) keeps every block's and every stage's forward std in
    [1/2, 2] on N(0, I) input, 5 se inside the band; timm's variant, which downsamples by average pooling, does
    not (the next test)."""
    result = normstats.model("tests.model_factories:nf_resnet_paper", input="3x32x32", batch=2, samples=8,
                             inits=4, seed=0)
    rows = {m.name: m.stats for m in result.modules}
    names = ["stem"] + [f"stages.{s}" for s in range(4)] + [f"stages.{s}.{b}" for s in range(4) for b in range(2)]
    for name in names:
        std = rows[name]["fp_std"]
        assert 0.5 + 5 * std.se < std.estimate < 2.0 - 5 * std.se, (name, std)


def test_b_a_timm_nf_resnet_keeps_its_signal_through_the_first_stages_only() -> None:
    """timm's nf_resnet26 keeps its forward std in [1/2, 2] through the stem and stages 0 and 1, but stage 3
    falls below 1/2 (about 0.26, halving at each of stages 2 and 3), at 3x32x32 as at 3x64x64: a larger input
    does not help. The reason: at init every residual branch is zero (timm zero-inits each block's last conv,
    skipinit), so a stage's output is its first block's shortcut, an average pool (2x2, stride 2) then a 1x1
    weight-standardized conv, and from stage 2 on the pooled positions are nearly uncorrelated (the shortcut
    path has no conv wider than 1x1 after the stem): averaging four uncorrelated positions divides the
    within-channel variance by 4 (ratio 1/4, against 0.38 at stage 1, whose input the stem's 7x7 conv and max
    pool have correlated), and the standardized conv passes on only that variance, so the std halves. timm's
    nfnet.py offers no strided-conv downsample (``NormFreeBlock`` always builds ``DownsampleAvg``); its one
    alternative, ``output_stride=8`` (dilation in stages 2 and 3, where the pool then has stride 1), leaves
    stage 3 below 1/2 too (about 0.28 at 3x32x32, 0.33 at 3x64x64, measured by hand)."""
    pytest.importorskip("timm")
    beta2 = 1 / 1.08  # timm's beta^2 at a stage's first block: 1 / expected var, 1 + 2 alpha^2 after 2 blocks
    runs = {(size, stride): normstats.model("timm:nf_resnet26", input=f"3x{size}x{size}", batch=2, samples=4,
                                            inits=1, seed=0, args={"output_stride": stride} if stride else None)
            for size, stride in ((32, None), (64, None), (32, 8))}
    for key, result in runs.items():
        rows = {m.name: m.stats for m in result.modules}
        for name in ("stem", "stages.0", "stages.1"):
            std = rows[name]["fp_std"]
            assert 0.5 + 5 * std.se < std.estimate < 2.0 - 5 * std.se, (key, name, std)
        std = rows["stages.3"]["fp_std"]
        assert std.estimate + 5 * std.se < 0.5, (key, std)
    rows = {m.name: m.stats for m in runs[(64, None)].modules}

    def pooled(stage: int) -> tuple[float, float]:
        """The pool's within-channel variance over its input's (act1 times beta), and its se (first order)."""
        pool, act = rows[f"stages.{stage}.0.downsample.pool"]["channel_var"], rows[f"stages.{stage}.0.act1"]["channel_var"]
        ratio = pool.estimate / (act.estimate * beta2)
        return ratio, ratio * math.hypot(pool.se / pool.estimate, act.se / act.estimate)

    (r1, se1), (r3, se3) = pooled(1), pooled(3)
    assert r3 <= 0.25 + 5 * se3 and r1 > 0.25 + 5 * se1 and r1 - r3 > 5 * math.hypot(se1, se3), (r1, se1, r3, se3)
    # timm zero-inits the last layer of every residual branch (skipinit), so a block that is not a stage's first
    # passes its input on unchanged: its output's std is the previous block's, to float rounding
    rows32 = {m.name: m for m in runs[(32, None)].modules}
    for stage in range(4):
        first, second = rows32[f"stages.{stage}.0"], rows32[f"stages.{stage}.1"]
        assert second.stats["fp_std"].estimate == pytest.approx(first.stats["fp_std"].estimate, rel=1e-5)
    # every map has the NF-ResNet figures, and the average channel variance is below the pooled variance
    for name in ("stem", "stages.0", "stages.2"):  # (stage 3's maps are 1x1 at 3x32x32: no channel variance)
        st = rows32[name].stats
        assert 0 < st["channel_var"].estimate <= st["fp_std"].estimate ** 2 + st["fp_mean"].estimate ** 2


# -- (c) the same seed gives the same numbers --------------------------------------------------------------------
def test_c_the_same_seed_gives_the_same_numbers() -> None:
    def once(seed: int) -> dict[str, Any]:
        return normstats.model("tests.model_factories:tiny_mlp", input="8", batch=4, samples=8, inits=4,
                               seed=seed).to_dict()

    first, again, other = once(3), once(3), once(4)
    assert first == again
    assert first["modules"][1]["fp_std"] != other["modules"][1]["fp_std"]


def test_c_the_inits_of_one_architecture_share_one_probe_and_the_numbers_do_not_change(monkeypatch) -> None:
    """The probe pass runs once for the inits of one architecture; probing every init (an architecture that
    never matches) gives the same numbers, since a later init probes under a fork of the generator. A factory
    that builds a different network each call is probed each time."""
    from normstats.models import run as model_run

    calls: list[int] = []
    probe = model_run.probe
    monkeypatch.setattr(model_run, "probe", lambda *a, **k: calls.append(1) or probe(*a, **k))
    dropout = "tests.model_factories:dropout_mlp"  # its dropout draws from the global generator

    def once() -> dict[str, Any]:
        return normstats.model(dropout, input="8", batch=4, samples=8, inits=4, seed=5).to_dict()

    shared = once()
    assert len(calls) == 1
    counter = iter(range(10**6))
    monkeypatch.setattr(model_run, "architecture", lambda model: (next(counter),))
    calls.clear()
    assert once() == shared and len(calls) == 4

    widths = iter([8, 12, 16])
    monkeypatch.undo()
    monkeypatch.setattr(model_run, "probe", lambda *a, **k: calls.append(1) or probe(*a, **k))
    calls.clear()
    result = normstats.model(lambda: nn.Sequential(nn.Linear(8, next(widths)), nn.ReLU()), input="8", batch=4,
                             samples=6, inits=3)
    assert len(calls) == 3 and result.inits == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA GPU here")
def test_c_on_a_gpu_the_figures_agree_with_the_cpu_within_their_se() -> None:
    """``--device cuda``: the draws come from a generator on the GPU (other draws than the CPU's) and the
    reductions go through the torch passes into a buffer on the device; every module's fp and bp std agrees
    with a CPU run's within a few combined se."""
    runs = [normstats.model("tests.model_factories:tiny_mlp", input="8", batch=64, samples=64, inits=8, seed=0,
                            device=device) for device in ("cpu", "cuda")]
    assert runs[1].device.startswith("cuda")
    for a, b in zip(runs[0].modules, runs[1].modules):
        assert (a.name, a.module) == (b.name, b.module)
        for name in ("fp_std", "bp_std"):
            if name in a.stats:
                x, y = a.stats[name], b.stats[name]
                assert abs(x.estimate - y.estimate) < Z_MAX * math.hypot(x.se, y.se), (a.name, name)


# -- (d) nothing of a draw is kept; the user's model is left as found --------------------------------------------
def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


def test_d_the_tap_holds_no_tensor_after_a_draw_and_memory_is_flat_in_draws() -> None:
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(64, 3))
    with Tap(model) as tap:
        for _ in range(3):
            tap.begin()
            x = torch.randn(4, 2, 6, 6, requires_grad=True)
            y = model(x)
            torch.autograd.grad(y, [x], torch.randn_like(y))
            fp, bp = tap.end()
            assert tap.held_tensors() == 0
            assert len(fp) == 6 and len(bp) == 6  # the model and its five layers, forward and back
    counts = []
    for n in (4, 16):
        normstats.model(model, input="2x6x6", batch=4, samples=n, inits=1)
        counts.append(_live_tensors())
    assert counts[0] == counts[1]  # live tensors after a run do not grow with the draws


@pytest.mark.parametrize("path", ["compiled", "torch"])
def test_d_the_figures_of_a_large_tensor_are_float64_accurate_to_a_few_float32_roundings(
        path: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The tap's figures of a tensor of 6.4 million values (resnet18's stem output at batch 8, a shifted ReLU),
    reduced as a map (fp) and as a whole (bp, the gradients), against float64: within 16 float32 epsilons,
    relative, by the one compiled pass (where it runs) and by the torch passes (CUDA, strided layouts, no
    compiled loops). (A float32 norm of the whole tensor was off by 2.4e-3 here: see
    ``normstats.models.tap._square_sums``.)"""
    from normstats.engine import moments
    from normstats.models.tap import _reduce, _Slots, figures

    if path == "torch":
        monkeypatch.setattr(moments, "vector_row_sums", lambda: False)
    elif not moments.vector_row_sums():
        pytest.skip("the compiled pass runs with the AVX2 loop only")

    gen = torch.Generator().manual_seed(0)
    t = torch.randn(8, 64, 112, 112, generator=gen).relu_() * 1.7 + 0.1
    slots = _Slots()
    entries = [_reduce(t, True, slots), _reduce(t, False, slots)]
    assert [e[0] for e in entries] == (["done", "done"] if path == "compiled" else ["map", "whole"])
    values = slots.to_host()
    got = figures(entries[0], values) + figures(entries[1], values)
    d = t.double()
    means = d.mean(dim=(2, 3))
    want = [float(d.mean()), float((d * d).mean()), float((means * means).mean()),
            float(d.var(dim=(2, 3), unbiased=False).mean())]
    want += want[:2]
    assert len(got) == 6
    eps = torch.finfo(torch.float32).eps
    for g, w in zip(got, want):
        assert abs(g - w) <= 16 * eps * abs(w), (got, want)


def test_d_a_module_passed_in_is_left_as_it_was_found() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(inplace=True), nn.Linear(8, 2)).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    for inits in (1, 3):
        normstats.model(model, input="8", batch=4, samples=6, inits=inits, mode="train")
    assert not model.training and model[2].inplace
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # weights and running stats
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(rng, torch.get_rng_state())  # the caller's global generator is untouched


def test_the_api_takes_a_module_a_factory_or_a_source() -> None:
    for target in (nn.Linear(8, 4), lambda: nn.Linear(8, 4), "torch.nn:Linear"):
        result = normstats.model(target, input="8", batch=2, samples=4, inits=2,
                                 args={"in_features": 8, "out_features": 4} if isinstance(target, str) else None)
        assert result.modules[0].module == "Linear" and result.draws == 4
    assert result.init_method == "factory" and "init-to-init spread included" in result.se_population
    one = normstats.model(nn.Linear(8, 4), input="8", batch=2, samples=4, inits=1)
    assert one.init_method == "as given" and "leaves out the init-to-init spread" in one.se_population


def test_nan_and_inf_are_no_error_and_the_output_names_where_they_start() -> None:
    out = run("model", "tests.model_factories:Overflow", "--input", "8", "--batch", "4", "-n", "2", "--inits", "1",
              "-q").stdout
    assert "fp is not finite first at blow" in out
    result = normstats.model("tests.model_factories:Overflow", input="8", batch=4, samples=2, inits=1)
    assert result.first_nonfinite()["fp"] == "blow"
    jsonschema.Draft202012Validator(schema()).validate(json.loads(json.dumps(result.to_dict())))


# -- a statistic the same in every draw --------------------------------------------------------------------------
def test_a_statistic_the_same_in_every_draw_is_shown_exact_to_rounding() -> None:
    """By algebra, in train mode: a batch norm's output sums to 0 over the batch in each feature (fp mean 0 in
    every draw), and so does the gradient at its input (bp mean 0: ``sum_b dx = 0``), hence the gradient at the
    first Linear's input too (``dx = dy W`` with ``sum_b dy = 0``); a softmax's outputs sum to 1 (fp mean 1/4) and
    the gradient at its input sums to 0 per input. These are shown exact to rounding (se 0, never z-tested); the
    statistics that vary from draw to draw keep their se."""
    result = normstats.model("tests.model_factories:norm_softmax", input="8", batch=8, samples=8, inits=2, seed=0)
    rows = {m.name: m.stats for m in result.modules}
    for name, stat, value in (("1", "fp_mean", 0.0), ("4", "fp_mean", 0.25), ("1", "bp_mean", 0.0),
                              ("0", "bp_mean", 0.0), ("4", "bp_mean", 0.0)):
        s = rows[name][stat]
        assert s.exact and s.se == 0.0 and s.estimate == value and s.z is None, (name, stat, s)
    for name, stat in (("0", "fp_mean"), ("2", "fp_mean"), ("2", "fp_std"), ("3", "bp_std"), ("4", "fp_std")):
        assert not rows[name][stat].exact and rows[name][stat].se > 0, (name, stat)
    doc = result.to_dict()
    jsonschema.Draft202012Validator(schema()).validate(json.loads(json.dumps(doc)))
    assert doc["modules"][2]["fp_mean"]["exact"] is True and "exact" not in doc["modules"][1]["fp_mean"]
    table = run("model", "tests.model_factories:norm_softmax", "--input", "8", "--batch", "8", "-n", "4",
                "--inits", "1", "-q").stdout
    assert "0.25 (exact to rounding)" in table


def test_the_rounding_rule_takes_spreads_up_to_twice_its_bound() -> None:
    """The rule of :func:`normstats.models.run.rounding_exact`: every draw's value within ``ROUNDING_EPS`` eps of
    the values' scale of one value; a spread just beyond it is sampling, and is reported with its se."""
    from normstats.models.run import ROUNDING_EPS, _spans, rounding_exact

    eps = float(torch.finfo(torch.float32).eps)
    bound = ROUNDING_EPS * eps  # at mean square 1
    for spread, exact in ((0.0, True), (1.99 * bound, True), (2.01 * bound, False)):
        values = np.array([[0.0, 1.0], [spread, 1.0 + spread * spread]])
        assert rounding_exact(_spans("fp", values, eps)["fp_mean"]) is exact, spread
    assert _spans("fp", np.array([[0.0, 1.0], [math.nan, 1.0]]), eps) == {}  # not finite: never exact


def test_the_progress_bar_of_a_model_run_shows_no_nan_se() -> None:
    """A model run's se come at its end (over the inits), so its bar shows draws, rate and ETA, and no
    "worst se nan"."""
    import io

    from rich.console import Console

    from normstats.engine.progress import BarProgress

    class Seen(BarProgress):
        def update(self, draws: int, worst_se: float) -> None:
            super().update(draws, worst_se)
            assert self._bar is not None
            task = self._bar.tasks[0]
            shown.append((draws, task.fields["se"], task.fields["eta"]))

    shown: list[tuple[int, str, str]] = []
    bar = Seen(Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None))
    normstats.model("tests.model_factories:tiny_mlp", input="8", batch=4, samples=6, inits=2, seed=0, progress=bar)
    assert [d for d, _, _ in shown] == list(range(1, 7))
    assert all(se == "" and eta.startswith("ETA ") for _, se, eta in shown), shown


# -- output ----------------------------------------------------------------------------------------------------
def test_formats_depth_and_plot(tmp_path: Path) -> None:
    base = ["model", "timm:resnet18", "--arg", "num_classes=10", "--input", "3x32x32", "--batch", "2", "-n", "2",
            "--inits", "1", "-q"]
    pytest.importorskip("timm")
    doc = json.loads(run(*base, "--format", "json").stdout)
    jsonschema.Draft202012Validator(schema()).validate(doc)
    assert doc["model"] == "timm:resnet18" and doc["inits"] == 1 and doc["batch"] == 2
    names = [m["name"] for m in doc["modules"]]
    assert "layer1.0.conv1" in names and "layer4" in names and names[0] == ""
    table = run(*base, "--depth", "1").stdout
    assert "│  layer1 " in table and "│    layer1.0" not in table
    assert "folded into their containers" in " ".join(table.split())
    assert "bp std leaves [0.5, 2] first at" in table or "bp std stays within" in table
    csv_text = run(*base, "--format", "csv").stdout
    assert csv_text.splitlines()[0].startswith("model,input,batch,mode,name,module")
    assert "| layer1 |" in run(*base, "--format", "markdown").stdout.replace("&nbsp;", "")
    png = tmp_path / "model.png"
    run(*base, "--plot", str(png))
    from matplotlib import image

    pixels = image.imread(str(png))
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600
    assert pixels[..., :3].std() > 0.05  # not a blank canvas


# -- bad input: one line, exit 2, nothing written ----------------------------------------------------------------
BAD: list[tuple[list[str], str]] = [
    (["timm:resnet181"], "timm has no model 'resnet181'; did you mean resnet18"),
    (["torchvision:resnet1"], "torchvision has no model 'resnet1'"),
    (["not a source"], "SOURCE must be timm:NAME, torchvision:NAME or package.module:callable"),
    (["no_such_package.mod:make"], "cannot import 'no_such_package.mod'"),
    (["tests.model_factories:tiny_mlpp"], "has no attribute 'tiny_mlpp'; did you mean tiny_mlp"),
    (["tests.model_factories:raises"], "the factory raised ValueError: depth 3 is not supported second line"),
    (["tests.model_factories:not_a_module", "--input", "8"], "must return a torch.nn.Module; got int"),
    (["tests.model_factories:tiny_mlp", "--arg", "width=1+"], "--arg width: the value must be a Python literal"),
    (["tests.model_factories:tiny_mlp", "--input", "3x5"], "--input 3x5: the model rejects an input of shape"),
    (["tests.model_factories:tiny_mlp", "--input", "ids:5"], "has no nn.Embedding to draw token ids for"),
    (["tests.model_factories:ArgMax", "--input", "8"], "the model has no differentiable output"),
    (["tests.model_factories:tiny_mlp", "--arg", "width=100000", "--input", "8", "--batch", "100000"],
     "over the bound of 8.00 GiB"),
    (["tests.model_factories:tiny_mlp", "--input", "8", "--device", "cuda"], "--device cuda: torch sees no CUDA GPU"),
    (["tests.model_factories:tiny_mlp", "--input", "8", "--output-key", "hidden"], "--output-key"),
    (["tests.model_factories:tiny_mlp", "--input", "8", "--inits", "4", "-n", "3"], "--samples must give each"),
    (["timm:resnet18", "--arg", "pretrained=True"], "normstats never downloads or loads weights"),
    (["torchvision:resnet18", "--arg", "weights=DEFAULT"], "--arg weights: normstats never downloads or loads weights"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2_and_nothing_is_written(args: list[str], message: str, tmp_path: Path
                                                                 ) -> None:
    if args[0].startswith("timm:"):
        pytest.importorskip("timm")
    if args[0].startswith("torchvision:"):
        pytest.importorskip("torchvision")
    if "--device" in args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda is valid here")
    out = tmp_path / "out.json"
    line = run_bad("model", *args, "-q", "--format", "json", "-o", str(out))
    assert message in line, line
    assert not out.exists()


#: Run the CLI with every socket connection refused and recorded (in the file named by the first argument).
NO_NETWORK = """
import socket, sys
marker = sys.argv.pop(1)
def refuse(*args, **kwargs):
    open(marker, "w").close()
    raise OSError("a connection was attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
from normstats.cli.main import main
main(sys.argv[1:])
"""


def test_a_source_that_would_need_the_network_says_so_in_one_line_without_trying(tmp_path: Path) -> None:
    """A factory that would fetch a config from the Hugging Face hub (``AutoModel.from_pretrained``, here with an
    empty cache and without the caller's offline settings): normstats puts the hub offline before the factory's
    package is imported, so the factory fails at once, no connection is attempted, and the line says why."""
    pytest.importorskip("transformers")
    marker = tmp_path / "connected"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_HOME"] = str(tmp_path / "hf")
    proc = subprocess.run([sys.executable, "-c", NO_NETWORK, str(marker), "model",
                           "transformers:AutoModel.from_pretrained", "--arg", "pretrained_model_name_or_path=gpt2",
                           "--input", "ids:8", "-q"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("normstats: error: SOURCE transformers:AutoModel.from_pretrained needs the network "
                               "to build (") and lines[0].endswith("normstats never downloads weights or configs")
    assert not marker.exists()  # not even a connection was tried


def test_the_memory_bound_says_how_much_a_run_would_need() -> None:
    line = run_bad("model", "tests.model_factories:tiny_mlp", "--arg", "width=100000", "--input", "8", "--batch",
                   "100000", "-q")
    # one input: the hidden layer's output and its ReLU's, 2 x 100,000 float32 = 800 kB (and 16 bytes of logits);
    # 100,000 inputs: 8.0e10 bytes = 74.51 GiB
    assert "a draw needs about 74.51 GiB" in line and "--max-memory" in line
    run("model", "tests.model_factories:tiny_mlp", "--input", "8", "--batch", "20000", "-n", "2", "--inits", "1", "-q",
        "--max-memory", "0.001", code=2)


def test_without_torch_the_command_says_how_to_install_it_and_nothing_else_imports_torch() -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "from normstats.cli.main import main\n"
            "main(['model', 'timm:resnet18'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("normstats: error: normstats model needs PyTorch: pip install 'normstats[torch]' "
                                   "(or pip install torch)")
    code = ("import sys, normstats; from normstats.cli.main import main\n"
            "try:\n    main(['network', 'linear relu', '--input', '4', '-n', '100', '-q', '--format', 'json'])\n"
            "except SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip().splitlines()[-1] == "False", proc.stderr


def test_params_adds_the_init_audit_to_the_table_and_the_json() -> None:
    """``--params``: the audit of init 0's parameters as built, beside the module rows; the JSON's ``params``
    section follows the schema (null without the flag). PyTorch's default Linear init is named as such."""
    args = ("model", "tests.model_factories:tiny_mlp", "--input", "8", "--batch", "4", "-n", "4", "--inits", "2", "-q")
    table = run(*args, "--params").stdout
    assert "Init audit" in table and "kaiming_uniform(a=sqrt(5))" in table
    doc = json.loads(run(*args, "--params", "--format", "json").stdout)
    jsonschema.Draft202012Validator(schema()).validate(doc)
    weights = [p for p in doc["params"] if p["name"].endswith("weight")]
    assert weights and all(p["rule"].startswith("kaiming_uniform(a=sqrt(5))") for p in weights)
    assert json.loads(run(*args, "--format", "json").stdout)["params"] is None
