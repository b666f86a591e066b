"""One training loop: batch -> model -> loss -> step strategy -> schedule.

Evaluation, checkpoints and progress live outside the inner loop, behind callbacks. A new method
adds a step strategy, a loss or a sampler; it does not add a branch here.
"""
from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn as nn

from ..core.errors import TrainingDivergedError
from ..core.progress import Progress, duration
from ..core.targets import LossFn, primary_labels
from ..data.loader import DeviceLoader
from ..methods.step import StepStrategy


EvalFn = Callable[[nn.Module, int], dict]
EpochEndFn = Callable[[int, dict], None]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate; a tensor learning rate (a captured step reads it) is filled in place."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def begin_epoch(epoch: int, *parts) -> None:
    """Tell each epoch-dependent part (a step strategy, a loss: CC-SAM's stage-2 alpha, DRW's class weights) which
    epoch begins; parts without ``start_epoch`` are left alone."""
    for part in parts:
        if hasattr(part, "start_epoch"):
            part.start_epoch(epoch)


def check_finite(step_losses: torch.Tensor, epoch: int) -> None:
    """Raise if any step of the epoch had a NaN or infinite loss, naming the first such step (the run layer adds
    advice that fits the run's settings: :func:`ltlib.runs.experiment.divergence_advice`)."""
    bad = (~torch.isfinite(step_losses)).nonzero()
    if len(bad):
        step = int(bad[0])
        raise TrainingDivergedError(
            f"the training loss became {float(step_losses[step])} at epoch {epoch + 1}, step {step + 1} "
            f"of {len(step_losses)}."
        )


def train_epoch(model: nn.Module, loader: DeviceLoader, step: StepStrategy, loss_fn: LossFn, schedule,
                epoch: int) -> dict:
    """One epoch: for each batch, set the lr, take a step. Metrics stay on the device; one sync at the end."""
    model.train()
    t0 = time.perf_counter()
    steps = len(loader)
    step_losses = torch.zeros(steps, device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.long)
    seen = 0
    begin_epoch(epoch, step, loss_fn)     # epoch-dependent parts: CC-SAM's stage-2 alpha, DRW's class weights
    for i, (images, targets) in enumerate(loader.epoch(epoch)):
        set_lr(step.optimizer, schedule(epoch, i, steps))
        out = step(model, images, targets, loss_fn)
        labels = primary_labels(targets)
        step_losses[i] = out.loss
        correct += (out.logits.argmax(1) == labels).sum()
        seen += len(labels)
    check_finite(step_losses, epoch)  # the epoch's one host sync
    return {
        "epoch": epoch + 1,
        "loss": float(step_losses.mean()),
        "lr": schedule(epoch, 0, steps),
        "train_acc": 100.0 * int(correct) / max(seen, 1),
        "train_time_s": time.perf_counter() - t0,
    }


def _summary(desc: str, start_epoch: int, epochs: int, history: list[dict]) -> str:
    """What a finished training leaves in the output: its epochs, time and last loss and test accuracy."""
    if not history:
        return f"{desc}: nothing left to train"
    last = history[-1]
    end = ", ".join(f"{k} {last[k]:.3g}" for k in ("loss", "test_overall") if k in last)
    seconds = sum(r["train_time_s"] for r in history)
    return f"{desc}: epochs {start_epoch + 1}-{epochs} trained in {duration(seconds)}" + (f" ({end})" if end else "")


def fit(model: nn.Module, loader: DeviceLoader, step: StepStrategy, loss_fn: LossFn, schedule, *,
        epochs: int, start_epoch: int = 0, evaluate: EvalFn | None = None, eval_every: int = 1,
        on_epoch_end: EpochEndFn | None = None, progress: bool = True, desc: str = "train") -> list[dict]:
    """Train ``model`` for epochs ``start_epoch .. epochs-1`` and return their history records.

    ``evaluate(model, epoch)`` runs every ``eval_every`` epochs and at the last epoch; its dict is
    merged into that epoch's record. ``on_epoch_end(epoch, record)`` runs after every epoch (the
    experiment layer writes its checkpoint there).
    """
    history = []
    with Progress(epochs, desc, "epochs", initial=start_epoch, enabled=progress) as bar:
        for epoch in range(start_epoch, epochs):
            record = train_epoch(model, loader, step, loss_fn, schedule, epoch)
            if evaluate is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
                record.update(evaluate(model, epoch))
            history.append(record)
            shown = {k: record[k] for k in ("loss", "train_acc", "val_overall", "test_overall") if k in record}
            bar.update(1, ", ".join(f"{k} {v:.3g}" for k, v in shown.items()))
            if on_epoch_end is not None:
                on_epoch_end(epoch, record)
        bar.close(_summary(desc, start_epoch, epochs, history))
    return history
