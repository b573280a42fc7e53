"""Exports: JSON against the shipped schema, CSV in long form, LaTeX, the Python constants module, atomic
writes, and the committed tables/ folder, which must be exactly what the documented command produces."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

import normstats
from normstats.cli import main
from normstats.output.files import layers as export
from normstats.output.files.schema import schema
from normstats.published import conventions
from normstats.published.default_table import DEFAULT_ROWS
from tests.rounding import same_up_to_rounding
from tests.test_cli import run, run_bad

TABLES = Path(__file__).resolve().parent.parent / "tables"
VALIDATOR = jsonschema.Draft202012Validator(schema())


@pytest.fixture(scope="module")
def small_table() -> normstats.Table:
    return normstats.table(samples=4000, seed=1)


def test_schema_is_a_valid_schema_and_is_what_the_cli_prints() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    assert json.loads(run("schema").stdout) == schema()


def test_every_json_the_tool_writes_validates() -> None:
    documents = [
        run("table", "-n", "3000", "--format", "json").stdout,
        run("export", "-n", "3000", "--format", "json").stdout,
        run("simulate", "--layer", "sigmoid", "-n", "3000", "--format", "json").stdout,
        run("simulate", "--layer", "sigmoid", "-n", "3000", "--format", "json", "--reference", "formula").stdout,
    ]
    for text in documents:
        VALIDATOR.validate(json.loads(text))


def test_the_schema_rejects_a_malformed_document(small_table: normstats.Table) -> None:
    """The validation above can fail: a row missing a statistic, or a stat with an unknown kind, is refused."""
    doc = small_table.to_dict()
    del doc["rows"][0]["bp_std"]
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(doc)
    doc = small_table.to_dict()
    doc["rows"][0]["fp_mean"]["reference_kind"] = "guess"
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(doc)


def test_json_has_metadata_and_is_byte_stable() -> None:
    a = run("table", "-n", "3000", "--seed", "4", "--format", "json").stdout
    b = run("table", "-n", "3000", "--seed", "4", "--format", "json").stdout
    assert a == b
    meta = json.loads(a)["metadata"]
    assert meta["seed"] == 4 and meta["samples"] == 3000 and meta["generator"] == "SFC64"
    assert meta["method"] == "mc" and meta["normstats"] == normstats.__version__ and meta["numpy"]


def test_csv_long_form(small_table: normstats.Table) -> None:
    lines = list(csv.DictReader(io.StringIO(export.to_csv(small_table))))
    assert tuple(lines[0]) == export.CSV_COLUMNS
    assert len(lines) == 4 * len(DEFAULT_ROWS)
    pool = [r for r in lines if r["layer"] == "maxpool" and r["params"] == "k=2;stride=2;padding=0;size=interior"]
    assert [r["statistic"] for r in pool] == ["fp_mean", "fp_std", "bp_mean", "bp_std"]
    fp = pool[0]
    assert float(fp["ci95_lo"]) < float(fp["estimate"]) < float(fp["ci95_hi"])
    assert fp["reference_kind"] == "quadrature" and fp["published"] == "1.0291"
    assert fp["published_agrees"] == "false" and fp["seed"] == "1" and fp["samples"] == "4000"
    assert pool[2]["published"] == "" and pool[2]["published_agrees"] == "" and pool[2]["published_text"] == ""


def test_latex_is_balanced_and_escaped(small_table: normstats.Table) -> None:
    tex = export.to_latex(small_table)
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 1
    assert tex.count("{") - tex.count("\\{") == tex.count("}") - tex.count("\\}")
    assert "fan\\_in=128" in tex and "fan_in" not in tex.replace("fan\\_in", "")
    assert "0.2123 (differs)" in tex


def test_python_module_imports_without_normstats(tmp_path: Path, small_table: normstats.Table) -> None:
    module = tmp_path / "constants_mod.py"
    module.write_text(export.to_python(small_table))
    # -S -I: no site-packages and no user paths, so normstats cannot be imported in the child.
    probe = (
        "import importlib.util, json, sys\n"
        "assert importlib.util.find_spec('normstats') is None, 'normstats is importable'\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import constants_mod as c\n"
        "print(json.dumps({'constants': c.CONSTANTS, 'sources': c.SOURCES}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-I", "-c", probe, str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    data = json.loads(out)
    relu = next(r for r in small_table.rows if r.layer == "relu")
    assert data["constants"]["relu"] == conventions.constants(relu)
    assert data["constants"]["relu"]["gain"] == pytest.approx(2**0.5, rel=1e-15)  # He et al. 2015
    assert data["sources"]["maxpool:k=3;stride=3;padding=0;size=interior"] == {
        "fp_shift": "quadrature", "fp_scale": "quadrature", "bp_scale": "closed_form",
        "nfnet_gamma": "quadrature", "gain": "quadrature",
    }
    assert data["sources"]["relu"] == dict.fromkeys(conventions.INPUTS, "closed_form")
    assert len(data["constants"]) == len(DEFAULT_ROWS)


def test_export_arguments_are_checked(tmp_path: Path) -> None:
    assert "give either --format FORMAT or --all" in run_bad("export")
    assert "give either --format FORMAT or --all" in run_bad("export", "--all", "--format", "csv")
    assert "--all needs --output-dir DIR" in run_bad("export", "--all")
    assert "--output-dir must be" in run_bad("export", "--all", "--output-dir", str(tmp_path / "nope"))


def test_export_all_writes_every_format(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", "--all", "--output-dir", str(tmp_path), "-n", "2000"])
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(export.FILE_NAMES.values())


# -- the committed tables/ folder --------------------------------------------------------------------------

#: The documented command (README, "The tables/ folder"), without its program name.
REGENERATE = ["export", "--all", "--output-dir"]


def test_committed_tables_parse_and_hold_every_default_row() -> None:
    doc = json.loads((TABLES / "table.json").read_text())
    VALIDATOR.validate(doc)
    expected = [(name, normstats.make_layer(name, **params).values) for name, params in DEFAULT_ROWS]
    assert [(r["layer"], r["params"]) for r in doc["rows"]] == expected
    with open(TABLES / "table.csv", newline="") as fh:
        lines = list(csv.DictReader(fh))
    assert len(lines) == 4 * len(expected)
    markdown = (TABLES / "table.md").read_text()
    assert all(f"| {name} |" in markdown for name, _ in expected)
    assert "CONSTANTS = {" in (TABLES / "normstats_constants.py").read_text()


def test_rounding_level_comparison_tells_rounding_from_change() -> None:
    committed = "fp_mean,0.3991736121211354,0.0005845220909600288,z=0.39576215044797464\n| relu | 0.3992 |"
    assert same_up_to_rounding(committed, committed) is None
    rounding = "fp_mean,0.39917361212113545,0.000584522090960028,z=0.3957621504480701\n| relu | 0.3992 |"
    assert same_up_to_rounding(rounding, committed) is None
    assert same_up_to_rounding(committed.replace("0.3992", "0.3993"), committed) == "0.3993 != 0.3992"
    assert same_up_to_rounding(committed.replace("0.39917", "0.39927"), committed) is not None
    assert same_up_to_rounding(committed.replace("relu", "tanh"), committed) == "text differs at line 2"
    assert same_up_to_rounding(committed + "\n| extra |", committed) == "text differs at line 3"
    # rounding noise of a statistic that is exact in every draw: its digits (and sign) are the summation order's
    assert same_up_to_rounding("| fp mean | -6.9e-19 ± 1.1e-19 |", "| fp mean | 3.1e-19 ± 1.3e-19 |") is None
    assert same_up_to_rounding("| 2.1e-12 |", "| 3.1e-12 |") is not None
    # a full-precision z (JSON, CSV) to ZTOL absolute: one ulp of an estimate over a tiny se moves it by 1e-6
    assert same_up_to_rounding('{"z": 0.31487858087811066}', '{"z": 0.3148781490720665}') is None
    assert same_up_to_rounding('{"z": 0.3151}', '{"z": 0.3148781490720665}') == "z 0.3151 != 0.3148781490720665"
    csv_text = "layer,estimate,z,samples\nrelu,0.5,{},100\n"
    assert same_up_to_rounding(csv_text.format(0.3148785), csv_text.format(0.3148781)) is None
    assert same_up_to_rounding(csv_text.format(0.32), csv_text.format(0.3148781)) is not None
    assert same_up_to_rounding(csv_text.format(0.3148785).replace("0.5,", "0.6,"), csv_text.format(0.3148781))


@pytest.mark.slow
def test_committed_tables_are_what_the_documented_command_writes(tmp_path: Path) -> None:
    """Byte for byte where the machine sums as the one that made them; otherwise every number agrees to
    float rounding (see ``tests.rounding.RTOL``) and every other character is the same."""
    result = CliRunner().invoke(main, [*REGENERATE, str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    committed = json.loads((TABLES / "table.json").read_text())["metadata"]
    fresh = json.loads((tmp_path / "table.json").read_text())["metadata"]
    assert fresh == committed, "tables/ was generated with other versions: regenerate it (see README)"
    for name in export.FILE_NAMES.values():
        difference = same_up_to_rounding((tmp_path / name).read_text(), (TABLES / name).read_text())
        assert difference is None, (
            f"tables/{name} is stale ({difference}): run 'normstats export --all --output-dir tables/'"
        )


def test_published_figures_keep_their_printed_text(small_table: normstats.Table) -> None:
    """A figure printed as 0.7010 is 0.701 as a number: the text keeps the precision it is judged at."""
    lines = list(csv.DictReader(io.StringIO(export.to_csv(small_table))))
    doc = json.loads(export.to_json(small_table))
    texts = [r["published_text"] for r in lines if r["published_text"]]
    assert "0.7010" in texts
    for line in lines:
        try:  # a printed decimal (not an exact expression such as "sqrt(1/(2 pi))")
            printed = float(line["published_text"])
        except ValueError:
            continue
        assert printed == float(line["published"])
    for row in doc["rows"]:
        for s in ("fp_mean", "fp_std", "bp_mean", "bp_std"):
            assert (row[s]["published"] is None) == (row[s]["published_text"] is None)
