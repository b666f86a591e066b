"""Folder data sets: ImageNet-LT, Places-LT and iNaturalist-2018 as an image root plus split files.

A split file names each image by its path under the root and gives its label:
ImageNet-LT and Places-LT ship ``path label`` text lists, iNaturalist-2018 a COCO-style json (and
text lists in the same ``path label`` form). The readers check the split before any image is opened;
:func:`folder_loader` streams images through PIL transforms, and :func:`decode_resized` decodes a
whole split once into a uint8 tensor for the device-resident :class:`~ltlib.data.DeviceLoader`, and
:func:`load_folder_images` keeps that copy on disk (``$LTLIB_CACHE_DIR``) so that it is decoded once.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..core.env import available_cpus
from ..core.errors import ConfigError, DataError
from ..core.progress import track
from .sources import ImageSet


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The variables that name each data set's image root when no root argument is given.
ROOT_ENV = {
    "imagenet_lt": "LTLIB_IMAGENET_LT_DIR",
    "places_lt": "LTLIB_PLACES_LT_DIR",
    "inat2018": "LTLIB_INAT2018_DIR",
}
_ROOT_HINT = ("the root argument (data_dir) or the data set's variable ("
              + ", ".join(f"${v}" for v in ROOT_ENV.values()) + ")")
_SHOWN = 3  # missing files named in an error


@dataclass(frozen=True, eq=False)
class FolderSplit:
    """One split of a folder data set: image paths (relative to ``root``) and their int64 labels."""

    root: Path
    paths: tuple[str, ...]
    labels: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.int64)
        labels.setflags(write=False)  # frozen means the labels too
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "paths", tuple(self.paths))
        object.__setattr__(self, "labels", labels)
        if labels.ndim != 1 or len(labels) != len(self.paths):
            raise DataError(f"{len(self.paths)} paths but labels of shape {labels.shape}")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)


def folder_root(dataset: str, root: str | os.PathLike | None = None, root_env: str | None = None) -> Path:
    """A folder data set's image root: ``root``, else its ``$LTLIB_*_DIR`` variable (see ``ROOT_ENV``), or the
    variable ``root_env`` names for a data set registered by the user."""
    variable = root_env or ROOT_ENV.get(dataset)
    if variable is None and not root:
        raise ConfigError(f"unknown folder data set {dataset!r}: use one of {', '.join(ROOT_ENV)}, or pass a root")
    found = root or os.environ.get(variable)
    if not found:
        raise DataError(f"no image root for {dataset}: pass the root argument (data_dir) "
                        f"or set ${variable} to the folder the split files' paths start from")
    return Path(found)


# --------------------------------------------------------------------------- split files


def read_list(list_file: str | os.PathLike, root: str | os.PathLike, num_classes: int | None = None,
              check_files: bool = True) -> FolderSplit:
    """Read a ``relative/path.jpg label`` list (ImageNet-LT, Places-LT, iNaturalist text lists)."""
    list_file = Path(list_file)
    paths, labels, line_numbers = [], [], []
    for number, line in enumerate(_read_text(list_file, root).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataError(f"{list_file} line {number}: expected 'path label' (paths may not contain "
                            f"spaces), got {line.strip()!r}")
        try:
            label = int(fields[1])
        except ValueError:
            raise DataError(f"{list_file} line {number}: label {fields[1]!r} is not an integer "
                            f"(line {line.strip()!r})") from None
        paths.append(fields[0])
        labels.append(label)
        line_numbers.append(number)
    where = [f"line {n}" for n in line_numbers]
    return _make_split(list_file, root, paths, labels, where, num_classes, check_files)


def read_inat_json(json_file: str | os.PathLike, root: str | os.PathLike, num_classes: int | None = None,
                   check_files: bool = True) -> FolderSplit:
    """Read iNaturalist-2018's COCO-style ``train2018.json`` / ``val2018.json``, in ``images`` order.

    ``num_classes`` defaults to the ``categories`` list's largest id + 1 when the file has one, so a
    split that misses some classes still counts all of them.
    """
    json_file = Path(json_file)
    try:
        data = json.loads(_read_text(json_file, root))
        images, annotations = data["images"], data["annotations"]
        label_of: dict = {}
        for ann in annotations:
            image_id = ann["image_id"]
            if image_id in label_of:
                raise DataError(f"{json_file}: image id {image_id} has more than one annotation")
            label_of[image_id] = ann["category_id"]
        ids = [img["id"] for img in images]
        paths = [img["file_name"] for img in images]
        category_ids = [c["id"] for c in data.get("categories", ())]
    except json.JSONDecodeError as err:
        raise DataError(f"{json_file} is not valid JSON ({err}): truncated, or not an iNaturalist split file") from err
    except (KeyError, TypeError) as err:
        raise DataError(f"{json_file} is not an iNaturalist split file: expected 'images' with 'id' and "
                        "'file_name', and 'annotations' with 'image_id' and 'category_id' "
                        f"({type(err).__name__}: {err})") from None
    unlabelled = [i for i in ids if i not in label_of]
    if unlabelled:
        raise DataError(f"{json_file}: {len(unlabelled)} images have no annotation (first image ids: "
                        f"{unlabelled[:_SHOWN]}); a train/val split labels every image. The test file has no "
                        "labels and cannot be read as a split.")
    labels = []
    for image_id in ids:
        label = label_of[image_id]
        if isinstance(label, bool) or not isinstance(label, int):
            raise DataError(f"{json_file}: image id {image_id} has category_id {label!r}, not an integer")
        labels.append(label)
    if num_classes is None and category_ids and all(isinstance(c, int) for c in category_ids):
        num_classes = max(category_ids) + 1
    where = [f"image id {i}" for i in ids]
    return _make_split(json_file, root, paths, labels, where, num_classes, check_files)


def read_split(file: str | os.PathLike, root: str | os.PathLike, num_classes: int | None = None,
               check_files: bool = True) -> FolderSplit:
    """Read a split file by its suffix: ``.json`` is iNaturalist's json, anything else a ``path label`` list."""
    reader = read_inat_json if Path(file).suffix.lower() == ".json" else read_list
    return reader(file, root, num_classes, check_files)


