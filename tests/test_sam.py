"""SAM, adaptive SAM, ASAM and ImbSAM step strategies: the invariants of algorithms.md §4.7 and §6.5."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ltlib.runs.config import make_config
from ltlib.core.errors import ConfigError
from ltlib.runs.experiment import run
from ltlib.methods import (STEPS, SAMOptions, SGDStep, autocast_for, bn_stats_frozen, build_sgd, build_step,
                         tail_classes_from_counts)
from ltlib.methods.sam import Perturbation

from hand_oracles import assert_accuracy_is_a_fresh_evaluation

SAM_STEPS = ("sam", "sam_adaptive", "asam", "imbsam")
TAIL = (3, 4)


class TinyNet(nn.Module):
    def __init__(self, classes=5):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))


def ce(logits, labels):
    return F.cross_entropy(logits.float(), labels, reduction="none")


def _batch(seed=0, labels=None):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 1, 6, 6, generator=gen)
    y = torch.randint(0, 5, (16,), generator=gen) if labels is None else labels
    return x, y


def _net(seed=0):
    torch.manual_seed(seed)
    return TinyNet().double().float()


def _step(name, model, rho=0.05, lr=0.1, momentum=0.9, wd=1e-3, **options):
    opt = build_sgd(model, lr, momentum, wd)
    options.setdefault("tail_classes", TAIL)
    return build_step(name, opt, model=model, options=SAMOptions(rho=rho, **options))


def _state(model, step):
    params = [p.detach().clone() for p in model.parameters()]
    buffers = [step.optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()
               if "momentum_buffer" in step.optimizer.state[p]]
    return params, buffers


def _assert_same(a, b, atol=1e-6):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)


def _weighted_ce(weights):
    return lambda logits, labels: ce(logits, labels) * weights[labels]


@pytest.mark.parametrize("name", SAM_STEPS)
def test_rho_zero_is_exactly_the_base_step(name):
    """rho = 0: parameters and momentum buffers equal the base optimizer's, over two steps."""
    x, y = _batch()
    ref_model, model = _net(), _net()
    ref = SGDStep(build_sgd(ref_model, 0.1, 0.9, 1e-3))
    sam = _step(name, model, rho=0.0)
    # ImbSAM's objective is L_H + 2 L_T, both over the full batch: SGD on that weighted mean
    weights = torch.ones(5)
    if name == "imbsam":
        weights[list(TAIL)] = 2.0
    for _ in range(2):
        ref(ref_model, x, y, _weighted_ce(weights))
        sam(model, x, y, ce)
    _assert_same(_state(model, sam)[0], _state(ref_model, ref)[0])
    _assert_same(_state(model, sam)[1], _state(ref_model, ref)[1])


def _grads(model, x, y, loss_fn=ce):
    model.zero_grad(set_to_none=True)
    loss_fn(model(x), y).mean().backward()


