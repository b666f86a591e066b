"""Stage 2 (weight balancing / cRT) and post-hoc normalisation: algorithms.md §2.9."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ltlib.runs.config import make_config
from ltlib.data.samplers import build_sampler
from ltlib.core.errors import ConfigError
from ltlib.runs.evaluate import predict_features
from ltlib.runs.experiment import eval_options, load_data, run
from ltlib.methods.losses import ClassBalancedBCE, effective_number_weights
from ltlib.methods import SGDStep, build_sgd
from ltlib.analysis.posthoc import best_tau, tau_normalize, tau_normalized_weight, tau_sweep
from ltlib.runs.stage2 import MaxNorm, Stage2Step, build_stage2, make_stage2

from hand_oracles import effective_number_weights_by_hand


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


def test_tau_normalisation_divides_each_row_by_its_norm_to_the_power_tau():
    """At tau = 0.5 and 1.9 each row is w_c / ||w_c||^tau, on rows whose norms (5, 2, 3, 10) are known.

    Planted slips this catches (each shown failing): the norm raised to tau ** 2 (MaxNorm's tau quirk in the
    reference code, algorithms.md §2.5), which agrees with tau at 0 and 1 and so passes test_tau_normalisation;
    and the norm raised to 2 tau (the squared norm) at these tau.
    """
    rows = [[3.0, 4.0, 0.0], [0.0, 0.0, 2.0], [1.0, 2.0, 2.0], [6.0, 0.0, 8.0]]
    norms = [5.0, 2.0, 3.0, 10.0]
    for tau in (0.5, 1.9):
        got = tau_normalized_weight(torch.tensor(rows), tau)
        expected = torch.tensor([[v / n ** tau for v in row] for row, n in zip(rows, norms)])
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
        # so each row's norm becomes ||w_c||^(1 - tau)
        torch.testing.assert_close(got.norm(dim=1), torch.tensor([n ** (1 - tau) for n in norms]), rtol=1e-6, atol=0)


def test_effective_number_weights():
    counts = [500, 100, 20, 5]
    w = effective_number_weights(counts, 0.9999)
    assert float(w.sum()) == pytest.approx(4.0)
    assert (w[1:] > w[:-1]).all()                                      # rarer classes weigh more
    assert torch.allclose(effective_number_weights(counts, 0.0), torch.ones(4))


@pytest.mark.parametrize("beta", [0.999, 0.9999])
def test_effective_number_weights_match_the_formula_by_hand(beta):
    """(1 - beta) / (1 - beta^n_c), normalised to sum to C, recomputed here with plain floats.

    Planted slip this catches (shown failing; it passes the sum / monotonicity checks above): inverse-frequency
    weights 1 / n_c normalised to sum to C.
    """
    counts = [500, 100, 20, 5]
    raw = [(1 - beta) / (1 - beta ** n) for n in counts]
    expected = torch.tensor([r * 4 / sum(raw) for r in raw])
    torch.testing.assert_close(effective_number_weights(counts, beta), expected, rtol=1e-6, atol=0)


def test_effective_number_weights_at_cifar100_if100_are_the_specs_numbers():
    """algorithms.md §1.6: at CIFAR-100-LT IF=100 (n_i = int(500 * 0.01^(i/99))) and beta = 0.9999 the head class
    weighs about 0.0449 and the tail class about 4.378. Planted slip caught: inverse-frequency weights."""
    counts = [int(500 * 0.01 ** (i / 99)) for i in range(100)]
    assert (sum(counts), counts[0], counts[-1]) == (10847, 500, 5)
    w = effective_number_weights(counts, 0.9999)
    assert float(w[0]) == pytest.approx(0.0449, abs=5e-5) and float(w[-1]) == pytest.approx(4.378, abs=5e-4)


def test_cb_loss_matches_the_formula_written_as_loops():
    """The CB loss of §2.4 as a double loop, with the class weights by hand at a beta other than the default
    (0.99, so a loss that ignores its beta fails too). Planted slip caught (shown failing; the earlier version,
    which took its weights from effective_number_weights, passed on it): inverse-frequency weights."""
    torch.manual_seed(0)
    counts = [50, 20, 7, 3]
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 3, 1])
    loss = ClassBalancedBCE(counts, beta=0.99)(logits, labels).mean()
    w = effective_number_weights_by_hand(counts, 0.99)
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
    """cRT's stage 2 starts from a freshly drawn head and trains on class-balanced batches.

    The head it starts from is not the stage-1 head and is exactly what the re-initialisation draws from the
    run's seed, written out here in plain torch: nn.Linear's reset (weight and bias uniform within 1/sqrt(d)),
    then Kaiming-normal rows (std sqrt(2/d)). An epoch's worth of labels from its loader has near-uniform class
    frequencies, where an instance sampler gives the long tail (200 of 492 images in class 0).

    Planted slips this catches (each shown failing; the earlier version checked only the config flags): the
    re-initialisation skipped (the stage-1 head copied), and the loader built with the instance sampler
    whatever the config says.
    """
    cfg = make_stage2(stage1, "crt")
    assert cfg.reinit_classifier and cfg.sampler == "class_balanced" and cfg.maxnorm_thresh is None
    first = run(stage1, progress=False)
    data = load_data(cfg.data_config)
    setup = build_stage2(cfg, data, torch.device("cpu"), first.model)     # before any stage-2 step

    head, old = setup.model.classifier, first.model.classifier
    classes, d = head.weight.shape
    assert not torch.equal(head.weight, old.weight) and not torch.equal(head.bias, old.bias)
    torch.manual_seed(cfg.seed)
    bound = 1 / math.sqrt(d)
    weight = torch.empty(classes, d).uniform_(-bound, bound)      # nn.Linear.reset_parameters: weight, then bias
    bias = torch.empty(classes).uniform_(-bound, bound)
    weight.normal_(0.0, math.sqrt(2 / d))                         # then Kaiming-normal rows
    torch.testing.assert_close(head.weight.detach(), weight, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(head.bias.detach(), bias, rtol=1e-5, atol=1e-7)
    assert float(head.weight.detach().std()) == pytest.approx(math.sqrt(2 / d), rel=0.25)   # the statistics it implies
    assert float(head.bias.detach().abs().max()) <= bound

    counts = torch.as_tensor(data.class_counts, dtype=torch.float64)
    drawn = torch.cat([labels for epoch in range(4) for _, labels in setup.loader.epoch(epoch)])
    assert len(drawn) == 4 * int(counts.sum())
    freq = torch.bincount(drawn, minlength=classes).double() / len(drawn)
    instance = counts / counts.sum()                              # what an instance sampler draws
    assert float((freq - 1 / classes).abs().max()) < 0.03         # about 4 standard errors at 1,968 draws
    assert float((instance - 1 / classes).abs().max()) > 0.25     # (the tail this sampler removes)

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
    """A sweep over five tau: tau 0 is the trained model, the tau = 1.9 test row is recounted by hand from the
    features and the rescaled rows, and best_tau is the validation argmax read off the table here (smallest tau
    on ties). The earlier version swept only {0, 1} and checked best_tau in (0, 1), which could not fail.

    Planted slips this catches (each shown failing; the earlier version passed on both): the sweep ignoring
    tau (every row the trained model's), and best_tau taking the worst row instead of the best. (Here the
    validation and test argmaxes coincide, so choosing on the test split is left to the next test.)
    """
    first = run(stage1, progress=False)
    data = load_data(stage1)
    taus = [0.0, 0.5, 1.0, 1.5, 1.9]
    sweep = tau_sweep(first, data, taus=taus)
    assert set(sweep["split"]) == {"val", "test"} and len(sweep) == 2 * len(taus)
    zero = sweep[(sweep.tau == 0.0) & (sweep.split == "test")].iloc[0]
    assert zero["overall"] == pytest.approx(first.result()["overall"])   # tau 0 is the trained model

    features = predict_features(first.model, data.test.images, **eval_options(stage1, data))
    weight, bias = first.model.classifier.weight.detach(), first.model.classifier.bias.detach()
    predicted = F.linear(features, weight / weight.norm(dim=1, keepdim=True) ** 1.9, bias).argmax(1)
    labels = data.test.labels
    per_class = [100.0 * float((predicted[labels == c] == c).double().mean()) for c in range(data.num_classes)]
    row = sweep[(sweep.tau == 1.9) & (sweep.split == "test")].iloc[0]
    assert row["per_class"] == pytest.approx(per_class) and row["overall"] == pytest.approx(np.mean(per_class))

    val = sweep[sweep.split == "val"]
    top = val["overall"].max()
    assert best_tau(sweep) == min(t for t, o in zip(val["tau"], val["overall"]) if o == top)


def test_best_tau_is_the_validation_argmax_with_the_smallest_tau_on_ties():
    """On a hand-made table: validation peaks at tau 0.5 and 1.5 (a tie), the test split at 1.9.

    Planted slips this catches (each shown failing): choosing on the test split, the largest tau on a tie.
    """
    val = {0.0: 50.0, 0.5: 61.0, 1.0: 55.0, 1.5: 61.0, 1.9: 40.0}
    test = {0.0: 52.0, 0.5: 50.0, 1.0: 58.0, 1.5: 54.0, 1.9: 70.0}
    rows = [{"tau": t, "split": "test", "overall": o} for t, o in test.items()]
    rows += [{"tau": t, "split": "val", "overall": o} for t, o in reversed(val.items())]
    sweep = pd.DataFrame(rows)
    assert best_tau(sweep) == 0.5
    assert best_tau(sweep, split="test") == 1.9
