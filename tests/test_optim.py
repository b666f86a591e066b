import math

import pytest
import torch
import torch.nn as nn

from ltlib.core.errors import ConfigError
from ltlib.methods.losses import CrossEntropy, build_loss
from ltlib.methods import Cosine, CosineEpochStart, SGDStep, WarmupMultiStep, autocast_for, build_schedule, build_sgd


def test_warmup_multistep_reproduces_ldam_table():
    # algorithms.md §5.3: t = epoch + 1; lr 0.1 t/5 for t <= 5; x0.01 for 160 < t <= 180; x1e-4 after
    s = WarmupMultiStep(lr=0.1, epochs=200, warmup_epochs=5)
    expected = {0: 0.02, 3: 0.08, 4: 0.1, 5: 0.1, 159: 0.1, 160: 1e-3, 179: 1e-3, 180: 1e-5, 199: 1e-5}
    for epoch, lr in expected.items():
        assert math.isclose(s(epoch, 0, 10), lr, rel_tol=1e-12), epoch


def test_warmup_multistep_scales_with_epochs():
    s = WarmupMultiStep(lr=1.0, epochs=30, warmup_epochs=1)
    assert [s(e, 0, 1) for e in (0, 23, 24, 26, 27)] == [1.0, 1.0, 0.01, 0.01, 0.0001]


def test_cosine_epoch_start_quirk():
    # weight balancing steps CosineAnnealingLR before each epoch: epoch 0 is already below lr, the last is 0
    s = CosineEpochStart(lr=0.01, epochs=10)
    assert math.isclose(s(0, 5, 20), 0.01 * (1 + math.cos(math.pi / 10)) / 2)
    assert s(9, 0, 20) == pytest.approx(0.0, abs=1e-15)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.01), 10)
    for epoch in range(10):
        ref.optimizer.step()
        ref.step()  # stepped at the start of the epoch, as in WB's train loop
        assert math.isclose(s(epoch, 0, 20), ref.get_last_lr()[0], rel_tol=1e-9, abs_tol=1e-15)


def test_cosine_warmup_then_decay():
    s = Cosine(lr=0.1, epochs=10, warmup_epochs=2)
    steps = [s(e, i, 5) for e in range(10) for i in range(5)]
    assert steps[0] == pytest.approx(0.01) and steps[9] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(steps[10:], steps[11:]))
    assert steps[-1] < 1e-3


def test_build_schedule_checks_warmup():
    with pytest.raises(ConfigError, match="warmup_epochs"):
        build_schedule("cosine", 0.1, 5, warmup_epochs=5)
    with pytest.raises(ConfigError, match="cosine_epoch_start"):
        build_schedule("linear", 0.1, 5)


@pytest.mark.parametrize("impl", ["loop", "foreach", "fused"])
def test_sgd_step_equals_a_hand_written_update(impl):
    """Oracle: the step strategy takes exactly torch.optim.SGD's step on the mean CE loss, whichever
    kernel implements it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    twin = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    twin.load_state_dict(model.state_dict())
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    step = SGDStep(build_sgd(model, lr=0.1, momentum=0.9, weight_decay=1e-2, impl=impl))
    ref_opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2, foreach=False)
    for _ in range(3):
        out = step(model, x, y, CrossEntropy())
        ref_opt.zero_grad()
        loss = nn.functional.cross_entropy(twin(x), y)
        loss.backward()
        ref_opt.step()
        assert torch.allclose(out.loss, loss.detach())
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(p, q, atol=1e-7)


def test_weight_decay_reaches_bn_and_bias():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    opt = build_sgd(model, lr=0.1, weight_decay=1e-3)
    assert len(opt.param_groups) == 1 and len(opt.param_groups[0]["params"]) == 4


def test_bf16_autocast_and_fp32_loss():
    model = nn.Linear(4, 3)
    step = SGDStep(build_sgd(model, lr=0.1), autocast_for("bf16", torch.device("cpu")))
    out = step(model, torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]), CrossEntropy())
    assert out.loss.dtype == torch.float32 and out.logits.dtype == torch.bfloat16


def test_cross_entropy_is_per_sample():
    logits, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    per_sample = build_loss("ce", [10, 5, 1])(logits, y)
    assert per_sample.shape == (5,)
    assert torch.allclose(per_sample.mean(), nn.functional.cross_entropy(logits, y))
