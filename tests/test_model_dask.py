"""``normstats model SOURCE --dask ADDRESS``: each init one task on a Dask cluster, the worker building its own
model, with the numbers of a local run for the seed; and every way it can go wrong, in one line.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from typing import Any, Iterator

import pytest

torch = pytest.importorskip("torch")  # the test extra installs it; see pyproject.toml
distributed = pytest.importorskip("distributed")

import normstats  # noqa: E402
from normstats.errors import NormstatsError  # noqa: E402
from tests.torch_threads import one_thread  # noqa: F401 (autouse: one torch thread in every test here)
from tests.test_cli import run, run_bad  # noqa: E402

RUN = dict(input="8", batch=4, samples=12, inits=4, seed=5)
#: Test clusters serve their HTTP endpoints on a free port (Dask's default, 8787, warns when another cluster on
#: this machine has it, and a warning fails a test).
HTTP = ":0"



@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two workers in this process (the CLI, run in this process too, reaches them at an inproc:// address)."""
    with distributed.LocalCluster(processes=False, n_workers=2, threads_per_worker=1,
                                  dashboard_address=HTTP) as local:
        yield local


def _numbers(result: Any) -> dict[str, Any]:
    """A result's JSON document without its metadata (which says where it ran and on how many threads)."""
    out = result.to_dict() if not isinstance(result, dict) else dict(result)
    out.pop("metadata")
    return out


def test_a_tcp_worker_gives_the_numbers_of_a_local_run() -> None:
    """A worker with two threads behind TCP: the SOURCE string, the spec and the results are pickled both ways, two
    inits wait on each other for the process's global generator (dropout draws from it), and the numbers are
    those of the local run, exactly. (A spawned worker process gives them too, but its torch import alone takes
    5-15 s on a shared machine: too slow for the suite.)"""
    source = "tests.model_factories:dropout_mlp"
    local = normstats.model(source, params=True, **RUN)
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=2, protocol="tcp://",
                                  dashboard_address=HTTP) as spawned:
        remote = normstats.model(source, dask=spawned.scheduler_address, params=True, **RUN)
    assert _numbers(remote) == _numbers(local)  # the init audit of init 0 (params) included
    assert remote.params is not None and len(remote.params) == 4
    assert remote.metadata["dask"] == spawned.scheduler_address
    assert remote.metadata["threads"] == 2  # the worker's threads, not this process's
    stds = [m.stats["fp_std"] for m in remote.modules]
    assert all(s.se > 0 for s in stds)  # the inits differ: dropout and weights are drawn per init
    assert torch.get_num_threads() == 1  # the worker set torch's threads to its own two for each init, then back


def test_inits_come_back_in_init_order_with_progress_and_threads_restored(cluster: Any) -> None:
    seen: list[int] = []

    class Record:
        def start(self, label: str, samples: int, target_se: float | None) -> None:
            seen.append(-samples)

        def update(self, draws: int, worst_se: float) -> None:
            seen.append(draws)

        def stop(self) -> None:
            pass

    local = normstats.model("tests.model_factories:tiny_mlp", **RUN)
    remote = normstats.model("tests.model_factories:tiny_mlp", dask=cluster.scheduler_address, progress=Record(),
                             **RUN)
    assert _numbers(remote) == _numbers(local)
    assert seen[0] == -12 and seen[1:] == sorted(seen[1:]) and seen[-1] == 12  # draws done, never backwards
    assert all(0 <= s <= 12 for s in seen[1:])
    assert torch.get_num_threads() == 1  # the in-process workers put torch's threads back


def test_one_init_is_one_task(cluster: Any) -> None:
    one = dict(RUN, inits=1)
    remote = normstats.model("tests.model_factories:tiny_mlp", dask=cluster.scheduler_address, **one)
    assert _numbers(remote) == _numbers(normstats.model("tests.model_factories:tiny_mlp", **one))
    assert remote.inits == 1


