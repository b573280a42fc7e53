"""The shared figure helpers: the path check, the atomic save and the one-line message without matplotlib."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest

from normstats.errors import NormstatsError
from normstats.output.figures import backend as plotting


def test_a_plot_path_must_be_a_png_in_an_existing_folder(tmp_path: Path) -> None:
    assert plotting.check_png_path(str(tmp_path / "a.png")) == str(tmp_path / "a.png")
    with pytest.raises(NormstatsError, match=r"--plot must name a \.png file; got 'a\.jpg'"):
        plotting.check_png_path("a.jpg")
    with pytest.raises(NormstatsError, match="existing directory"):
        plotting.check_png_path(str(tmp_path / "missing" / "a.png"))


def test_save_writes_a_png_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    plt = plotting.pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    target = tmp_path / "f.png"
    plotting.save(fig, str(target))
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_a_failed_save_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f.png"
    target.write_bytes(b"old")
    plt = plotting.pyplot()
    fig = plt.figure()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    fig.savefig = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        plotting.save(fig, str(target))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_without_matplotlib_the_message_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtins.__import__

    def no_matplotlib(name: str, *args: object, **kwargs: object) -> object:
        if name.split(".")[0] == "matplotlib":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(NormstatsError) as info:
        plotting.pyplot()
    assert str(info.value) == plotting.INSTALL_HINT
    assert "\n" not in str(info.value)