@pytest.mark.parametrize("scale", ["none", "abs", "asam"])
def test_epsilon_has_radius_rho(scale):
    """||eps|| = rho for SAM; ||T^-1 eps|| = rho for the adaptive variants (eta = 0, no zero weight)."""
    model = _net()
    with torch.no_grad():                          # no zero weight (BN's beta starts at 0)
        for p in model.parameters():
            p.add_(0.1 * torch.rand_like(p) + 0.05)
    x, y = _batch()
    _grads(model, x, y)
    opt = build_sgd(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    pert = Perturbation(opt, SAMOptions(rho=0.3, asam_eta=0.0), scale=scale, names=names)
    before = [p.detach().clone() for p in model.parameters()]
    pert.ascend()
    eps = pert.epsilon
    if scale == "none":
        norm = torch.linalg.vector_norm(torch.cat([e.flatten() for e in eps]))
    else:
        scaled = []
        for (n, _), e, w in zip(model.named_parameters(), eps, before):
            t = w.abs() if scale == "abs" or "weight" in n else torch.ones_like(w)
            scaled.append((e / t).flatten())
        norm = torch.linalg.vector_norm(torch.cat(scaled))
    assert float(norm) == pytest.approx(0.3, rel=1e-5)
    for p, w, e in zip(model.parameters(), before, eps):  # w + eps applied
        torch.testing.assert_close(p.detach(), w + e)


def test_asam_scales_weight_tensors_only_and_matches_the_formula():
    """eps_p = rho T_p^2 g_p / ||T g||, T = |w| + eta on names containing 'weight' (BN gamma too), 1 elsewhere."""
    model = _net()
    x, y = _batch()
    _grads(model, x, y)
    opt = build_sgd(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    ts = {n: (p.detach().abs() + 0.01) if "weight" in n else torch.ones_like(p) for n, p in model.named_parameters()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    norm = torch.linalg.vector_norm(torch.cat([(ts[n] * grads[n]).flatten() for n in ts])) + 1e-16
    pert = Perturbation(opt, SAMOptions(rho=0.5, asam_eta=0.01), scale="asam", guard=1e-16, names=names)
    pert.ascend()
    for (n, _), e in zip(model.named_parameters(), pert.epsilon):
        torch.testing.assert_close(e, 0.5 * ts[n] ** 2 * grads[n] / norm)
    assert "bn.weight" in names.values() and "bn.bias" in names.values()


def test_rho_is_read_per_parameter_group_with_a_global_norm():
    model = _net()
    x, y = _batch()
    _grads(model, x, y)
    params = list(model.parameters())
    opt = torch.optim.SGD([{"params": params[:2], "rho": 0.1}, {"params": params[2:], "rho": 0.4}], lr=0.1)
    norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in params]))
    pert = Perturbation(opt, SAMOptions(rho=0.05))
    pert.ascend()
    for i, (p, e) in enumerate(zip(params, pert.epsilon)):
        rho = 0.1 if i < 2 else 0.4
        torch.testing.assert_close(e, rho * p.grad / (norm + 1e-12))


