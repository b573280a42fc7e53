"""Where blocks run: in this process, in worker threads (the default), in worker processes, or on a Dask
distributed cluster.

Every executor offers ``submit(fn, *args) -> future`` (``concurrent.futures`` style) and ``depth``, the number
of blocks the engine keeps in flight. Results never depend on the executor (see :mod:`normstats.engine.blocks`).

Worker threads are the default: numpy's generators and ufuncs release the GIL while they work on arrays, so
threads run the hot loop in parallel (the pattern numpy documents under "Multithreaded Generation"), start at
no cost and share one copy of numpy in memory. The engine limits BLAS pools to one thread for the run. A
sampler that holds the GIL (much Python per draw) would not scale on threads; ``processes`` is the choice
there, and on machines with many cores.

Worker processes start through ``forkserver`` (``spawn`` where there is none), ignore SIGINT (the parent alone
handles Ctrl-C and cancels what is queued) and limit BLAS and OpenMP pools to one thread each, so ``N``
workers use ``N`` cores. The pool starts on the first block submitted, so short runs never pay for it.
"""

from __future__ import annotations

import os
import re
import signal
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from normstats.engine.allocator import keep_freed_memory
from normstats.errors import NormstatsError

MAX_WORKERS = 1024
#: Blocks in flight per worker: enough to keep every worker busy while the parent merges.
DEPTH_PER_WORKER = 2


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_workers(value: Any, option: str = "--workers") -> int:
    try:
        workers = int(value) if not isinstance(value, bool) and float(value) == int(value) else None
    except (TypeError, ValueError, OverflowError):
        workers = None
    if workers is None or not 1 <= workers <= MAX_WORKERS:
        raise NormstatsError(f"{option} must be an integer in [1, {MAX_WORKERS}]; got {value!r}")
    return workers


_LIMITS: Any = None


def _limit_threads() -> None:
    global _LIMITS
    from threadpoolctl import threadpool_limits

    _LIMITS = threadpool_limits(limits=1)


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit_threads()
    keep_freed_memory()  # the worker exists to run normstats' blocks (see normstats.engine.allocator)


def _context() -> Any:
    """The start method of worker processes (``multiprocessing`` loads only for them: 12 ms of every start)."""
    import multiprocessing

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


class _LocalPool:
    """A ``concurrent.futures`` pool of this machine, started on the first block submitted (so short runs
    never pay for it) and shut down cancelling what is still queued. A subclass makes the pool."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: Executor | None = None

    def _start(self) -> Executor:
        raise NotImplementedError

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        if self._pool is None:
            self._pool = self._start()
        return self._pool.submit(fn, *args)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class ProcessExecutor(_LocalPool):
    """``workers`` processes at work: this one (``shares_work``: the engine runs queued blocks here while it
    waits) and a pool of ``workers - 1``. Blocks queued beyond what the pool has taken can be taken back, so
    the depth leaves some for this process."""

    shares_work = True

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.depth = DEPTH_PER_WORKER * workers + 2

    def _start(self) -> Executor:
        from concurrent.futures import ProcessPoolExecutor

        context = _context()
        if context.get_start_method() == "forkserver":
            context.set_forkserver_preload(["normstats.engine.blocks"])  # import numpy and scipy once
        return ProcessPoolExecutor(self.workers - 1, mp_context=context, initializer=_init_worker)


class ThreadExecutor(_LocalPool):
    """``workers`` threads of this process."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.depth = DEPTH_PER_WORKER * workers

    def _start(self) -> Executor:
        return ThreadPoolExecutor(self.workers, thread_name_prefix="normstats-worker")


#: A scheduler address: ``[tcp|tls|ws|wss://]host:port`` (Dask's default protocol is tcp); ``inproc://...``
#: is a scheduler in this process (a ``LocalCluster(processes=False)``).
_DASK_ADDRESS = re.compile(r"^(?:(?P<scheme>tcp|tls|ws|wss)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")
#: Seconds to wait for the scheduler's port to accept a connection, before Dask's own (longer) handshake.
DASK_CONNECT_TIMEOUT = 3.0


