"""Stage 2 (weight balancing / cRT) and post-hoc normalisation: algorithms.md §2.9."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ltlib.config import make_config
from ltlib.data.samplers import build_sampler
from ltlib.errors import ConfigError
from ltlib.experiment import load_data, run
from ltlib.losses import ClassBalancedBCE, effective_number_weights
from ltlib.optim import SGDStep, build_sgd
from ltlib.stage2 import (MaxNorm, Stage2Step, best_tau, make_stage2, tau_normalize, tau_normalized_weight,
                          tau_sweep)


def _weight(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(10, 8, generator=gen) * torch.linspace(0.5, 3.0, 10)[:, None]


def test_maxnorm_threshold_is_relative_to_the_starting_rows():
    w = _weight()
    norms = w.norm(dim=1)
    assert MaxNorm(w, 0.0).delta == pytest.approx(float(norms.min()))
    assert MaxNorm(w, 1.0).delta == pytest.approx(float(norms.max()))
    assert float(MaxNorm(w, 1.0).project(w.clone())) == 0.0          # nothing clipped at step 0
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="thresh"):
            MaxNorm(w, bad)


def test_maxnorm_projection_invariants():
    w0 = _weight()
    mn = MaxNorm(w0, 0.3)
    w = w0 * 1.7                                     # rows grew during training
    before = w.clone()
    fraction = float(mn.project(w))
    norms_before, norms_after = before.norm(dim=1), w.norm(dim=1)
    small = norms_before <= mn.delta
    assert (norms_after <= mn.delta + 1e-6).all()
    assert torch.equal(w[small], before[small])                       # untouched rows are bit-identical
    cos = F.cosine_similarity(w[~small], before[~small], dim=1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-6)        # directions are kept
    assert fraction == pytest.approx(float((~small).float().mean()))
    again = w.clone()
    mn.project(again)
    assert torch.allclose(again, w, atol=1e-6)                        # idempotent


class _HeadOnly(nn.Module):
    def __init__(self, head):
        super().__init__()
        self.classifier = head

    def forward(self, x):
        return self.classifier(x)


def test_stage2_step_projects_the_weight_never_the_bias():
    torch.manual_seed(0)
    head = nn.Linear(8, 10)
    with torch.no_grad():
        head.weight.mul_(5)
    model = _HeadOnly(head)
    bias = head.bias.detach().clone()
    step = Stage2Step(SGDStep(build_sgd(head, lr=0.0)), head.weight, MaxNorm(head.weight, 0.1), every=1,
                      freeze_bn=False)
    step(model, torch.randn(4, 8), torch.tensor([0, 1, 2, 3]), lambda z, y: F.cross_entropy(z, y, reduction="none"))
    assert torch.equal(head.bias, bias)                               # lr 0 and no projection of the bias
    assert (head.weight.norm(dim=1) <= step.maxnorm.delta + 1e-6).all()
    assert step.epoch_log()["clip_fractions"][0] > 0


def test_tau_normalisation():
    w = _weight()
    assert torch.allclose(tau_normalized_weight(w, 1.0).norm(dim=1), torch.ones(10))
    assert torch.equal(tau_normalized_weight(w, 0.0), w)
    model = nn.Module()
    model.classifier = nn.Linear(8, 10)
    out = tau_normalize(model, 1.9)
    assert torch.equal(out.classifier.bias, model.classifier.bias)
    for bad in (-0.5, float("nan"), "1"):
        with pytest.raises(ConfigError, match="tau must be"):
            tau_normalized_weight(w, bad)


def test_effective_number_weights():
    counts = [500, 100, 20, 5]
    w = effective_number_weights(counts, 0.9999)
    assert float(w.sum()) == pytest.approx(4.0)
    assert (w[1:] > w[:-1]).all()                                      # rarer classes weigh more
    assert torch.allclose(effective_number_weights(counts, 0.0), torch.ones(4))


def test_cb_loss_matches_the_formula_written_as_loops():
    torch.manual_seed(0)
    counts = [50, 20, 7, 3]
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 3, 1])
    loss = ClassBalancedBCE(counts, beta=0.9999)(logits, labels).mean()
    w = effective_number_weights(counts, 0.9999).double()
    p = logits.double().softmax(1)
    total = 0.0
    for i in range(6):
        for c in range(4):
            y = 1.0 if labels[i] == c else 0.0
            total += w[labels[i]] * -(y * torch.log(p[i, c]) + (1 - y) * torch.log(1 - p[i, c]))
    assert float(loss) == pytest.approx(float(total / (6 * 4)), abs=1e-6)


def test_class_balanced_and_sqrt_samplers():
    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    gen = torch.Generator().manual_seed(0)
    draws = {name: torch.cat([build_sampler(name, labels).epoch_indices(gen) for _ in range(20)])
             for name in ("class_balanced", "sqrt")}
    freq = {k: torch.bincount(labels[v], minlength=3).float() / len(v) for k, v in draws.items()}
    assert torch.allclose(freq["class_balanced"], torch.full((3,), 1 / 3), atol=0.02)
    expected = torch.tensor([900, 90, 10]).float().sqrt()
    assert torch.allclose(freq["sqrt"], expected / expected.sum(), atol=0.02)


@pytest.fixture()
def stage1(fake_fmnist, exp_dir):
    return make_config("smoke", "wb", test_per_class=None, weight_decay=5e-3)


@pytest.mark.parametrize("bn", ["train", "frozen"])
def test_stage2_changes_only_the_classifier(stage1, bn):
    first = run(stage1, progress=False)
    second = run(make_stage2(stage1, "wb", bn=bn), progress=False)
    a, b = first.model.state_dict(), second.model.state_dict()
    params = {n for n, _ in first.model.named_parameters()}
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed & params == {"classifier.weight", "classifier.bias"}
    buffers_changed = changed - params
    assert bool(buffers_changed) == (bn == "train")                   # the demo's BN drift, or none


def test_projection_schedule_is_logged(stage1):
    per_iter = run(make_stage2(stage1, "wb", maxnorm_every="iteration"), progress=False)
    per_epoch = run(make_stage2(stage1, "wb", maxnorm_every="epoch"), progress=False)
    steps_per_epoch = -(-per_iter.metrics["data"]["train_size"] // per_iter.config.batch_size)
    assert len(per_iter.metrics["clip_fractions"]) == per_iter.config.epochs * steps_per_epoch
    assert len(per_epoch.metrics["clip_fractions"]) == per_epoch.config.epochs
    assert "clip_fraction_mean" in per_iter.history


def test_crt_reinitialises_and_samples_by_class(stage1):
    cfg = make_stage2(stage1, "crt")
    assert cfg.reinit_classifier and cfg.sampler == "class_balanced" and cfg.maxnorm_thresh is None
    r = run(cfg, progress=False)
    assert r.path.parent.name == "fashion_mnist_lt" and r.config.stage1 == stage1


def test_stage2_hash_follows_stage1(stage1):
    a = make_stage2(stage1, "wb")
    assert a.hash() != make_stage2(stage1.replace(seed=1), "wb").hash()
    assert a.hash() != a.replace(maxnorm_every="epoch").hash()
    assert a.with_seed(1).stage1.seed == 1


def test_stage2_bad_input(stage1):
    with pytest.raises(ConfigError, match=r"maxnorm_thresh.*\[0, 1\]"):
        make_stage2(stage1, "wb", maxnorm_thresh=1.5)
    with pytest.raises(ConfigError, match="different|classes"):
        make_stage2(stage1, "wb", dataset="cifar100_lt")
    with pytest.raises(ConfigError, match="crt"):
        make_stage2(stage1, "cRT-typo")
    with pytest.raises(ConfigError, match="Valid fields"):
        make_stage2(stage1, "wb", maxnorm=0.1)


def test_tau_sweep_and_choice_on_validation(stage1):
    first = run(stage1, progress=False)
    sweep = tau_sweep(first, load_data(stage1), taus=[0.0, 1.0])
    assert set(sweep["split"]) == {"val", "test"} and len(sweep) == 4
    zero = sweep[(sweep.tau == 0.0) & (sweep.split == "test")].iloc[0]
    assert zero["overall"] == pytest.approx(first.result()["overall"])   # tau 0 is the trained model
    assert best_tau(sweep) in (0.0, 1.0)