@pytest.mark.parametrize("restore", ["copy", "subtract"])
@pytest.mark.parametrize("name", SAM_STEPS)
def test_weights_are_restored_before_the_base_step(name, restore):
    """With lr 0 the base step changes nothing, so the weights after a step are the restored ones."""
    model = _net()
    x, y = _batch()
    before = [p.detach().clone() for p in model.parameters()]
    step = _step(name, model, rho=0.5, lr=0.0, restore=restore)
    step(model, x, y, ce)
    for p, w in zip(model.parameters(), before):
        if restore == "copy":
            assert torch.equal(p.detach(), w)
        else:
            torch.testing.assert_close(p.detach(), w, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", SAM_STEPS)
def test_bn_bypass_keeps_the_first_pass_statistics(name):
    x, y = _batch()
    model, single = _net(), _net()
    single.train()
    with torch.no_grad():
        single(x)                                   # one forward at w
    step = _step(name, model, rho=0.5, bn_second_pass="bypass")
    step(model, x, y, ce)
    assert torch.equal(model.bn.running_mean, single.bn.running_mean)
    assert torch.equal(model.bn.running_var, single.bn.running_var)
    assert model.bn.momentum == 0.1                 # restored after the second pass
    # the default ("update", as ASAM / ImbSAM / Saddle-LongTail) moves them a second time
    updated = _net()
    _step(name, updated, rho=0.5)(updated, x, y, ce)
    assert not torch.equal(updated.bn.running_mean, single.bn.running_mean)


def test_bn_stats_frozen_handles_cumulative_momentum():
    bn = nn.BatchNorm1d(3, momentum=None)
    bn(torch.randn(8, 3))
    mean = bn.running_mean.clone()
    with bn_stats_frozen(bn):
        bn(torch.randn(8, 3) + 5)
    assert torch.equal(bn.running_mean, mean) and bn.momentum is None


def test_imbsam_without_tail_samples_is_sgd_on_the_head_loss():
    """No tail sample in the batch: epsilon = 0 (the norm guard keeps it finite), even with a large rho."""
    x, _ = _batch()
    y = torch.tensor([0, 1, 2] * 5 + [0])          # TAIL = (3, 4): none here
    ref_model, model = _net(), _net()
    ref = SGDStep(build_sgd(ref_model, 0.1, 0.9, 1e-3))
    step = _step("imbsam", model, rho=5.0)
    for _ in range(2):
        ref(ref_model, x, y, ce)
        step(model, x, y, ce)
    _assert_same(_state(model, step)[0], _state(ref_model, ref)[0])
    _assert_same(_state(model, step)[1], _state(ref_model, ref)[1])


def test_imbsam_with_every_class_tail_is_sam_on_twice_the_loss():
    x, y = _batch()
    ref_model, model = _net(), _net()
    sam = _step("sam", ref_model, rho=0.2)
    imb = _step("imbsam", model, rho=0.2, tail_classes=tuple(range(5)))
    for _ in range(2):
        sam(ref_model, x, y, lambda o, t: 2 * ce(o, t))
        imb(model, x, y, ce)
    _assert_same(_state(model, imb)[0], _state(ref_model, sam)[0], atol=1e-5)


def test_imbsam_tail_mask_and_options():
    counts = [500, 120, 40, 19, 5]
    assert tail_classes_from_counts(counts, 20) == (3, 4)
    step = _step("imbsam", _net(), tail_classes=(3, 4))
    labels = torch.tensor([0, 3, 4, 2, 3, 1])
    assert step.tail_mask(labels).tolist() == [False, True, True, False, True, False]
    # the x2 factor and the full-batch divisor are options: factor 1 and group means change the update
    x, y = _batch()
    finals = []
    for opts in (dict(), dict(tail_factor=1.0), dict(tail_divisor="group")):
        model = _net()
        _step("imbsam", model, rho=0.0, **opts)(model, x, y, ce)
        finals.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert not torch.allclose(finals[0], finals[1]) and not torch.allclose(finals[0], finals[2])


@pytest.mark.parametrize("divisor", ["batch", "group"])
def test_imbsam_tail_factor_and_divisor_are_sgd_on_the_loss_they_imply(divisor):
    """rho = 0: ImbSAM's step is exactly SGD's step on L_H + f L_T, here with f = 3 (not the default 2):
    "batch" divides both partial sums by B, L_H = sum_H l / B and L_T = sum_T l / B; "group" divides each by its
    own size, L_H = sum_H l / |H| and L_T = sum_T l / |T|. The reference is plain SGD on per-sample losses
    weighted so that their batch mean is that loss, worked out here from the batch's head / tail counts.

    Planted slips this catches (each shown failing): the factor fixed at 2; the factor dropped in group mode;
    the group sizes swapped (head / |T|, tail / |H|); in group mode the head divided by B. The earlier
    options test (the update merely changes) passed on the last three.
    """
    x, y = _batch()
    tail_classes = torch.tensor(TAIL)
    is_tail = torch.isin(y, tail_classes)
    b, n_tail = len(y), int(is_tail.sum())
    n_head = b - n_tail
    assert 0 < n_tail < b and n_tail != n_head                # both groups present, of different sizes
    factor = 3.0
    head_w, tail_w = (1.0, factor) if divisor == "batch" else (b / n_head, factor * b / n_tail)

    def implied(logits, labels):
        weight = torch.where(torch.isin(labels, tail_classes), torch.tensor(tail_w), torch.tensor(head_w))
        return ce(logits, labels) * weight

    ref_model, model = _net(), _net()
    ref = SGDStep(build_sgd(ref_model, 0.1, 0.9, 1e-3))
    imb = _step("imbsam", model, rho=0.0, tail_factor=factor, tail_divisor=divisor)
    for _ in range(2):
        ref(ref_model, x, y, implied)
        imb(model, x, y, ce)
    _assert_same(_state(model, imb)[0], _state(ref_model, ref)[0])
    _assert_same(_state(model, imb)[1], _state(ref_model, ref)[1])


def test_imbsam_degenerate_tail_sets_warn():
    with pytest.warns(UserWarning, match="tail set is empty"):
        assert tail_classes_from_counts([50, 30, 25], 20) == ()
    with pytest.warns(UserWarning, match="head set is empty"):
        assert tail_classes_from_counts([50, 30, 25], 1000) == (0, 1, 2)


class Quadratic(nn.Module):
    def __init__(self, a, w):
        super().__init__()
        self.a = a
        self.w = nn.Parameter(w.clone())

    def forward(self, x):
        return (0.5 * self.w @ self.a @ self.w).reshape(1)


def test_sam_on_a_quadratic_matches_the_closed_form():
    """L(w) = w'Aw/2: the SAM update is -lr * A (w + rho Aw / ||Aw||)."""
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    a = m @ m.T + torch.eye(4, dtype=torch.float64)
    w = torch.randn(4, generator=gen, dtype=torch.float64)
    model = Quadratic(a, w)
    step = build_step("sam", torch.optim.SGD(model.parameters(), lr=0.1), model=model,
                      options=SAMOptions(rho=0.3))
    step(model, torch.zeros(1), torch.zeros(1, dtype=torch.long), lambda out, y: out)
    g = a @ w
    expected = w - 0.1 * a @ (w + 0.3 * g / g.norm())
    torch.testing.assert_close(model.w.detach(), expected, atol=1e-10, rtol=0)


class ScaledLinear(nn.Module):
    """f(x) = x (W / a)^T: the same function for W' = a W."""

    def __init__(self, weight, a):
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.a = a

    def forward(self, x):
        return x @ (self.weight / self.a).T


@pytest.mark.parametrize("scale, covariant", [("asam", True), ("abs", True), ("none", False)])
def test_adaptive_perturbations_are_scale_covariant(scale, covariant):
    """eta = 0: the perturbation at W' = a W is a times the one at W; plain SAM's is not."""
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    x = torch.randn(8, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (8,), generator=gen)
    eps = []
    for a in (1.0, 3.0):
        model = ScaledLinear(a * w, a)
        F.cross_entropy(model(x), y).backward()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        pert = Perturbation(opt, SAMOptions(rho=0.2, asam_eta=0.0), scale=scale,
                            names={id(model.weight): "weight"})
        pert.ascend()
        eps.append(pert.epsilon[0].clone())
    assert torch.allclose(eps[1], 3.0 * eps[0], atol=1e-12) is covariant


@pytest.mark.parametrize("name", SAM_STEPS)
def test_bf16_autocast_works_without_a_grad_scaler(name):
    """One bf16-autocast step from the same state as one fp32 step lands on the same parameters, within 10 % of
    the fp32 step's length: ||w_bf16 - w_fp32|| <= 0.1 ||w_fp32 - w_0||.

    Why 10 %: bf16 keeps 8 significant bits (a relative spacing of 2^-8, about 0.4 %), and the conv / linear
    forward and backward run in bf16, so activations and gradients carry errors of a few such steps; on this
    net the bf16 step differs from the fp32 one by 0.3-4.3 % of its length (measured over batches 0 and 1 and
    the four strategies). At rho = 0.5 the ascent itself moves the step by 19-59 %, so a bf16 path that loses it
    cannot hide in the tolerance.

    Planted slips this catches (each shown failing; the earlier "finite and moved" version passed on both):
    under autocast the ascent skipped (rho treated as 0), and the loss scaled by 2^16 as for an fp16 grad
    scaler but never unscaled.
    """
    x, y = _batch()
    w0 = torch.cat([p.detach().flatten() for p in _net().parameters()])
    after, losses = {}, {}
    for precision in ("fp32", "bf16"):
        model = _net()
        step = build_step(name, build_sgd(model, 0.1, 0.9, 1e-3), autocast_for(precision, torch.device("cpu")),
                          model=model, options=SAMOptions(rho=0.5, tail_classes=TAIL))
        out = step(model, x, y, ce)
        assert out.logits.shape == (16, 5) and torch.isfinite(out.loss)
        after[precision] = torch.cat([p.detach().flatten() for p in model.parameters()])
        losses[precision] = float(out.loss)
    update = (after["fp32"] - w0).norm()
    assert float(update) > 1e-3                                               # the step did move
    assert float((after["bf16"] - after["fp32"]).norm()) <= 0.1 * float(update)
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)          # the first-pass loss, fp32 reduction


