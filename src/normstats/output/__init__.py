"""Results and how they are shown, one folder per kind and one module per subject in each:

- ``results/``: the result types (``table``: ``Stat``, ``Row``, ``Table``, ``LayerInfo``; ``network``;
  ``meanfield``; ``jacobian``) and ``numbers``, how their numbers are written as text;
- ``terminal/``: the rich tables printed to a terminal (``layers``, ``network``, ``meanfield``, ``jacobian``);
- ``files/``: the file formats (``layers``, ``network``), the JSON documents and their schema (``schema``), and
  ``atomic``, which writes every file so that it is never half-written;
- ``figures/``: the matplotlib figures (``signal``, ``phase``, ``spectrum``) over one ``backend``.

Inside: ``results`` imports no other kind; ``terminal``, ``files`` and ``figures`` import ``results``, and
``figures`` also ``files.atomic`` (a figure is written as a file is).

May import: ``published``, ``engine``, ``layers``, ``exact`` and the foundation modules; never the API or the CLI.
"""
