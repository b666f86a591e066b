"""Natural long-tailed folder data sets end to end: registry, the decoded copy on disk, ImageNet-style crops,
the large-scale recipes, and a training run on a tiny image folder that the test writes."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import RandomResizedCrop
from PIL import Image

from ltlib.runs import experiment
from ltlib.runs.config import RunConfig, make_config
from ltlib.data import folders
from ltlib.data.augment import center_crop, color_jitter, random_resized_crop, resized_crop_boxes
from ltlib.data.datasets import DATASETS, folder_spec, load_longtail
from ltlib.data.longtail import class_groups
from ltlib.data.stream import StreamedImages, StreamLoader
from ltlib.runs.distributed import DistInfo
from ltlib.core.errors import ConfigError, DataError
from ltlib.methods.schedules import build_schedule

from hand_oracles import assert_accuracy_is_a_fresh_evaluation

NAME = "tiny_folder_lt"     # registered once for this module; class counts 12 / 6 / 3: IF 4
COUNTS = (12, 6, 3)
COLOURS = ((220, 40, 40), (40, 200, 40), (40, 40, 220))


def _image(rng: np.random.Generator, label: int) -> Image.Image:
    """A noisy image of the class colour, of a random size around 20 x 24 pixels."""
    w, h = int(rng.integers(18, 26)), int(rng.integers(18, 26))
    pixels = np.clip(np.array(COLOURS[label]) + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """An image root with ImageNet-LT-style lists in a subfolder, as the OLTR release ships them."""
    base = tmp_path_factory.mktemp("tiny_lt")
    rng = np.random.default_rng(0)
    lists = {"train": [], "val": [], "test": []}
    for split, per_class in (("train", COUNTS), ("val", (2, 2, 2)), ("test", (4, 4, 4))):
        for label, n in enumerate(per_class):
            for k in range(n):
                rel = f"{split}/c{label}/{k}.{'png' if k % 2 else 'jpg'}"
                (base / rel).parent.mkdir(parents=True, exist_ok=True)
                _image(rng, label).save(base / rel)
                lists[split].append(f"{rel} {label}")
    (base / "lists").mkdir()
    for split, lines in lists.items():
        (base / "lists" / f"tiny_{split}.txt").write_text("\n".join(lines) + "\n")
    return base


@pytest.fixture(scope="module", autouse=True)
def registered():
    if NAME not in DATASETS:
        DATASETS.add(NAME, folder_spec(NAME, 3, 12, 4, {s: f"tiny_{s}.txt" for s in ("train", "val", "test")},
                                       root_env="LTLIB_TINY_DIR", image_size=16), "a tiny test folder set")


@pytest.fixture(autouse=True)
def env(root, tmp_path, monkeypatch):
    monkeypatch.setenv("LTLIB_TINY_DIR", str(root))
    monkeypatch.setenv("LTLIB_CACHE_DIR", str(tmp_path / "cache"))
    from ltlib.data.datasets import _raw
    _raw.cache_clear()
    yield
    _raw.cache_clear()


# --------------------------------------------------------------------------- the data set


def test_natural_set_keeps_its_long_tail_and_crops_seven_eighths():
    data = load_longtail(NAME, val_split="official")
    assert data.class_counts.tolist() == list(COUNTS)
    assert data.train.images.shape == (21, 3, 16, 16) and data.train.images.dtype == torch.uint8
    assert len(data.val) == 6 and len(data.test) == 12
    assert data.crop_size == 14 and data.crop_padding == 0
    assert data.info["imbalance_factor"] == 4 and data.info["imbalance_profile"] == "natural"
    assert data.mean == folders.IMAGENET_MEAN


def test_natural_set_holdout_and_smoke_test_subset():
    data = load_longtail(NAME, val_split="holdout", val_fraction=0.34, test_per_class=1)
    assert data.class_counts.tolist() == [8, 4, 2] and len(data.val) == 7
    assert sorted(data.test.labels.tolist()) == [0, 1, 2]


def test_natural_set_refuses_another_tail_or_head():
    with pytest.raises(ConfigError, match="long-tailed by itself"):
        load_longtail(NAME, 100)
    with pytest.raises(ConfigError, match="head class has 12"):
        load_longtail(NAME, None, n_max=5)
    with pytest.raises(ConfigError, match="'none', 'official' or 'holdout'"):
        load_longtail(NAME, None, val_split="unused")


def test_decoded_copy_is_written_once_then_read_back(monkeypatch, tmp_path):
    first = load_longtail(NAME)
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 2 and all(re.fullmatch(NAME + r"-(train|test)-16px-[0-9a-f]{12}\.npy", f) for f in files)
    from ltlib.data.datasets import _raw
    _raw.cache_clear()

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again")
    monkeypatch.setattr(folders, "decode_resized", no_decode)
    again = load_longtail(NAME)
    assert torch.equal(again.train.images, first.train.images) and torch.equal(again.test.labels, first.test.labels)


def test_decoded_copy_matches_the_decoder_and_a_new_size_is_decoded_anew(tmp_path):
    data = load_longtail(NAME, image_size=12)
    split = folders.read_split(folders.find_split_file(folders.folder_root(NAME, None, "LTLIB_TINY_DIR"),
                                                       "tiny_train.txt"),
                               folders.folder_root(NAME, None, "LTLIB_TINY_DIR"), 3)
    images, labels = folders.decode_resized(split, 12)
    assert torch.equal(data.train.images, images) and torch.equal(data.train.labels, labels)
    assert data.crop_size == round(12 * 7 / 8)


def test_corrupt_decoded_copy_says_to_delete_it(tmp_path):
    load_longtail(NAME)
    for path in (tmp_path / "cache").iterdir():
        path.write_bytes(b"not a numpy file")
    from ltlib.data.datasets import _raw
    _raw.cache_clear()
    with pytest.raises(DataError, match="delete it"):
        load_longtail(NAME)


def test_wrong_split_file_is_refused(root, tmp_path, monkeypatch):
    other = tmp_path / "other"
    (other / "lists").mkdir(parents=True)
    for s in ("train", "val", "test"):
        lines = (root / "lists" / f"tiny_{s}.txt").read_text().splitlines()
        (other / "lists" / f"tiny_{s}.txt").write_text("\n".join(f"{root}/{line}" for line in lines[1:]) + "\n")
    monkeypatch.setenv("LTLIB_TINY_DIR", str(other))
    with pytest.raises(DataError, match="right split file"):
        load_longtail(NAME)


def test_missing_split_file_and_root_say_where(tmp_path, monkeypatch):
    monkeypatch.setenv("LTLIB_TINY_DIR", str(tmp_path))
    with pytest.raises(DataError, match="tiny_train.txt not found"):
        load_longtail(NAME)
    monkeypatch.delenv("LTLIB_TINY_DIR")
    with pytest.raises(DataError, match=r"\$LTLIB_TINY_DIR"):
        load_longtail(NAME)


def test_split_file_names_are_tried_in_order(root, tmp_path):
    assert folders.find_split_file(root, ("nope.txt", "tiny_val.txt")).name == "tiny_val.txt"
    (root / "tiny_test.json").write_text("{}")
    try:
        assert folders.find_split_file(root, ("tiny_test.json", "tiny_test.txt")).name == "tiny_test.json"
    finally:
        (root / "tiny_test.json").unlink()
    with pytest.raises(DataError, match="a.txt or b.json not found"):
        folders.find_split_file(root, ("a.txt", "b.json"))


def test_the_three_published_sets_are_registered_with_their_tails():
    for name, classes, head, tail_if in (("imagenet_lt", 1000, 1280, 256), ("places_lt", 365, 4980, 996),
                                         ("inat2018", 8142, 1000, 500)):
        spec = DATASETS.get(name)
        assert spec.natural and (spec.num_classes, spec.n_max, spec.imbalance_factor) == (classes, head, tail_if)
        assert spec.crop_size(None) == 224 and spec.image_shape == (3, 256, 256)


# --------------------------------------------------------------------------- crops and colour


def test_resized_crop_boxes_fit_and_follow_the_scale_and_ratio():
    g = torch.Generator().manual_seed(0)
    boxes = resized_crop_boxes(40, 60, 5000, g)
    x1, y1, x2, y2 = boxes.unbind(1)
    w, h = x2 - x1, y2 - y1
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= 60).all() and (y2 <= 40).all() and (w > 0).all()
    area = w * h / (40 * 60)
    assert area.min() >= 0.06 and area.max() <= 1
    ratio = w / h
    inside = (ratio >= 3 / 4 * 0.9) & (ratio <= 4 / 3 * 1.1)
    assert inside.float().mean() > 0.99      # the rest: rounding of small boxes
    # the same distribution as torchvision's own draw (mean area about 0.40 and ratio 1.05 at 40 x 60)
    torch.manual_seed(0)
    theirs = [RandomResizedCrop.get_params(torch.zeros(3, 40, 60), (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(5000)]
    their_area = np.mean([h_ * w_ / (40 * 60) for _, _, h_, w_ in theirs])
    their_ratio = np.mean([w_ / h_ for _, _, h_, w_ in theirs])
    assert area.mean().item() == pytest.approx(their_area, abs=0.015)
    assert ratio.mean().item() == pytest.approx(their_ratio, abs=0.015)


def test_resized_crop_boxes_fall_back_to_the_clamped_centre():
    g = torch.Generator().manual_seed(0)
    boxes = resized_crop_boxes(10, 100, 4, g, scale=(2.0, 3.0))   # no area fits: a 10 x 13 centre box
    assert boxes.tolist() == [[43.0, 0.0, 56.0, 10.0]] * 4


def test_random_resized_crop_of_the_whole_image_at_its_size_is_the_image(monkeypatch):
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    full = torch.tensor([[0.0, 0.0, 8.0, 8.0]] * 3)
    monkeypatch.setattr("ltlib.data.augment.resized_crop_boxes", lambda *a, **k: full)
    out = random_resized_crop(images, 8, False, torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and torch.allclose(out, images.float(), atol=1e-4)
    flipped = random_resized_crop(images, 8, True, torch.Generator().manual_seed(1))
    for i in range(3):
        assert torch.allclose(flipped[i], images[i].float(), atol=1e-4) or torch.allclose(
            flipped[i], images[i].float().flip(2), atol=1e-4)


def test_random_resized_crop_is_seeded_and_sized():
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    a = random_resized_crop(images, 14, True, torch.Generator().manual_seed(3))
    b = random_resized_crop(images, 14, True, torch.Generator().manual_seed(3))
    assert a.shape == (4, 3, 14, 14) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 255


def test_center_crop_is_torchvisions():
    images = torch.randint(0, 256, (2, 3, 11, 16), dtype=torch.uint8)
    assert torch.equal(center_crop(images, 7), TF.center_crop(images, [7, 7]))
    with pytest.raises(ValueError, match="does not fit"):
        center_crop(images, 12)


def test_color_jitter_zero_is_the_identity_and_grey_stays_grey():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 6, 6) * 255
    assert torch.allclose(color_jitter(images, 0.0, g), images, atol=1e-3)
    grey = (torch.rand(5, 1, 6, 6) * 200).expand(5, 3, 6, 6).clone()
    out = color_jitter(grey, 0.4, g)
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-3) and torch.allclose(out[:, 1], out[:, 2], atol=1e-3)
    assert out.min() >= 0 and out.max() <= 255


def test_color_jitter_is_torchvisions_adjustments_in_the_drawn_order():
    """The factors and the order drawn from the generator, applied by torchvision's float functions."""
    images = torch.rand(1, 3, 5, 5) * 255
    g = torch.Generator().manual_seed(0)
    factors = torch.empty(1, 3).uniform_(0.6, 1.4, generator=g)
    out = color_jitter(images, 0.4, torch.Generator().manual_seed(0))
    # the same factors, applied in the drawn order with torchvision's float functions
    order = torch.argsort(torch.rand(1, 3, generator=g), dim=1)[0].tolist()
    x = images[0] / 255
    ops = {0: TF.adjust_brightness, 1: TF.adjust_contrast, 2: TF.adjust_saturation}
    for k in order:
        x = ops[k](x, factors[0, k].item())
    assert torch.allclose(out[0] / 255, x, atol=1e-4)


