"""Calibration (ECE, reliability bins) and the results table gathered from exp/."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from ltlib.analysis.calibration import ece_from_bins, expected_calibration_error, reliability_bins, run_calibration
from ltlib.runs.config import make_config
from ltlib.runs.evaluate import logit_scale
from ltlib.runs.experiment import Run, load_data, run
from ltlib.report.gather import display_summary, export_table, gather_runs, headline_table, markdown, summarize_runs
from ltlib.models.heads import NormedLinear
from ltlib.runs.stage2 import make_stage2


def _two_class(confidence: float, n: int, correct: int):
    logits = torch.tensor([[math.log(confidence), math.log(1 - confidence)]]).repeat(n, 1)
    labels = torch.tensor([0] * correct + [1] * (n - correct))
    return logits, labels


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    logits, labels = _two_class(0.8, 100, 80)
    assert expected_calibration_error(logits, labels) == pytest.approx(0.0, abs=1e-5)   # %, fp32 logits
    logits, labels = _two_class(0.999, 100, 50)
    assert expected_calibration_error(logits, labels) == pytest.approx(49.9, abs=1e-4)
    a, la = _two_class(0.7, 50, 45)            # 90 % right at 70 % confidence: 20 points under-confident
    b, lb = _two_class(0.95, 150, 150)         # 100 % right at 95 %: 5 points
    ece = expected_calibration_error(torch.cat([a, b]), torch.cat([la, lb]))
    assert ece == pytest.approx(0.25 * 20 + 0.75 * 5, abs=1e-4)


def test_reliability_bins_partition_the_predictions():
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(500, 10, generator=gen) * 3, torch.randint(0, 10, (500,), generator=gen)
    table = reliability_bins(logits, labels, bins=15)
    assert len(table) == 15 and table["count"].sum() == 500
    used = table[table["count"] > 0]
    assert ((used["confidence"] > 100 * used["low"]) & (used["confidence"] <= 100 * used["high"] + 1e-9)).all()
    assert ece_from_bins(table) == pytest.approx(expected_calibration_error(logits, labels))
    with pytest.raises(ValueError, match="bins"):
        reliability_bins(logits, labels, bins=0)


def test_a_cosine_head_is_calibrated_on_its_scaled_logits():
    base = make_config("smoke", "cmo")
    assert logit_scale(base) == 1.0
    assert logit_scale(base.replace(loss="ldam", classifier="normed", ldam_s=20.0)) == 20.0


class _StoredCosines(nn.Module):
    """A model with a real cosine head (NormedLinear, identity columns) on stored features: the i-th image of a
    pass gets the i-th row, so its cosine logits are the rows, normalised."""

    def __init__(self, rows):
        super().__init__()
        self.rows = rows
        self.seen = 0
        self.classifier = NormedLinear(rows.shape[1], rows.shape[1])
        with torch.no_grad():
            self.classifier.weight.copy_(torch.eye(rows.shape[1]))

    def forward(self, x):
        features = self.rows[self.seen:self.seen + len(x)]
        self.seen += len(x)
        return self.classifier(features)


def _cosines_with_confidence(p, s, classes=10):
    """Unit rows (a on the predicted class, b elsewhere) whose softmax at scale s puts p on the predicted class:
    p = 1 / (1 + (C - 1) exp(-s (a - b))), so a - b = log((C - 1) p / (1 - p)) / s, and a^2 + (C - 1) b^2 = 1."""
    gap = math.log((classes - 1) * p / (1 - p)) / s
    b = (-gap + math.sqrt(classes - (classes - 1) * gap ** 2)) / classes
    return b + gap, b


def test_ece_of_a_cosine_head_is_computed_on_the_logits_times_s(fake_fmnist, tmp_path):
    """run_calibration's ECE of an LDAM run (cosine head, s = 20) on cosines built so that, times s, half the test
    images sit at confidence 0.9 with 60 % right and half at 0.7 with 55 % right: ECE = 0.5 * 30 + 0.5 * 15 =
    22.5 points, worked out by hand. Unscaled, every confidence is about 0.12 (ECE about 46); at s = 30 they are
    about 0.99 and 0.91 (ECE about 38).

    Planted slips this catches (each shown failing; the earlier version checked only logit_scale's value):
    calibration forgetting the scale, and calibration using LDAM's default s = 30 instead of the run's.
    """
    s = 20.0
    config = make_config("smoke", "cmo", loss="ldam", classifier="normed", ldam_s=s, test_per_class=None)
    assert config.precision == "fp32"                     # the cosines are not rounded to bf16
    labels = load_data(config.data_config).test.labels
    n, classes = len(labels), 10
    assert n == 200
    rows = torch.empty(n, classes)
    for i, y in enumerate(labels.tolist()):
        p, right = (0.9, 60) if i < 100 else (0.7, 55)
        a, b = _cosines_with_confidence(p, s)
        predicted = y if i % 100 < right else (y + 1) % classes
        rows[i] = b
        rows[i, predicted] = a
        assert math.exp(s * a) / (math.exp(s * a) + 9 * math.exp(s * b)) == pytest.approx(p)
    run_ = Run(config, tmp_path, {}, None, {}, _StoredCosines(rows))
    assert run_calibration(run_, cache=False)["ece"] == pytest.approx(22.5, abs=1e-3)


def test_gather_summarize_export_and_calibrate_cached_runs(fake_fmnist, exp_dir, tmp_path):
    config = make_config("smoke", "ce", test_per_class=None, epochs=1)
    first = [run(config.with_seed(s), progress=False) for s in (0, 1)]
    run(make_stage2(config, "crt", epochs=1), progress=False)
    (exp_dir / "fashion_mnist_lt" / "unfinished-0000000000").mkdir()
    damaged = exp_dir / "fashion_mnist_lt" / "damaged-0000000000"
    damaged.mkdir()
    (damaged / "metrics.json").write_text("{not json")
    with pytest.warns(UserWarning, match="skipping"):
        runs = gather_runs(exp_dir)
    assert sorted(runs["stage"]) == [1, 1, 2] and set(runs["dataset"]) == {"fashion_mnist_lt"}
    row = runs[runs["run"] == first[0].path.name].iloc[0]
    assert row["overall"] == pytest.approx(first[0].result()["overall"]) and row["method"] == "CE"
    assert "stage 2 crt" in runs[runs["stage"] == 2].iloc[0]["method"]

    ece = {r.path.name: run_calibration(r)["ece"] for r in first}
    assert all(0 <= v <= 100 for v in ece.values())
    assert (first[0].path / "calibration.json").is_file()
    assert run_calibration(first[0])["ece"] == ece[first[0].path.name]       # from the cache
    runs["ece"] = runs["run"].map(ece)

    summary = summarize_runs(runs, extra=("ece",))
    stage1 = summary[summary["stage"] == 1].iloc[0]
    assert stage1["seeds"] == "0,1" and stage1["n"] == 2
    assert stage1["overall_mean"] == pytest.approx(np.mean([r.result()["overall"] for r in first]))
    assert np.isfinite(stage1["overall_std"]) and np.isfinite(stage1["ece_mean"])
    shown = display_summary(summary)
    assert "±" in shown.iloc[0]["overall"]
    csv, md = export_table(shown, tmp_path / "results")
    assert csv.read_text().startswith("name,method") and md.read_text().startswith("| name | method")
    assert markdown(shown).count("\n") == len(shown) + 2

    head = headline_table({"CE": first}, {"CE": "cmo/ce"})
    assert head.loc["CE", "seeds"] == "0,1" and head.loc["CE", "ece_mean"] == pytest.approx(np.mean(list(ece.values())))
    assert head.loc["CE", "reported C100-LT IF100"] == "38.6 (CMO paper, Table 2 (as quoted in the repository's issues))"
