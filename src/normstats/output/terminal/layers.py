"""Rich tables for the terminal: the statistics of one or more rows, their constants, and the layer list."""

from __future__ import annotations

import io
from typing import Any, Callable, Iterable

from rich import box
from rich.console import Console, Group
from rich.measure import Measurement
from rich.table import Table as RichTable
from rich.text import Text

from normstats.exact.selfnorm import Solution
from normstats.output.results import numbers as fmt
from normstats.output.results.table import LayerInfo, Row
from normstats.published import conventions
from normstats.published.constants import AuditEntry
from normstats.published.figures import NORMPROP

#: |z| above this is flagged: the estimate sits that many standard errors from its reference.
Z_FLAG = 4.0


def stats_table(rows: Iterable[Row], title: str | None = None, compact: bool = False, fold: bool = False,
                stacked: bool = False) -> RichTable:
    """The statistics of ``rows``. Numbers never wrap; where the full table is wider than the terminal,
    ``compact`` drops the vertical rules and puts each reference's kind under it, and ``fold`` breaks each
    long ``name=value`` of the layer column after its ``=``; ``stacked`` (a narrow terminal) gives each figure
    a line of its own (:func:`_stacked_stats`)."""
    rows = list(rows)
    if stacked:
        return _stacked_stats(rows, title)
    t = _table(title, compact)
    columns = ("layer", "statistic", "estimate ± se", "reference", *(() if compact else ("kind",)), "z", "published")
    for col in columns:
        numeric = col in ("estimate ± se", "reference", "z", "published")
        t.add_column(col, justify="right" if numeric else "left", no_wrap=numeric,
                     overflow="ellipsis" if numeric else "fold",
                     min_width=_longest_param(rows, fold) if col == "layer" else None)
    for row in rows:
        stats = list(row.stats().items())
        labels = _layer_cells(row, len(stats), fold)
        for i, (name, stat) in enumerate(stats):
            z_text, pub = _flagged(stat)
            kind = (stat.reference_kind or "—").replace("_", " ")
            reference: str | Text = fmt.ref(stat.reference)
            if compact:
                reference = Text(f"{reference}\n").append(kind, style="dim")
            t.add_row(
                labels[i],
                fmt.stat_label(name),
                fmt.estimate(stat),
                reference,
                *(() if compact else (kind,)),
                z_text,
                pub,
                end_section=i == len(stats) - 1,
            )
    return t


def _flagged(stat: Any) -> tuple[Text, Text]:
    """A statistic's z and published figure as shown, each in bold red where it flags a problem (``|z| >``
    :data:`Z_FLAG`; a published figure that disagrees with the reference)."""
    z_text = Text(fmt.z(stat.z))
    if stat.z is not None and abs(stat.z) > Z_FLAG:
        z_text.stylize("bold red")
    pub = Text(fmt.published(stat))
    if stat.published_agrees is False:
        pub.stylize("bold red")
    return z_text, pub


def _stacked_stats(rows: list[Row], title: str | None) -> RichTable:
    """The statistics as a list of two columns, for a terminal too narrow for the table: per row, the layer and
    its parameters, then per statistic its ``estimate ± se`` and, indented under it, the reference, its kind,
    z and the published figure. A value wraps at its spaces (``1.482 ±`` over ``0.019``) and, on a terminal
    narrower than a single number, folds onto the next line; it is never cut."""
    t = _stacked_table(title, ("statistic", "value"))
    for row in rows:
        t.add_row(Text(row.layer, style="bold"), " ".join(_param_lines(row)), end_section=True)
        stats = list(row.stats().items())
        for i, (name, stat) in enumerate(stats):
            z_text, pub = _flagged(stat)
            t.add_row(fmt.stat_label(name), fmt.estimate(stat))
            t.add_row("  reference", fmt.ref(stat.reference))
            t.add_row("  kind", Text((stat.reference_kind or "—").replace("_", " "), style="dim"))
            t.add_row("  z", z_text)
            t.add_row("  published", pub, end_section=i == len(stats) - 1)
    return t


def _stacked_table(title: str | None, columns: tuple[str, str]) -> RichTable:
    """Two columns, labels and values, one space apart; the values wrap, and fold rather than being cut."""
    t = RichTable(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0),
                  pad_edge=False, show_edge=False)
    t.add_column(columns[0], overflow="fold")
    t.add_column(columns[1], overflow="fold")
    return t


#: With ``fold``, a ``name=value`` longer than this goes on two lines: ``name=`` and ``value``.
FOLD_AT = 10


