"""The ``normstats`` console script.

It lives outside the package because importing :mod:`normstats.cli` takes about 0.3 s (numpy, scipy, rich
and every layer), and a Ctrl-C or SIGTERM in that time would otherwise end in a traceback. Here the signals
are handled before that import; :mod:`normstats.cli` then takes over (exit 130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def main() -> None:
    if sys.stdout is None:  # closed before the start (>&-): hold descriptor 1 so that no file opened while
        _hold_descriptor_1()  # importing takes it (normstats.cli.errors.guard_closed_stdout reports it)
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        from normstats.cli import main as cli_main
    except (KeyboardInterrupt, ImportError):
        # numpy turns an interrupt inside its C extensions' import into an ImportError
        if not received:
            raise
        sys.stderr.write("normstats: interrupted during start-up\n")
        sys.exit(128 + received[0])
    signal.signal(signal.SIGINT, previous)
    cli_main()


def _hold_descriptor_1() -> None:
    """Point descriptor 1 at /dev/null if it is closed (sys.stdout stays None: the CLI still sees it closed)."""
    try:
        os.fstat(1)
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        if devnull != 1:
            os.dup2(devnull, 1)
            os.close(devnull)


if __name__ == "__main__":
    main()