def test_bad_input_gives_clear_errors():
    with pytest.raises(ConfigError, match="rho"):
        make_config("smoke", "wb", step="sam", rho=-0.1)
    with pytest.raises(ConfigError, match="rho"):
        SAMOptions(rho=-1.0)
    with pytest.raises(ConfigError, match="Valid step strategys:[\\s\\S]*imbsam"):
        make_config("smoke", "wb", step="samm")
    with pytest.raises(ConfigError, match="bn_second_pass"):
        make_config("smoke", "wb", step="sam", bn_second_pass="freeze")
    assert set(SAM_STEPS) <= set(STEPS.names())
    with pytest.raises(ValueError, match="model"):
        build_step("asam", build_sgd(_net(), 0.1))


def test_sam_fields_change_the_hash_only_for_sam_steps():
    sgd = make_config("smoke", "wb")
    assert sgd.hash() == sgd.replace(rho=0.3).hash()
    sam = make_config("smoke", "wb", step="sam")
    assert sam.hash() != sam.replace(rho=0.3).hash() != sgd.hash()


@pytest.mark.parametrize("eta, message", [(1, "tail set is empty"), (10**6, "head set is empty")])
def test_imbsam_runs_with_a_degenerate_tail_warn_and_train(fake_fmnist, exp_dir, eta, message):
    """An empty tail or head set warns, trains, and reports an accuracy that is a fresh recount of its model.
    Planted slip caught (the old 0 <= overall <= 100 bound did not): accuracies reported as fractions."""
    cfg = make_config("smoke", "wb", step="imbsam", imbsam_eta=eta, epochs=1, test_per_class=None)
    with pytest.warns(UserWarning, match=message):
        r = run(cfg, progress=False)
    assert_accuracy_is_a_fresh_evaluation(r)       # was 0 <= overall <= 100, which a fraction also passes


