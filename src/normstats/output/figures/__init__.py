"""The figures (matplotlib, Agg backend), one module per kind of result over one ``backend``. May import
``output.results`` and ``output.files.atomic``."""
