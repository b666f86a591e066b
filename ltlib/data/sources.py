"""Raw data sets as uint8 tensors: Fashion-MNIST (IDX ``.gz``) and CIFAR-10/100 (python pickle).

Each loader returns an :class:`ImageSet` with images of shape ``N x C x H x W`` (uint8) and int64
labels in file order, so that long-tailed subsets can be drawn exactly as the reference code does.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.errors import DataError


FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class ImageSet:
    """Images (``N x C x H x W`` uint8), labels (``N`` int64) and their class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(f"images must be uint8 N x C x H x W, got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: np.ndarray | torch.Tensor) -> "ImageSet":
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageSet(self.images[idx], self.labels[idx], self.classes)


# --------------------------------------------------------------------------- Fashion-MNIST (IDX)

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension


def fashion_mnist_dir(root: str | os.PathLike | None = None) -> Path:
    """The Fashion-MNIST folder: ``root``, else ``$LTLIB_FASHION_MNIST_DIR``, else the Debian path."""
    return Path(root or os.environ.get("LTLIB_FASHION_MNIST_DIR") or FASHION_MNIST_DIR)


def read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """Read one gzipped IDX file, checking the magic number and that the payload matches the header."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path} is missing") from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} is truncated or corrupt ({err}); reinstall the data set "
                        "(sudo apt-get install --reinstall dataset-fashion-mnist)") from err
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: {len(raw)} bytes, shorter than its {header}-byte header")
    found, *dims = struct.unpack(f">{1 + ndim}I", raw[:header])
    if found != magic:
        raise DataError(f"{path} has magic number {found}, expected {magic}: not an IDX file of this kind")
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"{path} is truncated or corrupt: header says {dims} ({expected} bytes), "
                        f"payload has {len(raw) - header} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_fashion_mnist(split: str = "train", root: str | os.PathLike | None = None) -> ImageSet:
    """Fashion-MNIST ``split`` ("train" or "test") as 1 x 28 x 28 uint8 images."""
    if split not in _IDX_FILES:
        raise DataError(f"unknown split {split!r}: use 'train' or 'test'")
    folder = fashion_mnist_dir(root)
    if not folder.is_dir():
        raise DataError(
            f"Fashion-MNIST not found: {folder} does not exist. Install it with "
            "`sudo apt-get install dataset-fashion-mnist` (it goes to /usr/share/datasets/fashion-mnist), "
            "or point LTLIB_FASHION_MNIST_DIR (or the data_dir argument) at a folder holding the four IDX .gz files."
        )
    image_file, label_file = (folder / name for name in _IDX_FILES[split])
    images = read_idx(image_file, _IDX_IMAGES_MAGIC, 3)
    labels = read_idx(label_file, _IDX_LABELS_MAGIC, 1)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{image_file} holds {images.shape[1]}x{images.shape[2]} images, expected 28x28")
    if len(images) != len(labels):
        raise DataError(f"{image_file} has {len(images)} images but {label_file} has {len(labels)} labels")
    if labels.size and labels.max() >= 10:
        raise DataError(f"{label_file} has label {labels.max()}, expected 0..9")
    return ImageSet(
        torch.from_numpy(images.copy()).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
        FASHION_MNIST_CLASSES,
    )


# --------------------------------------------------------------------------- CIFAR (python pickle)

_CIFAR = {
    10: dict(env="LTLIB_CIFAR10_DIR", folder="cifar-10-batches-py", label_key=b"labels",
             train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"], meta=("batches.meta", b"label_names"),
             url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    100: dict(env="LTLIB_CIFAR100_DIR", folder="cifar-100-python", label_key=b"fine_labels",
              train=["train"], test=["test"], meta=("meta", b"fine_label_names"),
              url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
}

# What the official CIFAR pickles need: numpy arrays and their dtype; and what the same data re-saved by Python 3 at
# pickle protocols 0-2 needs: _codecs.encode, through which those protocols write bytes (it turns a str into bytes;
# torch.load(weights_only=True) admits it for the same reason). Nothing here can run code.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _Refused(pickle.UnpicklingError):
    """A pickle asked for a global outside the CIFAR format's few numpy names."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits dicts, lists, bytes, numbers and numpy arrays; refuses any other global."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise _Refused(f"it asks for {module}.{name}, which a CIFAR file of arrays and lists never needs; "
                       "refusing to load it")


def load_pickle_restricted(path: Path) -> dict:
    """Load one CIFAR python-pickle file without letting it run code."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} is missing") from None
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _Refused as err:
        raise DataError(f"{path} is not a CIFAR pickle ltlib can read safely: {err}. Use the official files "
                        "(or re-save the arrays at pickle protocol 2 to 4)") from err
    except Exception as err:  # truncated or garbage bytes
        raise DataError(f"{path} is truncated or corrupt ({type(err).__name__}: {err})") from err
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, expected a dict of arrays")
    return obj


def cifar_dir(num_classes: int, root: str | os.PathLike | None = None) -> Path:
    """The CIFAR folder: ``root``, else ``$LTLIB_CIFAR{10,100}_DIR``, else ``~/.cache/ltlib/<official name>``."""
    spec = _CIFAR[num_classes]
    default = Path.home() / ".cache" / "ltlib" / spec["folder"]
    return Path(root or os.environ.get(spec["env"]) or default)


def load_cifar(num_classes: int, split: str = "train", root: str | os.PathLike | None = None) -> ImageSet:
    """CIFAR-10 or CIFAR-100 (fine labels) from the official python-pickle files, 3 x 32 x 32 uint8."""
    if num_classes not in _CIFAR:
        raise DataError(f"CIFAR has 10 or 100 classes, not {num_classes}")
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}: use 'train' or 'test'")
    spec = _CIFAR[num_classes]
    folder = cifar_dir(num_classes, root)
    if not folder.is_dir():
        raise DataError(
            f"CIFAR-{num_classes} not found: {folder} does not exist. Download {spec['url']}, extract it, and "
            f"point {spec['env']} (or the data_dir argument) at the extracted '{spec['folder']}' folder."
        )
    images, labels = [], []
    for name in spec[split]:
        path = folder / name
        batch = load_pickle_restricted(path)
        try:
            data, lab = batch[b"data"], batch[spec["label_key"]]
        except KeyError as err:
            raise DataError(f"{path} lacks the key {err.args[0]!r}: not a CIFAR-{num_classes} file") from None
        data = np.asarray(data)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(lab):
            raise DataError(f"{path}: expected uint8 data of shape (N, 3072) with N labels, "
                            f"got {data.dtype} {data.shape} and {len(lab)} labels")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(lab, dtype=np.int64))
    labels_np = np.concatenate(labels)
    if labels_np.size and (labels_np.min() < 0 or labels_np.max() >= num_classes):
        raise DataError(f"CIFAR-{num_classes} labels outside 0..{num_classes - 1} in {folder}")
    return ImageSet(
        torch.from_numpy(np.concatenate(images)),
        torch.from_numpy(labels_np),
        _cifar_class_names(num_classes, folder),
    )


def _cifar_class_names(num_classes: int, folder: Path) -> tuple[str, ...]:
    meta_file, key = _CIFAR[num_classes]["meta"]
    if (folder / meta_file).is_file():
        names = load_pickle_restricted(folder / meta_file).get(key)
        if names is not None and len(names) == num_classes:
            return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return CIFAR10_CLASSES if num_classes == 10 else tuple(f"class {i}" for i in range(num_classes))
