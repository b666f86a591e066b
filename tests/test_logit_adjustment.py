"""Logit adjustment (Menon et al., ICLR 2021): the loss and the post-hoc adjustment, against formulas written by
hand, and end to end (a run with ``loss="la"``, a post-hoc sweep of a CE run with tau chosen on validation)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ltlib.analysis.posthoc import best_tau, logit_adjustment_sweep, sweep_result
from ltlib.core.errors import ConfigError
from ltlib.methods.logit_adjustment import LogitAdjustedLoss, adjust_logits, log_prior
from ltlib.methods.losses import BalancedSoftmax, CrossEntropy, build_loss
from ltlib.runs.config import make_config
from ltlib.runs.evaluate import predict_logits
from ltlib.runs.experiment import eval_options, load_data, run

from hand_oracles import assert_accuracy_is_a_fresh_evaluation

COUNTS = [500, 120, 30, 7]


def _by_hand(logits: torch.Tensor, labels: torch.Tensor, counts, tau: float) -> torch.Tensor:
    """CE of logits + log(pi^tau + 1e-12), written out in float64: log-sum-exp minus the target's logit."""
    total = sum(counts)
    offset = torch.tensor([math.log((n / total) ** tau + 1e-12) for n in counts], dtype=torch.float64)
    z = logits.double() + offset
    return torch.logsumexp(z, dim=1) - z[torch.arange(len(labels)), labels]


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 2.0])
def test_the_loss_is_ce_on_logits_plus_the_tempered_log_prior(tau):
    """Planted slips this catches: the prior subtracted in the loss (the post-hoc sign), and tau ignored (always 1,
    which agrees at tau = 1 only)."""
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(64, 4, generator=gen) * 3, torch.randint(0, 4, (64,), generator=gen)
    got = LogitAdjustedLoss(COUNTS, tau=tau)(logits, labels)
    torch.testing.assert_close(got.double(), _by_hand(logits, labels, COUNTS, tau), rtol=1e-5, atol=1e-5)


def test_tau_one_is_balanced_softmax_and_tau_zero_is_ce():
    gen = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(32, 4, generator=gen), torch.randint(0, 4, (32,), generator=gen)
    torch.testing.assert_close(LogitAdjustedLoss(COUNTS, 1.0)(logits, labels), BalancedSoftmax(COUNTS)(logits, labels))
    torch.testing.assert_close(LogitAdjustedLoss(COUNTS, 0.0)(logits, labels), CrossEntropy(COUNTS)(logits, labels))


def test_post_hoc_adjustment_subtracts_the_tempered_log_prior():
    """Planted slip this catches: the prior added at test time (the loss's sign), which favours the head."""
    logits = torch.zeros(1, 4)                              # a model with no preference: the rarest class wins
    assert int(adjust_logits(logits, COUNTS, 1.0).argmax()) == 3
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(16, 4, generator=gen)
    total = sum(COUNTS)
    by_hand = logits.double() - torch.tensor([math.log((n / total) ** 1.5 + 1e-12) for n in COUNTS], dtype=torch.float64)
    torch.testing.assert_close(adjust_logits(logits, COUNTS, 1.5).double(), by_hand, rtol=1e-6, atol=1e-6)
    assert torch.equal(adjust_logits(logits, COUNTS, 0.0).argmax(1), logits.argmax(1))   # tau 0: unchanged
    for bad in (-1.0, float("nan"), True):
        with pytest.raises(ConfigError, match="tau"):
            log_prior(COUNTS, bad)


def test_config_builds_the_loss_with_its_tau_and_refuses_a_bad_one():
    cfg = make_config("smoke", "ce", loss="la", la_tau=1.5)
    from ltlib.runs.setup import loss_for
    loss = loss_for(cfg, COUNTS)
    assert isinstance(loss, LogitAdjustedLoss)
    torch.testing.assert_close(loss.offset, log_prior(COUNTS, 1.5))
    assert isinstance(build_loss("la", COUNTS), LogitAdjustedLoss)
    with pytest.raises(ConfigError, match="la_tau"):
        make_config("smoke", "ce", loss="la", la_tau=-0.5)


def test_a_run_trains_with_the_loss_and_reports_a_fresh_evaluation(fake_fmnist, exp_dir):
    r = run(make_config("smoke", "ce", loss="la", test_per_class=None), progress=False)
    assert r.history["loss"].notna().all()
    assert_accuracy_is_a_fresh_evaluation(r)


def test_post_hoc_sweep_of_a_ce_run_chooses_tau_on_validation(fake_fmnist, exp_dir):
    """The sweep's tau = 0 row is the run's own test result; another row equals the argmax of the adjusted logits
    recounted here; tau is chosen on the validation split."""
    cfg = make_config("smoke", "ce", val_split="unused", val_per_class=5, test_per_class=None)
    r = run(cfg, progress=False)
    data = load_data(cfg)
    taus = [0.0, 0.5, 1.0, 2.0]
    sweep = logit_adjustment_sweep(r, data, taus=taus)
    assert set(sweep["split"]) == {"val", "test"} and len(sweep) == 2 * len(taus)
    assert sweep_result(r, sweep, 0.0)["overall"] == pytest.approx(r.result()["overall"])
    logits = predict_logits(r.model, data.test.images, **eval_options(cfg, data)).double()
    counts = data.class_counts.tolist()
    offset = torch.tensor([math.log((n / sum(counts)) ** 2.0 + 1e-12) for n in counts], dtype=torch.float64)
    predicted = (logits - offset).argmax(1)
    per_class = [100.0 * float((predicted[data.test.labels == c] == c).double().mean()) for c in range(data.num_classes)]
    assert sweep_result(r, sweep, 2.0)["overall"] == pytest.approx(float(np.mean(per_class)))
    chosen = best_tau(sweep)
    val = sweep[sweep["split"] == "val"]
    assert val.loc[np.isclose(val["tau"], chosen), "overall"].iloc[0] == val["overall"].max()
