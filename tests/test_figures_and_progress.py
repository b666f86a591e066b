"""Figures that show something (labels that do not overlap) and progress that leaves a summary, not a flood."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from ltlib.core import progress
from ltlib.report.plots import place_labels, plot_few_vs_many


def _boxes(fig):
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.axes[0].texts if t.get_text()]
    return texts, [t.get_window_extent(renderer) for t in texts]


def test_few_vs_many_labels_do_not_overlap_even_when_points_crowd():
    """Sixteen models with several near-identical points (the layout that overlapped before): no two label boxes
    intersect, and every label stays inside the axes. Annotating every point at the same offset fails this."""
    rng = np.random.default_rng(0)
    many = np.r_[81.6, 83.0, 82.9, 83.3, 79.5, 75.8, 80.9, 84.0, 81.6, 57.2, 87.8, 85.7, 88.4, 88.4, 89.3, 81.3]
    few = np.r_[28.1, 23.1, 54.4, 28.2, 21.8, 5.0, 63.6, 18.0, 3.0, 74.6, 57.6, 75.5, 83.0, 78.2, 65.3, 93.5]
    labels = [f"0{i % 5 + 1} model number {i}" for i in range(len(many))]
    table = pd.DataFrame({"many_mean": many, "few_mean": few, "many_std": rng.random(16), "few_std": rng.random(16)},
                         index=labels)
    fig = plot_few_vs_many(table, "a title")
    texts, boxes = _boxes(fig)
    assert sorted(t.get_text() for t in texts) == sorted(labels)
    overlaps = [(texts[i].get_text(), texts[j].get_text()) for i in range(len(boxes)) for j in range(i)
                if boxes[i].overlaps(boxes[j])]
    assert not overlaps
    frame = fig.axes[0].get_window_extent(fig.canvas.get_renderer())
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)


def test_place_labels_falls_back_to_a_plain_offset_when_nothing_fits():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.5, 1.5))
    xs, ys = np.zeros(6), np.zeros(6)
    ax.scatter(xs, ys)
    placed = place_labels(ax, xs, ys, [f"a rather long label {i}" for i in range(6)], ["k"] * 6)
    assert len(placed) == 6                                      # crowded, but every point keeps its label


def test_progress_outside_a_kernel_ends_with_its_summary(capsys):
    assert not progress.in_kernel()
    with progress.Progress(3, "training", "runs") as bar:
        for _ in range(3):
            bar.update(1, "run a")
        bar.close("trained 3 runs:\n  a: 1 s")
    err = capsys.readouterr().err
    assert err.strip().endswith("trained 3 runs:\n  a: 1 s")
    assert list(progress.track([1, 2], "items", enabled=False)) == [1, 2]
    assert capsys.readouterr().err == ""                         # disabled: nothing at all
    with pytest.raises(RuntimeError):
        with progress.Progress(2, "work") as bar:
            raise RuntimeError("boom")
    assert "stopped: RuntimeError" in capsys.readouterr().err
    assert progress.duration(42) == "42 s" and progress.duration(150) == "2.5 min"
    assert progress.duration(3900) == "1 h 05 min"


def test_progress_into_a_log_writes_only_its_summary(capsys, monkeypatch):
    """stderr sent to a file (capsys's is not a terminal): no redraws, one summary; in a terminal, tqdm's bar."""
    with progress.Progress(50, "training", "runs", min_interval=0) as bar:
        for _ in range(50):
            bar.update(1, "run a")
    err = capsys.readouterr().err
    assert err == "training: 50 runs in 0 s\n"
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True)
    with progress.Progress(2, "training", "runs") as bar:
        assert bar._tqdm is not None
