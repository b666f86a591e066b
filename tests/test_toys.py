"""The toy pictures show what their notebooks say they show (ltlib.report.toys)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from ltlib.data.datasets import load_longtail
from ltlib.methods import tail_classes_from_counts
from ltlib.report import toys


def test_sam_toy_the_worst_case_loss_moves_the_minimum_to_the_flat_basin():
    """The plain surface's minimum is the sharp basin; the loss SAM minimises (the worst within rho) has its
    minimum in the flat one. A radius far below the sharp basin's width leaves it where it was."""
    fig, info = toys.plot_sam_toy(rho=0.4, grid=61)
    assert list(info["minima"].values()) == ["sharp", "flat"]
    fig, small = toys.plot_sam_toy(rho=0.02, grid=61)
    assert list(small["minima"].values()) == ["sharp", "sharp"]
    plt.close("all")


def test_sam_toy_step_evaluates_at_w_and_w_plus_rho_g_over_norm_and_steps_with_the_gradient_there():
    start, lr, rho = (-0.62, 0.28), 0.02, 0.4
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    g, = torch.autograd.grad(toys.two_basins(w), w)
    eps = rho * g / g.norm()
    w_eps = (w.detach() + eps).requires_grad_(True)
    g_eps, = torch.autograd.grad(toys.two_basins(w_eps), w_eps)
    sam = toys.toy_step("sam", start, lr, rho)
    np.testing.assert_allclose(sam["evaluated"][1], (w.detach() + eps).numpy(), rtol=1e-10)
    np.testing.assert_allclose(sam["new"], (w.detach() - lr * g_eps).numpy(), rtol=1e-10)
    sgd = toys.toy_step("sgd", start, lr, rho)
    assert len(sgd["evaluated"]) == 1
    np.testing.assert_allclose(sgd["new"], (w.detach() - lr * g).numpy(), rtol=1e-10)
    # from this start SGD heads into the sharp basin and SAM away from it
    sharp = np.array(toys.SHARP.center)
    assert np.linalg.norm(sgd["new"] - sharp) < np.linalg.norm(np.array(start) - sharp)
    assert np.linalg.norm(sam["new"] - sharp) > np.linalg.norm(np.array(start) - sharp)


def test_maxnorm_picture_clips_only_rows_above_delta_and_keeps_the_rest():
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 5, generator=gen) * torch.arange(1, 7, dtype=torch.float32)[:, None]
    fig, info = toys.plot_maxnorm_rows(weight, 0.3, [f"c{i}" for i in range(6)])
    before, after, delta = info["before"], info["after"], info["delta"]
    assert np.all(after <= delta * (1 + 1e-6))
    keep = before <= delta
    np.testing.assert_array_equal(after[keep], before[keep])
    np.testing.assert_allclose(after[~keep], delta, rtol=1e-6)
    assert (~keep).any() and keep.any()
    plt.close(fig)


def test_ldam_margins_follow_the_quarter_power_law():
    counts = [500, 200, 80, 30, 5]
    fig, info = toys.plot_ldam_margins(counts, [f"c{i}" for i in range(5)], max_m=0.5)
    assert info["slope"] == pytest.approx(-0.25, abs=1e-6)
    assert info["margins"][np.argmin(counts)] == pytest.approx(0.5)
    plt.close(fig)


def test_cmo_pictures_label_weight_is_one_minus_the_pasted_share(fake_fmnist):
    data = load_longtail("fashion_mnist_lt", 10, n_max=20)
    fig, rows = toys.plot_cmo_lambdas(data, lams=(0.2, 0.5, 0.9))
    height, width = data.train.images.shape[-2:]
    for row in rows:
        r0, r1, c0, c1 = row["box"]
        assert row["lam_prime"] == pytest.approx(1 - (r1 - r0) * (c1 - c0) / (height * width))
    assert [r["lam_prime"] for r in rows] == sorted(r["lam_prime"] for r in rows)   # a larger lam pastes less
    tail = tail_classes_from_counts(data.class_counts.tolist(), 5)
    toys.plot_tail_split(data, tail, 5)
    plt.close("all")
