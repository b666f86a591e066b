"""Deterministic mode (RunConfig.deterministic): torch's flags are set for the run and restored after it; the two ops
ltlib uses that have no deterministic CUDA kernel get ordered replacements with the same values; default runs keep
their ops (and numbers)."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from ltlib.core.determinism import deterministic_algorithms, global_average_pool, weighted_bincount
from ltlib.models import build_model
from ltlib.runs.config import make_config
from ltlib.runs.evaluate import accuracy_from_logits


def test_the_mode_sets_torch_cudnn_and_cublas_and_restores_them(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_algorithms(True):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    with deterministic_algorithms(False):
        assert not torch.are_deterministic_algorithms_enabled()


def test_the_replacements_compute_the_same_values_and_are_used_only_in_the_mode():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 8, 5, 5, generator=gen)
    index, weights = torch.randint(0, 6, (300,), generator=gen), torch.rand(300, generator=gen, dtype=torch.float64)
    pooled, counted = global_average_pool(x), weighted_bincount(index, weights, 8)
    assert torch.equal(pooled, F.adaptive_avg_pool2d(x, 1).flatten(1))            # off: the usual ops, bit for bit
    assert torch.equal(counted, torch.bincount(index, weights=weights, minlength=8))
    with deterministic_algorithms(True):
        assert torch.equal(global_average_pool(x), x.mean((2, 3)))
        assert global_average_pool(x, keepdim=True).shape == (4, 8, 1, 1)
        torch.testing.assert_close(global_average_pool(x), pooled)
        torch.testing.assert_close(weighted_bincount(index, weights, 8), counted)
        assert weighted_bincount(index, weights, 3).shape == (6,)                    # bincount's length rule


def test_per_class_hits_are_counted_without_weights_and_unchanged():
    gen = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(500, 7, generator=gen), torch.randint(0, 7, (500,), generator=gen)
    result = accuracy_from_logits(logits, labels, 7)
    correct = (logits.argmax(1) == labels).float()
    hits = torch.bincount(labels, weights=correct, minlength=7).numpy()
    support = torch.bincount(labels, minlength=7).numpy()
    assert (result.per_class == 100.0 * hits / support).all()


@pytest.mark.parametrize("arch", ["resnet32", "resnet50"])
def test_models_train_a_step_in_the_mode(arch):
    torch.manual_seed(0)
    model = build_model(arch, 3, in_channels=1, **({"width": 0.25} if arch == "resnet32" else {}))
    x = torch.randn(2, 1, 32, 32)
    reference = model(x)
    with deterministic_algorithms(True):
        out = model(x)
        out.sum().backward()
    torch.testing.assert_close(out, reference)


def test_a_run_trains_in_the_mode_when_its_config_asks(fake_fmnist, exp_dir, monkeypatch):
    from ltlib.runs import experiment
    seen = []
    monkeypatch.setattr(experiment, "_train", lambda *args: seen.append(torch.are_deterministic_algorithms_enabled()))
    for deterministic in (False, True):
        experiment.run(make_config("smoke", deterministic=deterministic, name=f"det-{deterministic}"), progress=False)
    assert seen == [False, True] and not torch.are_deterministic_algorithms_enabled()
    # an execution switch: the same run folder either way
    assert make_config("smoke", deterministic=True).run_name == make_config("smoke").run_name
