"""Data-parallel training with ``torch.distributed``, launched by ``torchrun`` (DESIGN.md, *Scale*).

Every rank builds the same run: the same seeded model and the same loader, so every rank draws the same
global epoch order, augmentation and mixing. Each rank keeps its slice of every global batch
(:class:`ShardedLoader`), and DistributedDataParallel averages the gradients over the ranks. With equal
slices that average is the gradient of the global batch's mean loss, so a DDP epoch of plain SGD gives the
parameters of the single-process epoch over the same global batches (up to the order of float sums).
BatchNorm is the exception: each replica normalises with its own slice's statistics, as DDP does without
``SyncBatchNorm``.

The SAM family (:mod:`ltlib.methods.sam`) perturbs per replica by default, as the SAM paper does: the ascent
gradient stays local (``no_sync``), and only the gradient at ``w + epsilon`` is averaged. ImbSAM's head
gradient, stored between its passes, is averaged explicitly. ``SAMOptions(perturbation="global")``
averages the ascent gradient too, which reproduces single-process SAM over the global batch. CC-SAM
(:mod:`ltlib.methods.ccsam`) likewise computes its per-class classifier gradients from the replica's slice,
or, with ``perturbation="global"``, from the gathered global batch.
"""
from __future__ import annotations

import itertools
import math
import os
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from ..core.errors import ConfigError
from ..core.replicas import (DistInfo, average_gradients, broadcast_buffers, check_batch, dist_info, gather_cat,
                             gather_rows, local_pass, steps_per_epoch, unwrap)
from ..core.targets import MixedTargets, Targets
from .evaluate import accuracy_from_logits, evaluate, predict_logits
from .stage2 import Stage2Config


__all__ = ["DistInfo", "ShardedLoader", "average_gradients", "broadcast_buffers", "check_batch", "check_supported",
           "compile_model", "dist_info", "dist_timeout", "evaluate_sharded", "gather_cat", "gather_rows", "init_from_env",
           "local_pass", "pick_backend", "rank_device", "shard_batch", "unwrap", "wrap_model"]


TIMEOUT_ENV = "LTLIB_DIST_TIMEOUT_MIN"
DEFAULT_TIMEOUT_MIN = 60.0      # torch's default is 10 min: less than a first decode of a large data set can take


def pick_backend(device: str | torch.device = "auto") -> str:
    """NCCL when the ranks run on CUDA (CUDA present and ``device`` not "cpu"), gloo otherwise: ``--device cpu``
    on a machine with GPUs runs its ranks on the CPU, where NCCL cannot go."""
    return "nccl" if torch.cuda.is_available() and str(device) != "cpu" else "gloo"


def dist_timeout() -> timedelta:
    """How long a collective (the first decode's barrier, say) may wait: ``$LTLIB_DIST_TIMEOUT_MIN`` minutes, 60 by
    default."""
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        minutes = float(text) if text else DEFAULT_TIMEOUT_MIN
    except ValueError:
        minutes = float("nan")
    if not (minutes > 0 and math.isfinite(minutes)):
        raise ConfigError(f"{TIMEOUT_ENV}={text!r}: give the collective timeout in minutes, a number > 0")
    return timedelta(minutes=minutes)


def init_from_env(backend: str = "auto", device: str | torch.device = "auto") -> DistInfo:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...).

    Without those variables, or with a world of one, nothing is initialised. ``backend="auto"`` follows the
    device the ranks will use (:func:`pick_backend`); collectives wait up to :func:`dist_timeout`.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        if backend == "auto":
            backend = pick_backend(device)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend, timeout=dist_timeout())
    return dist_info()


def rank_device(info: DistInfo, device: str | torch.device = "auto") -> torch.device:
    """The device of this rank: ``cuda:<local rank>`` when CUDA is used, else the CPU."""
    if str(device) == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", info.local_rank)


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
        return steps_per_epoch(len(self.loader.labels), self.loader.batch_size, self.loader.drop_last,
                               self.info.world_size)

    def __getattr__(self, name: str):
        return getattr(self.loader, name)      # device, batch_size, sampler, ... of the wrapped loader

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, Targets]]:
        # the last global batch is left out when it has fewer images than ranks (steps_per_epoch)
        for images, targets in itertools.islice(self.loader.epoch(epoch), len(self)):
            yield shard_batch(images, targets, self.info)


def wrap_model(model: nn.Module, info: DistInfo, compile: bool = False) -> nn.Module:
    """What the training loop calls: ``model`` compiled when ``compile``, then in DistributedDataParallel when the
    job has several ranks. In that order, so that the outer wrapper is DDP, whose ``no_sync`` SAM's per-replica
    ascent needs, and ``unwrap`` reaches the model through both. Every wrapper shares the model's parameters."""
    if compile:
        model = compile_model(model)
    if not info.enabled:
        return model
    device_ids = [info.local_rank] if next(model.parameters()).is_cuda else None
    return DistributedDataParallel(model, device_ids=device_ids)


def compile_model(model: nn.Module, backend: str | None = None) -> nn.Module:
    """``torch.compile(model)`` with ``backend``, else the one ``LTLIB_COMPILE_BACKEND`` names (default ``inductor``;
    ``eager`` traces without generating code, for tests and debugging)."""
    return torch.compile(model, backend=backend or os.environ.get("LTLIB_COMPILE_BACKEND", "inductor"))


def evaluate_sharded(model: nn.Module, data, **options):
    """:func:`ltlib.runs.evaluate.evaluate` with each rank predicting its slice of ``data`` with rank 0's buffers and
    the logits gathered, so every rank gets the whole set's result. A single process evaluates everything itself."""
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
    if isinstance(config, Stage2Config):
        raise ConfigError("stage-2 runs train in one process (they retrain the classifier only): run them "
                          "without torchrun, on the stage-1 run the DDP job wrote")
