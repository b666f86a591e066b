"""Folder data sets: split-file readers, the DataLoader path and the decoded in-memory copy."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ltlib.data.folders import (IMAGENET_MEAN, IMAGENET_STD, FolderDataset, FolderSplit, decode_resized,
                                eval_transform, folder_loader, read_inat_json, read_list, read_split,
                                folder_root, train_transform)
from ltlib.core.errors import ConfigError, DataError

# (relative path, label, width x height, colour): 3 classes with 3 / 2 / 1 images, JPEG and PNG mixed
IMAGES = [
    ("train/n0/a.jpg", 0, (10, 12), (200, 30, 30)),
    ("train/n0/b.png", 0, (12, 10), (190, 40, 40)),
    ("train/n0/c.jpg", 0, (14, 9), (180, 50, 50)),
    ("train/n1/d.png", 1, (9, 14), (30, 200, 30)),
    ("train/n1/e.jpg", 1, (10, 10), (40, 190, 40)),
    ("train/n2/f.png", 2, (11, 13), (30, 30, 200)),
]


@pytest.fixture()
def folder(tmp_path) -> Path:
    """A tiny image root with an ImageNet-LT style list and an iNaturalist style json beside it."""
    root = tmp_path / "root"
    for rel, _, size, colour in IMAGES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, colour).save(root / rel)
    lines = [f"{rel} {label}" for rel, label, _, _ in IMAGES]
    (root / "train.txt").write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n")
    # iNaturalist order: ids not sorted, annotations in another order than images
    ids = [31, 7, 12, 40, 3, 25]
    inat = {
        "images": [{"id": i, "file_name": rel, "width": s[0], "height": s[1]}
                   for i, (rel, _, s, _) in zip(ids, IMAGES)],
        "annotations": [{"id": k, "image_id": i, "category_id": label}
                        for k, (i, (_, label, _, _)) in reversed(list(enumerate(zip(ids, IMAGES))))],
        "categories": [{"id": c, "name": f"species {c}"} for c in range(4)],
    }
    (root / "train2018.json").write_text(json.dumps(inat))
    return root


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- readers


def test_read_list_gives_paths_labels_and_counts(folder):
    split = read_list(folder / "train.txt", folder)
    assert split.paths == tuple(rel for rel, _, _, _ in IMAGES)
    assert split.labels.dtype == np.int64 and split.labels.tolist() == [0, 0, 0, 1, 1, 2]
    assert split.num_classes == 3 and len(split) == 6 and split.root == folder
    assert split.class_counts.tolist() == [3, 2, 1]
    assert read_list(folder / "train.txt", folder, num_classes=5).class_counts.tolist() == [3, 2, 1, 0, 0]


def test_read_inat_json_keeps_image_order_and_counts_every_category(folder):
    split = read_inat_json(folder / "train2018.json", folder)
    assert split.paths == tuple(rel for rel, _, _, _ in IMAGES)
    assert split.labels.tolist() == [0, 0, 0, 1, 1, 2]
    assert split.num_classes == 4 and split.class_counts.tolist() == [3, 2, 1, 0]  # 4 categories listed


def test_read_inat_json_without_categories_counts_labels(folder):
    data = json.loads((folder / "train2018.json").read_text())
    del data["categories"]
    split = read_inat_json(write(folder / "val.json", json.dumps(data)), folder)
    assert split.num_classes == 3


def test_read_split_dispatches_on_the_suffix(folder):
    assert read_split(folder / "train2018.json", folder).num_classes == 4
    assert read_split(folder / "train.txt", folder).num_classes == 3


def test_split_is_frozen(folder):
    split = read_list(folder / "train.txt", folder)
    with pytest.raises(ValueError):
        split.labels[0] = 2
    with pytest.raises(AttributeError):
        split.num_classes = 4
    with pytest.raises(DataError, match="2 paths but labels of shape"):
        FolderSplit(folder, ("a", "b"), np.zeros(3), 1)


# --------------------------------------------------------------------------- bad inputs

BAD_LISTS = [
    ("train/n0/a.jpg 0\ntrain/n0/my file.jpg 0\n", None,
     r"bad.txt line 2: expected 'path label' .*'train/n0/my file.jpg 0'"),
    ("train/n0/a.jpg\n", None, r"bad.txt line 1: expected 'path label'"),
    ("train/n0/a.jpg 0\n\ntrain/n0/b.png zero\n", None, r"bad.txt line 3: label 'zero' is not an integer"),
    ("train/n0/a.jpg 1.0\n", None, r"line 1: label '1.0' is not an integer"),
    ("train/n0/a.jpg 0\ntrain/n0/b.png 1\ntrain/n1/d.png 7\n", 3, r"bad.txt line 3: label 7 is outside \[0, 3\)"),
    ("train/n0/a.jpg -1\n", None, r"line 1: label -1 is outside \[0, 0\)"),
    ("\n  \n", None, r"bad.txt lists no images: an empty split"),
]


@pytest.mark.parametrize("text, num_classes, message", BAD_LISTS)
def test_bad_list_says_where(folder, text, num_classes, message):
    with pytest.raises(DataError, match=message):
        read_list(write(folder / "bad.txt", text), folder, num_classes)


def test_missing_split_file_names_it_and_the_root_settings(folder):
    message = r"split file .*ImageNet_LT_train.txt not found.*image root \(.*root\).*LTLIB_IMAGENET_LT_DIR"
    with pytest.raises(DataError, match=message):
        read_split(folder / "ImageNet_LT_train.txt", folder)
    with pytest.raises(DataError, match=r"train2018.json not found.*LTLIB_INAT2018_DIR"):
        read_split(folder / "nowhere" / "train2018.json", folder)


def test_folder_root_reads_the_data_set_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("LTLIB_PLACES_LT_DIR", raising=False)
    with pytest.raises(DataError, match=r"no image root for places_lt: .*\$LTLIB_PLACES_LT_DIR"):
        folder_root("places_lt")
    monkeypatch.setenv("LTLIB_PLACES_LT_DIR", str(tmp_path))
    assert folder_root("places_lt") == tmp_path
    assert folder_root("places_lt", tmp_path / "other") == tmp_path / "other"
    with pytest.raises(ConfigError, match="use one of imagenet_lt, places_lt, inat2018"):
        folder_root("places365")


def test_missing_images_are_counted_and_named(folder):
    for rel in ("train/n0/a.jpg", "train/n1/d.png", "train/n1/e.jpg", "train/n2/f.png"):
        (folder / rel).unlink()
    with pytest.raises(DataError, match=r"4 of 6 images listed in .*train.txt are missing under .*root "
                                        r"\(first: train/n0/a.jpg, train/n1/d.png, train/n1/e.jpg\)"):
        read_list(folder / "train.txt", folder)
    assert len(read_list(folder / "train.txt", folder, check_files=False)) == 6
    with pytest.raises(DataError, match="4 of 6 images"):
        read_inat_json(folder / "train2018.json", folder)


def edit_json(folder: Path, change) -> Path:
    data = json.loads((folder / "train2018.json").read_text())
    change(data)
    return write(folder / "bad.json", json.dumps(data))


@pytest.mark.parametrize("change, message", [
    (lambda d: d["annotations"].pop(), r"1 images have no annotation \(first image ids: \[31\]\)"),
    (lambda d: d["annotations"].append(dict(d["annotations"][0])), "image id 25 has more than one annotation"),
    (lambda d: d["annotations"][0].update(category_id=9), r"image id 25: label 9 is outside \[0, 4\)"),
    (lambda d: d["annotations"][0].update(category_id="2"), "image id 25 has category_id '2', not an integer"),
    (lambda d: d.pop("annotations"), "not an iNaturalist split file.*'annotations'"),
    (lambda d: d["images"][0].pop("file_name"), "not an iNaturalist split file.*file_name"),
    (lambda d: d.update(images=[]), "bad.json lists no images"),
])
def test_bad_json_says_what(folder, change, message):
    with pytest.raises(DataError, match=message):
        read_inat_json(edit_json(folder, change), folder)


def test_truncated_json_is_named(folder):
    text = (folder / "train2018.json").read_text()
    with pytest.raises(DataError, match="cut.json is not valid JSON"):
        read_split(write(folder / "cut.json", text[: len(text) // 2]), folder)


def test_undecodable_image_names_the_file(folder):
    (folder / "train/n1/e.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    dataset = FolderDataset(read_list(folder / "train.txt", folder), train_transform(8))
    assert dataset[0][0].shape == (3, 8, 8)
    with pytest.raises(DataError, match=r"image .*train/n1/e.jpg cannot be decoded"):
        dataset[4]
    with pytest.raises(DataError, match=r"e.jpg cannot be decoded"):
        decode_resized(dataset.split, 4)


# --------------------------------------------------------------------------- DataLoader path


@pytest.mark.parametrize("transform", [train_transform(8), eval_transform(8, resize=10)])
def test_folder_loader_batches(folder, transform):
    split = read_list(folder / "train.txt", folder)
    loader = folder_loader(split, transform, batch_size=4)
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 2]
    images, labels = batches[0]
    assert images.shape == (4, 3, 8, 8) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 0, 0, 1]
    assert [len(y) for _, y in folder_loader(split, transform, 4, drop_last=True)] == [4]


def test_test_transform_normalises_with_imagenet_constants(folder):
    split = read_list(folder / "train.txt", folder)
    image, label = FolderDataset(split, eval_transform(8, resize=10))[5]  # a PNG: exact colour
    expected = (torch.tensor([30, 30, 200]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert label == 2 and torch.allclose(image, expected.view(3, 1, 1).expand(3, 8, 8), atol=1e-5)


def test_shuffle_is_seeded(folder):
    split = read_list(folder / "train.txt", folder)

    def order(seed):
        loader = folder_loader(split, eval_transform(4, resize=4), 6, shuffle=True, seed=seed)
        return next(iter(loader))[0][:, 0, 0, 0].tolist()  # colours identify the images

    assert order(1) == order(1)
    assert any(order(s) != order(1) for s in (2, 3, 4))
    with pytest.raises(ConfigError, match="shuffle=True or a sampler, not both"):
        folder_loader(split, train_transform(4), 2, shuffle=True, sampler=[0, 1])


# --------------------------------------------------------------------------- in-memory path


def test_decode_resized_shape_dtype_and_order(folder):
    split = read_inat_json(folder / "train2018.json", folder)
    images, labels = decode_resized(split, 6)
    assert images.shape == (6, 3, 6, 6) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.tolist() == split.labels.tolist()
    assert images[5].flatten(1).float().mean(1).round().tolist() == [30, 30, 200]  # f.png, last in order
    assert (images[3, 1] > images[3, 0]).all()                                      # d.png is green


def test_decode_resized_keeps_the_centre_of_a_wide_image(tmp_path):
    stripes = np.zeros((4, 12, 3), dtype=np.uint8)                 # H x W x C: red | green | blue
    stripes[:, :4, 0] = stripes[:, 4:8, 1] = stripes[:, 8:, 2] = 255
    Image.fromarray(stripes).save(tmp_path / "wide.png")
    Image.fromarray(stripes.transpose(1, 0, 2).copy()).save(tmp_path / "tall.png")
    split = FolderSplit(tmp_path, ("wide.png", "tall.png"), np.array([1, 0]), 2)
    images, labels = decode_resized(split, 4)
    green = torch.tensor([0, 255, 0], dtype=torch.uint8).view(3, 1, 1).expand(3, 4, 4)
    assert torch.equal(images[0], green) and torch.equal(images[1], green)
    assert labels.tolist() == [1, 0]
    small, _ = decode_resized(split, 2)                             # 12 x 4 -> 6 x 2, then the centre 2 x 2
    assert small.shape == (2, 3, 2, 2) and (small[:, 1] > 100).all() and (small[:, 0] < 100).all()


def test_decode_resized_in_a_worker_keeps_order(folder):
    split = read_list(folder / "train.txt", folder)
    serial, _ = decode_resized(split, 5)
    parallel, labels = decode_resized(split, 5, num_workers=1, batch_size=4)
    assert torch.equal(serial, parallel) and labels.tolist() == [0, 0, 0, 1, 1, 2]
