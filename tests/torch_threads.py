"""One torch thread for the tests of the PyTorch front end: on a shared machine torch's thread pool makes small
operations up to 100x slower, and the local runs that the Dask tests compare with must use the workers' count.
Import ``one_thread`` into a test module to apply it to every test there (it is autouse)."""

from __future__ import annotations

from typing import Iterator

import pytest

torch = pytest.importorskip("torch")  # the test extra installs it; see pyproject.toml


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
