"""Strong augmentation (CMO's 400-epoch recipe, CC-SAM's AutoAug variant) and PaCo's schedule: the invariants of
algorithms.md §1.3 and §5.3, replay, and the two recipes end to end."""
from __future__ import annotations

import pytest
import torch

from ltlib.core.errors import ConfigError
from ltlib.data.loader import DeviceLoader
from ltlib.data.sources import ImageSet
from ltlib.data.strong import CUTOUT_LENGTH, build_strong_augment, cutout
from ltlib.methods.schedules import build_schedule
from ltlib.runs.config import make_config
from ltlib.runs.experiment import run

from hand_oracles import assert_accuracy_is_a_fresh_evaluation


def _holes(images: torch.Tensor) -> list[tuple[int, int]]:
    """The (rows, cols) extent of each image's zeroed pixels (images drawn without zeros, Cutout alone)."""
    out = []
    for img in images:
        zero = (img == 0).all(0)
        rows, cols = zero.any(1).nonzero(), zero.any(0).nonzero()
        out.append((len(rows), len(cols)) if len(rows) else (0, 0))
        if len(rows):   # one solid rectangle
            assert zero[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
            assert int(zero.sum()) == len(rows) * len(cols)
    return out


def _has_hole(images: torch.Tensor) -> torch.Tensor:
    """Per image: an 8 x 8 window black in every channel, which only Cutout leaves in images drawn from 1..255
    (AutoAugment's ops can darken single pixels to 0, not a block in all three channels)."""
    zero = (images == 0).all(1, keepdim=True).float()
    return torch.nn.functional.max_pool2d(torch.nn.functional.avg_pool2d(zero, 8, 1), zero.shape[-1] - 7).flatten() == 1


def test_cutout_zeroes_one_square_of_side_16_clipped_at_the_borders():
    gen = torch.Generator().manual_seed(0)
    sides = []
    for _ in range(400):
        img = torch.randint(1, 256, (3, 32, 32), dtype=torch.uint8)
        rows, cols = _holes(cutout(img, CUTOUT_LENGTH, gen)[None])[0]
        sides += [rows, cols]
    assert max(sides) == 16 and min(sides) == 8          # whole inside; half of it off the edge at the border
    assert sides.count(16) > len(sides) / 2              # centres in [8, 24) leave the side whole: 1/2 of draws


def test_autoaug_cutout_gives_every_image_a_hole_and_replays_per_epoch():
    raw = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)
    rule = build_strong_augment("autoaug_cutout")
    rule.start_epoch(seed=0, epoch=1)
    first = rule(raw, raw)
    assert first.shape == raw.shape and first.dtype == torch.uint8
    assert _has_hole(first).all()
    rule.start_epoch(seed=0, epoch=1)
    assert torch.equal(rule(raw, raw), first)            # an epoch replays exactly
    rule.start_epoch(seed=0, epoch=2)
    assert not torch.equal(rule(raw, raw), first)
    assert build_strong_augment("none") is None


def test_paco_picks_a_pipeline_per_image_with_probability_one_half():
    """Half the images take AutoAugment + Cutout (a hole), half the SimCLR-style pipeline on the raw image (none)."""
    raw = torch.randint(1, 256, (400, 3, 32, 32), dtype=torch.uint8)
    rule = build_strong_augment("paco")
    rule.start_epoch(seed=0, epoch=0)
    out = rule(raw, raw.flip(3))
    holed = int(_has_hole(out).sum())
    assert 160 < holed < 240                             # Binomial(400, 1/2): 6 standard deviations either side
    assert out.shape == raw.shape


def test_the_loader_applies_it_to_batches_and_replays_an_epoch():
    data = ImageSet(torch.randint(1, 256, (96, 1, 28, 28), dtype=torch.uint8), torch.arange(96) % 4,
                    tuple("abcd"))
    loader = DeviceLoader(data, batch_size=32, mean=(0.5,), std=(0.25,), padding=2, flip=True,
                          strong=build_strong_augment("autoaug_cutout"))
    first = [x for x, _ in loader.epoch(3)]
    again = [x for x, _ in loader.epoch(3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    black = (0 - 0.5) / 0.25                             # Cutout's zeros, normalised
    assert all(_has_hole((x != black).to(torch.uint8)).all() for x in first)   # every image has its hole


def test_paco_schedule_at_the_listed_epochs():
    """paco_adjust_learning_rate: lr (e+1)/10 for e <= 10 (1.1 lr at e = 10), lr to 320, x0.1 to 360, x0.01 after."""
    s = build_schedule("paco_multistep", 0.1, 400, 10)
    got = {e: s(e, 0, 85) for e in (0, 9, 10, 11, 320, 321, 360, 361, 399)}
    want = {0: 0.01, 9: 0.1, 10: 0.11, 11: 0.1, 320: 0.1, 321: 0.01, 360: 0.01, 361: 0.001, 399: 0.001}
    assert got == pytest.approx(want)


def test_the_recipes_match_the_released_commands():
    cmo = make_config("paper", "cmo_400", "cifar100_lt")
    assert (cmo.loss, cmo.mixing, cmo.epochs, cmo.schedule, cmo.warmup_epochs, cmo.strong_augment) == \
        ("bs", "cmo", 400, "paco_multistep", 10, "paco")
    assert (cmo.cmo_start, cmo.cmo_end, cmo.reweight) == (3, 3, "none")
    cc = make_config("paper", "ccsam_autoaug", "cifar100_lt")
    base = make_config("paper", "ccsam", "cifar100_lt")
    assert (cc.mixing, cc.strong_augment) == ("none", "autoaug_cutout")
    assert cc.replace(mixing="mixup", strong_augment="none", recipe="ccsam") == base
    assert make_config("quick", "ce").replace(strong_augment="paco").hash() != make_config("quick", "ce").hash()


def test_strong_augment_errors_are_clear():
    with pytest.raises(ConfigError, match="unknown strong augmentation 'randaug'"):
        make_config("quick", "ce", strong_augment="randaug")
    with pytest.raises(ConfigError, match="CIFAR recipes' pipeline"):
        make_config("smoke", "ce", "imagenet_lt", strong_augment="paco")


@pytest.mark.parametrize("recipe", ["cmo_400", "ccsam_autoaug"])
def test_the_recipes_train_end_to_end(fake_fmnist, exp_dir, recipe):
    r = run(make_config("smoke", recipe, cmo_start=0, cmo_end=0, test_per_class=None), progress=False)
    assert r.history["loss"].notna().all()
    assert_accuracy_is_a_fresh_evaluation(r)
