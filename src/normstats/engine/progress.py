"""Progress on stderr: a rich bar for long runs, and a null object with the same interface for the rest.

The engine calls ``start``, ``update`` and ``stop`` on whatever it was given and never asks whether a bar is
shown. The bar shows draws done, rate, the current worst standard error against the target, and an ETA; with
a target the expected total comes from ``se ~ 1 / sqrt(draws)``, so the time left is ``elapsed * ((se /
target)^2 - 1)`` (rich's own estimate cannot be used: it restarts whenever the total moves).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # rich is imported when a bar is shown: a quiet or piped run never pays for it
    from rich.console import Console
    from rich.progress import Progress as RichProgress


class Progress(Protocol):
    def start(self, label: str, samples: int, target_se: float | None) -> None: ...

    def update(self, draws: int, worst_se: float) -> None:
        """``draws`` done; ``worst_se`` the largest se so far, NaN where the run has none to show yet (a model
        run's se come at its end, over the inits): the bar then shows no se."""

    def stop(self) -> None: ...


class NullProgress:
    """Shows nothing."""

    def start(self, label: str, samples: int, target_se: float | None) -> None:
        pass

    def update(self, draws: int, worst_se: float) -> None:
        pass

    def stop(self) -> None:
        pass


NULL_PROGRESS = NullProgress()


class BarProgress:
    """A transient rich progress bar on stderr."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console

        self._console = console or Console(stderr=True)
        self._bar: RichProgress | None = None

    def start(self, label: str, samples: int, target_se: float | None) -> None:
        self._samples, self._target = samples, target_se
        self._t0 = time.monotonic()
        from rich.progress import BarColumn, TextColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f} draws"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[se]}"),
            TextColumn("{task.fields[eta]}"),
            console=self._console,
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(label, total=samples, rate="", se="", eta="ETA -:--:--")

    def update(self, draws: int, worst_se: float) -> None:
        if self._bar is None:
            return
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        total = self._samples
        se_text = "" if math.isnan(worst_se) else f"worst se {worst_se:.2g}"
        if self._target is not None and se_text:
            se_text += f" / target {self._target:.2g}"
            if math.isfinite(worst_se) and worst_se > 0:
                total = min(total, max(draws, math.ceil(draws * (worst_se / self._target) ** 2)))
        left = eta(elapsed, draws, total)
        self._bar.update(
            self._task, completed=draws, total=total, rate=f"{draws / elapsed:,.0f}/s", se=se_text,
            eta="ETA -:--:--" if left is None else f"ETA {_clock(left)}",
        )

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class Labelled:
    """``progress`` with ``prefix`` before each run's label: ``row 3/13 maxpool`` in a table."""

    def __init__(self, progress: Progress, prefix: str) -> None:
        self._progress, self._prefix = progress, prefix

    def start(self, label: str, samples: int, target_se: float | None) -> None:
        self._progress.start(f"{self._prefix} {label}", samples, target_se)

    def update(self, draws: int, worst_se: float) -> None:
        self._progress.update(draws, worst_se)

    def stop(self) -> None:
        self._progress.stop()


def eta(elapsed: float, draws: int, total: int) -> float | None:
    """Seconds left to reach ``total`` draws at the rate so far (None before the first draw). With a target
    se, ``total = draws (se / target)^2``, so this is ``elapsed ((se / target)^2 - 1)``: the se's decay."""
    if draws <= 0:
        return None
    return max(0.0, elapsed * (total - draws) / draws)


def _clock(seconds: float) -> str:
    whole = int(math.ceil(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def make_progress(quiet: bool = False) -> Progress:
    """A bar when stderr is a terminal and not ``quiet``; the null object otherwise."""
    if quiet:
        return NULL_PROGRESS
    from rich.console import Console

    console = Console(stderr=True)
    return BarProgress(console) if console.is_terminal else NULL_PROGRESS
