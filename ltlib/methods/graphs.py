"""A whole training step captured in a CUDA graph (``graph_step=True``): one replay launches the forward, the
backward, SAM's ascent and restore and the optimizer step, instead of a thousand kernels launched from Python.

What makes a step capturable, and where ltlib provides it:

* no host sync inside the step (``tests/test_no_sync.py`` proves it for every strategy, loss and mixing rule);
* the learning rate read from a device tensor: :func:`tensor_lr` gives the optimizer a 0-d tensor that
  ``ltlib.runs.train.set_lr`` fills in place (the fused SGD kernel reads it without a sync; the foreach one would
  sync, so ``graph_step`` asks for ``optimizer_impl="fused"``);
* fixed input buffers and shapes: each input structure (the batch's shape, plain or mixed targets) gets its own
  graph, so a ragged last batch, or a batch that CMO left unmixed, replays a graph of its own;
* Python values that change between epochs (DRW's class weights, CC-SAM's stage-2 alpha) are picked up by capturing
  afresh in each epoch (:meth:`GraphedStep.start_epoch`); a step's own CUDA generators are registered with the
  graph, so each replay draws new numbers.

Augmentation and mixing stay outside the graph (a few kernels a batch, on the device, without syncs); the batch
they produce is copied into the graph's buffers. The first ``warmup`` steps run eagerly on a side stream, as
capture needs (cuDNN picks its algorithms, the optimizer makes its momentum buffers). On any other device there is
nothing to capture and the step runs as it is, so the CPU computes the same numbers with the switch on or off.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from ..core.errors import ConfigError
from ..core.targets import MixedTargets, Targets, map_targets, target_tensors
from .step import StepResult, StepStrategy


def tensor_lr(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Make each parameter group's learning rate a 0-d tensor on the parameters' device (in place; returns it)."""
    for group in optimizer.param_groups:
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=group["params"][0].device)
    return optimizer


def _key(images: torch.Tensor, targets: Targets) -> tuple:
    return (tuple(images.shape), images.dtype, images.stride(), isinstance(targets, MixedTargets),
            tuple((tuple(t.shape), t.dtype) for t in target_tensors(targets)))


def _copy_into(static: Targets, targets: Targets) -> None:
    for dst, src in zip(target_tensors(static), target_tensors(targets)):
        dst.copy_(src, non_blocking=True)


def _generators(step: object) -> list[torch.Generator]:
    """The step's own CUDA generators (CC-SAM's noise), which a graph must advance on each replay."""
    return [v for v in vars(step).values() if isinstance(v, torch.Generator) and v.device.type == "cuda"]


class GraphedStep:
    """Wrap a step strategy so that, on CUDA, each step replays a captured graph of it (same signature)."""

    def __init__(self, step: StepStrategy, warmup: int = 3) -> None:
        self.step = step
        self.optimizer = step.optimizer
        self.warmup = warmup
        self.epoch_log = getattr(step, "epoch_log", None)
        self._eager_steps = 0
        self._graphs: dict[tuple, tuple] = {}

    def start_epoch(self, epoch: int) -> None:
        """Forward the epoch to the wrapped step and capture afresh: the epoch's Python values enter the graphs."""
        if hasattr(self.step, "start_epoch"):
            self.step.start_epoch(epoch)
        self._graphs.clear()

    @property
    def graphs(self) -> int:
        """How many graphs are held now (one per input structure seen this epoch)."""
        return len(self._graphs)

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: Targets, loss_fn) -> StepResult:
        if not self.captures(images):
            return self.step(model, images, targets, loss_fn)
        if isinstance(model, DistributedDataParallel):
            raise ConfigError("graph_step does not capture a DistributedDataParallel step (its gradient all-reduce "
                              "is not captured); under torchrun set graph_step=False")
        if self._eager_steps < self.warmup:
            self._eager_steps += 1
            return self.warm(lambda: self.step(model, images, targets, loss_fn), images.device)
        key = _key(images, targets)
        if key not in self._graphs:
            static_images, static_targets = images.clone(), map_targets(torch.clone, targets)
            replay, out = self.capture(lambda: self.step(model, static_images, static_targets, loss_fn),
                                       images.device)
            self._graphs[key] = (replay, static_images, static_targets, out)
        replay, static_images, static_targets, out = self._graphs[key]
        static_images.copy_(images, non_blocking=True)
        _copy_into(static_targets, targets)
        replay()
        return out

    # The CUDA-specific parts, one method each (the tests replace them to check the bookkeeping on the CPU)
    def captures(self, images: torch.Tensor) -> bool:
        """Whether this batch's step is captured (on CUDA only)."""
        return images.device.type == "cuda"

    def warm(self, run, device: torch.device) -> StepResult:
        """One eager step on a side stream, as CUDA graphs need before capture."""
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            out = run()
        torch.cuda.current_stream(device).wait_stream(side)
        return out

    def capture(self, run, device: torch.device):
        """Record ``run`` (without running it) into a graph; returns its replay and its static outputs."""
        graph = torch.cuda.CUDAGraph()
        for gen in _generators(self.step):
            graph.register_generator_state(gen)
        with torch.cuda.graph(graph):
            out = run()
        return graph.replay, out


def check_graph_step(config) -> None:
    """``graph_step`` needs the fused SGD kernel (it reads the tensor learning rate without a sync) and fp32 (autocast's
    weight cache does not survive a replay)."""
    if not config.graph_step:
        return
    if config.optimizer_impl != "fused":
        raise ConfigError("RunConfig.graph_step: a captured step reads its learning rate from a device tensor, which "
                          "only the fused SGD kernel does without a sync; set optimizer_impl='fused'")
    if config.precision != "fp32":
        raise ConfigError("RunConfig.graph_step: capture with autocast is not supported yet; set precision='fp32'")
