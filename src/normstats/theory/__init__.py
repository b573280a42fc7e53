"""Infinite-width theory of deep networks: the mean-field maps of signal propagation (the q-map and the
C-map), their fixed points, the slopes chi_1, chi_c and chi_q, the depth scales, the edge of chaos and the phase
diagram (``meanfield.py``, ``phase.py``), and a small random-network propagation at finite width to check them
against (``finite_width.py``); the input-output Jacobian of a network measured through its own passes
(``jacobian.py``) and its spectrum's free-probability prediction (``free_probability.py``).

May import: ``networks``, ``output`` (the result types), ``published``, ``engine``, ``layers``, ``exact`` and the foundation
modules; never the API or the CLI.
"""
