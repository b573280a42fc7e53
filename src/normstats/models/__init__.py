"""The PyTorch front end: statistics of a user's own ``torch.nn.Module`` and the audit of its parameters'
init (:mod:`normstats.models.init_audit`).

May import: ``output``, ``published``, ``engine``, ``layers``, ``exact`` and the foundation modules; torch lazily
(inside functions: it is an optional dependency, ``normstats[torch]``).
"""
