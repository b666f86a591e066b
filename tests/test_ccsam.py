"""CC-SAM, both stages, and the mixup / class-aware pieces it needs: the invariants of algorithms.md §3.8."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from ltlib.runs.config import make_config
from ltlib.data.loader import DeviceLoader
from ltlib.data.mixing import Mixup, build_mixing
from ltlib.core.targets import MixedTargets, mixed_losses, primary_labels
from ltlib.data.samplers import ClassAwareSampler, build_sampler
from ltlib.data.sources import ImageSet
from ltlib.core.errors import ConfigError
from ltlib.runs.experiment import run
from ltlib.methods import CCSAMFeatureStep, CCSAMOptions, CCSAMStep, build_step
from ltlib.methods.ccsam import (ccsam_radius, class_weights, count_guard, feature_perturbation, features_and_logits,
                               progressive_alpha)
from ltlib.methods.schedules import build_schedule
from ltlib.runs.stage2 import Stage2Config, make_stage2

C, D = 5, 6
COUNTS = (100, 40, 12, 5, 2)


class TinyNet(nn.Module):
    """features (no BatchNorm, so two forwards agree exactly) + a linear classifier."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Linear(8, D)
        self.classifier = nn.Linear(D, C)

    def features(self, x):
        return torch.tanh(self.body(x))

    def forward(self, x):
        return self.classifier(self.features(x))


def ce(logits, labels):
    return F.cross_entropy(logits.float(), labels, reduction="none")


def _batch(seed=0, n=24):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=gen), torch.randint(0, C, (n,), generator=gen)


def _step(model, lr=0.0, **opts):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    return build_step("ccsam", opt, model=model, options=CCSAMOptions(class_counts=COUNTS, **opts))


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _reference(model, x, targets, radius, f):
    """CC-SAM stage 1 as the released code runs it: a Python loop over classes, explicit per-tensor
    epsilon_c, the perturbed loss by functional_call at theta + epsilon_c. Returns loss and per-class eps."""
    head = model.classifier
    feats = model.features(x)
    logits = head(feats)
    clean = mixed_losses(ce, logits, targets)
    labels = primary_labels(targets)
    params = dict(head.named_parameters())
    theta = torch.sqrt(sum(p.detach().pow(2).sum() for p in params.values())) + 1e-12
    count = sum(p.numel() for p in params.values())
    flat_sum, eps = 0.0, {}
    for c in labels.unique().tolist():
        idx = labels == c
        g = torch.autograd.grad(clean[idx].mean(), list(params.values()), retain_graph=True)
        e = {}
        for (name, p), gt in zip(params.items(), g):
            gn = gt.norm()
            rho = radius * torch.sqrt(theta / gn) * count ** 0.25 / (math.sqrt(2) * max(COUNTS[c] - 1, 1) ** 0.25)
            e[name] = (rho * gt / gn).detach()
        eps[c] = e
        perturbed = {n: p + e[n] for n, p in params.items()}
        flat_sum = flat_sum + ce(functional_call(head, perturbed, (feats[idx],)), labels[idx]).sum()
    return (1 - f) * clean.mean() + f * flat_sum / len(labels), eps, feats.detach()


# --------------------------------------------------------------------------- stage 1

def test_zero_radius_gives_the_clean_plus_unperturbed_ce_loss_and_f0_the_plain_step():
    x, y = _batch()
    model = TinyNet()
    out = _step(model, radius=0.0, flat_ratio=0.4)(model, x, y, ce)
    with torch.no_grad():
        plain = ce(model(x), y).mean()
    assert torch.allclose(out.loss, plain, rtol=1e-6)          # (1-f) CE + f CE at theta = CE without mixup
    mix = MixedTargets(y, y.roll(1), torch.tensor(0.3))
    out = _step(model, radius=0.0, flat_ratio=0.4)(model, x, mix, ce)
    with torch.no_grad():
        logits = model(x)
        expected = 0.6 * mixed_losses(ce, logits, mix).mean() + 0.4 * ce(logits, y).mean()
    assert torch.allclose(out.loss, expected, rtol=1e-6)
    # f = 0: exactly plain (mixup) CE, with the gradient of a plain backward
    model, ref = TinyNet(), TinyNet()
    out = _step(model, radius=0.5, flat_ratio=0.0)(model, x, mix, ce)
    mixed_losses(ce, ref(x), mix).mean().backward()
    assert torch.allclose(out.loss, mixed_losses(ce, ref(x), mix).mean().detach())
    for n, g in _grads(model).items():
        assert torch.allclose(g, dict(ref.named_parameters())[n].grad, atol=1e-7), n


