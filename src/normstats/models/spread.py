"""The inits of ``normstats model SOURCE`` spread over a Dask cluster (``--dask ADDRESS``): each init one task.

A task gets the SOURCE string and its ``--arg``s, not a model: the worker resolves the source and builds its own
model (:func:`normstats.models.sources.make_factory`), then runs the init exactly as a local run does
(:func:`normstats.models.run.run_init`, passed in by reference so that this module never imports the run: the
worker imports it by name). An init draws its weights and its inputs from seeds of its own and leaves nothing
behind, so the results, taken back in init order, are those of a local run for the same seed (on the same thread
count: torch's reductions are summed in an order that depends on it).

On a worker, an init holds a lock of its process for its whole run: the factory's init and dropout draw from
torch's global generator, one per process, so two inits in the threads of one worker would mix their draws.
For that run, torch's threads and the BLAS and OpenMP pools (``threadpoolctl``) are set to the worker's thread
count (``nthreads``: its share of the machine's cores, so that workers do not fight over cores), or to
``--threads`` where given, then put back. The worker's C allocator keeps freed blocks, as the command line's
process does (:func:`normstats.engine.allocator.keep_freed_memory`): without it every activation of every draw
comes in fresh pages, and a resnet18 init at 3x64x64 took twice as long (1.6 s instead of 0.8 s).

Each init reports its draws every :data:`REPORT_INTERVAL` seconds into a Dask ``Queue`` of the run, so the
progress bar moves as on a local run, and looks at the run's stop ``Event`` as it does: Ctrl-C sets it, so the
inits at work end at their next draw (a running Dask task cannot be cancelled from outside) and the queued ones
are cancelled; the run then ends as a local one does. An unreachable address, a missing ``distributed`` and a
scheduler that is not one fail in one line before any work (:class:`normstats.engine.executors.DaskExecutor`);
an error inside an init (a factory that raises, an input the model rejects) comes back as the worker raised it,
for the first init, in init order, known to have failed.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable

from normstats.engine.progress import Progress
from normstats.errors import NormstatsError

#: One init at a time in a worker process (torch's global generator is per process).
_ONE_INIT = threading.Lock()


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError, AttributeError):  # not on a Dask worker
        return "?"


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):  # not on a Dask worker
        return 1


#: Seconds between a worker's reports of an init's draws (each also checks whether the run was stopped).
REPORT_INTERVAL = 0.5


class RunStopped(Exception):
    """Raised in an init on a worker when its run was stopped (Ctrl-C): the init ends at its next draw."""


class _Channel:
    """An init's line back to the caller, as a :class:`~normstats.engine.progress.Progress`: at most every
    :data:`REPORT_INTERVAL` seconds, ``[k, draws done]`` into the run's Dask ``Queue``, after a look at the run's
    stop ``Event``."""

    def __init__(self, names: tuple[str, str], k: int, first: int) -> None:
        from distributed import Event, Queue

        self.queue, self.halt = Queue(names[0]), Event(names[1])
        self.k, self.first, self.due = k, first, 0.0

    def check(self) -> None:
        if self.halt.is_set():
            raise RunStopped(f"init {self.k}: the run was stopped")

    def start(self, label: str, samples: int, target_se: float | None) -> None:
        pass

    def update(self, draws: int, worst_se: float) -> None:
        now = time.monotonic()
        if now >= self.due:
            self.due = now + REPORT_INTERVAL
            self.check()
            self.queue.put([self.k, draws - self.first])

    def stop(self) -> None:
        pass


def init_task(run_init: Callable[..., Any], build: Any, k: int, spec: Any, threads: int | None,
              names: tuple[str, str] | None = None) -> Any:
    """Init ``k`` on a worker, on ``threads`` threads (default: the worker's); its model built from ``build``: a
    ``(SOURCE, args)`` pair, resolved here, or a factory ``make(k)`` shipped as it is. ``names``: the run's
    progress queue and stop event (:class:`_Channel`)."""
    import torch
    from threadpoolctl import threadpool_limits

    from normstats.engine.allocator import keep_freed_memory
    from normstats.engine.progress import NULL_PROGRESS
    from normstats.models.sources import make_factory

    keep_freed_memory()  # as the command line does: half the time of a resnet18 init (normstats.engine.allocator)
    with _ONE_INIT:
        channel = _Channel(names, k, k * spec.per_init) if names is not None else None
        if channel is not None:
            channel.check()  # stopped while this init waited its turn
        count = threads or _worker_threads()
        before = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            with threadpool_limits(limits=count):
                make = build
                if isinstance(build, tuple):
                    try:
                        factory = make_factory(*build)
                    except NormstatsError as exc:  # it resolved in the caller's environment, not in this one
                        raise NormstatsError(f"--dask: on the worker {_worker_address()}: {exc}") from None
                    make = lambda _: factory()  # noqa: E731
                return run_init(make, k, spec, channel or NULL_PROGRESS)
        finally:
            torch.set_num_threads(before)


def dask_spreader(address: str, build: Any, inits: int, threads: int | None
                  ) -> Callable[[Callable[..., Any], Any, Progress], list[Any]]:
    """``spread(run_init, spec, progress)`` for :func:`normstats.models.run.run_model`: the ``inits`` inits as
    tasks on the Dask scheduler at ``address``, each building its model from ``build`` (:func:`init_task`), their
    results in init order. Progress counts the draws the workers report; on Ctrl-C (or an init's error) the run's
    stop event ends the inits at work at their next draw and the queued ones are cancelled."""

    def spread(run_init: Callable[..., Any], spec: Any, progress: Progress) -> list[Any]:
        from concurrent.futures import FIRST_COMPLETED, wait

        from distributed import Event, Queue

        from normstats.engine.executors import open_executor

        with open_executor(dask=address) as executor:
            token = uuid.uuid4().hex
            names = (f"normstats-model-progress-{token}", f"normstats-model-stop-{token}")
            queue, halt = Queue(names[0], client=executor.client), Event(names[1], client=executor.client)
            futures = [executor.submit(init_task, run_init, build, k, spec, threads, names) for k in range(inits)]
            done = [0] * inits
            try:
                pending = set(futures)
                while pending:
                    _, pending = wait(pending, timeout=REPORT_INTERVAL, return_when=FIRST_COMPLETED)
                    failed = next((f for f in futures if f.done() and not f.cancelled() and f.exception() is not None),
                                  None)
                    if failed is not None:
                        raise failed.exception()  # type: ignore[misc]
                    for k, draws in queue.get(batch=True):
                        done[k] = max(done[k], draws)
                    for k, future in enumerate(futures):
                        if future.done():
                            done[k] = spec.per_init
                    progress.update(sum(done), float("nan"))
                return [future.result() for future in futures]
            finally:
                if not all(future.done() for future in futures):
                    halt.set()
                for future in futures:
                    future.cancel()
                queue.close()

    return spread


def shipped_model(target: Any, args: dict[str, Any] | None, make: Callable[[int], Any]) -> Any:
    """What a task gets to build its model from: ``(SOURCE, args)`` for a SOURCE string; for a zero-argument
    factory, the maker itself, where it can be pickled (Dask pickles functions by value with cloudpickle). A
    module object is refused: a worker would get the caller's weights, not an init of its own."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise NormstatsError("--dask needs the 'distributed' package (pip install 'normstats[dask]')") from None
    if isinstance(target, str):
        return target, args
    import torch

    if isinstance(target, torch.nn.Module):
        raise NormstatsError(f"dask: a model object ({type(target).__name__}) cannot be spread over a cluster, "
                             "each worker builds its own model; pass a SOURCE string ('timm:resnet18', "
                             "'package.module:callable') or a zero-argument factory")
    import cloudpickle

    try:
        cloudpickle.dumps(make)
    except Exception as exc:
        raise NormstatsError(f"dask: the factory {getattr(target, '__qualname__', type(target).__name__)} cannot "
                             f"be pickled for the workers ({type(exc).__name__}: {exc}); pass a SOURCE string "
                             "('package.module:callable')") from None
    return make