def _read_text(path: Path, root: str | os.PathLike) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise DataError(f"split file {path} not found: pass the path of an existing split file. The image "
                        f"paths it lists are read under the image root ({root}), which {_ROOT_HINT} sets") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"split file {path} cannot be read as text ({err})") from err


def _make_split(source: Path, root: str | os.PathLike, paths: list[str], labels: list[int], where: list[str],
                num_classes: int | None, check_files: bool) -> FolderSplit:
    """Check the labels' range and the files' presence, then build the split."""
    if not paths:
        raise DataError(f"{source} lists no images: an empty split")
    labels_np = np.asarray(labels, dtype=np.int64)
    if num_classes is None:
        num_classes = int(labels_np.max()) + 1
    bad = np.flatnonzero((labels_np < 0) | (labels_np >= num_classes))
    if bad.size:
        i = bad[0]
        raise DataError(f"{source} {where[i]}: label {labels_np[i]} is outside [0, {num_classes}) "
                        f"({bad.size} of {len(labels_np)} labels out of range)")
    root = Path(root)
    if check_files:
        missing = [p for p in paths if not os.path.isfile(os.path.join(root, p))]
        if missing:
            raise DataError(f"{len(missing)} of {len(paths)} images listed in {source} are missing under "
                            f"{root} (first: {', '.join(missing[:_SHOWN])}). Set {_ROOT_HINT} to the "
                            "folder these paths start from.")
    return FolderSplit(root, tuple(paths), labels_np, num_classes)


# --------------------------------------------------------------------------- streaming path