@pytest.mark.parametrize("mixed", [False, True])
def test_gradient_equals_functional_call_reference_at_theta_plus_eps(mixed):
    x, y = _batch(1)
    targets = MixedTargets(y, y.flip(0), torch.tensor(0.7)) if mixed else y
    model, ref = TinyNet(), TinyNet()
    out = _step(model, radius=0.3, flat_ratio=0.5)(model, x, targets, ce)
    loss, _, _ = _reference(ref, x, targets, 0.3, 0.5)
    loss.backward()
    assert torch.allclose(out.loss, loss.detach(), rtol=1e-5)
    for n, g in _grads(model).items():       # backbone and classifier
        assert torch.allclose(g, dict(ref.named_parameters())[n].grad, rtol=1e-4, atol=1e-6), n


def test_logit_shift_is_the_explicit_per_class_epsilon_along_g_c_with_the_formula_norm():
    x, y = _batch(2)
    model = TinyNet()
    step = _step(model, radius=0.2)
    _, eps, feats = _reference(model, x, y, 0.2, 0.3)
    logits = model.classifier(model.features(x))
    grads, = torch.autograd.grad(ce(logits, y).sum(), logits)
    shift = step.logit_shift(feats, grads, y)
    W, b = model.classifier.weight.detach(), model.classifier.bias.detach()
    theta = torch.sqrt(W.pow(2).sum() + b.pow(2).sum())
    P = W.numel() + b.numel()
    for c, e in eps.items():
        idx = y == c
        explicit = feats[idx] @ e["weight"].t() + e["bias"]
        assert torch.allclose(shift[idx], explicit, rtol=1e-5, atol=1e-7)
        # ||eps_c^t|| = r (P ||theta||^2 / (4 (n_c - 1) ||g_c^t||^2))^(1/4), eps_c^t parallel to g_c^t
        g = torch.autograd.grad(ce(model(x[idx]), y[idx]).mean(), [model.classifier.weight, model.classifier.bias])
        for name, gt in zip(("weight", "bias"), g):
            want = 0.2 * (P * theta ** 2 / (4 * max(COUNTS[c] - 1, 1) * gt.norm() ** 2)) ** 0.25
            assert float(e[name].norm()) == pytest.approx(float(want), rel=1e-5)
            assert float(F.cosine_similarity(e[name].flatten(), gt.flatten(), dim=0)) == pytest.approx(1.0, abs=1e-6)
    # the Gram-matrix norms agree with the explicit per-class gradients
    norm_w, norm_b, _, _, _ = step.class_gradient_norms(grads, feats, y)
    c = int(y[0])
    g = torch.autograd.grad(ce(model(x[y == c]), y[y == c]).mean(), [model.classifier.weight, model.classifier.bias])
    assert float(norm_w[0]) == pytest.approx(float(g[0].norm()), rel=1e-5)
    assert float(norm_b[0]) == pytest.approx(float(g[1].norm()), rel=1e-5)


def test_radius_decreases_in_n_c_and_n_c_of_one_is_guarded():
    theta, g = torch.tensor(3.0), torch.tensor(0.5)
    radii = [float(ccsam_radius(0.1, 330, theta, g, count_guard([n])[0])) for n in (2, 5, 20, 100, 1000)]
    assert all(a > b for a, b in zip(radii, radii[1:]))
    assert float(count_guard([1])[0]) == 1.0            # (n_c - 1) floored at 1: no division by zero
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = CCSAMStep(opt, model=model, options=CCSAMOptions(class_counts=(1, 1, 1, 1, 1), radius=0.5))
    x, y = _batch(3)
    assert torch.isfinite(step(model, x, y, ce).loss)


