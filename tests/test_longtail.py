import numpy as np
import pytest

from ltlib.data.longtail import (check_imbalance_factor, class_groups, holdout_split, lt_counts, select_longtail,
                                 unused_split)
from ltlib.core.errors import ConfigError

# algorithms.md §1.1
CIFAR10 = {
    10: [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500],
    50: [5000, 3237, 2096, 1357, 878, 568, 368, 238, 154, 100],
    100: [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50],
    200: [5000, 2775, 1540, 854, 474, 263, 146, 81, 45, 25],
}
CIFAR100_IF100 = [int(x) for x in """
500 477 455 434 415 396 378 361 344 328 314 299 286 273 260 248 237 226 216 206
197 188 179 171 163 156 149 142 135 129 123 118 112 107 102 98 93 89 85 81
77 74 70 67 64 61 58 56 53 51 48 46 44 42 40 38 36 35 33 32
30 29 27 26 25 24 23 22 21 20 19 18 17 16 15 15 14 13 13 12
12 11 11 10 10 9 9 8 8 7 7 7 6 6 6 6 5 5 5 5""".split()]
CIFAR100_IF200_TAIL = [4, 3, 3, 3, 3, 3, 2, 2, 2, 2]
CIFAR100_IF50_HEAD = [500, 480, 462, 444, 426, 410, 394, 379, 364, 350]
CIFAR100_IF10_TAIL = [61, 60, 58, 57, 56, 54, 53, 52, 51, 50]
TOTALS = {(10, 10): 20431, (10, 50): 13996, (10, 100): 12406, (10, 200): 11203,
          (100, 10): 19573, (100, 50): 12608, (100, 100): 10847, (100, 200): 9502}


@pytest.mark.parametrize("imbalance_factor", [10, 50, 100, 200])
def test_cifar10_counts(imbalance_factor):
    assert lt_counts(5000, 10, imbalance_factor) == CIFAR10[imbalance_factor]


def test_cifar100_counts():
    assert lt_counts(500, 100, 100) == CIFAR100_IF100
    assert lt_counts(500, 100, 200)[-10:] == CIFAR100_IF200_TAIL
    assert lt_counts(500, 100, 50)[:10] == CIFAR100_IF50_HEAD
    assert lt_counts(500, 100, 10)[-10:] == CIFAR100_IF10_TAIL


@pytest.mark.parametrize("num_classes,imbalance_factor", sorted(TOTALS))
def test_totals(num_classes, imbalance_factor):
    counts = lt_counts(50000 // num_classes, num_classes, imbalance_factor)
    assert sum(counts) == TOTALS[num_classes, imbalance_factor]
    assert counts == sorted(counts, reverse=True)


def test_fashion_mnist_counts():
    # pitfalls.md §5 and quick-profile-pilot.md
    assert lt_counts(6000, 10, 100) == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    assert sum(lt_counts(6000, 10, 100)) == 14886
    assert lt_counts(1000, 10, 100) == [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
    assert sum(lt_counts(1000, 10, 100)) == 2478


def test_step_profile_covers_every_class():
    assert lt_counts(500, 10, 10, "step") == [500] * 5 + [50] * 5
    assert len(lt_counts(500, 7, 10, "step")) == 7  # the references give C-1 counts when C is odd


@pytest.mark.parametrize("bad", [0.99, 0.5, 0, -3, float("nan"), float("inf"), "100", None, True])
def test_bad_imbalance_factor(bad):
    with pytest.raises(ConfigError, match="imbalance_factor must be"):
        check_imbalance_factor(bad)


def test_imbalance_factor_one_is_the_balanced_control():
    assert lt_counts(248, 10, 1) == [248] * 10
    assert lt_counts(248, 10, 1, "step") == [248] * 10


def test_first_mode_keeps_file_order():
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    assert select_longtail(labels, [3, 1], "first").tolist() == [0, 2, 4, 1]


def _ldam_reference(labels, counts, seed):
    """LDAM-DRW's gen_imbalanced_data, written out: global seed, then one shuffle per class in order."""
    np.random.seed(seed)
    out = []
    for c, n in zip(np.unique(labels), counts):
        idx = np.where(labels == c)[0]
        np.random.shuffle(idx)
        out.extend(idx[:n])
    return np.array(out)


def test_shuffle_mode_matches_ldam_drw():
    labels = np.random.default_rng(1).integers(0, 5, 400)
    counts = lt_counts(60, 5, 10)
    for seed in (0, 7):
        assert select_longtail(labels, counts, "shuffle", seed).tolist() == _ldam_reference(labels, counts, seed).tolist()
    assert select_longtail(labels, counts, "shuffle", 0).tolist() != select_longtail(labels, counts, "shuffle", 1).tolist()


def test_unknown_subset_mode_lists_valid():
    with pytest.raises(ConfigError, match="first"):
        select_longtail(np.zeros(3, int), [1], "random")


def test_holdout_split_is_disjoint_and_per_class():
    labels = np.repeat(np.arange(3), 50)
    idx = select_longtail(labels, [40, 10, 2], "first")
    train, val = holdout_split(labels, idx, 0.25, seed=0)
    assert not set(train) & set(val) and sorted(set(train) | set(val)) == sorted(idx)
    assert np.bincount(labels[val], minlength=3).tolist() == [10, 2, 0]  # round(0.5) = 0, one image always kept to train
    assert holdout_split(labels, idx, 0.25, seed=0)[1].tolist() == val.tolist()


def test_unused_split_is_balanced_and_disjoint():
    labels = np.repeat(np.arange(3), 50)
    idx = select_longtail(labels, [40, 10, 2], "first")
    val = unused_split(labels, idx, 5, 3, seed=0)
    assert np.bincount(labels[val]).tolist() == [5, 5, 5] and not set(val) & set(idx)
    with pytest.raises(ConfigError, match="class 0"):
        unused_split(labels, idx, 11, 3, seed=0)


def test_groups_cifar100():
    # algorithms.md §1.2
    expected = {(100, "strict"): (35, 35, 30), (100, "inclusive"): (35, 34, 31),
                (50, "strict"): (41, 41, 18), (50, "inclusive"): (41, 40, 19),
                (200, "strict"): (30, 31, 39), (200, "inclusive"): (31, 29, 40)}
    for (imbalance_factor, scheme), sizes in expected.items():
        groups = class_groups(lt_counts(500, 100, imbalance_factor), scheme)
        assert tuple(len(m) for m in groups.members) == sizes, (imbalance_factor, scheme)
    assert 69 in class_groups(CIFAR100_IF100, "inclusive").members[2]  # n = 20 is "few" for CC-SAM
    assert 69 in class_groups(CIFAR100_IF100, "strict").members[1]


def test_groups_fashion_mnist_quick():
    counts = lt_counts(1000, 10, 100)
    assert class_groups(counts, "strict").as_dict() == {"many": [0, 1, 2, 3, 4], "medium": [5, 6, 7], "few": [8, 9]}
    assert class_groups(counts, "thirds").as_dict() == {"many": [0, 1, 2], "medium": [3, 4, 5, 6], "few": [7, 8, 9]}
    assert class_groups(lt_counts(6000, 10, 100), "strict").members[2] == ()  # the absolute rule degenerates
    assert "strict" in class_groups(counts).label()


def test_unknown_group_scheme_lists_valid():
    with pytest.raises(ConfigError, match="thirds"):
        class_groups([5, 1], "tertiles")
