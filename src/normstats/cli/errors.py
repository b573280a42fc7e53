"""How a command ends: exit codes, signals (Ctrl-C and SIGTERM stop a run; stdout's reader going away ends it
quietly; a stdout closed before the start is an error) and the group class that turns every error into one line
on stderr."""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

import click

from normstats.engine.allocator import keep_freed_memory
from normstats.errors import NormstatsError

EXIT_HELP = """Exit codes: 0 success; 1 an internal error (never bad input); 2 bad input (one line on stderr
names the parameter, what is allowed and what was given); 130 interrupted by Ctrl-C, 143 by SIGTERM (an
interrupted run writes no file); 141 stdout closed: by its reader (the run ends quietly), or before the start
(>&-: one line on stderr, and no file written)."""

#: The exit status when stdout cannot take the output: its reader has gone (128 + SIGPIPE, what a tool killed
#: by SIGPIPE reports), or it was closed before the start.
PIPE_CLOSED = 128 + 13

#: The signal that interrupted this run: SIGINT (Ctrl-C) unless SIGTERM came. The exit status is 128 + its
#: number (130, 143), the shell's convention for a process ended by a signal.
_INTERRUPT = {"signal": int(signal.SIGINT)}

#: Set when stdout's reader went away during the output (see :mod:`normstats.cli.output`).
PIPE = {"closed": False}


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM stops a run as Ctrl-C does (the engine returns what it merged), then exits with 143."""
    _INTERRUPT["signal"] = signum
    raise KeyboardInterrupt


def interrupted_status() -> int:
    return 128 + _INTERRUPT["signal"]


#: The files this run was asked to write (``--output``, ``--plot``), as their options are parsed: an interrupt
#: that ends the run before it has results (the engine had not merged a block) still says what became of them.
PLANNED: list[str] = []


def plan_output(path: str) -> str:
    """Record ``path`` as a file this run will write (an option callback's last step); returns it."""
    PLANNED.append(path)
    return path


def kept(output: str | None) -> str:
    """What became of ``--output`` after an interrupted run: nothing was written to it."""
    if output is None:
        return ""
    return " (it keeps its contents)" if Path(output).exists() else " (it was not created)"


def interrupted(what: str) -> None:
    """Say what an interrupted run left and exit with 130 (143 for SIGTERM)."""
    click.echo(f"normstats: interrupted: {what}", err=True)
    sys.exit(interrupted_status())


def exit_if_pipe_closed() -> None:
    if PIPE["closed"]:
        sys.exit(PIPE_CLOSED)


class StdoutClosed(Exception):
    """A write to a stdout that was closed before the start (``normstats table >&-``)."""


class _ClosedStdout(io.TextIOBase):
    """Stands in for a stdout closed before the start (Python then sets ``sys.stdout`` to None, and every write
    would vanish): the first write raises :class:`StdoutClosed`, which ends the run with one line on stderr."""

    encoding = "utf-8"
    errors = "strict"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        raise StdoutClosed


def guard_closed_stdout() -> None:
    """If stdout was closed before the start: descriptor 1 goes to /dev/null (so that no file the run opens takes
    it, and nothing a library writes to it lands in one), and ``sys.stdout`` becomes :class:`_ClosedStdout`."""
    if sys.stdout is not None:
        return
    try:
        os.fstat(1)
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        if devnull != 1:
            os.dup2(devnull, 1)
            os.close(devnull)
    sys.stdout = _ClosedStdout()


class Main(click.Group):
    """Turns every usage error into one line on stderr and exit code 2, and Ctrl-C or SIGTERM into exit code
    130 or 143."""

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:  # type: ignore[override]
        keep_freed_memory()  # this process exists to run normstats (see normstats.engine.allocator)
        guard_closed_stdout()
        _INTERRUPT["signal"] = int(signal.SIGINT)
        PIPE["closed"] = False
        PLANNED.clear()
        previous = _install(signal.SIGTERM, _on_sigterm)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
            if isinstance(code, int):  # click returns an Exit's code when not in standalone mode
                sys.exit(code)
            return code
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.NoArgsIsHelpError as exc:  # plain `normstats`: the help, which is no error
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        except click.ClickException as exc:
            click.echo(f"normstats: error: {exc.format_message()}", err=True)
            sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
        except NormstatsError as exc:
            click.echo(f"normstats: error: {exc}", err=True)
            sys.exit(2)
        except (KeyboardInterrupt, click.Abort):
            untouched = " or ".join(f"{path}{kept(path)}" for path in PLANNED)
            click.echo(f"normstats: interrupted{f': nothing written to {untouched}' if untouched else ''}", err=True)
            sys.exit(interrupted_status())
        except StdoutClosed:
            click.echo("normstats: error: stdout is closed, so the output has nowhere to go (to discard it, "
                       "redirect it to /dev/null)", err=True)
            sys.exit(PIPE_CLOSED)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list with each command's whole short help (click would cut a long one mid-sentence):
        its ``short_help``, else the first paragraph of its help, wrapped."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            text = cmd.short_help or (cmd.help or "").split("\n\n")[0]
            rows.append((name, " ".join(text.split())))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # the reader went away (normstats list | head -1): end quietly
            discard_stdout()
            raise click.exceptions.Exit(PIPE_CLOSED) from None


def discard_stdout() -> None:
    """Point stdout at /dev/null, so that nothing more (not even the flush at exit) fails on a closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (e.g. a test runner's buffer)
        pass
    finally:
        os.close(devnull)


def _install(signum: signal.Signals, handler: Callable[[int, Any], None]) -> Any:
    """Set a signal handler where Python allows it (the main thread); return the one it replaced."""
    try:
        return signal.signal(signum, handler)
    except ValueError:  # not the main thread (e.g. an embedding application): leave signals alone
        return None


def checked(convert: Callable[[Any], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback that runs ``convert`` and reports a NormstatsError as a bad parameter."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return convert(value)
        except NormstatsError as exc:
            raise click.UsageError(str(exc)) from None

    return callback
