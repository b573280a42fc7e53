"""The init audit (``normstats.init_audit``): PyTorch's default init is named with its variance 1/(3 fan_in),
re-initialised layers are named by their rule, a GPT-2 ``c_proj`` without its scaled init is flagged, and the
standard errors behind "matches within 4 se" hold up in simulation."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest

import normstats
from normstats.models.init_audit import CONV1D_NOTE, KURTOSIS_VAR, NORMAL, UNIFORM, std_se

torch = pytest.importorskip("torch")
nn = torch.nn

DEFAULT = "kaiming_uniform(a=sqrt(5)) (PyTorch default)"
DEFAULT_BIAS = "uniform(±1/sqrt(fan_in)) (PyTorch default bias)"


def _audit(module: nn.Module, **kwargs) -> dict[str, normstats.ParamAudit]:  # type: ignore[no-untyped-def]
    return {e.name: e for e in normstats.init_audit(module, **kwargs)}


def test_pytorch_default_linear_init_is_kaiming_uniform_a_sqrt5_with_variance_one_third_over_fan_in() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(256, 64), nn.ReLU(), nn.Conv2d(16, 32, 3))
    audit = _audit(net)
    w = audit["0.weight"]
    assert (w.fan_in, w.fan_out, w.shape) == (256, 64, (64, 256))
    assert w.rule == DEFAULT and w.law == "uniform" and abs(w.z) < 4  # the only rule within 4 se
    # the variance itself, against 1/(3 fan_in), within 4 se of a sample variance of a uniform law:
    # Var(s^2) = (mu4 - sigma^4) / n = sigma^4 (9/5 - 1) / n
    values = net[0].weight.detach().double()
    target = 1 / (3 * 256)
    assert abs(float(values.var()) - target) <= 4 * target * math.sqrt(0.8 / values.numel())
    assert float(values.abs().max()) <= 1 / math.sqrt(256)  # U(-b, b), b = sqrt(6 / ((1 + 5) fan_in))
    assert w.scaled == pytest.approx(w.std * 16) and abs(w.scaled - 1 / math.sqrt(3)) < 4 * w.se * 16
    b = audit["0.bias"]
    assert b.fan_source == "0.weight" and b.fan_in == 256 and DEFAULT_BIAS in b.matches
    conv = audit["2.weight"]
    assert (conv.fan_in, conv.fan_out) == (16 * 9, 32 * 9) and conv.rule == DEFAULT


@pytest.mark.parametrize(
    ("init", "rule", "law"),
    [
        (lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"), "kaiming_normal(relu)", NORMAL),
        (lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"), "kaiming_uniform(relu)", UNIFORM),
        (lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"), "kaiming_normal(relu, fan_out)",
         NORMAL),
        (lambda w: nn.init.xavier_uniform_(w), "xavier_uniform", UNIFORM),
        (lambda w: nn.init.xavier_normal_(w), "xavier_normal", NORMAL),
        (lambda w: nn.init.normal_(w, 0, 1 / math.sqrt(256)), "lecun_normal", NORMAL),
        (lambda w: nn.init.normal_(w, 0, 0.02), "normal(std=0.02)", NORMAL),
        (lambda w: nn.init.trunc_normal_(w, std=0.02), "normal(std=0.02)", NORMAL),  # timm's ViT init
        (lambda w: nn.init.zeros_(w), "zeros", "constant"),
        (lambda w: nn.init.ones_(w), "ones", "constant"),
        (lambda w: nn.init.constant_(w, 0.5), "constant(0.5)", "constant"),
        (lambda w: nn.init.normal_(w, 0, 0.3), "none of these", NORMAL),
        (lambda w: nn.init.uniform_(w, 0, 0.1), "none of these", UNIFORM),  # the right spread, but mean 0.05
    ],
)
def test_a_reinitialised_layer_is_named_by_its_rule(init, rule: str, law: str) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(1)
    layer = nn.Linear(256, 64)  # fan_in 256, fan_out 64: every rule's std is many se from the others
    with torch.no_grad():
        init(layer.weight)
    entry = _audit(layer)["weight"]
    assert entry.rule == rule, entry
    assert entry.law == law
    assert entry.ok is None and entry.note == ""  # no convention expects anything of this name


def test_the_law_is_told_from_the_kurtosis_only_with_enough_values() -> None:
    torch.manual_seed(2)
    few = nn.Linear(4, 4)  # 16 values: the kurtosis cannot tell a uniform from a normal
    assert _audit(few)["weight"].law == "normal or uniform"
    many = nn.Linear(128, 64)
    assert _audit(many)["weight"].law == UNIFORM
    with torch.no_grad():
        nn.init.kaiming_normal_(many.weight)
    assert _audit(many)["weight"].law == NORMAL
    with torch.no_grad():
        many.weight.copy_(torch.sign(torch.randn(64, 128)) * 0.1)  # +-0.1: excess kurtosis -2
    assert _audit(many)["weight"].law == "neither" and _audit(many)["weight"].rule == "none of these"


def _gpt2(n_layer: int = 4):  # type: ignore[no-untyped-def]
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=n_layer, n_embd=64, n_head=4, vocab_size=100, n_positions=32,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config)


def test_gpt2_scaled_c_proj_init_is_recognised_and_its_absence_flagged() -> None:
    model = _gpt2()
    scaled = "normal(std=0.02/sqrt(2 n_layer)) (GPT-2 scaled)"
    audit = _audit(model)
    c_proj = [e for name, e in audit.items() if name.endswith("c_proj.weight")]
    assert len(c_proj) == 8  # attn and mlp in each of the 4 blocks
    # transformers runs the scaled init (GPT2PreTrainedModel._init_weights): std 0.02 / sqrt(8) = 0.00707
    assert all(e.ok and e.rule == scaled and e.expected_std == pytest.approx(0.02 / math.sqrt(8)) for e in c_proj)
    assert audit["transformer.h.0.attn.c_attn.weight"].rule == "normal(std=0.02)"
    assert audit["transformer.h.0.ln_1.weight"].rule == "ones" and audit["transformer.h.0.ln_1.bias"].rule == "zeros"
    # the bug of transformers #47458: the scaled init never ran, c_proj kept the plain N(0, 0.02)
    with torch.no_grad():
        for block in model.transformer.h:
            block.mlp.c_proj.weight.normal_(0.0, 0.02)
    audit = _audit(model)
    for i in range(4):
        attn, mlp = audit[f"transformer.h.{i}.attn.c_proj.weight"], audit[f"transformer.h.{i}.mlp.c_proj.weight"]
        assert attn.ok is True and attn.note == CONV1D_NOTE  # GPT-2's Conv1D: fans transposed, and said so
        assert mlp.ok is False and mlp.rule == "normal(std=0.02)"
        assert mlp.note.startswith("normal std 0.0") and mlp.note.endswith(
            "(normal(std=0.02)); expected 0.02/sqrt(2 n_layer) = 0.00707 for c_proj (GPT-2's scaled init). "
            + CONV1D_NOTE)


def test_n_layer_can_be_given_where_no_config_holds_it() -> None:
    torch.manual_seed(3)
    block = nn.ModuleDict({"c_proj": nn.Linear(64, 64)})
    with torch.no_grad():
        nn.init.normal_(block["c_proj"].weight, 0, 0.02 / math.sqrt(2 * 6))
    assert _audit(block)["c_proj.weight"].ok is None  # n_layer unknown: no expectation
    entry = _audit(block, n_layer=6)["c_proj.weight"]
    assert entry.ok is True and entry.expected_std == pytest.approx(0.02 / math.sqrt(12))
    assert _audit(block, n_layer=2)["c_proj.weight"].ok is False
    with pytest.raises(normstats.NormstatsError, match="n_layer must be a positive integer; got 0"):
        normstats.init_audit(block, n_layer=0)
    with pytest.raises(normstats.NormstatsError, match="needs a torch.nn.Module; got str"):
        normstats.init_audit("resnet18")


@pytest.mark.parametrize("law", [NORMAL, UNIFORM])
def test_the_standard_errors_hold_in_simulation(law: str) -> None:
    """The se of a sample std and of the excess kurtosis, from the delta method, against their spread over
    4000 samples of 400 values; each spread is itself known to about sd / sqrt(2 * 4000) (1.1%), and the
    tolerance is 4 of those plus the delta method's O(1/n) (6/n for the kurtosis, whose next term is larger)."""
    rng = np.random.default_rng(7)
    reps, n = 4000, 400
    x = rng.standard_normal((reps, n)) if law == NORMAL else rng.uniform(-math.sqrt(3), math.sqrt(3), (reps, n))
    s = x.std(axis=1, ddof=1)
    rel = 4 / math.sqrt(2 * reps)
    assert s.std() == pytest.approx(std_se(1.0, law, n), rel=rel + 1 / n)
    c = x - x.mean(axis=1, keepdims=True)
    g2 = (c**4).mean(axis=1) / (c**2).mean(axis=1) ** 2 - 3
    assert g2.std() == pytest.approx(math.sqrt(KURTOSIS_VAR[law] / n), rel=rel + 6 / n)


