"""The result types (a layer table, a network run, a mean-field analysis, a Jacobian spectrum) and ``numbers``,
how their numbers are written as text. May import no other kind of ``output``."""