def _param_lines(row: Row, fold: bool = False) -> list[str]:
    """``name=value`` for each parameter of ``row``; with ``fold``, the long ones split after ``=``."""
    lines = []
    for k, v in row.params.items():
        text = f"{k}={_short(v)}"
        lines += [f"{k}=", _short(v)] if fold and len(text) > FOLD_AT else [text]
    return lines


def _short(value: object) -> str:
    """A parameter as the layer column shows it: a float with many digits to 6 significant ones (RMS norm's
    eps, float32's machine epsilon 2^-23, is 1.19209e-07 there; the exports keep every digit)."""
    text = str(value)
    return f"{value:.6g}" if isinstance(value, float) and len(text) > 10 else text


def _longest_param(rows: list[Row], fold: bool = False) -> int:
    """The widest line of the layer column (the layer's name or a parameter): the column's minimum, so
    that no line of it is cut."""
    return max((len(w) for row in rows for w in [row.layer, *_param_lines(row, fold)]), default=5)


def _table(title: str | None, compact: bool) -> RichTable:
    """A table with rules between its columns, or (``compact``) only under its header, one space apart (the
    box's blank divider)."""
    if compact:
        return RichTable(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                         padding=0, pad_edge=False, show_edge=False)
    return RichTable(title=title, title_justify="left", header_style="bold")


def _layer_cells(row: Row, lines: int, fold: bool = False) -> list[str]:
    """The layer column of a row's lines: its name, then one parameter per line (the rest on the last; with
    ``fold``, the rest one per line on the last)."""
    params = _param_lines(row, fold)
    cells = [row.layer] + params[: lines - 2] + [("\n" if fold else " ").join(params[lines - 2 :])]
    return (cells + [""] * lines)[:lines]


def constants_table(
    rows: Iterable[Row], convention: str = "all", compact: bool = False, fold: bool = False, stacked: bool = False
) -> RichTable:
    """Each row's normalizing constants in ``convention`` (see :mod:`normstats.published.conventions`);
    ``compact`` puts the parameters under the layer's name, one per line (``fold``: breaking a long one);
    ``stacked``: a line per constant, as :func:`_stacked_stats`."""
    keys = conventions.columns(convention)
    rows = list(rows)
    if stacked:
        t = _stacked_table("Normalizing constants", ("constant", "value"))
        for row in rows:
            c = conventions.constants(row)
            t.add_row(Text(row.layer, style="bold"), " ".join(_param_lines(row)), end_section=True)
            for i, k in enumerate(keys):
                t.add_row(conventions.LABELS[k], fmt.constant(c[k]), end_section=i == len(keys) - 1)
        return t
    t = _table("Normalizing constants", compact)
    for col in ("layer", *(() if compact else ("params",)), *(conventions.LABELS[k] for k in keys)):
        text = col in ("layer", "params")
        t.add_column(col, justify="left" if text else "right", no_wrap=not text,
                     overflow="fold" if text else "ellipsis",
                     min_width=_longest_param(rows, fold) if compact and col == "layer" else None)
    for row in rows:
        c = conventions.constants(row)
        label = (row.layer,) if not compact else ("\n".join([row.layer, *_param_lines(row, fold)]),)
        t.add_row(*label, *(() if compact else (row.describe_params(),)), *(fmt.constant(c[k]) for k in keys))
    return t


def legend() -> Text:
    return Text(
        f"z = (estimate - reference) / se; |z| > {Z_FLAG:g} is shown in red. "
        "published: ✓ agrees with the reference to its printed precision, ✗ does not. "
        f"Published figures: {NORMPROP}. Constants use the reference where there is one: NormProp makes "
        "(y - fp shift) * fp scale and dx * bp scale unit-std; NFNet γ * y has unit std; "
        "gain = 1/sqrt(E y²) (He init).",
        style="dim",
    )


def results(rows: list[Row], title: str, convention: str = "all", width: int | None = None) -> Group:
    """The statistics, the constants and the legend; each table compact where it would not fit ``width``
    columns (a terminal's width; None: any width)."""
    return Group(
        _fitting(lambda **layout: stats_table(rows, title, **layout), width),
        _fitting(lambda **layout: constants_table(rows, convention, **layout), width),
        legend(),
    )


def _fitting(make: Callable[..., RichTable], width: int | None) -> RichTable:
    """The first layout of ``make`` that fits ``width`` columns: full, compact, compact with the long parameters
    broken after their ``=``, or else stacked (a line per figure, whose values wrap rather than being cut)."""
    for layout in ({}, {"compact": True}, {"compact": True, "fold": True}):
        table = make(**layout)
        if width is None or min_width(table) <= width:
            return table
    return make(stacked=True)


