"""Shared fixtures: tiny data sets written in the exact on-disk formats ltlib reads."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch


def pytest_configure(config) -> None:
    """Under pytest-xdist (``make test`` runs one worker per core), each worker, and every process it starts, uses one
    thread: two workers of two threads each would oversubscribe two cores, and torch's threads then wait on each
    other. Training runs use one thread anyway (``LTLIB_RUN_THREADS``), so no result depends on this."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_fashion_mnist(root: Path, per_class_train: int = 220, per_class_test: int = 20, seed: int = 0) -> Path:
    """Fashion-MNIST-shaped IDX files: class c images are noise around a class-specific brightness."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, per_class in (("train", per_class_train), ("t10k", per_class_test)):
        labels = np.tile(np.arange(10), per_class)          # interleaved, as in the real files
        images = rng.integers(0, 60, (len(labels), 28, 28)) + (labels * 19)[:, None, None]
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images, 2051)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels, 2049)
    return root


class Py2Pickler(pickle._Pickler):
    """Writes pickles as Python 2's cPickle wrote the official CIFAR files: protocol 2, every string a
    BINSTRING (so it loads as bytes with ``encoding="bytes"``), numpy under ``numpy.core.multiarray``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string
    dispatch[str] = save_py2_string


def py2_pickle_bytes(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def make_cifar(root: Path, num_classes: int, per_class_train: int = 30, per_class_test: int = 5,
               seed: int = 0) -> Path:
    """Files in the official CIFAR python-pickle format (protocol 2, bytes keys, uint8 N x 3072 arrays)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    label_key = b"labels" if num_classes == 10 else b"fine_labels"

    def batch(n_per_class: int, name: str) -> dict:
        labels = rng.permutation(np.repeat(np.arange(num_classes), n_per_class)).tolist()
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        d = {b"batch_label": name.encode(), label_key: labels, b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
        if num_classes == 100:
            d[b"coarse_labels"] = [l // 5 for l in labels]
        return d

    def dump(obj, name):
        (root / name).write_bytes(py2_pickle_bytes(obj))

    if num_classes == 10:
        assert per_class_train % 5 == 0
        for i in range(1, 6):
            dump(batch(per_class_train // 5, f"training batch {i} of 5"), f"data_batch_{i}")
        dump(batch(per_class_test, "testing batch 1 of 1"), "test_batch")
        dump({b"label_names": [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog",
                                                     "frog", "horse", "ship", "truck")],
              b"num_cases_per_batch": 10000, b"num_vis": 3072}, "batches.meta")
    else:
        dump(batch(per_class_train, "training batch 1 of 1"), "train")
        dump(batch(per_class_test, "testing batch 1 of 1"), "test")
        dump({b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
              b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}, "meta")
    return root


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory) -> Path:
    return make_fashion_mnist(tmp_path_factory.mktemp("fashion-mnist"))


@pytest.fixture()
def fake_fmnist(fmnist_dir, monkeypatch) -> Path:
    """Point ltlib at the tiny synthetic Fashion-MNIST (and clear the raw-data cache)."""
    from ltlib.data import datasets

    monkeypatch.setenv("LTLIB_FASHION_MNIST_DIR", str(fmnist_dir))
    datasets._raw.cache_clear()
    yield fmnist_dir
    datasets._raw.cache_clear()


@pytest.fixture()
def exp_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "exp"
    monkeypatch.setenv("LTLIB_EXP_DIR", str(d))
    return d
