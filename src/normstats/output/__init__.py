"""Results and how they are shown: the result types (``Stat``, ``Row``, ``Table``, ``LayerInfo``), number
formatting, rich rendering for the terminal, the file exports and the JSON schema they follow.

May import: ``published``, ``engine``, ``layers``, ``exact`` and the foundation modules; never the API or the CLI.
"""
