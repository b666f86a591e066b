"""`make tutorial`'s parameters per notebook: the short path, the full path, clear errors, and its timings files."""
import json

import papermill
import pytest

from ltlib.tools.tutorial import is_summary, notebooks, tutorial_parameters

ALL = {"profile", "dataset", "seeds", "extras"}


def test_the_short_path_runs_one_seed_without_extras_and_the_headline_rows_on_n_seeds():
    assert tutorial_parameters("01.ipynb", {"profile", "dataset", "seeds"}, "quick", "fashion_mnist_lt") == \
        {"profile": "quick", "dataset": "fashion_mnist_lt", "seeds": [0]}
    assert tutorial_parameters("03.ipynb", ALL, "quick", "d", seeds=3) == \
        {"profile": "quick", "dataset": "d", "seeds": [0], "extras": False}
    assert tutorial_parameters("07.ipynb", {"profile", "dataset", "seeds"}, "quick", "d", seeds=3, last=True) == \
        {"profile": "quick", "dataset": "d", "seeds": [0, 1, 2]}
    assert tutorial_parameters("07.ipynb", {"profile", "dataset", "seeds"}, "quick", "d", last=True)["seeds"] == [0]


def test_the_full_path_keeps_each_notebooks_defaults_unless_seeds_are_given():
    assert tutorial_parameters("03.ipynb", ALL, "paper", "cifar100_lt", full=True) == \
        {"profile": "paper", "dataset": "cifar100_lt"}
    assert tutorial_parameters("03.ipynb", ALL, "quick", "d", seeds=2, full=True)["seeds"] == [0, 1]


def test_a_device_replaces_the_notebooks_auto_device():
    """The device check runs the notebooks on the device it checks (its --device), not on whatever 'auto' picks."""
    assert tutorial_parameters("01.ipynb", ALL | {"device"}, "smoke", "d", device="cuda:1")["device"] == "cuda:1"
    assert "device" not in tutorial_parameters("01.ipynb", ALL | {"device"}, "smoke", "d")
    for nb in notebooks():
        assert "device" in papermill.inspect_notebook(str(nb)), nb.name


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        tutorial_parameters("07.ipynb", ALL, "quick", "d", seeds=0, last=True)
    with pytest.raises(ValueError, match="no parameter"):
        tutorial_parameters("99.ipynb", {"seeds"}, "quick", "d")
    with pytest.raises(FileNotFoundError, match="no numbered notebooks"):
        notebooks("/nonexistent")


def test_every_notebook_takes_the_parameters_the_tutorial_passes():
    import papermill

    series = notebooks()
    assert [nb.name[:2] for nb in series] == [f"{i:02d}" for i in range(1, len(series) + 1)]
    for nb in series:
        known = set(papermill.inspect_notebook(str(nb)))
        for full in (False, True):
            tutorial_parameters(nb, known, "quick", "fashion_mnist_lt", seeds=3, full=full, last=is_summary(nb))
    assert [nb.name[:2] for nb in series if is_summary(nb)] == ["07"]     # 08 runs after the summary, on one seed


def test_each_series_keeps_its_own_timings(tmp_path):
    from ltlib.tools.tutorial import save_timings
    first = {"started": "20261202-100000", "seconds": 1.0, "notebooks": {}}
    second = {"started": "20261202-110000", "seconds": 2.0, "notebooks": {}}
    save_timings(tmp_path, first)
    save_timings(tmp_path, second)
    assert json.loads((tmp_path / "timings.json").read_text())["seconds"] == 2.0
    assert json.loads((tmp_path / "timings-20261202-100000.json").read_text())["seconds"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timings-20261202-100000.json",
                                                         "timings-20261202-110000.json", "timings.json"]