# --------------------------------------------------------------------------- configs, recipes, schedules


def test_config_takes_the_natural_tail_and_refuses_another():
    cfg = RunConfig(dataset=NAME, model="resnet32")
    assert cfg.imbalance_factor == 4 and cfg.n_max == 12
    with pytest.raises(ConfigError, match="leave imbalance_factor unset"):
        RunConfig(dataset=NAME, imbalance_factor=100)
    with pytest.raises(ConfigError, match="leave n_max unset"):
        RunConfig(dataset=NAME, n_max=5)
    with pytest.raises(ConfigError, match="no unused images"):
        RunConfig(dataset=NAME, val_split="unused")
    with pytest.raises(ConfigError, match="folder data sets"):
        RunConfig(image_size=32)
    with pytest.raises(ConfigError, match="folder data sets"):
        RunConfig(val_split="official")
    with pytest.raises(ConfigError, match="greyscale"):
        RunConfig(color_jitter=0.4)
    assert RunConfig(dataset=NAME).replace(dataset="cifar10_lt").imbalance_factor == 100


def test_new_fields_leave_earlier_hashes_alone():
    cfg = make_config("quick", "ce", "fashion_mnist_lt", name="05-ce")
    assert cfg.run_name == "05-ce-bd2ed02153"   # a run cached before image_size and color_jitter existed


