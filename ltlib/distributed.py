"""Data-parallel training with ``torch.distributed``, launched by ``torchrun`` (DESIGN.md, *Scale*).

Every rank builds the same run: the same seeded model and the same loader, so every rank draws the same
global epoch order, augmentation and mixing. Each rank keeps its slice of every global batch
(:class:`ShardedLoader`), and DistributedDataParallel averages the gradients over the ranks. With equal
slices that average is the gradient of the global batch's mean loss, so a DDP epoch of plain SGD gives the
parameters of the single-process epoch over the same global batches (up to the order of float sums).
BatchNorm is the exception: each replica normalises with its own slice's statistics, as DDP does without
``SyncBatchNorm``.

The SAM family (:mod:`ltlib.optim.sam`) perturbs per replica by default, as the SAM paper does: the ascent
gradient stays local (``no_sync``), and only the gradient at ``w + epsilon`` is averaged. ImbSAM's head
gradient, stored between its passes, is averaged explicitly. ``SAMOptions(perturbation="global")``
averages the ascent gradient too, which reproduces single-process SAM over the global batch. CC-SAM
(:mod:`ltlib.optim.ccsam`) likewise computes its per-class classifier gradients from the replica's slice,
or, with ``perturbation="global"``, from the gathered global batch.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import ContextManager, Iterator

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from .data.mixing import MixedTargets, Targets
from .errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: rank, world size and the rank on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs and writes ``exp/``."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """The current process group's rank and world size (a single process when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo()


def init_from_env(backend: str = "auto") -> DistInfo:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...).

    Without those variables, or with a world of one, nothing is initialised. ``backend="auto"`` is NCCL
    when CUDA is present and gloo otherwise (the CPU tests).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    return dist_info()


def rank_device(info: DistInfo, device: str | torch.device = "auto") -> torch.device:
    """The device of this rank: ``cuda:<local rank>`` when CUDA is used, else the CPU."""
    if str(device) == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", info.local_rank)


def check_batch(batch_size: int, world_size: int) -> None:
    """Each rank takes ``batch_size / world_size`` images of every global batch: it must divide."""
    if batch_size % world_size:
        raise ConfigError(f"the batch size {batch_size} is not divisible by the world size {world_size}: each rank "
                          f"takes an equal slice of every global batch. Use a multiple of {world_size} "
                          f"(for example {batch_size - batch_size % world_size or world_size}) or another "
                          "number of processes.")


def shard_batch(images: torch.Tensor, targets: Targets, info: DistInfo) -> tuple[torch.Tensor, Targets]:
    """This rank's contiguous slice of a global batch (a short last batch is split as evenly as it goes)."""
    n = len(images)
    part = slice(n * info.rank // info.world_size, n * (info.rank + 1) // info.world_size)
    if isinstance(targets, MixedTargets):
        weight = targets.weight[part] if targets.weight.dim() else targets.weight
        return images[part], MixedTargets(targets.labels[part], targets.other[part], weight)
    return images[part], targets[part]


class ShardedLoader:
    """A loader's global batches, cut to this rank's slice; the epoch draws stay those of the whole batch."""

    def __init__(self, loader, info: DistInfo) -> None:
        check_batch(loader.batch_size, info.world_size)
        self.loader, self.info = loader, info

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str):
        return getattr(self.loader, name)      # device, batch_size, sampler, ... of the wrapped loader

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, Targets]]:
        for images, targets in self.loader.epoch(epoch):
            yield shard_batch(images, targets, self.info)


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """The model in DistributedDataParallel when the job has several ranks (it is returned as is otherwise)."""
    if not info.enabled:
        return model
    device_ids = [info.local_rank] if next(model.parameters()).is_cuda else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (``features`` / ``classifier`` live there)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def local_pass(model: nn.Module, local: bool = True) -> ContextManager:
    """Gradients of the next forward / backward stay on this replica (``no_sync``) when ``local``."""
    return model.no_sync() if local and isinstance(model, DistributedDataParallel) else nullcontext()


def average_gradients(grads: list[torch.Tensor | None], model: nn.Module) -> None:
    """Average gradients kept outside ``.grad`` (ImbSAM's head gradient) over the ranks, in place."""
    if not isinstance(model, DistributedDataParallel):
        return
    present = [g for g in grads if g is not None]
    if not present:
        return
    flat = torch.cat([g.reshape(-1) for g in present])
    dist.all_reduce(flat)
    flat.div_(dist.get_world_size())
    for g, part in zip(present, torch.split(flat, [g.numel() for g in present])):
        g.copy_(part.view_as(g))


def gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate each rank's tensor along dim 0, in rank order (equal or unequal lengths)."""
    return gather_rows(tensor)[0]


def gather_rows(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """:func:`gather_cat`, and the row where this rank's own rows start in the result."""
    info = dist_info()
    if not info.enabled:
        return tensor, 0
    sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(info.world_size)]
    dist.all_gather(sizes, torch.tensor([len(tensor)], device=tensor.device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[:len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in range(info.world_size)]
    dist.all_gather(parts, padded)
    start = int(sum(s.item() for s in sizes[:info.rank]))
    return torch.cat([p[:int(s.item())] for p, s in zip(parts, sizes)]), start


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, in place.

    DDP broadcasts them at the start of each forward, so after the last step every replica holds the statistics
    its own slice left; evaluation and the saved model use rank 0's.
    """
    for buffer in unwrap(model).buffers():
        dist.broadcast(buffer, src=0)


def evaluate_sharded(model: nn.Module, data, **options):
    """:func:`ltlib.evaluate.evaluate` with each rank predicting its slice of ``data`` with rank 0's buffers and
    the logits gathered, so every rank gets the whole set's result. A single process evaluates everything itself."""
    from .evaluate import accuracy_from_logits, evaluate, predict_logits  # evaluate -> optim -> here: import late

    info = dist_info()
    if not info.enabled:
        return evaluate(model, data, **options)
    broadcast_buffers(model)
    n = len(data.labels)
    part = slice(n * info.rank // info.world_size, n * (info.rank + 1) // info.world_size)
    logits = predict_logits(model, data.images[part], **options).reshape(-1, data.num_classes)  # (0, C) if empty
    if dist.get_backend() == "nccl":
        logits = logits.to(rank_device(info))
    return accuracy_from_logits(gather_cat(logits).cpu(), data.labels, data.num_classes)


def check_supported(config) -> None:
    """What a DDP job can train: stage 1, with any step."""
    if not hasattr(config, "step") or hasattr(config, "stage1"):
        raise ConfigError("stage-2 runs train in one process (they retrain the classifier only): run them "
                          "without torchrun, on the stage-1 run the DDP job wrote")
