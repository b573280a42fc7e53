"""``python -m normstats.cli``: the console script without its entry point (tests and benchmarks run it so)."""

from normstats.cli.main import main

main()
