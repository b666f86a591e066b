"""The diagnostics notebooks 01, 04 and 07 show: confusion matrices, training curves, per-class bars, feature views."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from ltlib.analysis.features import class_separation, feature_view, pca_view
from ltlib.report import plots as lp
from ltlib.report.results import confusion_matrix
from ltlib.runs.config import make_config
from ltlib.runs.experiment import load_data, run


def test_class_separation_tells_apart_clouds_from_overlap():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(200)
    centres = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    apart = centres[labels] + torch.randn(600, 3, generator=gen)
    assert (class_separation(apart, labels, 3) < 0.5).all()
    overlap = centres[labels] * 0.05 + torch.randn(600, 3, generator=gen)
    assert (class_separation(overlap, labels, 3) > 1).all()


def test_pca_view_puts_the_widest_direction_first():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 4, generator=gen) * torch.tensor([10.0, 3.0, 0.1, 0.1])
    view = pca_view(x, torch.zeros(500, dtype=torch.long), 1)
    assert view.points.shape == (500, 2)
    assert view.explained[0] > view.explained[1] > 0 and sum(view.explained) <= 1
    assert view.explained[0] == pytest.approx(100 / (100 + 9 + 0.02), abs=0.03)


def test_confusion_matrix_rows_give_the_runs_own_per_class_accuracy_and_the_figures_draw(fake_fmnist, exp_dir):
    config = make_config("smoke", test_per_class=None)
    r = run(config, progress=False)
    data = load_data(config)
    m = confusion_matrix(r, data)
    assert m.shape == (10, 10) and m.sum() == len(data.test)
    np.testing.assert_allclose(100 * np.diag(m) / m.sum(1), r.result()["per_class"], atol=1e-6)
    view = feature_view(r, data)
    assert view.points.shape == (len(data.test), 2) and view.separation.shape == (10,)
    for fig in (lp.plot_confusions({"a": m, "b": m}, data.classes), lp.plot_training_curves({"a": [r]}),
                lp.plot_per_class_bars({"a": [r], "b": [r]}, data.classes, data.class_counts),
                lp.plot_feature_views({"a": view}, data.classes, few=[8, 9])):
        assert fig.axes
    assert [ax.get_title() for ax in lp.plot_training_curves({"a": [r]}).axes][:2] == ["training loss",
                                                                                       "training accuracy (%)"]
    plt.close("all")
