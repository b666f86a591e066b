"""What a process knows of its data-parallel job, and the collective helpers the SAM family needs under DDP.

The ground layer below the optimisers: the step strategies (``ltlib.methods``) perturb per replica with
:func:`local_pass`, average ImbSAM's stored gradient with :func:`average_gradients` and gather CC-SAM's rows with
:func:`gather_rows`; the data layer checks its slices with :func:`check_batch`. Everything else about a DDP run
(joining the group, sharding the loader, wrapping the model, evaluating) is in :mod:`ltlib.runs.distributed`.
Without a process group every helper is the single-process identity.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import ContextManager

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

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


def steps_per_epoch(n: int, batch_size: int, drop_last: bool, world_size: int = 1) -> int:
    """Global batches in an epoch of ``n`` images. Under DDP a last global batch with fewer images than ranks is
    dropped: some rank would get no image, and the mean of an empty loss is NaN (ImageNet-LT on 8 GPUs: 115,846
    mod 128 = 6). At most ``world_size - 1`` images an epoch are left out, and every rank drops the same batch."""
    full, rest = divmod(n, batch_size)
    return full + int(bool(rest) and not drop_last and rest >= world_size)


def from_rank0(value: bool) -> bool:
    """Rank 0's ``value`` on every rank (a broadcast under DDP; the value itself in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [bool(value)]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def check_batch(batch_size: int, world_size: int) -> None:
    """Each rank takes ``batch_size / world_size`` images of every global batch: it must divide."""
    if batch_size % world_size:
        raise ConfigError(f"the batch size {batch_size} is not divisible by the world size {world_size}: each rank "
                          f"takes an equal slice of every global batch. Use a multiple of {world_size} "
                          f"(for example {batch_size - batch_size % world_size or world_size}) or another "
                          "number of processes.")


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP and a ``torch.compile`` wrapper (``features`` / ``classifier`` live there)."""
    if isinstance(model, DistributedDataParallel):
        model = model.module
    return getattr(model, "_orig_mod", model)      # torch.compile's OptimizedModule keeps the module there


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
    counts = torch.cat(sizes).tolist()          # one copy to the host for all the sizes (they shape the buffers)
    padded = torch.zeros((max(counts), *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[:len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in range(info.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, counts)]), sum(counts[:info.rank])


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, in place.

    DDP broadcasts them at the start of each forward, so after the last step every replica holds the statistics
    its own slice left; evaluation and the saved model use rank 0's.
    """
    for buffer in unwrap(model).buffers():
        dist.broadcast(buffer, src=0)
