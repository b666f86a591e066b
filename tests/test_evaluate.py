import numpy as np
import torch
import torch.nn as nn

from ltlib.data.longtail import class_groups
from ltlib.data.sources import ImageSet
from ltlib.runs.evaluate import accuracy_from_logits, evaluate, predict_logits


def test_per_class_accuracy_and_groups():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 0, 0, 1, 1, 0, 2, 2])
    res = accuracy_from_logits(nn.functional.one_hot(preds, 3).float(), labels, 3)
    assert np.allclose(res.per_class, [75.0, 50.0, 100.0])
    assert res.overall == 75.0 and res.top1 == 75.0
    groups = class_groups([200, 50, 5], "strict")
    assert res.group_accuracy(groups) == {"many": 75.0, "medium": 50.0, "few": 100.0}


def test_empty_group_is_nan():
    res = accuracy_from_logits(torch.eye(2), torch.tensor([0, 1]), 2)
    assert np.isnan(res.group_accuracy(class_groups([500, 200], "strict"))["few"])


class _LeftRight(nn.Module):
    """Predicts class 0 when the left half is brighter: flipping the image flips its decision."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        diff = x[..., :2].mean((1, 2, 3)) - x[..., 2:].mean((1, 2, 3))
        return torch.stack([diff, -diff], 1) + self.dummy


def _left_bright(n):
    img = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    img[..., :2] = 200
    return img


def test_flip_tta_averages_the_mirror():
    model, images = _LeftRight(), _left_bright(3)
    plain = predict_logits(model, images, mean=(0.0,), std=(1.0,), precision="fp32", channels_last=False)
    tta = predict_logits(model, images, mean=(0.0,), std=(1.0,), precision="fp32", channels_last=False, tta=True)
    assert (plain[:, 0] > 0).all()
    assert torch.allclose(tta, torch.zeros_like(tta), atol=1e-6)  # mirror-image logits cancel


def test_evaluate_restores_training_mode_and_batches():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2), nn.BatchNorm1d(2))
    model.train()
    data = ImageSet(_left_bright(7), torch.zeros(7, dtype=torch.long), ("a", "b"))
    full = evaluate(model, data, mean=(0.0,), std=(1.0,), batch_size=100, precision="fp32")
    small = evaluate(model, data, mean=(0.0,), std=(1.0,), batch_size=3, precision="fp32")
    assert model.training and np.array_equal(full.per_class, small.per_class, equal_nan=True)
