"""The shared figure helpers: the path check, the atomic save and the one-line message without matplotlib; and
the signal-propagation figure read back from its PNG, a panel per pass (:func:`panel_colours` is shared with
tests/test_network_stats.py, which reads back the maps' three panels)."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
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


def panel_colours(path: Path, panels: int, colours: tuple[str, ...]) -> list[dict[str, int]]:
    """Read a PNG of ``panels`` equal panels side by side and count, in each panel's strip of the width, the
    pixels of each colour (within 30 of its RGB in sum of absolute differences); also checks the image is a real
    picture (at least 300 px high, 450 px per panel wide, not one colour)."""
    from matplotlib import image

    img = image.imread(str(path))
    assert img.shape[0] > 300 and img.shape[1] > 450 * panels, img.shape
    assert img[..., :3].std() > 0.05
    rgb_img = (img[..., :3] * 255).round()
    width = img.shape[1]
    counts = []
    for p in range(panels):
        strip = rgb_img[:, p * width // panels:(p + 1) * width // panels].reshape(-1, 3)
        found = {}
        for colour in colours:
            rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
            found[colour] = int((np.abs(strip - rgb).sum(axis=1) < 30).sum())
        counts.append(found)
    return counts


def test_the_signal_plot_gives_each_pass_its_own_panel(tmp_path: Path) -> None:
    """A dense network: two panels, fp's colour in the left one only and bp's in the right one only."""
    from normstats.output.figures.signal import BP_COLOUR, FP_COLOUR
    from tests.test_cli import run

    path = tmp_path / "dense.png"
    run("network", "4*(linear relu)", "--input", "16", "--normprop", "fp", "-n", "200", "--plot", str(path), "-q")
    left, right = panel_colours(path, 2, (FP_COLOUR, BP_COLOUR))
    assert left[FP_COLOUR] > 50 and right[BP_COLOUR] > 50, (left, right)
    assert left[BP_COLOUR] == 0 and right[FP_COLOUR] == 0, (left, right)
