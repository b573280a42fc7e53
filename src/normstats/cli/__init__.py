"""The ``normstats`` command line: parse, call :mod:`normstats.api`, render. Nothing else lives here.

One module per command or group of related commands (``layers``: list, simulate, table, solve, audit;
``network``; ``export``: export and schema; ``meanfield``; ``jacobian``), gathered by ``main``, over a small
shared part: ``options`` (the options several commands take, declared once), ``errors`` (exit codes, signals,
one line per error) and ``output`` (where output goes: the console, files, figures). Data goes to stdout or
``--output``; messages and errors go to stderr.

May import: everything below it (the API, the output, the engine's option checks); nothing imports it.
"""

from normstats.cli.main import main

__all__ = ["main"]
