"""Step strategies own the forward / backward passes of one optimisation step.

The training loop calls ``step(model, images, targets, loss_fn)`` and never knows which strategy it
runs; SAM, ImbSAM and CC-SAM (notebooks 03-04) are further strategies with the same signature. The
targets are integer labels, or :class:`~ltlib.core.targets.MixedTargets` under a mixing rule. A strategy
may define ``start_epoch(epoch)``, which the loop calls before each epoch (for epoch-dependent weights).
A strategy returns a :class:`StepResult`: the batch loss (a detached 0-d tensor, not synced to the
host) and the logits of its first, unperturbed forward pass, for training accuracy.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import NamedTuple, Protocol

import torch
import torch.nn as nn

from ..core.precision import Autocast, autocast_for
from ..core.registry import Registry
from ..core.targets import LossFn, Targets, mixed_losses


__all__ = ["Autocast", "LossFn", "STEPS", "SGDStep", "StepResult", "StepStrategy", "autocast_for", "build_sgd",
           "build_step", "forward_loss", "forward_losses", "step_passes"]


class StepResult(NamedTuple):
    loss: torch.Tensor
    logits: torch.Tensor


class StepStrategy(Protocol):
    optimizer: torch.optim.Optimizer

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: Targets,
                 loss_fn: LossFn) -> StepResult: ...


def forward_losses(model: nn.Module, images: torch.Tensor, labels: Targets, loss_fn: LossFn,
                   autocast: Autocast = nullcontext) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward under autocast; the per-sample losses (fp32, against plain or mixed targets) and the logits."""
    with autocast():
        logits = model(images)
    return mixed_losses(loss_fn, logits, labels), logits


def forward_loss(model: nn.Module, images: torch.Tensor, labels: Targets, loss_fn: LossFn,
                 autocast: Autocast = nullcontext) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward under autocast; the loss is the mean of the per-sample losses, in fp32."""
    losses, logits = forward_losses(model, images, labels, loss_fn, autocast)
    return losses.mean(), logits


class SGDStep:
    """One forward, one backward, one base-optimizer step (plain ERM)."""

    def __init__(self, optimizer: torch.optim.Optimizer, autocast: Autocast = nullcontext, **_) -> None:
        self.optimizer = optimizer
        self.autocast = autocast

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: Targets,
                 loss_fn: LossFn) -> StepResult:
        loss, logits = forward_loss(model, images, labels, loss_fn, self.autocast)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return StepResult(loss.detach(), logits.detach())


STEPS: Registry = Registry("step strategy")
# Each step strategy registers its cost in plain steps as ``passes`` (forward + backward work, a backward ~ 2
# forwards in FLOPs): the benchmark's FLOP count and the job scheduler's "longest first" read it.
STEPS.add("sgd", SGDStep, "plain step: one forward/backward, then the base optimizer", passes=1.0)


def step_passes(name: str) -> float:
    """The cost of one step of the strategy ``name`` in plain SGD steps (its registry entry's ``passes``)."""
    return float(STEPS.entry(name).info["passes"])


def build_step(name: str, optimizer: torch.optim.Optimizer, autocast: Autocast = nullcontext, *,
               model: nn.Module | None = None, options=None) -> StepStrategy:
    """The step strategy ``name`` over ``optimizer``; ``options`` (a SAMOptions) configures the SAM family."""
    return STEPS.get(name)(optimizer, autocast, model=model, options=options)


_SGD_IMPL = {"foreach": dict(foreach=True), "fused": dict(fused=True), "loop": dict(foreach=False)}


def build_sgd(model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
              nesterov: bool = False, impl: str = "foreach") -> torch.optim.SGD:
    """SGD over all trainable parameters in one group: weight decay applies to BN and biases too,
    as in weight balancing, LDAM-DRW and CMO. ``impl`` picks the kernel ("foreach", "fused", "loop");
    all three compute the same update up to float rounding."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                           **_SGD_IMPL[impl])
