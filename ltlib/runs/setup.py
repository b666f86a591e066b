"""What a run trains with, built from its config: data, model, optimiser, step, loss, schedule and loader.

Below the run cache (:mod:`ltlib.runs.experiment`) and beside stage 2 (:mod:`ltlib.runs.stage2`, which builds its
own :class:`Setup` on a stage-1 model it is handed): nothing here knows of run folders.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..core import env
from ..core.env import resolve_device, seed_everything
from ..core.errors import DeviceMemoryError
from ..core.precision import autocast_for
from ..data.datasets import DATASETS, LongTailData, load_longtail
from ..data.loader import DeviceLoader
from ..data.mixing import MIXINGS, build_mixing
from ..data.samplers import build_sampler
from ..data.strong import build_strong_augment
from ..data.stream import StreamedImages, StreamLoader
from ..methods.losses import LOSSES, DRWSettings, build_loss
from ..methods.graphs import GraphedStep, tensor_lr
from ..methods.schedules import build_schedule
from ..methods.step import STEPS, build_sgd, build_step
from ..models import build_model
from .config import RunConfig


def load_data(config: RunConfig, data_dir: str | None = None) -> LongTailData:
    """The long-tailed data a config trains and evaluates on."""
    return load_longtail(
        config.dataset, config.imbalance_factor, imbalance_profile=config.imbalance_profile, n_max=config.n_max,
        subset=config.subset, subset_seed=config.subset_seed, val_split=config.val_split,
        val_fraction=config.val_fraction, val_per_class=config.val_per_class,
        test_per_class=config.test_per_class, data_dir=data_dir, image_size=config.image_size,
        stream=config.data_path == "stream",
    )


def eval_options(config, data: LongTailData) -> dict:
    """The keyword arguments every evaluation of ``config``'s model takes (normalisation, batch size, precision,
    memory format, BN folding), for :func:`~ltlib.runs.evaluate.evaluate` and
    :func:`~ltlib.runs.evaluate.predict_logits`."""
    base = config.base
    return dict(mean=data.mean, std=data.std, batch_size=base.eval_batch_size, precision=base.precision,
                channels_last=base.channels_last, fold_bn=base.fold_bn, center_crop=data.crop_size)


def new_model(config: RunConfig, num_classes: int, device: torch.device) -> nn.Module:
    in_channels = DATASETS.get(config.dataset).image_shape[0]
    model = build_model(config.model, num_classes, in_channels, config.width, config.classifier)
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    return model.to(device=device, memory_format=fmt)


@dataclass
class Setup:
    """What one run trains with. Stage 1 and stage 2 build it differently; the loop is shared."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: object                       # a StepStrategy
    loss_fn: nn.Module
    schedule: object
    loader: DeviceLoader
    epoch_log: object = None           # optional () -> dict merged into each epoch's record


def build_stage1(config: RunConfig, data: LongTailData, device: torch.device) -> Setup:
    """Model at initialisation (seeded), SGD over all parameters, the config's step, loss and sampler."""
    seed_everything(config.seed)
    model = new_model(config, data.num_classes, device)
    optimizer = build_sgd(model, config.lr, config.momentum, config.weight_decay, config.nesterov,
                          config.optimizer_impl)
    step = build_step(config.step, optimizer, autocast_for(config.precision, device), model=model,
                      options=step_options(config, data.class_counts.tolist()))
    if config.graph_step:      # on CUDA each step replays a captured graph; elsewhere the same step runs as it is
        step = GraphedStep(step)
        tensor_lr(optimizer)
    return Setup(model, optimizer, step, loss_for(config, data.class_counts.tolist()).to(device),
                 build_schedule(config.schedule, config.lr, config.epochs, config.warmup_epochs),
                 stage1_loader(config, data, device),
                 epoch_log=getattr(step, "epoch_log", None))


def mixing_options(config: RunConfig) -> dict:
    """The options of ``config``'s mixing rule, from the settings block its registry entry names."""
    settings = MIXINGS.entry(config.mixing).info.get("settings")
    return settings.options(config) if settings is not None else {}


def loss_for(config: RunConfig, class_counts: list[int]) -> nn.Module:
    """``config``'s loss on the training counts (with the options of its settings block, if it has one), with DRW
    class weights when ``reweight="drw"``."""
    kwargs = DRWSettings.loss_kwargs(config, class_counts)
    settings = LOSSES.entry(config.loss).info.get("settings")
    if settings is not None:
        kwargs.update(settings.loss_kwargs(config, class_counts))
    return build_loss(config.loss, class_counts, **kwargs)


