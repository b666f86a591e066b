"""Expected values computed by hand, for tests that must not take their expectation from the code they check.

Each helper recomputes a quantity from its definition with plain Python / torch arithmetic:

* :func:`effective_number_weights_by_hand`: Cui et al.'s class weights (algorithms.md §1.6);
* :func:`assert_accuracy_is_a_fresh_evaluation`: a finished run's reported test accuracy (per class, overall,
  many / medium / few, top-1) recounted from a fresh prediction of its returned model.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch


def effective_number_weights_by_hand(counts, beta: float) -> torch.Tensor:
    """w_c = (1 - beta) / (1 - beta ** n_c), rescaled so that the C weights sum to C (float64)."""
    raw = [(1.0 - beta) / (1.0 - beta ** n) for n in counts]
    total = math.fsum(raw)
    return torch.tensor([w * len(counts) / total for w in raw], dtype=torch.float64)


def assert_accuracy_is_a_fresh_evaluation(run, selection: str = "last") -> None:
    """The run's reported test numbers equal a recount from a fresh prediction of ``run.model`` (the last model).

    The logits come from the run's own evaluation settings (normalisation, precision, crop, BN folding: the
    forward pass has its own tests); every number after the argmax is counted here by hand: per-class
    accuracy in %, "overall" as their mean (balanced accuracy), top-1 over all images, and each group as the
    mean over its member classes. A reported accuracy that is a fraction instead of a percentage, comes from
    another split or another model, or mixes up the per-class / plain means fails it.
    """
    from ltlib.runs.evaluate import predict_logits
    from ltlib.runs.experiment import eval_options, load_data

    config = run.config
    data = load_data(config.data_config)
    logits = predict_logits(run.model, data.test.images, tta=config.base.tta, **eval_options(config, data))
    predicted = logits.argmax(1).cpu().tolist()
    labels = data.test.labels.cpu().tolist()
    hits = [0] * data.num_classes
    support = [0] * data.num_classes
    for p, y in zip(predicted, labels):
        support[y] += 1
        hits[y] += int(p == y)
    per_class = [100.0 * h / s if s else float("nan") for h, s in zip(hits, support)]
    reported = run.result(selection)
    assert reported["per_class"] == pytest.approx(per_class, nan_ok=True)
    assert reported["overall"] == pytest.approx(float(np.mean(per_class)), nan_ok=True)
    assert reported["top1"] == pytest.approx(100.0 * sum(hits) / len(labels))
    for group, members in run.metrics["groups"].items():
        expected = float(np.mean([per_class[c] for c in members])) if members else float("nan")
        assert reported[group] == pytest.approx(expected, nan_ok=True), group