def test_paper_profile_on_imagenet_lt_is_cmos_code():
    cfg = make_config("paper", "cmo", "imagenet_lt", loss="bs", mixing="cmo")
    assert (cfg.model, cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay) == ("resnet50", 100, 128, 0.1, 2e-4)
    assert (cfg.schedule, cfg.warmup_epochs, cfg.color_jitter, cfg.group_scheme) == (
        "imagenet_multistep", 5, 0.4, "oltr")
    assert int(cfg.drw_start * cfg.epochs) == 80 and (cfg.cmo_start, cfg.cmo_end) == (3, 3)
    inat = make_config("paper", "ce", "inat2018", reweight="drw")
    assert inat.batch_size == 256 and inat.color_jitter == 0 and int(inat.drw_start * inat.epochs) == 100
    with pytest.raises(ConfigError, match="no published places_lt recipe"):
        make_config("paper", "ce", "places_lt")
    with pytest.raises(ConfigError, match=r"\['ce', 'cmo'\]"):
        make_config("paper", "ccsam", "imagenet_lt")


@pytest.mark.parametrize("name, drops", [("imagenet_multistep", {59: 1.0, 60: 0.1, 79: 0.1, 80: 0.01}),
                                         ("inat_multistep", {74: 1.0, 75: 0.1, 99: 0.1})])
