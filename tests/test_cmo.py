"""CMO, the LDAM-DRW / CMO losses and the minority-weighted stream: the invariants of algorithms.md §1.6 and §5.6."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ltlib.runs.config import make_config
from ltlib.data.loader import DeviceLoader
from ltlib.data.mixing import CMO, build_mixing, cmo_box
from ltlib.core.targets import MixedTargets, mixed_losses
from ltlib.data.samplers import ClassPowerSampler
from ltlib.data.sources import ImageSet
from ltlib.core.errors import ConfigError
from ltlib.runs.experiment import loss_for, run
from ltlib.methods.losses import DRW, LDAM, BalancedSoftmax, CrossEntropy, Focal, build_loss, ldam_margins
from ltlib.methods.schedules import build_schedule

from hand_oracles import assert_accuracy_is_a_fresh_evaluation, effective_number_weights_by_hand

COUNTS = [500, 200, 80, 30, 10]


def _logits(n=32, c=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=gen), torch.randint(0, c, (n,), generator=gen)


# --------------------------------------------------------------------------- losses

def test_drw_weights_are_one_before_the_switch_and_the_effective_numbers_after():
    """DRW's weights from epoch 160 are (1 - b) / (1 - b^n_c) summing to C (b = 0.9999), computed here by hand.

    Planted slip this catches (shown failing): effective_number_weights replaced by inverse-frequency weights
    normalised to sum to C (the earlier version, which took its weights from drw.at, passed on it).
    """
    drw = DRW(COUNTS, start=160)
    assert drw.at(0) is None and drw.at(159) is None
    w = effective_number_weights_by_hand(COUNTS, 0.9999).float()
    torch.testing.assert_close(drw.at(160), w, rtol=1e-6, atol=0)
    logits, labels = _logits()
    ce = CrossEntropy(COUNTS, drw=drw)
    ce.start_epoch(159)
    assert torch.allclose(ce(logits, labels), F.cross_entropy(logits, labels, reduction="none"))
    ce.start_epoch(160)
    # the batch mean is PyTorch's weighted CE: sum w_y l / sum w_y
    assert torch.allclose(ce(logits, labels).mean(), F.cross_entropy(logits, labels, weight=w), rtol=1e-6)


def test_weighted_ce_normalises_each_label_set_of_mixed_targets_on_its_own():
    """Weights by hand (effective numbers, b = 0.9999), not read back from the loss: a wrong weight fails."""
    logits, labels = _logits(seed=1)
    other = labels.flip(0)
    ce = CrossEntropy(COUNTS, drw=DRW(COUNTS, start=0))
    ce.start_epoch(0)
    w = effective_number_weights_by_hand(COUNTS, 0.9999).float()
    mixed = mixed_losses(ce, logits, MixedTargets(labels, other, torch.tensor(0.3))).mean()
    expected = 0.3 * F.cross_entropy(logits, labels, weight=w) + 0.7 * F.cross_entropy(logits, other, weight=w)
    assert torch.allclose(mixed, expected, rtol=1e-6)


def test_balanced_softmax_with_a_uniform_prior_is_ce_and_adds_the_log_prior_otherwise():
    logits, labels = _logits(seed=2)
    assert torch.allclose(BalancedSoftmax([7] * 5)(logits, labels), F.cross_entropy(logits, labels, reduction="none"),
                          atol=1e-6)
    prior = torch.tensor(COUNTS, dtype=torch.float) / sum(COUNTS)
    assert torch.allclose(BalancedSoftmax(COUNTS)(logits, labels),
                          F.cross_entropy(logits + prior.log(), labels, reduction="none"), atol=1e-5)


def test_ldam_margins_and_gradient_match_a_naive_implementation():
    """LDAM-DRW against a naive loop, with the DRW weights computed by hand (not read back from drw.weights).

    Planted slip this catches: effective_number_weights replaced by inverse-frequency weights summing to C.
    """
    m = ldam_margins(COUNTS, max_m=0.5)
    assert float(m[-1]) == pytest.approx(0.5) and all(a < b for a, b in zip(m.tolist(), m.tolist()[1:]))
    assert torch.allclose(m, 0.5 * (torch.tensor(COUNTS, dtype=torch.float) ** -0.25) / (10 ** -0.25))
    cos = torch.tanh(_logits(seed=3)[0]).requires_grad_(True)
    labels = _logits(seed=3)[1]
    drw = DRW(COUNTS, start=0)
    loss = LDAM(COUNTS, max_m=0.5, s=30, drw=drw)
    loss.start_epoch(0)
    loss(cos, labels).mean().backward()
    ours = cos.grad.clone()
    cos.grad = None
    naive = cos.clone()
    for i, y in enumerate(labels.tolist()):            # the target logit minus its class margin, one by one
        naive[i, y] = cos[i, y] - m[y]
    F.cross_entropy(30 * naive, labels, weight=effective_number_weights_by_hand(COUNTS, 0.9999).float()).backward()
    assert torch.allclose(ours, cos.grad, atol=1e-6)


def test_focal_with_gamma_zero_is_ce():
    logits, labels = _logits(seed=4)
    assert torch.allclose(Focal(COUNTS, gamma=0.0)(logits, labels), F.cross_entropy(logits, labels, reduction="none"))
    assert (Focal(COUNTS, gamma=2.0)(logits, labels) <= F.cross_entropy(logits, labels, reduction="none") + 1e-7).all()


def test_loss_errors_are_clear():
    with pytest.raises(ConfigError, match="normed"):
        make_config("smoke", "ce", loss="ldam")
    with pytest.raises(ConfigError, match="loss"):
        make_config("smoke", "ce", loss="ldam_drw_typo")
    with pytest.raises(ConfigError, match="cmo_alpha"):
        make_config("smoke", "ce", mixing="cmo", cmo_alpha=-1.0)
    for bad in (-0.1, 1.1):
        with pytest.raises(ConfigError, match="cmo_prob"):
            make_config("smoke", "ce", mixing="cmo", cmo_prob=bad)
        with pytest.raises(ConfigError, match="prob"):
            CMO(prob=bad)
    with pytest.raises(ConfigError, match="alpha"):
        CMO(alpha=-0.5)


def test_ldam_drw_from_a_config():
    cfg = make_config("smoke", "ce", loss="ldam", classifier="normed", reweight="drw", epochs=10)
    loss = loss_for(cfg, COUNTS)
    assert isinstance(loss, LDAM) and loss.drw.start == 8 and loss.s == 30.0
    assert isinstance(build_loss("bs", COUNTS), BalancedSoftmax)


def test_ldam_cmo_schedule_values_at_the_listed_epochs():
    s = build_schedule("warmup_multistep", 0.1, 200, 5)
    got = {e: s(e, 0, 1) for e in (0, 4, 5, 159, 160, 179, 180, 199)}
    want = {0: 0.02, 4: 0.1, 5: 0.1, 159: 0.1, 160: 1e-3, 179: 1e-3, 180: 1e-5, 199: 1e-5}
    assert all(got[e] == pytest.approx(want[e]) for e in want)


def test_new_fields_leave_earlier_hashes_alone():
    assert make_config("quick", "wb").hash() == "ab63e83b35"
    base = make_config("smoke", "ce")
    assert base.replace(cmo_prob=0.1, ldam_s=5.0, drw_beta=0.5, focal_gamma=2.0).hash() == base.hash()
    assert base.replace(mixing="cmo").hash() != base.replace(mixing="cmo", cmo_prob=0.1).hash()


# --------------------------------------------------------------------------- the minority stream and CMO

@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_minority_sampler_converges_to_its_class_frequencies(alpha):
    labels = torch.repeat_interleave(torch.arange(5), torch.tensor(COUNTS))
    draws = torch.cat([ClassPowerSampler(labels, alpha).epoch_indices(torch.Generator().manual_seed(s))
                       for s in range(40)])
    freq = torch.bincount(labels[draws], minlength=5).double() / len(draws)
    want = torch.full((5,), 0.2, dtype=torch.float64) if alpha == 1 else torch.tensor(COUNTS).double() / sum(COUNTS)
    assert torch.allclose(freq, want, atol=0.01)


def test_cmo_box_area_and_extremes():
    rng = np.random.default_rng(0)
    for lam in np.linspace(0, 1, 11):
        r0, r1, c0, c1 = cmo_box(32, 32, float(lam), rng)
        assert 0 <= r0 <= r1 <= 32 and 0 <= c0 <= c1 <= 32
    r0, r1, c0, c1 = cmo_box(32, 32, 1.0, rng)
    assert r1 == r0 and c1 == c0                                  # lam = 1: an empty box, lam' = 1
    assert cmo_box(32, 32, 0.0, _Centre()) == (0, 32, 0, 32)      # lam = 0 at the centre: the whole image


class _Scripted:
    """A host generator with scripted draws: u = 0 (so CMO applies), the given lam, then the box centre."""

    def __init__(self, lam, centre):
        self.lam, self.centre = lam, list(centre)

    def random(self):
        return 0.0

    def beta(self, a, b):
        return self.lam

    def integers(self, n):
        value = self.centre.pop(0)
        assert 0 <= value < n
        return value


# Boxes worked out by hand: side h = int(H sqrt(1 - lam)) (and w from W), half-widths h // 2 and w // 2 about the
# centre, no clipping. H != W so that a row / column mix-up shows; lam = 0.256 has H sqrt(1 - lam) = 27.60, where
# rounding (28, half 14) and flooring (27, half 13) give different boxes.
HAND_BOXES = [
    # H, W, lam, centre,  h, w,   (row0, row1, col0, col1)
    (32, 32, 0.5, (16, 16), 22, 22, (5, 27, 5, 27)),      # 32 * 0.7071 = 22.63
    (32, 32, 0.256, (16, 16), 27, 27, (3, 29, 3, 29)),    # 32 * 0.8626 = 27.60
    (20, 36, 0.3, (10, 18), 16, 30, (2, 18, 3, 33)),      # 20 * 0.8367 = 16.73, 36 * 0.8367 = 30.12
    (20, 36, 0.9, (10, 18), 6, 11, (7, 13, 13, 23)),      # 20 * 0.3162 = 6.32,  36 * 0.3162 = 11.38
]


@pytest.mark.parametrize("height, width, lam, centre, h, w, box", HAND_BOXES)
def test_cmo_box_side_is_int_of_side_times_sqrt_one_minus_lam(height, width, lam, centre, h, w, box):
    """The box of CMO's rand_bbox: cut = int(H sqrt(1 - lam)) rows and int(W sqrt(1 - lam)) columns.

    Planted slips this catches (each shown failing): the side from the area fraction, int(H (1 - lam)), instead
    of its square root; rounding the side instead of flooring it; H and W swapped.
    """
    assert h == int(height * math.sqrt(1 - lam)) and w == int(width * math.sqrt(1 - lam))
    assert cmo_box(height, width, lam, _Scripted(lam, centre)) == box
    r0, r1, c0, c1 = box
    assert (r1 - r0, c1 - c0) == (2 * (h // 2), 2 * (w // 2))


def test_cmo_box_side_over_a_sweep_of_lam():
    """Away from the border the box is 2 * (int(H sqrt(1 - lam)) // 2) rows by the same in W, for every lam.

    Planted slips this catches: the side from 1 - lam (no square root), the side rounded, H and W swapped.
    """
    height, width, centre = 101, 57, (50, 28)           # the largest half-widths (50, 28) fit: nothing clips
    for lam in np.linspace(0.0, 1.0, 41):
        lam = float(lam)
        r0, r1, c0, c1 = cmo_box(height, width, lam, _Scripted(lam, centre))
        h, w = int(height * math.sqrt(1 - lam)), int(width * math.sqrt(1 - lam))
        assert (r0, r1, c0, c1) == (50 - h // 2, 50 + h // 2, 28 - w // 2, 28 + w // 2), lam


# lam = 0.36 on the 8 x 8 images of _loader: 8 sqrt(0.64) = 6.4, so h = w = 6 and half-widths 3. The kept weight
# lam' = 1 - (clipped box area) / 64, worked out by hand for boxes that hit the border and one that does not.
CLIPPED = [
    # centre, clipped box (row0, row1, col0, col1), lam'
    ((0, 0), (0, 3, 0, 3), 1 - 9 / 64),       # top-left corner: a 3 x 3 box
    ((7, 5), (4, 8, 2, 8), 1 - 24 / 64),      # bottom edge: 4 x 6
    ((0, 7), (0, 3, 4, 8), 1 - 12 / 64),      # top-right corner: 3 x 4
    ((4, 4), (1, 7, 1, 7), 1 - 36 / 64),      # inside: 6 x 6, still not the sampled 0.36 (the side is floored)
]


@pytest.mark.parametrize("centre, box, kept", CLIPPED)
def test_cmo_label_weight_is_one_minus_the_clipped_box_area(centre, box, kept):
    """CMO pastes the clipped box and gives lam' = 1 - (clipped box area) / (H W) to the background label.

    Planted slips this catches (each shown failing): keeping the sampled lam (CutMix's classic slip), the
    area of the unclipped box, and a weight that is always 0.
    """
    loader, mix = _loader()
    mix.start_epoch(loader, 5)
    background, labels = next(DeviceLoader(loader_data(loader), batch_size=20, mean=(0.5,), std=(0.25,),
                                           seed=1).epoch(5))
    out, t = mix(background.clone(), labels, _Scripted(0.36, centre), torch.Generator())
    assert float(t.weight) == pytest.approx(kept, abs=1e-7)
    assert kept != pytest.approx(0.36)
    assert torch.equal(t.labels, labels) and torch.equal(t.other, loader.labels[mix.order[:20]])
    r0, r1, c0, c1 = box
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[r0:r1, c0:c1] = True
    patch = loader.fetch(mix.order[:20], torch.Generator().manual_seed(0))   # no crop or flip: deterministic
    assert torch.equal(out[:, :, inside], patch[:, :, inside])
    assert torch.equal(out[:, :, ~inside], background[:, :, ~inside])


class _Centre:
    """A host generator that always draws the centre: lam = 0 then gives the full-image box."""

    def random(self):
        return 0.0

    def beta(self, a, b):
        return 0.0

    def integers(self, n):
        return n // 2


def _loader(prob=1.0, start=-1, **kw):
    gen = torch.Generator().manual_seed(0)
    data = ImageSet(torch.randint(0, 255, (60, 1, 8, 8), dtype=torch.uint8, generator=gen),
                    torch.repeat_interleave(torch.arange(3), torch.tensor([40, 15, 5])), ("a", "b", "c"))
    mix = CMO(prob=prob, epochs=10, start=start, end=0, **kw)
    return DeviceLoader(data, batch_size=20, mean=(0.5,), std=(0.25,), seed=1, mix=mix), mix


def test_cmo_pixels_outside_the_box_are_the_background_and_inside_the_patch():
    loader, mix = _loader()
    plain = [x.clone() for x, _ in DeviceLoader(loader_data(loader), batch_size=20, mean=(0.5,), std=(0.25,),
                                                  seed=1).epoch(5)]
    mixed_pixels = 0
    for (x, t), bg in zip(loader.epoch(5), plain):
        assert isinstance(t, MixedTargets)
        changed = (x != bg).any(dim=(0, 1))                  # pixel positions where the batch differs
        rows, cols = changed.nonzero(as_tuple=True)
        kept = float(t.weight)
        assert 0 <= kept <= 1
        if len(rows):
            box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert box <= (1 - kept) * 64 + 1e-6             # every changed pixel lies in the box
            inside = torch.zeros_like(changed)
            inside[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
            assert torch.equal(x[:, :, ~inside], bg[:, :, ~inside])
            mixed_pixels += int(changed.sum())
    assert mixed_pixels > 0

def loader_data(loader):
    return ImageSet(loader.images, loader.labels, ("a", "b", "c"))


def test_cmo_lambda_is_one_minus_the_box_area_and_the_full_box_gives_the_patch_loss():
    loader, mix = _loader()
    mix.start_epoch(loader, 5)
    x, y = next(DeviceLoader(loader_data(loader), batch_size=20, mean=(0.5,), std=(0.25,), seed=1).epoch(5))
    out, t = mix(x.clone(), y, _Centre(), torch.Generator())
    assert float(t.weight) == 0.0                           # lam = 0 at the centre: the whole image is the patch
    patch = loader.fetch(mix.order[:20], torch.Generator().manual_seed(0))   # no crop or flip: deterministic
    assert torch.equal(out, patch)
    assert torch.equal(t.other, loader.labels[mix.order[:20]])
    logits = torch.randn(20, 3)
    assert torch.allclose(mixed_losses(CrossEntropy(), logits, t), F.cross_entropy(logits, t.other, reduction="none"))


def test_cmo_with_prob_zero_or_outside_its_epochs_is_the_vanilla_pipeline():
    vanilla = [(x.clone(), y.clone()) for x, y in _loader(prob=1.0, start=100)[0].epoch(5)]  # never active
    for loader in (_loader(prob=0.0)[0], _loader(prob=1.0, start=100)[0]):
        for (x, y), (a, b) in zip(loader.epoch(5), vanilla):
            assert torch.equal(x, a) and torch.equal(y, b)
    mix = CMO(epochs=200, start=3, end=3)
    assert [e for e in range(200) if mix.is_active(e)] == list(range(4, 197))


def test_same_labels_give_the_plain_loss_and_build_mixing_validates():
    logits, labels = _logits(seed=5)
    same = MixedTargets(labels, labels, torch.tensor(0.37))
    assert torch.allclose(mixed_losses(CrossEntropy(), logits, same), F.cross_entropy(logits, labels, reduction="none"))
    assert isinstance(build_mixing("cmo", prob=0.5), CMO)


@pytest.mark.parametrize("step", ["sgd", "ccsam", "imbsam"])
def test_cmo_composes_with_losses_and_steps_in_one_config_line(fake_fmnist, exp_dir, step):
    """CMO with LDAM-DRW / CC-SAM / ImbSAM trains, and its reported accuracy is a fresh recount of its model.

    Planted slip this catches (the old 0 <= overall <= 100 bound did not): accuracies reported as fractions.
    """
    cfg = make_config("smoke", "ce", mixing="cmo", cmo_start=0, cmo_end=0, loss="ldam", classifier="normed",
                      reweight="drw", step=step, test_per_class=None) if step == "sgd" else \
        make_config("smoke", "ce", mixing="cmo", cmo_start=0, cmo_end=0, step=step, test_per_class=None)
    r = run(cfg, progress=False)
    assert r.history["loss"].notna().all()
    assert_accuracy_is_a_fresh_evaluation(r)      # was 0 <= overall <= 100, which a fraction also passes