def min_width(renderable: Any) -> int:
    """The fewest columns ``renderable`` takes without cutting a cell that may not wrap."""
    return _measure(renderable).minimum


def natural_width(renderable: Any) -> int:
    """The columns the tables in ``renderable`` take when nothing in them wraps (prose, which may wrap, does
    not count)."""
    if isinstance(renderable, Group):
        return max((natural_width(r) for r in renderable.renderables), default=0)
    if isinstance(renderable, (Text, str)):
        return 0
    return _measure(renderable).maximum


def _measure(renderable: Any) -> Measurement:
    console = Console(file=io.StringIO(), width=10_000)
    return Measurement.get(console, console.options, renderable)


def layer_list(infos: Iterable[LayerInfo]) -> RichTable:
    t = RichTable(header_style="bold", show_lines=True)
    for col in ("layer", "parameters (default; allowed)", "reference", "what it computes"):
        t.add_column(col)
    for info in infos:
        params = "\n".join(f"{p.option} {p.default_display()}; {p.allowed()}" for p in info.params) or "—"
        name = info.name + (f"\n(alias {', '.join(info.aliases)})" if info.aliases else "")
        t.add_row(name, params, info.reference_summary, info.summary)
    return t


def audit_table(entries: Iterable[AuditEntry]) -> Group:
    """Published constants against their references; ✗ marks a deviation beyond the printed precision."""
    t = RichTable(title="Published constants against exact references", title_justify="left",
                  header_style="bold")
    for col in ("convention", "activation", "published", "reference", "rel. deviation", "digits", "in precision"):
        t.add_column(col, justify="left" if col in ("convention", "activation", "in precision") else "right")
    sources: dict[str, int] = {}
    notes: list[str] = []
    for e in entries:
        c = e.constant
        mark = sources.setdefault(c.figure.source, len(sources) + 1)
        if e.note:
            notes.append(f"* {c.label()}: {e.note}")
        ok = {True: Text("✗ no", style="bold red"), False: Text("✓ yes"), None: Text("—")}[e.exceeds_precision]
        t.add_row(
            "NFNet γ" if c.convention == "nfnet_gamma" else "gain",
            f"{c.label()} [{mark}]" + (" *" if e.note else ""),
            c.figure.text,
            fmt.ref(e.reference),
            "—" if e.deviation is None else f"{e.deviation:+.2e}",
            "—" if e.digits is None else f"{e.digits:.1f}",
            ok,
        )
    legend_text = Text(
        "NFNet γ is compared with 1/std f(X), a PyTorch gain with 1/sqrt(E f(X)²), X ~ N(0, 1). digits = "
        "-log10 |rel. deviation|; in precision: within half a unit of the last printed digit (exact "
        "expressions: float rounding). PyTorch's tanh, sigmoid and selu gains are heuristics aimed at other "
        "goals, so their deviations are expected.\n"
        + "\n".join(f"[{i}] {src}" for src, i in sources.items()) + "\n" + "\n".join(notes),
        style="dim",
    )
    return Group(t, legend_text)


def solution_table(sol: Solution) -> Group:
    """The solved scale, what it is as a gain of He init on the next linear layer, the parameters, and the mean
    and std of ``scale * f(X)``; below, how the scale and the gain are the same thing."""
    t = RichTable(title=f"Self-normalizing {sol.layer}: scale * f(X), X ~ N(0,1)", title_justify="left",
                  header_style="bold")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_row("scale", fmt.constant(sol.scale))
    t.add_row("kaiming gain G = scale/√2", fmt.constant(sol.kaiming_gain))
    for k, v in sol.params.items():
        t.add_row(f"{k}{' (solved)' if sol.free and k == sol.free.replace('-', '_') else ''}", str(v))
    t.add_row("fp mean", f"{sol.fp_mean:.3g}")
    t.add_row("fp std", fmt.constant(sol.fp_std))
    t.caption = (
        "mean 0 solved by the free parameter, then E (scale f)² = 1" if sol.free else
        f"scale only ({sol.target}): a scale cannot move the mean, so fp mean stays where it is"
    )
    gain = Text(
        f"The scale as an init: linear(init=kaiming,normalize=none,gain=G) after the unscaled {sol.layer} does "
        f"what the scale does (normstats' kaiming init is N(0, 2/fan_in), so G = scale/√2; PyTorch's "
        f"kaiming_normal_ takes the scale itself as its gain). That layer's output then has second moment "
        f"{fmt.constant(sol.second_moment)}, averaged over its weights."
    )
    return Group(t, gain)