def test_entries_are_json_and_follow_the_schema() -> None:
    import jsonschema

    from normstats.output.files.schema import dumps, schema

    model = _gpt2(2)
    doc = json.loads(dumps([e.to_dict() for e in normstats.init_audit(model)]))
    definition = {**schema(), "oneOf": None}
    definition.pop("oneOf")
    jsonschema.validate(doc, {**definition, "type": "array", "items": {"$ref": "#/$defs/param_audit"}})
    assert doc[0]["name"] == "transformer.wte.weight" and doc[0]["shape"] == [100, 64]


def test_render_audit_shows_the_flag_and_the_sources() -> None:
    from rich.console import Console

    from normstats.cli.output import render_audit

    model = _gpt2(2)
    with torch.no_grad():
        model.transformer.h[1].mlp.c_proj.weight.normal_(0.0, 0.02)
    out = io.StringIO()
    Console(file=out, width=250, no_color=True).print(render_audit(normstats.init_audit(model)))
    text = out.getvalue()
    assert "✗ transformer.h.1.mlp.c_proj.weight: normal std" in text
    assert "expected 0.02/sqrt(2 n_layer) = 0.01 for c_proj" in text
    assert "Radford et al." in text and "transformer.h.0.attn.c_proj.weight" in text


def test_without_torch_the_audit_says_how_to_install_it() -> None:
    code = ("import sys; sys.modules['torch'] = None; import normstats\n"
            "try:\n    normstats.init_audit(object())\nexcept normstats.NormstatsError as e:\n    print(e)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == ("the init audit needs PyTorch, which is not installed; install it with "
                                   "pip install 'normstats[torch]'"), done.stderr