def test_large_schedules_follow_cmos_adjust_learning_rate(name, drops):
    sched = build_schedule(name, 0.1, 100, 5)
    assert [sched(e, 0, 10) for e in range(5)] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    for epoch, factor in drops.items():
        assert sched(epoch, 0, 10) == pytest.approx(0.1 * factor), epoch


def test_oltr_groups_put_twenty_in_few():
    groups = class_groups([101, 100, 21, 20, 5], "oltr").as_dict()
    assert groups == {"many": [0], "medium": [1, 2], "few": [3, 4]}


# --------------------------------------------------------------------------- training


def test_training_run_on_a_folder_set(tmp_path):
    """A folder set trains end to end, and its reported accuracy is a fresh recount of the returned model (with the
    centre crop). Planted slip caught (the old 0 <= overall <= 100 bound did not): accuracies as fractions."""
    cfg = make_config("smoke", "cmo", NAME, mixing="cmo", color_jitter=0.4, group_scheme="oltr", batch_size=8,
                      eval_batch_size=5)
    assert cfg.val_split == "official" and cfg.image_size is None
    run = experiment.run(cfg, exp_dir=tmp_path / "exp", device="cpu", progress=False)
    result = run.result("last")
    assert not math.isnan(result["overall"])
    assert_accuracy_is_a_fresh_evaluation(run)
    batch, _ = experiment.sample_batch(cfg, experiment.load_data(cfg), epoch=1)
    assert batch.shape == (8, 3, 14, 14)
    again = experiment.run(cfg, exp_dir=tmp_path / "exp", device="cpu", progress=False)   # loaded, not retrained
    assert again.result("last")["overall"] == result["overall"] and again.path == run.path


