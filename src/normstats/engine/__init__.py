"""The Monte Carlo engine: random sources (plain and quasi-Monte Carlo), streaming moment tallies, the block
plan and its executors (threads, processes, Dask), stopping rules, sample counts and the progress bar.

May import: ``layers`` (a layer's samplers and widths) and the foundation modules. It attaches no references and
renders nothing: that is ``output``'s work, one level up.
"""
