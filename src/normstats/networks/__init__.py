"""Networks through depth: the spec parser, the network built from registered layers (fitted to their shapes,
scaled by a NormProp mode), the draws pushed forward and back through it for the engine, and the
infinite-width (mean-field) reference of every layer's statistics.

May import: ``output``, ``published``, ``engine``, ``layers``, ``exact`` and the foundation modules; never the
API, the CLI or ``theory``.
"""
