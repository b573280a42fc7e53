"""The init audit as a rich table: one row per parameter, the rule it matches, and the sources of the rules."""

from __future__ import annotations

from typing import Iterable

from rich.console import Group
from rich.table import Table as RichTable
from rich.text import Text

from normstats.output.results.init_audit import NONE_OF_THESE, ParamAudit


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _fans(e: ParamAudit) -> str:
    if e.fan_in is None:
        return "—"
    return f"{e.fan_in}/{e.fan_out}" + (" (weight's)" if e.fan_source else "")


def init_audit_table(entries: Iterable[ParamAudit], title: str = "Init audit") -> Group:
    """Every parameter's shape, fans, mean, std, ``std * sqrt(fan_in)``, law and matching rules (with the z of
    its std against the first); a parameter that misses the rule its name calls for is red, with the reason
    below the table; "none of these" is yellow."""
    t = RichTable(title=title, title_justify="left", header_style="bold")
    for col in ("parameter", "shape", "fan in/out", "mean", "std", "std·√fan_in", "law", "rule (within 4 se)", "z"):
        t.add_column(col, justify="right" if col in ("mean", "std", "std·√fan_in", "z") else "left",
                     overflow="fold")
    sources: dict[str, int] = {}
    notes: list[str] = []
    remarks: dict[str, int] = {}  # notes that flag nothing (transformers' Conv1D), once each
    for e in entries:
        rule = e.rule
        if e.source:
            rule += f" [{sources.setdefault(e.source, len(sources) + 1)}]"
        style = "bold red" if e.ok is False else "yellow" if e.rule.startswith(NONE_OF_THESE) else ""
        name = e.name
        if e.ok is False:
            notes.append(f"✗ {e.name}: {e.note}")
        elif e.note:
            remarks.setdefault(e.note, len(remarks) + 1)
            name += " " + "*" * remarks[e.note]
        t.add_row(
            Text(name, style=style), "×".join(map(str, e.shape)) or "scalar", _fans(e), _number(e.mean),
            _number(e.std), _number(e.scaled), e.law, Text(rule, style=style),
            "—" if e.z is None else f"{e.z:+.2f}",
        )
    legend = Text(
        "A rule matches when the values' law fits (excess kurtosis: normal 0, uniform -1.2) and their std and mean "
        "lie within 4 se of the rule's (the se of a sample std of that many iid values of the rule's law); z is "
        "(std - rule std) / se for the first rule named. Fans as torch.nn.init computes them; a bias takes its "
        "weight's.\n" + "".join(f"{'*' * i} {remark}\n" for remark, i in remarks.items())
        + "\n".join(f"[{i}] {src}" for src, i in sources.items()),
        style="dim",
    )
    parts: list = [t]
    if notes:
        parts.append(Text("\n".join(notes), style="bold red"))
    parts.append(legend)
    return Group(*parts)