def check_dask_address(address: Any) -> str:
    """``address`` if it has the form of a scheduler address, else :class:`NormstatsError`: Dask itself waits
    20 s on a malformed one before it fails."""
    if isinstance(address, str) and address.strip().startswith("inproc://"):
        return address.strip()
    match = _DASK_ADDRESS.match(address.strip()) if isinstance(address, str) else None
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise NormstatsError(
            "--dask must be a scheduler address [tcp|tls|ws|wss://]HOST:PORT with PORT in [1, 65535], "
            f"e.g. tcp://127.0.0.1:8786; got {address!r}"
        )
    return address.strip()


def _probe(address: str) -> None:
    """Fail fast, in one line, when no Dask scheduler listens at ``address`` (an unknown host, a refused or
    silent port, another service), rather than after Dask's 20 s timeout and a traceback."""
    import socket

    match = _DASK_ADDRESS.match(check_dask_address(address))
    if match is None:  # inproc: in this process
        return
    host = match["host"].strip("[]")
    try:
        socket.create_connection((host, int(match["port"])), timeout=DASK_CONNECT_TIMEOUT).close()
    except socket.gaierror:
        raise NormstatsError(f"--dask: unknown host {host!r}; got --dask {address}") from None
    except TimeoutError:
        raise NormstatsError(
            f"--dask: no answer from {address!r} within {DASK_CONNECT_TIMEOUT:g} s; is the scheduler running?"
        ) from None
    except OSError as exc:
        raise NormstatsError(
            f"--dask: cannot reach a Dask scheduler at {address!r} ({exc.strerror or exc})"
        ) from None
    import asyncio

    from distributed.core import rpc

    async def identify() -> Any:
        remote = rpc(address, timeout=DASK_CONNECT_TIMEOUT)
        try:
            return await asyncio.wait_for(remote.identity(), DASK_CONNECT_TIMEOUT)
        finally:
            await remote.close_rpc()

    try:
        identity = asyncio.run(identify())
    except Exception as exc:  # whatever answers there does not speak Dask's protocol
        raise NormstatsError(
            f"--dask: {address!r} answers, but not as a Dask scheduler ({type(exc).__name__})"
        ) from None
    if not isinstance(identity, dict) or identity.get("type") != "Scheduler":
        raise NormstatsError(f"--dask: {address!r} is not a Dask scheduler (it is a {identity.get('type', '?')})")


class DaskExecutor:
    """Blocks sent to the Dask distributed scheduler at ``address`` (``pip install normstats[dask]``)."""

    def __init__(self, address: str) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise NormstatsError(
                f"--dask needs the 'distributed' package (pip install 'normstats[dask]'); got --dask {address}"
            ) from None
        _probe(address)
        try:
            self._client = Client(address, set_as_default=False, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise NormstatsError(f"--dask: cannot reach a Dask scheduler at {address!r} ({exc})") from None
        self._client.run(_limit_threads)
        self._executor = self._client.get_executor(pure=False)
        threads = sum(self._client.nthreads().values()) or 1
        self.depth = DEPTH_PER_WORKER * threads

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (for a caller that needs more than ``submit``: a queue, an event)."""
        return self._client

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._executor.submit(fn, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False)
        self._client.close()


@contextmanager
def open_executor(workers: int | None = None, dask: str | None = None, processes: bool = False) -> Iterator[Any]:
    """The executor for ``workers`` threads (default: one per core), or processes, or a Dask scheduler; None
    means in-process. Shut down on exit, cancelling whatever is still queued."""
    if dask is not None:
        executor: Any = DaskExecutor(dask)
    else:
        workers = default_workers() if workers is None else check_workers(workers)
        pool = ProcessExecutor if processes else ThreadExecutor
        executor = pool(workers) if workers > 1 else None
    try:
        yield executor
    finally:
        if executor is not None:
            executor.shutdown()
