import pytest
import torch
import torch.nn as nn

from ltlib.core import io
from ltlib.data.loader import DeviceLoader
from ltlib.data.sources import ImageSet
from ltlib.core.errors import TrainingDivergedError
from ltlib.methods.losses import CrossEntropy
from ltlib.methods import Cosine, SGDStep, build_sgd
from ltlib.runs.train import fit


def _setup(seed=0, lr=0.05):
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    images = (torch.randint(0, 80, (60, 1, 6, 6), generator=gen) + labels.view(-1, 1, 1, 1) * 80).to(torch.uint8)
    loader = DeviceLoader(ImageSet(images, labels, ("a", "b", "c")), batch_size=16, mean=(0.5,), std=(0.3,),
                          padding=1, flip=True, seed=seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    step = SGDStep(build_sgd(model, lr=lr, momentum=0.9, weight_decay=5e-4))
    return model, loader, step


def test_history_records_and_eval_schedule():
    model, loader, step = _setup()
    calls = []
    history = fit(model, loader, step, CrossEntropy(), Cosine(0.05, 5), epochs=5, progress=False,
                  evaluate=lambda m, e: calls.append(e) or {"test_overall": 1.0}, eval_every=2)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
    assert calls == [1, 3, 4]                       # every 2nd epoch and the last
    assert {"loss", "lr", "train_acc", "train_time_s"} <= set(history[0])
    assert "test_overall" in history[1] and "test_overall" not in history[0]
    assert history[-1]["loss"] < history[0]["loss"]


def test_same_seed_same_parameters():
    runs = []
    for _ in range(2):
        model, loader, step = _setup(seed=3)
        fit(model, loader, step, CrossEntropy(), Cosine(0.05, 3), epochs=3, progress=False)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])


def test_split_training_equals_one_go():
    """Epochs 0-1 then 2-3 (the resume path) give the same parameters as 0-3 at once."""
    model, loader, step = _setup(seed=1)
    fit(model, loader, step, CrossEntropy(), Cosine(0.05, 4), epochs=4, progress=False)
    model2, loader2, step2 = _setup(seed=1)
    fit(model2, loader2, step2, CrossEntropy(), Cosine(0.05, 4), epochs=2, progress=False)
    fit(model2, loader2, step2, CrossEntropy(), Cosine(0.05, 4), epochs=4, start_epoch=2, progress=False)
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)


def test_resume_from_a_checkpoint_with_a_fresh_optimiser_and_loader_equals_one_go(tmp_path):
    """Train epochs 0-1, save the model and optimiser state dicts to a checkpoint file (ltlib.core.io, as
    experiment.py's checkpoint.pt), then build everything anew, as a resumed process does: a model initialised
    from another seed, a new optimiser and a new loader with the run's seed; load the checkpoint and train
    epochs 2-3. Parameters, BatchNorm buffers and momentum buffers equal those of epochs 0-3 in one go.

    Planted slips this catches (each shown failing; test_split_training_equals_one_go, which reuses the same
    in-memory optimiser and loader, passed on both): a loader whose epoch order comes from a generator that runs
    on across epochs instead of being seeded from (seed, epoch), and a checkpoint writer (ltlib.core.io.save_checkpoint)
    that drops the optimiser's per-parameter state (its momentum buffers).
    """
    model, loader, step = _setup(seed=1)
    fit(model, loader, step, CrossEntropy(), Cosine(0.05, 4), epochs=4, progress=False)

    first, first_loader, first_step = _setup(seed=1)
    fit(first, first_loader, first_step, CrossEntropy(), Cosine(0.05, 4), epochs=2, progress=False)
    io.save_checkpoint({"model": first.state_dict(), "optimizer": first_step.optimizer.state_dict(), "epoch": 2},
                       tmp_path / "checkpoint.pt")
    del first, first_loader, first_step

    resumed, _, _ = _setup(seed=7)                      # a fresh model: other initial weights until loaded
    _, fresh_loader, _ = _setup(seed=1)                 # a fresh loader with the run's seed (a new object)
    fresh_step = SGDStep(build_sgd(resumed, lr=0.05, momentum=0.9, weight_decay=5e-4))
    state = io.load_checkpoint(tmp_path / "checkpoint.pt")
    resumed.load_state_dict(state["model"])
    fresh_step.optimizer.load_state_dict(state["optimizer"])
    fit(resumed, fresh_loader, fresh_step, CrossEntropy(), Cosine(0.05, 4), epochs=4, start_epoch=state["epoch"],
        progress=False)

    for (name, p), q in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name                  # parameters and BatchNorm running statistics
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(step.optimizer.state[p]["momentum_buffer"], fresh_step.optimizer.state[q]["momentum_buffer"])


def test_nan_loss_names_epoch_and_step():
    model, loader, step = _setup()

    class Explode(CrossEntropy):
        calls = 0

        def forward(self, logits, labels):
            Explode.calls += 1
            loss = super().forward(logits, labels)
            return loss * float("nan") if Explode.calls == 7 else loss  # epoch 2 (4 steps/epoch), step 3

    with pytest.raises(TrainingDivergedError, match="epoch 2, step 3 of 4"):
        fit(model, loader, step, Explode(), Cosine(0.05, 5), epochs=5, progress=False)
