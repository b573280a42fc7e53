"""The suite runs on every core it may use, in pytest-xdist worker processes (``python -m pytest`` as the README
says; ``-n 0`` or ``-p no:xdist`` runs it in one process, for ``--pdb`` and print debugging).

Why a hook and not ``addopts = -n auto``: an ``-n`` in ``addopts`` makes ``-p no:xdist`` an error (pytest no
longer knows the option), and ``-n auto`` counts physical cores (psutil), one on many two-thread machines.

- Workers: the cores this process may use (``os.sched_getaffinity``), at most :data:`MAX_WORKERS` (each worker
  holds its own numpy, torch and Sphinx, up to 1.5 GB); ``-n N`` or ``PYTEST_XDIST_AUTO_NUM_WORKERS`` choose.
- Tests go out in small batches to whichever worker is free (xdist's ``--dist load``); a module fixture runs
  once in every worker that runs one of its tests, so an expensive one is better split into the tests.
- In a worker, BLAS and OpenMP pools (numpy's OpenBLAS, torch) start with one thread: two workers each
  running a two-thread pool on two cores make spinning threads wait on each other (torch's small operations
  ran 100x slower so). Set before numpy or torch is imported; a value already in the environment is kept.
  Child processes (the CLI run by tests) inherit it. The engine's own worker threads are left as they are.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

MAX_WORKERS = 4
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in THREAD_VARIABLES:
        os.environ.setdefault(_name, "1")


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Runs before xdist's own ``pytest_cmdline_main`` (a conftest registers after the plugin, and among
    ``tryfirst`` hooks the later registered runs first), which turns ``numprocesses`` into workers."""
    if os.environ.get("PYTEST_XDIST_WORKER") or hasattr(config, "workerinput"):
        return  # a worker (or a pytest started under one) runs what it is sent: never workers of its own
    if not config.pluginmanager.hasplugin("xdist"):  # -p no:xdist, or not installed
        return
    if config.option.numprocesses is None:  # no -n given
        config.option.numprocesses = "auto"  # xdist asks pytest_xdist_auto_num_workers; 0 under --pdb


@pytest.hookimpl(optionalhook=True)  # xdist declares it; -p no:xdist leaves it unknown
def pytest_xdist_auto_num_workers(config: pytest.Config) -> Any:
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own implementation reads it
    cores = _cores()
    return min(cores, MAX_WORKERS) if cores > 1 else 0  # one core: the run stays in this process