def train_transform(size: int = 224) -> Callable:
    """The standard ImageNet training augmentation: random-resized crop, flip, normalise."""
    from torchvision import transforms  # imported here: it costs every ltlib import ~2 s

    return transforms.Compose([
        transforms.RandomResizedCrop(size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def eval_transform(size: int = 224, resize: int = 256) -> Callable:
    """The standard ImageNet evaluation view: shorter side to ``resize``, centre ``size`` crop, normalise."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(resize),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def open_rgb(path: Path, draft_size: int | None = None) -> Image.Image:
    """Decode one image file as RGB; an unreadable file raises :class:`DataError` naming it.

    ``draft_size`` lets a JPEG decode at 1/2, 1/4 or 1/8 scale, never below that many pixels a side:
    far less work when a large image is shrunk to a small copy anyway.
    """
    try:
        with Image.open(path) as img:
            if draft_size is not None:
                img.draft("RGB", (draft_size, draft_size))
            return img.convert("RGB")  # convert() decodes now, inside the try
    except FileNotFoundError:
        raise DataError(f"image {path} is missing") from None
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"image {path} cannot be decoded ({type(err).__name__}: {err})") from err


class FolderDataset(Dataset):
    """``(image, label)`` pairs of a :class:`FolderSplit`, each image decoded by PIL and passed to ``transform``."""

    def __init__(self, split: FolderSplit, transform: Callable | None = None) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = open_rgb(self.split.root / self.split.paths[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.split.labels[index])


def folder_loader(split: FolderSplit, transform: Callable, batch_size: int, *, shuffle: bool = False,
                  sampler: Iterable[int] | None = None, num_workers: int = 0, drop_last: bool = False,
                  seed: int = 0) -> DataLoader:
    """A torch DataLoader over a folder split, for data sets too large to sit on the device.

    ``seed`` seeds the shuffle order and the worker processes' random streams (so their
    augmentation); with ``num_workers=0`` the transforms draw from the global torch generator
    (:func:`ltlib.core.env.seed_everything`). ``sampler`` is a torch sampler (any iterable of indices).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if num_workers < 0:
        raise ConfigError(f"num_workers must be 0 or more, got {num_workers}")
    if shuffle and sampler is not None:
        raise ConfigError("pass shuffle=True or a sampler, not both: the sampler decides the order")
    return DataLoader(
        FolderDataset(split, transform), batch_size=batch_size, shuffle=shuffle, sampler=sampler,
        num_workers=num_workers, drop_last=drop_last, pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(seed), persistent_workers=num_workers > 0,
    )


# --------------------------------------------------------------------------- in-memory path


def resize_center_crop(image: Image.Image, size: int) -> np.ndarray:
    """Shorter side to ``size`` (bilinear, antialiased), then the centre ``size x size``: ``size x size x 3`` uint8."""
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.array(image.crop((left, top, left + size, top + size)))  # a writable copy for torch


class _Resized(Dataset):
    """Each image of a split as a ``3 x size x size`` uint8 tensor (the work :func:`decode_resized` spreads)."""

    def __init__(self, split: FolderSplit, size: int) -> None:
        self.split, self.size = split, size

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = open_rgb(self.split.root / self.split.paths[index], draft_size=self.size)
        return torch.from_numpy(resize_center_crop(image, self.size)).permute(2, 0, 1)


def decode_resized(split: FolderSplit, size: int, num_workers: int = 0, batch_size: int = 256,
                   out: torch.Tensor | None = None, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a whole split into ``N x 3 x size x size`` uint8 images (no normalisation) and int64 labels.

    Meant for small copies (say 64 or 112 pixels: ImageNet-LT's 115,846 training images take 1.4 GB
    at 64) that then feed the device-resident :class:`~ltlib.data.DeviceLoader` as an ``ImageSet``.
    Each image's shorter side is resized to ``size`` and the centre square kept; labels keep the
    split's order. ``num_workers > 0`` decodes in that many worker processes. ``out`` is the tensor to
    fill (a memory-mapped file, say); ``progress`` shows a bar.
    """
    if size < 1:
        raise ConfigError(f"size must be at least 1 pixel, got {size}")
    if num_workers < 0:
        raise ConfigError(f"num_workers must be 0 or more, got {num_workers}")
    shape = (len(split), 3, size, size)
    if out is not None and (tuple(out.shape) != shape or out.dtype != torch.uint8):
        raise ValueError(f"out must be a uint8 tensor of shape {shape}, got {out.dtype} {tuple(out.shape)}")
    images = torch.empty(shape, dtype=torch.uint8) if out is None else out  # filled in place: one copy
    loader = DataLoader(_Resized(split, size), batch_size=batch_size, num_workers=num_workers)
    start = 0
    for batch in track(loader, f"decoding {len(split):,} images at {size} px", enabled=progress, unit="batches"):
        images[start:start + len(batch)] = batch
        start += len(batch)
    return images, torch.from_numpy(split.labels.copy())


# --------------------------------------------------------------------------- the decoded copy on disk


def cache_dir() -> Path:
    """Where decoded copies of folder data sets are kept: ``$LTLIB_CACHE_DIR``, else ``~/.cache/ltlib``."""
    return Path(os.environ.get("LTLIB_CACHE_DIR") or Path.home() / ".cache" / "ltlib")


def find_split_file(root: Path, name: str | tuple[str, ...]) -> Path:
    """The split file ``name`` (or the first of several names, in order) in ``root`` or in a folder directly below
    it (the ImageNet-LT lists often sit in ``ImageNet_LT/``)."""
    names = (name,) if isinstance(name, str) else tuple(name)
    folders = [root] + ([d for d in sorted(root.iterdir()) if d.is_dir()] if root.is_dir() else [])
    for candidate in names:
        for folder in folders:
            if (folder / candidate).is_file():
                return folder / candidate
    raise DataError(f"split file {' or '.join(names)} not found in {root} or the folders directly below it: put the "
                    f"data set's split files there (or a link to them), or point {_ROOT_HINT} at the right root")


def read_folder_split(dataset: str, file_name: str | tuple[str, ...], root: str | os.PathLike | None,
                      num_classes: int, *, root_env: str | None = None) -> FolderSplit:
    """A folder data set's split as listed (every image checked to exist), for the streaming path."""
    root_path = folder_root(dataset, root, root_env)
    return read_split(find_split_file(root_path, file_name), root_path, num_classes)


def load_folder_images(dataset: str, split: str, file_name: str | tuple[str, ...], root: str | os.PathLike | None,
                       num_classes: int, size: int, *, root_env: str | None = None,
                       num_workers: int | None = None) -> ImageSet:
    """A folder data set's split as an ``ImageSet`` of ``size x size`` images (shorter side to ``size``, centre
    square), decoded once and kept as a ``.npy`` file under :func:`cache_dir`, then memory-mapped.

    The file's name holds a hash of the split file, the root and the size, so a changed list is decoded
    again; it is written under a temporary name and renamed, so an interrupted decode leaves nothing
    half-written. The memory map lets every process of a ``torchrun`` job share one copy in memory.
    """
    root_path = folder_root(dataset, root, root_env)
    path = find_split_file(root_path, file_name)
    key = hashlib.sha256(path.read_bytes() + f"\0{root_path.resolve()}\0{size}".encode()).hexdigest()[:12]
    target = cache_dir() / f"{dataset}-{split}-{size}px-{key}.npy"
    parsed = read_split(path, root_path, num_classes, check_files=not target.is_file())
    if not target.is_file():
        _write_decoded(parsed, size, target, num_workers)
    try:
        images = np.load(target, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise DataError(f"the decoded copy {target} cannot be read ({err}): delete it to decode again") from err
    if images.shape != (len(parsed), 3, size, size) or images.dtype != np.uint8:
        raise DataError(f"the decoded copy {target} holds {images.dtype} {images.shape}, not {len(parsed)} images "
                        f"of 3 x {size} x {size}: delete it to decode again")
    with warnings.catch_warnings():  # read-only on purpose: the training loop never writes to its data
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.from_numpy(images)
    return ImageSet(tensor, torch.from_numpy(parsed.labels.copy()), tuple(str(c) for c in range(num_classes)))


def _write_decoded(split: FolderSplit, size: int, target: Path, num_workers: int | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.stem}.partial-{os.getpid()}.npy")
    workers = min(16, available_cpus()) if num_workers is None else num_workers
    try:
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(split), 3, size, size))
        decode_resized(split, size, num_workers=workers, out=torch.from_numpy(array), progress=True)
        array.flush()
        del array
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
