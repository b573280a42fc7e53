"""The rich tables printed to a terminal, one module per kind of result. May import ``output.results``."""
