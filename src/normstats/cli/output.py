"""Where a command's output goes: the console (rich, as wide as a file needs, plain ASCII where the stream
cannot encode the tables' characters), the ``--output`` file and the ``--plot`` figure (rendered first, then
written as one set, whole or not at all, and never by an interrupted run), and the lines on stderr that say how
a run ended."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Callable, Iterable

import click

from normstats.cli.errors import PIPE, discard_stdout, exit_if_pipe_closed, interrupted, kept
from normstats.output.figures.backend import rendered
from normstats.output.files.atomic import write_files
from normstats.output.files.layers import WRITERS
from normstats.output.results import numbers as fmt
from normstats.output.results.table import Table

if TYPE_CHECKING:
    from rich.console import Console

    from normstats.output.results.init_audit import ParamAudit

#: Width of text written to a file or a pipe (a terminal uses its own width); a table wider than this gets
#: its natural width there, so that nothing in it wraps or is cut.
FILE_WIDTH = 120


def render() -> Any:
    """:mod:`normstats.output.terminal.layers`, imported when a table is printed: it pulls in rich's console and
    tables (about 40 ms), which a run writing JSON or CSV never needs."""
    from normstats.output.terminal import layers

    return layers


def render_audit(entries: Iterable[ParamAudit]) -> Any:
    """The init audit as a rich renderable (``normstats model --params``): print it with ``console().print``, or
    return it (beside the model's table, in a ``rich.console.Group``) from the ``table`` callback of
    :func:`emit_document`. Imported when printed, like :func:`render`."""
    from normstats.output.terminal.init_audit import init_audit_table

    return init_audit_table(entries)


def _new_console(**options: Any) -> Console:
    """A rich console that reports a closed stdout as :class:`BrokenPipeError` (rich's own handling exits
    with status 1), so that the run still says on stderr how it ended."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError

        def print(self, *objects: Any, **kwargs: Any) -> None:
            if not _encodable(self.file):
                objects = tuple(_ascii(o) for o in objects)
            if not self.is_terminal:  # a pipe or a file: as wide as the widest table needs
                self.width = max([FILE_WIDTH, *(render().natural_width(o) for o in objects)])
            super().print(*objects, **kwargs)

    return _Console(**options)


#: Plain-ASCII spellings of the characters the tables use, for a stdout that cannot encode them.
ASCII = str.maketrans({
    "·": "|", "±": "+-", "—": "-", "–": "-", "✓": "yes", "✗": "NO", "γ": "gamma", "²": "^2", "…": "...",
    "≤": "<=", "≥": ">=", "×": "x", "√": "sqrt", "∞": "inf",
})


def _ascii(renderable: Any) -> Any:
    """``renderable`` (a str, rich Text, Table or Group, as :mod:`normstats.output.terminal` builds them) with
    its text spelled in plain ASCII (``±`` as ``+-``, ``✓`` as ``yes``), before rich lays it out; rich draws
    ASCII boxes itself for an encoding that is not UTF."""
    from rich.console import Group
    from rich.table import Table as RichTable
    from rich.text import Text

    if isinstance(renderable, str):
        return renderable.translate(ASCII).encode("ascii", "replace").decode("ascii")
    if isinstance(renderable, Text):
        style = renderable.spans[0].style if renderable.spans else renderable.style
        return Text(_ascii(renderable.plain), style=style, justify=renderable.justify)
    if isinstance(renderable, Group):
        return Group(*(_ascii(r) for r in renderable.renderables))
    if isinstance(renderable, RichTable):
        for attr in ("title", "caption"):
            if getattr(renderable, attr) is not None:
                setattr(renderable, attr, _ascii(getattr(renderable, attr)))
        for column in renderable.columns:
            column.header = _ascii(column.header)
            column._cells = [_ascii(c) for c in column._cells]
        return renderable
    return renderable


def _encodable(stream: Any) -> bool:
    """Whether ``stream`` can show the tables' characters (a UTF terminal or pipe can; ``ascii`` cannot)."""
    try:
        "±·—✓✗γ²…".encode(getattr(stream, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def console(file: Any = None) -> Console:
    out = _new_console(file=file)
    if not out.is_terminal:
        out = _new_console(file=file, width=FILE_WIDTH)
    return out


def emit_document(fmt_: str, output: str | None, table: Callable[[Any], Any], texts: dict[str, Callable[[], str]]
                  ) -> str | None:
    """Print one result document; or, with ``output``, render it and return its text (the caller writes it:
    :func:`deliver`, :func:`write_outputs`). ``table(console)`` gives the rich renderable for ``--format table``,
    ``texts[fmt_]()`` the text of the other formats. A closed stdout is noted (the command then ends quietly
    with :data:`~normstats.cli.errors.PIPE_CLOSED` after its stderr summary)."""
    try:
        if fmt_ == "table":
            buf = io.StringIO() if output else None
            out = _new_console(file=buf, width=FILE_WIDTH, no_color=True) if buf else console()
            out.print(table(out))
            return buf.getvalue() if buf else None
        text = texts[fmt_]()
        if output:
            return text
        click.echo(text, nl=False)
    except BrokenPipeError:  # stdout's reader went away: still say on stderr how the run ended
        discard_stdout()
        PIPE["closed"] = True
    return None


def deliver(fmt_: str, output: str | None, table: Callable[[Any], Any], texts: dict[str, Callable[[], str]],
            plot: str | None = None, draw: Callable[[str], None] | None = None, ending: str | None = None) -> None:
    """A finished run's output: the document printed, or rendered for ``--output``; the ``--plot`` figure
    (``draw(path)``) rendered; both written as one set (:func:`write_outputs`); the ``ending`` line on stderr;
    then the end with :data:`~normstats.cli.errors.PIPE_CLOSED` if stdout's reader went away."""
    files: dict[str, str | bytes] = {}
    options: dict[str, str] = {}
    text = emit_document(fmt_, output, table, texts)
    if output is not None and text is not None:
        files[output], options[output] = text, "--output"
    if plot is not None and draw is not None:
        with rendered() as pngs:
            draw(plot)
        files[plot], options[plot] = pngs[plot], "--plot"
    write_outputs(files, options)
    if ending is not None:
        click.echo(ending, err=True)
    exit_if_pipe_closed()


def write_outputs(files: dict[str, str | bytes], options: dict[str, str] | str = "--output") -> None:
    """Write a run's files as one set, whole or not at all (:func:`~normstats.output.files.atomic.write_files`),
    and say so on stderr."""
    if not files:
        return
    for path in write_files(files, options):
        click.echo(f"wrote {path}", err=True)


def emit(result: Table, fmt_: str, output: str | None, title: str, convention: str = "all") -> None:
    """Print ``result`` in ``fmt_``, or write it atomically to ``output`` (unless the run was interrupted:
    :func:`finish` says so)."""
    if output and result.partial:
        return

    def table(out: Any) -> Any:
        width = out.width if out.is_terminal else None
        return render().results(list(result.rows), title, convention, width)

    text = emit_document(fmt_, output, table, {name: (lambda w=w: w(result)) for name, w in WRITERS.items()})
    if output and text is not None:
        write_outputs({output: text})


def finish(result: Table, output: str | None = None) -> None:
    """Say on stderr how each run ended; exit 130 (143 for SIGTERM) when the run was cut short, after the
    partial results were printed (to ``--output`` nothing is written: a partial table would replace a whole
    one)."""
    endings = {(row.samples, row.method, row.stop) for row in result.rows}
    if len(result.rows) > 1 and len(endings) == 1:
        ((samples, method, stop),) = endings
        click.echo(f"every row: {samples:,} draws ({method}), stopped by {stop}", err=True)
    else:
        for row in result.rows:
            label = " ".join(filter(None, (row.layer, row.describe_params())))
            click.echo(f"{label}: {row.samples:,} draws ({row.method}), stopped by {row.stop}", err=True)
    for line in fmt.not_finite_lines(result.rows):
        click.echo(line, err=True)
    exit_if_pipe_closed()
    if result.partial and output is not None:
        interrupted(f"nothing written to {output}{kept(output)}")
    if result.partial:
        interrupted("the results above are partial (their se hold for the draws taken)")
