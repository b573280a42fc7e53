

def test_the_plot_has_a_token_geometry_panel(tmp_path: Path) -> None:
    from matplotlib import image

    from normstats.output.figures.signal import BP_COLOUR, COSINE_COLOUR, FP_COLOUR

    path = tmp_path / "tokens.png"
    done = subprocess.run([sys.executable, "-m", "normstats.cli", "network",
                           "2*(res(layernorm attention(heads=2)) res(layernorm linear gelu linear))", "--input", "6x8",
                           "--input-correlation", "0.2", "-n", "200", "-q", "--plot", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    img = image.imread(str(path))
    assert img.shape[1] > 800  # two panels side by side
    pixels = (img[..., :3].reshape(-1, 3) * 255).round()
    for colour in (FP_COLOUR, BP_COLOUR, COSINE_COLOUR):
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).sum(axis=1) < 30).sum() > 50, colour