def test_the_classifier_is_left_as_it_was_and_tail_classes_get_larger_radii():
    x, y = _batch(4, n=64)
    model = TinyNet()
    before = [p.detach().clone() for p in model.classifier.parameters()]
    step = _step(model, radius=0.1)
    step(model, x, y, ce)                           # lr 0: any change would come from the perturbation
    assert all(torch.equal(a, b) for a, b in zip(before, model.classifier.parameters()))
    ratio = np.array(step.epoch_log()["eps_ratio"])
    assert np.all(np.isfinite(ratio)) and ratio[-1] > ratio[0]       # rarest class, largest radius
    assert np.isnan(step.epoch_log()["eps_ratio"]).all()             # reset after each epoch


def test_ablation_variants_keep_their_radius():
    x, y = _batch(5)
    model = TinyNet()
    logits = model(x)
    grads, = torch.autograd.grad(ce(logits, y).sum(), logits)
    feats = model.features(x).detach()
    const = _step(model, radius=0.05, magnitude="constant")
    const.logit_shift(feats, grads, y)
    theta = float(const.theta_norm())
    assert np.nanmax(const.epoch_log()["eps_ratio"]) == pytest.approx(0.05 * math.sqrt(2) / theta, rel=1e-5)
    rand, formula = _step(model, radius=0.05, direction="random"), _step(model, radius=0.05)
    rand.logit_shift(feats, grads, y)
    formula.logit_shift(feats, grads, y)
    assert np.allclose(rand.epoch_log()["eps_ratio"], formula.epoch_log()["eps_ratio"], equal_nan=True)


def test_bad_options_give_clear_errors():
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="flat_ratio"):
            CCSAMOptions(class_counts=COUNTS, flat_ratio=bad)
        with pytest.raises(ConfigError, match="ccsam_flat_ratio"):
            make_config("smoke", "ccsam", ccsam_flat_ratio=bad)
    with pytest.raises(ConfigError, match="radius"):
        CCSAMOptions(class_counts=COUNTS, radius=-1.0)
    with pytest.raises(ConfigError, match="linear"):
        make_config("smoke", "ccsam", classifier="normed")
    with pytest.raises(ConfigError, match="direction"):
        make_config("smoke", "ccsam", ccsam_direction="sideways")
    with pytest.raises(ConfigError, match="model"):
        build_step("ccsam", torch.optim.SGD(TinyNet().parameters(), lr=0.1))


def test_fields_added_later_leave_earlier_runs_hashes_alone():
    assert make_config("quick", "wb").hash() == "ab63e83b35"            # notebook 01's cached runs
    assert make_config("quick", "imbsam", step="sgd").hash() == "ac26f483ff"
    base = make_config("smoke", "ccsam")
    assert base.replace(ccsam_radius=0.5).hash() != base.hash()
    assert base.replace(step="sgd", ccsam_radius=0.5).hash() == base.replace(step="sgd").hash()
    assert base.replace(mixing="none", mixup_alpha=0.2).hash() == base.replace(mixing="none").hash()


def test_ccsam_schedule_matches_the_released_warmup_and_10x_drops():
    s = build_schedule("ccsam_multistep", 0.1, 200, 5)
    got = [s(e, 0, 1) / 0.1 for e in (0, 1, 2, 3, 4, 158, 159, 178, 179, 199)]
    assert np.allclose(got, [0.4667, 0.6, 0.7333, 0.8667, 1, 1, 0.1, 0.1, 0.01, 0.01], atol=1e-4)
    assert build_schedule("constant", 0.01, 30)(29, 3, 10) == 0.01


# --------------------------------------------------------------------------- mixup

