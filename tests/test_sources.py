import gzip
import pickle

import numpy as np
import pytest
import torch

from conftest import make_cifar, make_fashion_mnist, py2_pickle_bytes, write_idx
from ltlib.data.sources import load_cifar, load_fashion_mnist, load_pickle_restricted
from ltlib.core.errors import DataError


def test_fashion_mnist_reads_idx(fmnist_dir):
    train = load_fashion_mnist("train", fmnist_dir)
    test = load_fashion_mnist("test", fmnist_dir)
    assert train.images.shape == (2200, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (200, 1, 28, 28)
    assert train.labels[:10].tolist() == list(range(10))
    assert train.classes[9] == "Ankle boot"


def test_fashion_mnist_dir_from_environment(fmnist_dir, monkeypatch):
    monkeypatch.setenv("LTLIB_FASHION_MNIST_DIR", str(fmnist_dir))
    assert len(load_fashion_mnist("test")) == 200


def test_missing_directory_names_the_apt_package(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path / "nowhere")


def test_wrong_magic_number_is_rejected(tmp_path):
    root = make_fashion_mnist(tmp_path / "f")
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.zeros(200), 2051)  # an images magic on a labels file
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz has magic number 2051"):
        load_fashion_mnist("test", root)


def test_truncated_payload_names_the_file(tmp_path):
    root = make_fashion_mnist(tmp_path / "f")
    path = root / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz is truncated or corrupt"):
        load_fashion_mnist("test", root)


def test_corrupt_gzip_names_the_file(tmp_path):
    root = make_fashion_mnist(tmp_path / "f")
    path = root / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # cut the gzip stream
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        load_fashion_mnist("train", root)


def test_image_and_label_counts_must_agree(tmp_path):
    root = make_fashion_mnist(tmp_path / "f")
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.zeros(199), 2049)
    with pytest.raises(DataError, match="200 images but .* 199 labels"):
        load_fashion_mnist("test", root)


@pytest.mark.parametrize("num_classes", [10, 100])
def test_cifar_reads_the_official_pickle_format(tmp_path, num_classes):
    root = make_cifar(tmp_path / "c", num_classes, per_class_train=5, per_class_test=2)
    train = load_cifar(num_classes, "train", root)
    test = load_cifar(num_classes, "test", root)
    assert train.images.shape == (5 * num_classes, 3, 32, 32) and train.images.dtype == torch.uint8
    assert len(test) == 2 * num_classes
    assert np.bincount(train.labels.numpy()).tolist() == [5] * num_classes
    assert train.classes[1] == ("automobile" if num_classes == 10 else "fine1")


def test_cifar_test_files_are_python2_pickles(tmp_path):
    root = make_cifar(tmp_path / "c", 10, per_class_train=5, per_class_test=1)
    raw = (root / "data_batch_1").read_bytes()
    assert raw[:2] == b"\x80\x02" and b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"_codecs" not in raw


def test_cifar_keeps_file_order_and_channel_planes(tmp_path):
    root = make_cifar(tmp_path / "c", 10, per_class_train=5, per_class_test=1)
    with open(root / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="bytes")
    train = load_cifar(10, "train", root)
    assert train.labels[:10].tolist() == first[b"labels"]
    # the 3072 bytes are three 1024-byte planes (R, G, B), each row-major 32x32
    assert torch.equal(train.images[0, 1].flatten(), torch.from_numpy(first[b"data"][0, 1024:2048]))


def test_cifar_missing_folder_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match="cifar-100-python.tar.gz"):
        load_cifar(100, "train", tmp_path / "none")


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_code(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_pickle_bytes({b"data": _Evil(), b"labels": [0]}))
    with pytest.raises(DataError, match="refusing to load posix.system"):
        load_pickle_restricted(path)


def test_restricted_unpickler_refuses_builtins_eval(tmp_path):
    path = tmp_path / "test_batch"
    # a hand-written pickle calling builtins.eval: GLOBAL, then a tuple argument, then REDUCE
    path.write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(DataError, match="refusing to load builtins.eval"):
        load_pickle_restricted(path)


def test_truncated_cifar_pickle_names_the_file(tmp_path):
    root = make_cifar(tmp_path / "c", 100, per_class_train=2, per_class_test=1)
    raw = (root / "train").read_bytes()
    (root / "train").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataError, match="train is truncated or corrupt"):
        load_cifar(100, "train", root)
