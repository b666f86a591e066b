"""Results files: what a notebook saves, what the long path publishes, and what the short path loads back."""
import json

import pandas as pd
import pytest

from ltlib.report import longpath
from ltlib.runs.config import make_config
from ltlib.runs.experiment import run
from ltlib.report.findings import compare
from ltlib.report.results import summarize


def test_a_notebooks_results_round_trip_with_their_provenance(fake_fmnist, exp_dir, tmp_path):
    config = make_config("smoke", "ce", test_per_class=None, epochs=1)
    runs = {"CE": [run(config.with_seed(s), progress=False) for s in (0, 1)]}
    runs["CE, τ"] = [{"seed": 0, "overall": 12.5, "many": 1.0, "medium": 2.0, "few": 3.0}]
    record = longpath.NotebookResults("01", "fashion_mnist_lt", "smoke")
    record.add_runs("runs", runs, metrics=("overall", "many", "medium", "few", "train_time_s", "ece"),
                    extra={"ece": lambda r: 7.0})
    record.add_values("norms", pd.DataFrame({"label": ["CE"], "seed": [0], "metric": ["ratio"], "value": [1.25]}))
    path = record.save()
    assert path == exp_dir / "tables" / "results-01-fashion_mnist_lt-smoke.csv"

    table = pd.read_csv(path, dtype={"commit": str})
    assert list(table.columns) == list(longpath.COLUMNS)
    first = runs["CE"][0]
    env = json.loads((first.path / "environment.json").read_text())
    row = table[(table["label"] == "CE") & (table["seed"] == 0) & (table["metric"] == "overall")].iloc[0]
    assert row["value"] == pytest.approx(first.result()["overall"])
    assert row["threads"] == env["torch_threads"] and row["date"] == env["date"] and row["run"] == first.path.name
    assert set(table[(table["label"] == "CE") & (table["table"] == "runs")]["metric"]) == \
        {"overall", "many", "medium", "few", "train_time_s", "ece"}

    published = longpath.publish(["01"], "fashion_mnist_lt", "smoke", target=tmp_path / "committed")
    assert published[0].read_text() == path.read_text()
    loaded = longpath.load("01", "fashion_mnist_lt", "smoke", folder=tmp_path / "committed")
    back = longpath.results(loaded, "runs")
    assert summarize(back).loc["CE", "overall"] == pytest.approx(summarize({"CE": runs["CE"]}).loc["CE", "overall"])
    assert compare("CE", back["CE"], "CE, τ", back["CE, τ"]).seeds == (0,)
    assert longpath.values(loaded, "norms", "CE", "ratio") == {0: 1.25}
    text = longpath.provenance(loaded)
    assert "make tutorial FULL=1" in text and "seeds 0, 1" in text and "smoke profile" in text


def test_missing_files_say_what_to_do(tmp_path):
    assert longpath.load("03", "cifar100_lt", "paper", folder=tmp_path) is None
    with pytest.raises(FileNotFoundError, match="did not save its results"):
        longpath.publish(["03"], "fashion_mnist_lt", "quick", source=tmp_path, target=tmp_path / "out")
    with pytest.raises(ValueError, match="label, seed, metric, value"):
        longpath.NotebookResults("06", "d", "p").add_values("x", pd.DataFrame({"label": ["a"]}))


def test_the_smoke_profile_reads_the_quick_profiles_long_path(tmp_path):
    pd.DataFrame(columns=longpath.COLUMNS).to_csv(tmp_path / longpath.file_name("02", "d", "quick"), index=False)
    assert longpath.load("02", "d", "smoke", folder=tmp_path)["profile"].tolist() == []
    assert longpath.load("02", "d", "paper", folder=tmp_path) is None


def test_an_imbalance_factor_sweep_reads_the_same_from_runs_and_from_the_committed_file(fake_fmnist, exp_dir,
                                                                                          tmp_path):
    """Notebook 05's section 6: the sweep table built from the runs equals the one built from the published file
    (the short path shows the latter)."""
    from ltlib.report.results import extreme_classes_accuracy, sweep_table

    base = make_config("smoke", "ce", test_per_class=None, epochs=1)
    head_tail = {"head": lambda r: extreme_classes_accuracy(r, 2, rarest=False),
                 "tail": lambda r: extreme_classes_accuracy(r, 2, rarest=True)}
    swept = {f"CE @ IF {f:g}": [run(base.replace(imbalance_factor=float(f)), progress=False)] for f in (10, 100)}
    record = longpath.NotebookResults("05", "fashion_mnist_lt", "smoke")
    record.add_runs("if sweep", swept, metrics=("overall", "head", "tail"), extra=head_tail)
    record.save()
    longpath.publish(["05"], "fashion_mnist_lt", "smoke", target=tmp_path / "committed")
    loaded = longpath.load("05", "fashion_mnist_lt", "smoke", folder=tmp_path / "committed")
    columns = ["method", "value", "seed", "overall", "head", "tail", "gap"]
    direct = sweep_table(swept, extra=head_tail)[columns].sort_values("value").reset_index(drop=True)
    committed = sweep_table(longpath.results(loaded, "if sweep", metrics=("overall", "head", "tail")))
    pd.testing.assert_frame_equal(committed[columns].sort_values("value").reset_index(drop=True), direct,
                                  check_dtype=False)
    assert list(direct["value"]) == [10.0, 100.0]
    counts = swept["CE @ IF 100"][0].metrics["class_counts"]
    per_class = swept["CE @ IF 100"][0].result()["per_class"]
    assert direct.loc[1, "tail"] == pytest.approx((per_class[counts.index(min(counts))] + per_class[-2]) / 2)
