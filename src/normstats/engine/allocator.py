"""The C allocator's thresholds, set for a process that runs the engine (the command line and its worker
processes).

A network's passes make new arrays of a chunk's values at every layer (a matrix product's output, a mask): about
1.6 MiB each on ``20*(linear relu)`` at width 512. glibc's ``malloc`` serves blocks that large with ``mmap`` and
hands them back to the system when freed (its dynamic threshold rises only so far, and the top of the heap is
trimmed), so every new array starts as fresh pages that fault in one by one: 44,000 minor faults in 8,160
draws of that network, about 5% of its time on one core (measured in one process: 3.35-3.44 s instead of
3.54-3.60 s). With ``M_MMAP_THRESHOLD`` at 32 MiB (glibc's largest) and ``M_TRIM_THRESHOLD`` at 256 MiB, a freed
block stays with the process and the next array of its size reuses it, still in cache: no faults. Setting only
one of the two turns glibc's dynamic threshold off and makes it worse (187,000 and 356,000 faults).

This is process-wide, so the library never does it on its own: the command line calls
:func:`keep_freed_memory` (its process exists to run normstats), as do the worker processes it starts; a
program that imports normstats may call it too. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import os
import sys

#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20

_done: list[bool] = []


def keep_freed_memory() -> bool:
    """Keep freed blocks up to ``MMAP_THRESHOLD`` in the process (glibc ``mallopt``); True if it took. The
    process may then hold up to ``TRIM_THRESHOLD`` of freed memory for reuse."""
    if _done:
        return _done[0]
    ok = False
    try:
        if sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            import ctypes

            mallopt = ctypes.CDLL(None).mallopt
            mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
            ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, ValueError, AttributeError):  # no glibc to speak to: nothing to tune
        ok = False
    _done.append(ok)
    return ok