# --------------------------------------------------------------------------- the streaming path


def test_streaming_keeps_the_files_and_says_what_needs_images():
    data = load_longtail(NAME, stream=True, val_split="official")
    assert isinstance(data.train, StreamedImages) and data.class_counts.tolist() == list(COUNTS)
    assert data.test.images.shape[-1] == 16 and data.crop_size == 14       # the test set is still decoded
    with pytest.raises(DataError, match="data_path='memory'"):
        data.train.images
    with pytest.raises(ConfigError, match="'official' or 'none'"):
        load_longtail(NAME, stream=True, val_split="holdout")
    with pytest.raises(ConfigError, match="folder data sets"):
        RunConfig(data_path="stream")
    with pytest.raises(ConfigError, match="cannot feed CMO"):
        RunConfig(dataset=NAME, data_path="stream", mixing="cmo")


def test_streamed_epoch_is_seeded_whatever_the_workers():
    data = load_longtail(NAME, stream=True)
    kw = dict(batch_size=8, mean=data.mean, std=data.std, crop=14, jitter=0.4, seed=3)
    one = [x for x, _ in StreamLoader(data.train, num_workers=0, **kw).epoch(1)]
    two = [x for x, _ in StreamLoader(data.train, num_workers=2, **kw).epoch(1)]
    assert [x.shape for x in one] == [(8, 3, 14, 14), (8, 3, 14, 14), (5, 3, 14, 14)]
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    other = [x for x, _ in StreamLoader(data.train, num_workers=0, **kw).epoch(2)]
    assert not torch.equal(one[0], other[0])


def test_streamed_ranks_split_each_global_batch():
    data = load_longtail(NAME, stream=True)
    kw = dict(batch_size=8, mean=data.mean, std=data.std, crop=14, seed=0, num_workers=0)
    whole = StreamLoader(data.train, **kw).batches(0)
    parts = [StreamLoader(data.train, info=DistInfo(r, 2), **kw).batches(0) for r in range(2)]
    assert [a + b for a, b in zip(*parts)] == whole
    with pytest.raises(ConfigError, match="not divisible"):
        StreamLoader(data.train, info=DistInfo(0, 3), **kw)


def test_training_run_streams_from_the_files(tmp_path):
    """Streaming from the files trains, and the reported accuracy is a fresh recount of the returned model.
    Planted slip caught (the old 0 <= overall <= 100 bound did not): accuracies reported as fractions."""
    cfg = make_config("smoke", "ce", NAME, data_path="stream", num_workers=0, batch_size=8, eval_batch_size=5,
                      color_jitter=0.4)
    run = experiment.run(cfg, exp_dir=tmp_path / "exp", device="cpu", progress=False)
    assert_accuracy_is_a_fresh_evaluation(run)
    assert cfg.hash() != cfg.replace(data_path="memory").hash() and cfg.hash() == cfg.replace(num_workers=4).hash()


def test_streamed_last_global_batch_smaller_than_the_world_is_left_out():
    """21 images in global batches of 8 on 8 ranks: the last batch (5 images) would leave three ranks with none, and
    collating an empty batch raised IndexError; every rank now stops after two batches, each with one image."""
    data = load_longtail(NAME, stream=True)
    kw = dict(batch_size=8, mean=data.mean, std=data.std, crop=14, seed=0, num_workers=0)
    loaders = [StreamLoader(data.train, info=DistInfo(r, 8), **kw) for r in range(8)]
    assert {len(loader) for loader in loaders} == {2} and len(StreamLoader(data.train, **kw)) == 3
    for loader in loaders:
        assert [len(batch) for batch in loader.batches(0)] == [1, 1]
        assert [x.shape[0] for x, _ in loader.epoch(0)] == [1, 1]