def step_options(config: RunConfig, class_counts: list[int]):
    """The options of ``config``'s step strategy, from the settings block its registry entry names (None for a
    step without options, such as plain SGD)."""
    settings = STEPS.entry(config.step).info.get("settings")
    return settings.options(config, class_counts) if settings is not None else None


# what a run needs on its device beside the training images: the model, optimiser state, activations, test batches
DEVICE_RESERVE_BYTES = 4 * 2 ** 30
_GB = 1e9


def check_device_memory(config: RunConfig, images: torch.Tensor, device: str | torch.device) -> None:
    """Refuse, before copying, a training set that would not fit in the device's free memory with
    :data:`DEVICE_RESERVE_BYTES` to spare (each DDP rank holds a whole copy). The error says what to change: a smaller
    ``image_size`` (the largest that fits), or ``data_path="stream"``, which decodes the image files each epoch."""
    free = env.free_device_memory(device)
    needed = images.numel() * images.element_size()
    if free is None or needed + DEVICE_RESERVE_BYTES <= free:
        return
    room = max(free - DEVICE_RESERVE_BYTES, 0)
    message = (f"the training images of {config.dataset} take {needed / _GB:.1f} GB, and {device} has "
               f"{free / _GB:.1f} GB free ({DEVICE_RESERVE_BYTES / 2 ** 30:.0f} GiB of it kept for the model and "
               f"its activations): they do not fit.")
    if DATASETS.get(config.dataset).natural:
        side = images.shape[-1]
        fits = int(side * math.sqrt(room / needed)) // 16 * 16       # the bytes go with the square of the side
        options = [f"set image_size={fits} ({needed * (fits / side) ** 2 / _GB:.1f} GB)"] if fits >= 32 else []
        options.append('use data_path="stream", which decodes the image files each epoch instead of keeping them '
                       "on the device")
        advice = ", or ".join(options)
        message += f" {advice[0].upper()}{advice[1:]}."
    else:
        message += " Train on a device with more free memory, or on the CPU (device='cpu')."
    raise DeviceMemoryError(message)


def train_loader(config: RunConfig, data: LongTailData, sampler: str, batch_size: int,
                 device: torch.device, *, mix=None, drop_last: bool | None = None) -> DeviceLoader:
    """The device-resident loader with ``config``'s augmentation and seed (and ``mix``, a mixing rule), after
    :func:`check_device_memory`."""
    check_device_memory(config, data.train.images, device)
    return DeviceLoader(
        data.train, batch_size=batch_size, mean=data.mean, std=data.std,
        sampler=build_sampler(sampler, data.train.labels.to(device)), padding=config.crop_padding,
        flip=config.flip, seed=config.seed, drop_last=config.drop_last if drop_last is None else drop_last,
        channels_last=config.channels_last, device=device, mix=mix, resized_crop=data.crop_size,
        jitter=config.color_jitter, strong=build_strong_augment(config.strong_augment),
    )


def stage1_loader(config: RunConfig, data: LongTailData, device: torch.device) -> DeviceLoader | StreamLoader:
    """The loader a stage-1 run trains on: the config's sampler, batch size, augmentation and mixing rule (read
    from the image files each epoch with ``data_path="stream"``)."""
    mix = build_mixing(config.mixing, **mixing_options(config))
    if isinstance(data.train, StreamedImages):
        return StreamLoader(data.train, batch_size=config.batch_size, mean=data.mean, std=data.std,
                            crop=data.crop_size, flip=config.flip, jitter=config.color_jitter,
                            sampler=build_sampler(config.sampler, data.train.labels.to(device)), seed=config.seed,
                            drop_last=config.drop_last, channels_last=config.channels_last, device=device, mix=mix,
                            num_workers=config.num_workers)
    return train_loader(config, data, config.sampler, config.batch_size, device, mix=mix)


def sample_batch(config: RunConfig, data: LongTailData, epoch: int = 0, device: str | torch.device = "cpu"):
    """The first training batch of ``epoch`` as ``config`` draws it (augmented, normalised, mixed)."""
    return next(iter(stage1_loader(config, data, resolve_device(device)).epoch(epoch)))