def test_mixup_mixes_images_and_targets_with_one_lambda_per_batch():
    x = torch.randn(16, 1, 4, 4)
    y = torch.arange(16) % 4
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    lam = np.random.default_rng(0).beta(1.0, 1.0)
    mixed, t = Mixup(1.0)(x, y, rng, gen)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[perm], atol=1e-6)
    assert torch.equal(t.labels, y) and torch.equal(t.other, y[perm]) and float(t.weight) == pytest.approx(lam)
    logits = torch.randn(16, 4)
    assert torch.allclose(mixed_losses(ce, logits, t), lam * ce(logits, y) + (1 - lam) * ce(logits, y[perm]))
    with pytest.raises(ConfigError, match="alpha"):
        build_mixing("mixup", alpha=0.0)
    with pytest.raises(ConfigError, match="mixing"):
        make_config("smoke", "ce", mixing="cutmix_typo")


def test_loader_mixing_is_reproducible_and_none_leaves_batches_alone():
    data = ImageSet(torch.randint(0, 255, (40, 1, 8, 8), dtype=torch.uint8), torch.arange(40) % 4, ("a", "b", "c", "d"))
    kw = dict(batch_size=16, mean=(0.5,), std=(0.25,), padding=1, flip=True, seed=3)
    plain = [(a.clone(), b.clone()) for a, b in DeviceLoader(data, **kw).epoch(2)]
    none = list(DeviceLoader(data, mix=build_mixing("none"), **kw).epoch(2))
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(plain, none))
    first = list(DeviceLoader(data, mix=Mixup(1.0), **kw).epoch(2))
    again = list(DeviceLoader(data, mix=Mixup(1.0), **kw).epoch(2))
    for (a, t), (b, u) in zip(first, again):
        assert torch.equal(a, b) and torch.equal(t.other, u.other) and torch.equal(t.weight, u.weight)
    assert not torch.equal(first[0][0], plain[0][0])


# --------------------------------------------------------------------------- stage 2

def test_alpha_schedule_starts_at_one_over_e_is_monotone_and_capped():
    alphas = [progressive_alpha(e, 30, 0.3) for e in range(30)]
    assert alphas[0] == pytest.approx(1 / 30) and max(alphas) == pytest.approx(0.3)
    assert all(a <= b for a, b in zip(alphas, alphas[1:]))
    assert alphas[8] == pytest.approx(0.3) and alphas[7] == pytest.approx(8 / 30)
    assert [progressive_alpha(e, 4, 1.0) for e in range(4)] == [0.25, 0.5, 0.75, 1.0]
    for bad in (0.0, -0.2, 1.2):
        with pytest.raises(ConfigError, match="up_limit"):
            progressive_alpha(0, 30, bad)


def test_class_weights_are_positive_and_larger_for_rarer_classes():
    w = class_weights(COUNTS, div=2.0)
    assert float(w[0]) == pytest.approx(math.log(1.01) / 2)
    assert (w > 0).all() and all(a < b for a, b in zip(w.tolist(), w.tolist()[1:]))


def test_feature_perturbation_has_norm_lambda_w_c_per_class_block_and_zero_rows_elsewhere():
    model = TinyNet()
    x, y = _batch(6)
    feats = model.features(x).detach().requires_grad_(True)
    losses = ce(model.classifier(feats), y)
    weights = class_weights(COUNTS)
    for c in y.unique().tolist():
        g, = torch.autograd.grad(losses[y == c].mean(), feats, retain_graph=True)
        assert torch.all(g[y != c] == 0)                         # G_c lives on class-c rows only
        delta = feature_perturbation(g, y, weights, scale=0.7)
        assert float(delta[y == c].norm()) == pytest.approx(0.7 * float(weights[c]), rel=1e-5)
        assert torch.all(delta[y != c] == 0)


