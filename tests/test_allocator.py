"""The C allocator's thresholds (normstats.engine.allocator): set on glibc, once, by the command line and its
worker processes, never by importing the library."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")


def _probe(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_importing_normstats_leaves_the_allocator_alone() -> None:
    assert _probe("import normstats, normstats.api; from normstats.engine import allocator; "
                  "print(allocator._done)") == "[]"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_thresholds_take_on_glibc_once() -> None:
    out = _probe("from normstats.engine.allocator import keep_freed_memory as k; print(k(), k())")
    assert out == "True True"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_freed_arrays_come_back_without_page_faults() -> None:
    """What the thresholds are for: a loop that makes and frees 1.6 MiB arrays faults in fresh pages every time
    under glibc's defaults (the block goes back to the system), and almost never once they are set."""
    loop = ("import resource, numpy as np\n"
            "{setup}\n"
            "a = np.ones((408, 512))\n"
            "for _ in range(3): b = a * 2.0; c = b + a; del b, c\n"
            "f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for _ in range(50): b = a * 2.0; c = b + a; del b, c\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)")
    plain = int(_probe(loop.format(setup="")))
    tuned = int(_probe(loop.format(setup="from normstats.engine.allocator import keep_freed_memory; "
                                         "keep_freed_memory()")))
    assert tuned < 50 <= plain  # 408 x 512 doubles are 408 pages: one fresh array a round is hundreds of faults


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_command_line_sets_them() -> None:
    code = ("import sys\nfrom normstats import cli\nfrom normstats.engine import allocator\n"
            "sys.argv = ['normstats', 'list', '--format', 'json']\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "print(allocator._done, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.stdout.startswith("[")  # the listing itself ran
    assert proc.stderr.strip().splitlines()[-1] == "[True]"
