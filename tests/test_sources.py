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
    with pytest.raises(DataError, match="not a CIFAR pickle ltlib can read safely: it asks for posix.system"):
        load_pickle_restricted(path)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4])
def test_cifar_resaved_by_python3_loads_at_protocols_0_to_4(tmp_path, protocol):
    """The official files re-saved by Python 3 (protocols 0-2 write bytes through _codecs.encode) load unchanged."""
    root = make_cifar(tmp_path / "c", 10, per_class_train=5, per_class_test=1)
    official = load_cifar(10, "train", root)
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        with open(root / name, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
        (root / name).write_bytes(pickle.dumps(obj, protocol=protocol))
    assert (b"_codecs" in (root / "data_batch_1").read_bytes()) == (protocol <= 2)
    again = load_cifar(10, "train", root)
    assert torch.equal(again.images, official.images) and torch.equal(again.labels, official.labels)
    assert again.classes == official.classes


def test_cifar_at_protocol_5_is_refused_with_the_name_it_asks_for(tmp_path):
    """Protocol 5 rebuilds arrays through numpy's _frombuffer, which the unpickler does not admit (only
    _codecs.encode was added): a clear refusal, not a crash."""
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=5))
    with pytest.raises(DataError, match="it asks for numpy.*_frombuffer.*protocol 2 to 4"):
        load_pickle_restricted(path)


class _Marker:
    """A payload that would write a file if it ran: its absence shows nothing ran."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("where", ["data_batch_1", "batches.meta"])
def test_tampered_cifar_files_are_refused_at_every_protocol_without_running_anything(tmp_path, protocol, where):
    root = make_cifar(tmp_path / "c", 10, per_class_train=5, per_class_test=1)
    marker = tmp_path / "ran"
    with open(root / where, "rb") as f:
        obj = pickle.load(f, encoding="bytes")
    key = b"data" if where == "data_batch_1" else b"label_names"
    obj[key] = _Marker(marker)
    (root / where).write_bytes(pickle.dumps(obj, protocol=protocol))
    with pytest.raises(DataError, match="not a CIFAR pickle ltlib can read safely: it asks for (io|builtins).open"):
        load_cifar(10, "train", root)
    assert not marker.exists()


def test_codecs_encode_is_the_only_new_name(tmp_path):
    """_codecs.encode is admitted; its neighbours (decode, lookup) and codecs' own functions are not."""
    for module, name in (("_codecs", "decode"), ("_codecs", "lookup"), ("codecs", "encode")):
        path = tmp_path / f"{module}-{name}"
        path.write_bytes(f"c{module}\n{name}\n(S'x'\ntR.".encode())
        with pytest.raises(DataError, match=f"it asks for {module}.{name}"):
            load_pickle_restricted(path)


def test_restricted_unpickler_refuses_builtins_eval(tmp_path):
    path = tmp_path / "test_batch"
    # a hand-written pickle calling builtins.eval: GLOBAL, then a tuple argument, then REDUCE
    path.write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(DataError, match="it asks for builtins.eval"):
        load_pickle_restricted(path)


def test_truncated_cifar_pickle_names_the_file(tmp_path):
    root = make_cifar(tmp_path / "c", 100, per_class_train=2, per_class_test=1)
    raw = (root / "train").read_bytes()
    (root / "train").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataError, match="train is truncated or corrupt"):
        load_cifar(100, "train", root)