def test_a_picklable_factory_is_shipped_and_a_module_object_is_refused(cluster: Any) -> None:
    from tests.model_factories import tiny_mlp

    shipped = normstats.model(lambda: tiny_mlp(), dask=cluster.scheduler_address, **RUN)
    assert _numbers(shipped) == _numbers(normstats.model(lambda: tiny_mlp(), **RUN))
    with pytest.raises(NormstatsError, match=r"^dask: a model object \(Sequential\) cannot be spread"):
        normstats.model(tiny_mlp(), dask=cluster.scheduler_address, **RUN)
    lock = threading.Lock()
    with pytest.raises(NormstatsError, match="cannot be pickled for the workers"):
        normstats.model(lambda: lock and tiny_mlp(), dask=cluster.scheduler_address, **RUN)


def test_the_cli_gives_the_local_json_and_a_workers_error_in_one_line(cluster: Any) -> None:
    args = ["model", "tests.model_factories:tiny_mlp", "--input", "8", "-b", "4", "-n", "12", "--inits", "4",
            "--seed", "5", "--threads", "1", "-q", "--format", "json"]
    local = json.loads(run(*args).stdout)
    remote = json.loads(run(*args, "--dask", cluster.scheduler_address).stdout)
    assert remote["metadata"]["dask"] == cluster.scheduler_address
    assert _numbers(remote) == _numbers(local)
    # the factory raises on the worker: its message comes back as a local run gives it
    line = run_bad("model", "tests.model_factories:raises", "--input", "8", "-q", "--dask", cluster.scheduler_address)
    assert "the factory" in line and "depth 3 is not supported" in line


def test_an_unreachable_or_malformed_address_is_one_line_at_once() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    started = time.monotonic()
    line = run_bad("model", "tests.model_factories:tiny_mlp", "--input", "8", "-q", "--dask", f"tcp://127.0.0.1:{port}")
    assert "cannot reach a Dask scheduler" in line and "Connection refused" in line
    assert time.monotonic() - started < 10
    assert "must be a scheduler address" in run_bad("model", "tests.model_factories:tiny_mlp", "--dask", "nowhere")


def test_without_distributed_the_command_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    line = run_bad("model", "tests.model_factories:tiny_mlp", "--input", "8", "-q", "--dask", "tcp://127.0.0.1:8786")
    assert line == "normstats: error: --dask needs the 'distributed' package (pip install 'normstats[dask]')"


def test_a_source_that_resolves_here_but_not_on_a_worker_says_where(cluster: Any, monkeypatch: pytest.MonkeyPatch
                                                                    ) -> None:
    from normstats.models import sources

    real = sources.make_factory

    def here_only(source: str, args: Any = None) -> Any:
        try:
            distributed.get_worker()
        except ValueError:  # not on a worker: the caller's environment
            return real(source, args)
        raise NormstatsError("SOURCE 'tests.model_factories:tiny_mlp' needs the package 'tests', which cannot be "
                             "imported")

    monkeypatch.setattr(sources, "make_factory", here_only)
    with pytest.raises(NormstatsError, match=r"^--dask: on the worker inproc://.*: SOURCE .* cannot be imported$"):
        normstats.model("tests.model_factories:tiny_mlp", dask=cluster.scheduler_address, **RUN)


def test_ctrl_c_stops_the_inits_at_work_on_the_workers(cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (here: a KeyboardInterrupt from the progress bar once draws come in) sets the run's stop event: the
    init at work (400,000 draws: many minutes) ends at its next draw, the queued one is cancelled or ends as it
    starts, and the workers, which run one init at a time, take a new run at once instead of after the orphans."""
    from normstats.models import spread

    stopped: list[int] = []

    class Counted(spread.RunStopped):
        def __init__(self, message: str) -> None:
            stopped.append(1)
            super().__init__(message)

    class CtrlC:
        def start(self, label: str, samples: int, target_se: float | None) -> None:
            pass

        def update(self, draws: int, worst_se: float) -> None:
            if draws > 0:
                raise KeyboardInterrupt

        def stop(self) -> None:
            pass

    monkeypatch.setattr(spread, "RunStopped", Counted)
    with pytest.raises(KeyboardInterrupt):
        normstats.model("tests.model_factories:tiny_mlp", dask=cluster.scheduler_address, progress=CtrlC(),
                        **dict(RUN, samples=800_000, inits=2))
    started = time.monotonic()
    one = dict(RUN, inits=1)
    assert normstats.model("tests.model_factories:tiny_mlp", dask=cluster.scheduler_address, **one).draws == 12
    assert time.monotonic() - started < 60  # an orphan init would hold its worker for many minutes
    assert stopped
