"""The ``normstats`` console script.

It lives outside the package because importing :mod:`normstats.cli` takes about 0.3 s (numpy, scipy, rich
and every layer), and a Ctrl-C or SIGTERM in that time would otherwise end in a traceback. Here the signals
are handled before that import; :mod:`normstats.cli` then takes over (exit 130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import sys
from typing import Any


def main() -> None:
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

if __name__ == "__main__":
    main()
