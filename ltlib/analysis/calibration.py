"""Calibration: expected calibration error (ECE) and the reliability diagram's bins.

ECE follows Guo et al. (2017): the confidence is the top softmax probability, the bins split (0, 1] into
``bins`` equal intervals, and ECE = sum_b (n_b / N) * |accuracy_b - confidence_b|. A cosine classifier's
logits (LDAM) are scaled by the run's ``ldam_s`` first, as its loss scales them; otherwise its softmax is
nearly uniform and its ECE says nothing.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..core import io
from ..core.determinism import weighted_bincount
from ..core.errors import CheckpointError
from ..runs.evaluate import logit_scale, predict_logits
from ..runs.experiment import eval_options, load_data


BINS = 15


def reliability_bins(logits: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> pd.DataFrame:
    """Per confidence bin: its range, the number of predictions, their mean confidence and accuracy (%)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    probs = torch.softmax(logits.double(), dim=1)
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels.to(predicted.device)).double()
    # bin b holds (b/bins, (b+1)/bins]; a confidence of exactly 0 cannot occur for a softmax
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    count = torch.bincount(index, minlength=bins).double()
    conf_sum = weighted_bincount(index, confidence, bins)
    acc_sum = weighted_bincount(index, correct, bins)
    nonzero = count.clamp(min=1)
    return pd.DataFrame({
        "low": [b / bins for b in range(bins)], "high": [(b + 1) / bins for b in range(bins)],
        "count": count.long().tolist(),
        "confidence": (100 * conf_sum / nonzero).where(count > 0, torch.nan).tolist(),
        "accuracy": (100 * acc_sum / nonzero).where(count > 0, torch.nan).tolist(),
    })


def ece_from_bins(table: pd.DataFrame) -> float:
    """ECE in % from :func:`reliability_bins`."""
    used = table[table["count"] > 0]
    weights = used["count"] / used["count"].sum()
    return float((weights * (used["accuracy"] - used["confidence"]).abs()).sum())


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> float:
    """ECE in % (0 = perfectly calibrated) of ``logits`` against ``labels``."""
    return ece_from_bins(reliability_bins(logits, labels, bins))


def run_calibration(run, bins: int = BINS, cache: bool = True) -> dict:
    """ECE and reliability bins of a finished run's last model on its test set, cached as
    ``calibration.json`` in the run's folder (evaluated once, with the run's own evaluation settings)."""
    path = Path(run.path) / "calibration.json"
    if cache and path.is_file():
        try:
            cached = io.read_json(path)
            if cached.get("bins") == bins:
                return {**cached, "table": pd.DataFrame(cached["table"])}
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{path} is damaged ({err}); delete it to recompute") from err
    config = run.config
    data = load_data(config.data_config)
    logits = predict_logits(run.model, data.test.images, tta=config.base.tta, **eval_options(config, data))
    table = reliability_bins(logits * logit_scale(config), data.test.labels, bins)
    result = {"bins": bins, "ece": ece_from_bins(table), "split": "test", "selection": "last",
              "table": table.to_dict("records")}
    if cache:
        io.write_json(path, result)
    return {**result, "table": table}