@pytest.mark.parametrize("name", SAM_STEPS)
def test_every_strategy_trains_through_the_run_machinery(fake_fmnist, exp_dir, name):
    r = run(make_config("smoke", "wb", step=name, epochs=1, test_per_class=None), progress=False)
    assert r.config.step == name and r.history["loss"].notna().all()


def test_a_compiled_imbsam_step_follows_a_compiled_plain_step_of_the_same_model():
    """torch.compile reuses one graph for every model of a class; compiled for a plain step, its backward frees
    ('donates') its saved buffers, which ImbSAM's second backward through the same graph needs. ImbSAM turns
    donation off for its passes, so a notebook that compiles SGD and then ImbSAM trains, with ImbSAM's eager weights."""
    from ltlib.runs.distributed import compile_model

    torch._dynamo.reset()
    x, y = _batch(labels=torch.tensor([0, 1, 2, 3, 4, 0, 1, 2] * 2))
    plain = _net()
    sgd = SGDStep(build_sgd(plain, 0.1, 0.9, 1e-3))
    compiled_plain = compile_model(plain, backend="aot_eager")
    for _ in range(2):
        sgd(compiled_plain, x, y, ce)
    eager, model = _net(1), _net(1)
    ref, step = _step("imbsam", eager), _step("imbsam", model)
    compiled = compile_model(model, backend="aot_eager")
    for _ in range(2):
        ref(eager, x, y, ce)
        step(compiled, x, y, ce)
    _assert_same(_state(model, step)[0], _state(eager, ref)[0], atol=1e-5)
    torch._dynamo.reset()
