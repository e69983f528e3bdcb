"""Training plots stay drawable whatever the label count (plots.py)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

pytest.importorskip("matplotlib")


def _png_size(path) -> tuple[int, int]:
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_confusion_plot_of_hundreds_of_words_keeps_a_bounded_size(tmp_path):
    from speechlstm.plots import plot_confusion

    n = 500  # an encoder's vocabulary: once a 27,000-pixel square and 24 GB
    rng = np.random.default_rng(0)
    cm = np.diag(rng.integers(1, 20, n)) + rng.integers(0, 2, (n, n))
    plot_confusion(cm, [f"w{i}" for i in range(n)], tmp_path / "c.png", title="t")
    width, height = _png_size(tmp_path / "c.png")
    assert 500 <= width <= 2200 and 500 <= height <= 2200


def test_confusion_plot_of_a_few_words_grows_with_them(tmp_path):
    from speechlstm.plots import plot_confusion

    small, large = tmp_path / "s.png", tmp_path / "l.png"
    plot_confusion(np.eye(3, dtype=int) * 5, ["yes", "no", "up"], small)
    plot_confusion(np.eye(30, dtype=int) * 5, [f"w{i}" for i in range(30)], large)
    assert _png_size(small)[0] < _png_size(large)[0]