def test_feature_step_trains_only_the_classifier_and_matches_the_formula():
    model = TinyNet()
    for p in model.body.parameters():
        p.requires_grad_(False)
    body = [p.clone() for p in model.body.parameters()]
    opt = torch.optim.SGD(model.classifier.parameters(), lr=0.0)
    step = CCSAMFeatureStep(opt, model, COUNTS, epochs=4, scale=1.0, div=2.0, up_limit=1.0)
    step.start_epoch(1)
    x, y = _batch(7)
    out = step(model, x, y, ce)
    # reference: per class, delta_c from the class-mean feature gradient, as train_sample() does
    weights = class_weights(COUNTS)
    feats = model.features(x).detach().requires_grad_(True)
    losses = ce(model.classifier(feats), y)
    adv = torch.zeros(len(y))
    for c in y.unique().tolist():
        g, = torch.autograd.grad(losses[y == c].mean(), feats, retain_graph=True)
        delta = weights[c] * g / g.norm()
        adv[y == c] = weights[c] * ce(model.classifier(feats.detach() + delta), y)[y == c]
    assert torch.allclose(out.loss, 0.5 * adv.mean() + 0.5 * losses.mean(), rtol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(body, model.body.parameters()))


def test_class_aware_sampler_visits_each_class_k_times_and_cycles_within_a_class():
    labels = torch.tensor([0] * 9 + [1] * 4 + [2] * 2 + [3] * 1)
    sampler = ClassAwareSampler(labels)
    k = 7
    idx = sampler.draw(4 * k, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[idx], minlength=4).tolist() == [k] * 4
    for c, n in ((0, 9), (1, 4), (2, 2)):
        seq = idx[labels[idx] == c].tolist()
        for start in range(0, len(seq) - n + 1, n):                # each full round: every index once
            assert sorted(seq[start:start + n]) == torch.nonzero(labels == c).flatten().tolist()
        assert len(set(seq[:n])) == min(n, len(seq))
    assert len(build_sampler("class_aware", labels).epoch_indices(torch.Generator().manual_seed(1))) == 16


def test_stage2_config_checks_up_limit_and_hashes_new_fields_only_when_used():
    s1 = make_config("smoke", "ccsam")
    with pytest.raises(ConfigError, match="up_limit"):
        make_stage2(s1, "ccsam", up_limit=1.5)
    with pytest.raises(ConfigError, match="step"):
        make_stage2(s1, "ccsam", step="imbsam")
    crt = make_stage2(make_config("quick", "wb"), "crt")
    assert crt.hash() == crt.replace(up_limit=0.5).hash()
    ours = make_stage2(s1, "ccsam")
    assert ours.hash() != ours.replace(up_limit=0.5).hash()
    assert isinstance(Stage2Config.from_dict(ours.to_dict()), Stage2Config)


def test_ccsam_both_stages_end_to_end(fake_fmnist, exp_dir):
    s1 = make_config("smoke", "ccsam", ccsam_radius=0.1, test_per_class=None)
    first = run(s1, progress=False)
    ratios = np.array(first.metrics["eps_ratio"]).reshape(s1.epochs, -1)
    assert ratios.shape[1] == 10 and np.nanmean(ratios[:, -1]) > np.nanmean(ratios[:, 0])
    second = run(make_stage2(s1, "ccsam"), progress=False)
    assert list(second.history["alpha"]) == [0.5, 1.0]
    backbone = {n: p for n, p in first.model.state_dict().items() if not n.startswith("classifier")
                and "running" not in n and "num_batches" not in n}
    after = second.model.state_dict()
    assert all(torch.equal(v, after[n]) for n, v in backbone.items())
    assert not torch.equal(first.model.classifier.weight, second.model.classifier.weight)


def test_a_compiled_model_runs_compiled_in_the_ccsam_step():
    """CC-SAM's forward goes through the compiled wrapper (``with_features=True``), not around it to the eager
    ``features``; the features and logits are the eager ones."""
    from ltlib.core.replicas import unwrap
    from ltlib.models import build_model
    calls = []

    def counting_backend(graph, example_inputs):
        def compiled(*args):
            calls.append(1)
            return graph.forward(*args)
        return compiled

    torch.manual_seed(0)
    model = build_model("resnet32", 3, in_channels=1, width=0.25).eval()
    images = torch.randn(4, 1, 8, 8)
    compiled = torch.compile(model, backend=counting_backend)
    assert unwrap(compiled) is model
    feats, logits = features_and_logits(compiled, images)
    assert calls, "the compiled forward never ran"
    torch.testing.assert_close(feats, model.features(images))
    torch.testing.assert_close(logits, model(images))
