"""How the suite itself runs (``tests/conftest.py``): the default number of pytest-xdist workers, and no worker
ever starting workers of its own (that would fork without end)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests import conftest


def _config(numprocesses: object, dist: str = "no", xdist: bool = True, **extra: object) -> SimpleNamespace:
    return SimpleNamespace(option=SimpleNamespace(numprocesses=numprocesses, dist=dist),
                           pluginmanager=SimpleNamespace(hasplugin=lambda name: xdist and name == "xdist"), **extra)


@pytest.fixture
def controller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)


@pytest.mark.usefixtures("controller")
def test_no_n_means_every_core_and_n_0_or_no_xdist_means_one_process() -> None:
    config = _config(None)
    conftest.pytest_cmdline_main(config)
    assert (config.option.numprocesses, config.option.dist) == ("auto", "no")  # xdist then makes it "load"
    config = _config(0)
    conftest.pytest_cmdline_main(config)
    assert (config.option.numprocesses, config.option.dist) == (0, "no")
    config = _config(3, dist="load")
    conftest.pytest_cmdline_main(config)
    assert (config.option.numprocesses, config.option.dist) == (3, "load")
    config = _config(None, xdist=False)
    conftest.pytest_cmdline_main(config)
    assert (config.option.numprocesses, config.option.dist) == (None, "no")


def test_a_worker_starts_no_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    config = _config(None)
    conftest.pytest_cmdline_main(config)
    assert (config.option.numprocesses, config.option.dist) == (None, "no")
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    config = _config(None, workerinput={"workerid": "gw0"})
    conftest.pytest_cmdline_main(config)
    assert (config.option.numprocesses, config.option.dist) == (None, "no")


@pytest.mark.usefixtures("controller")
def test_auto_is_the_usable_cores_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    for cores, workers in ((1, 0), (2, 2), (3, 3), (64, conftest.MAX_WORKERS)):
        monkeypatch.setattr(conftest, "_cores", lambda cores=cores: cores)
        assert conftest.pytest_xdist_auto_num_workers(_config("auto")) == workers
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "3")
    assert conftest.pytest_xdist_auto_num_workers(_config("auto")) is None  # xdist's own hook reads it
