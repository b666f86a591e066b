"""Stage 2: retrain only the classifier of a stage-1 model (notebook 02).

Weight balancing's second stage (algorithms.md §2.3-2.6) and cRT as one config away from each other:

* the backbone is frozen; the classifier (weight and bias) trains with the same loop as stage 1;
* the loss is weight balancing's class-balanced BCE (``cb_bce``) or plain CE;
* weight decay, and MaxNorm by projected gradient descent: after a step, every classifier row whose
  norm exceeds ``delta = min + thresh * (max - min)`` of the *starting* row norms is scaled back to
  ``delta``; the bias is never constrained. Per iteration (the paper; default) or per epoch (the
  released demo); the fraction of rows clipped is logged at each projection;
* BatchNorm in the frozen backbone either keeps updating its running statistics (``bn="train"``, what
  the demo does) or stays frozen (``bn="frozen"``);
* CC-SAM's stage 2 (notebook 04): class-aware sampling, a constant lr, and the adversarial-feature step
  (``step="ccsam"``, :class:`~ltlib.methods.ccsam.CCSAMFeatureStep`); ``step="sgd"`` on the same recipe is
  the ablation's "cRT" row.

Post-hoc L2 / tau-normalisation of a trained model's classifier rows is in :mod:`ltlib.analysis.posthoc`.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ..core.errors import ConfigError
from ..core.precision import autocast_for
from ..core.registry import Registry
from ..data.datasets import DATASETS, LongTailData
from ..data.samplers import SAMPLERS
from ..methods.ccsam import CCSAMFeatureStep, check_up_limit
from ..methods.losses import LOSSES, build_loss
from ..methods.schedules import SCHEDULES, build_schedule
from ..methods.step import SGDStep, StepResult, build_sgd
from ..models import classifier_weight, reset_classifier
from .config import LABEL_FIELDS, RunConfig, _check_type
from .setup import Setup, train_loader


# Added with CC-SAM: hashed only when the step uses them, so earlier stage-2 runs keep their hash.
_CCSAM_STAGE2_FIELDS = ("step", "adv_scale", "adv_div", "up_limit")


@dataclass(frozen=True)
class Stage2Config:
    """Classifier retraining on top of the stage-1 run ``stage1``. Build it with :func:`make_stage2`."""

    stage1: RunConfig
    name: str = "stage2"
    loss: str = "cb_bce"
    cb_beta: float = 0.9999                 # effective-number beta of the cb_bce loss
    sampler: str = "instance"
    reinit_classifier: bool = False         # cRT re-initialises the classifier before retraining it
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.1
    schedule: str = "cosine_epoch_start"
    maxnorm_thresh: float | None = 0.1      # None: no MaxNorm
    maxnorm_every: str = "iteration"        # "iteration" (the paper) or "epoch" (the released demo)
    bn: str = "train"                       # "train": running statistics keep updating (the demo); "frozen"
    step: str = "sgd"                       # "sgd", or "ccsam": CC-SAM's adversarial features (algorithms.md §3.5)
    adv_scale: float = 1.0                  # CC-SAM's lambda (adver_reg): ||delta_c||_F = lambda * w_c
    adv_div: float = 2.0                    # CC-SAM's div in w_c = ln(n_max / n_c + 0.01) / div
    up_limit: float = 1.0                   # cap on alpha_e (Cifar10.json 1.0, Cifar100.json 0.3)
    # the stage-1 weights stage 2 starts from: its "last" epoch, or "best_test", its best epoch on the *test* set,
    # as CC-SAM's released code does (needs a stage-1 run with select_on_test=True; it selects on the test set)
    start_from: str = "last"
    eval_every: int = 1
    dataset: str | None = None              # None: stage 1's data set
    recipe: str = "custom"                  # label, not hashed

    def __post_init__(self) -> None:
        if not isinstance(self.stage1, RunConfig):
            raise ConfigError(f"Stage2Config.stage1 must be a RunConfig, got {type(self.stage1).__name__}")
        hints = typing.get_type_hints(Stage2Config)
        for f in dataclasses.fields(self):
            if f.name != "stage1":
                try:
                    _check_type(f.name, getattr(self, f.name), hints[f.name])
                except ConfigError as err:
                    raise ConfigError(str(err).replace("RunConfig.", "Stage2Config.")) from None
        for name, registry in (("loss", LOSSES), ("sampler", SAMPLERS), ("schedule", SCHEDULES)):
            try:
                registry.get(getattr(self, name))
            except ConfigError as err:
                raise ConfigError(f"Stage2Config.{name}: {err}") from None
        if self.maxnorm_thresh is not None and not 0 <= self.maxnorm_thresh <= 1:
            raise ConfigError(f"Stage2Config.maxnorm_thresh: the relative MaxNorm threshold must be in [0, 1] "
                              f"(0 = the smallest starting row norm, 1 = the largest), got {self.maxnorm_thresh}")
        choices = {"maxnorm_every": ("iteration", "epoch"), "bn": ("train", "frozen"), "step": ("sgd", "ccsam"),
                   "start_from": ("last", "best_test")}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ConfigError(f"Stage2Config.{name}: {getattr(self, name)!r} is not one of {valid}")
        for name in ("epochs", "batch_size", "lr", "eval_every"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"Stage2Config.{name}: must be a positive number, got {getattr(self, name)!r}")
        check_up_limit(self.up_limit)
        if self.start_from == "best_test" and not self.stage1.select_on_test:
            raise ConfigError("Stage2Config.start_from='best_test' starts from the stage-1 epoch best on the test set, "
                              "which the stage-1 run keeps only with select_on_test=True: set it on the stage-1 "
                              "config, or use start_from='last'")
        if not self.adv_scale >= 0 or not self.adv_div > 0:
            raise ConfigError(f"Stage2Config: adv_scale (lambda) must be >= 0 and adv_div > 0, got "
                              f"{self.adv_scale!r} and {self.adv_div!r}")
        if self.step == "ccsam" and self.stage1.classifier != "linear":
            raise ConfigError("Stage2Config.step='ccsam' perturbs features for a linear classifier; the stage-1 "
                              "run has classifier='normed'")
        if not 0 <= self.momentum < 1 or not self.weight_decay >= 0 or not 0 <= self.cb_beta < 1:
            raise ConfigError("Stage2Config: momentum and cb_beta must be in [0, 1) and weight_decay >= 0")
        if self.dataset is not None:
            mine, theirs = DATASETS.get(self.dataset), DATASETS.get(self.stage1.dataset)
            if (mine.num_classes, mine.image_shape) != (theirs.num_classes, theirs.image_shape):
                raise ConfigError(
                    f"stage 2 asks for {self.dataset} ({mine.num_classes} classes, images {mine.image_shape}), but "
                    f"its stage-1 run trained on {self.stage1.dataset} ({theirs.num_classes} classes, images "
                    f"{theirs.image_shape}): the classifier cannot be retrained across them. Use a stage-1 config "
                    f"on {self.dataset}."
                )

    # --- what the shared run machinery asks of a config
    @property
    def base(self) -> RunConfig:
        """The stage-1 config whose seed, precision, execution switches and evaluation protocol (TTA, selection,
        groups) this run uses: a stage-2 run has no say in them."""
        return self.stage1

    @property
    def seed(self) -> int:
        """The stage-1 run's seed: a stage-2 run is that run's classifier, retrained."""
        return self.stage1.seed

    @property
    def profile(self) -> str:
        return self.stage1.profile

    @property
    def data_config(self) -> RunConfig:
        return self.stage1 if self.dataset is None else self.stage1.replace(dataset=self.dataset)

    @property
    def model_config(self) -> RunConfig:
        return self.stage1

    @property
    def imbalance_factor(self) -> float:
        return self.stage1.imbalance_factor

    @property
    def run_name(self) -> str:
        return f"{self.name}-{self.hash()}"

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["stage1"] = self.stage1.to_dict()
        return d

    def hash(self) -> str:
        skip = (LABEL_FIELDS + ("stage1",) + (_CCSAM_STAGE2_FIELDS if self.step == "sgd" else ())
                + (("start_from",) if self.start_from == "last" else ()))     # added later: earlier hashes stay
        payload = {k: v for k, v in self.to_dict().items() if k not in skip}
        payload["stage1"] = self.stage1.hash()
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]

    def replace(self, **changes) -> "Stage2Config":
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown Stage2Config field(s) {unknown}. Valid fields: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)

    def with_seed(self, seed: int) -> "Stage2Config":
        return self.replace(stage1=self.stage1.replace(seed=seed))

    @classmethod
    def from_dict(cls, values: dict) -> "Stage2Config":
        values = dict(values)
        return cls(stage1=RunConfig.from_dict(values.pop("stage1")), **values)


STAGE2_RECIPES: Registry[dict] = Registry("stage-2 recipe")
STAGE2_RECIPES.add("wb", dict(loss="cb_bce", cb_beta=0.9999, sampler="instance", lr=0.01, weight_decay=0.1,
                              schedule="cosine_epoch_start", maxnorm_thresh=0.1, epochs=10),
                   "weight balancing demo 2: CB-BCE (beta 0.9999) + WD 0.1 + MaxNorm (thresh 0.1), 10 epochs")
STAGE2_RECIPES.add("crt", dict(loss="ce", sampler="class_balanced", reinit_classifier=True, lr=0.01,
                               weight_decay=5e-4, schedule="cosine_epoch_start", maxnorm_thresh=None, epochs=10),
                   "cRT (Kang et al.): re-initialised classifier, CE, class-balanced sampling, 10 epochs")
_CCSAM_STAGE2 = dict(loss="ce", sampler="class_aware", reinit_classifier=False, lr=0.01, weight_decay=2e-4,
                     schedule="constant", maxnorm_thresh=None, epochs=30, adv_scale=1.0, adv_div=2.0, up_limit=1.0)
STAGE2_RECIPES.add("ccsam", dict(_CCSAM_STAGE2, step="ccsam"),
                   "CC-SAM stage 2: class-aware sampling, lr 0.01 constant, progressive adversarial features "
                   "(lambda 1, div 2, up_limit 1.0 as Cifar10.json), 30 epochs")
STAGE2_RECIPES.add("ccsam_crt", dict(_CCSAM_STAGE2, step="sgd"),
                   "CC-SAM's stage 2 without the adversarial features: class-aware CE on the stage-1 classifier "
                   "(the poster ablation's cRT)")


# Where a paper's config for a data set differs from its stage-2 recipe, at paper scale: (recipe, data set) -> values
STAGE2_DATASETS = {("ccsam", "cifar100_lt"): dict(up_limit=0.3)}     # CC-SAM's configs/Cifar100.json


def make_stage2(stage1: RunConfig, recipe: str = "wb", **overrides) -> Stage2Config:
    """A stage-2 config on ``stage1`` at its profile's scale: the demo's batch 64 at paper scale, the
    stage-1 batch otherwise; at most 10 epochs at quick scale and 2 in the smoke profile; evaluation every
    epoch except at quick scale. At paper scale, :data:`STAGE2_DATASETS` adds the paper's values for the data set."""
    values = dict(STAGE2_RECIPES.get(recipe))
    if stage1.profile == "paper":
        values.update(STAGE2_DATASETS.get((recipe, stage1.dataset), {}))
    values.update(batch_size=64 if stage1.profile == "paper" else stage1.batch_size,
                  eval_every=5 if stage1.profile == "quick" else 1, recipe=recipe, name=f"stage2-{recipe}")
    if stage1.profile == "quick":
        values["epochs"] = min(values["epochs"], 10)
    if stage1.profile == "smoke":
        values["epochs"] = 2
    known = {f.name for f in dataclasses.fields(Stage2Config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown Stage2Config field(s) {unknown}. Valid fields: {', '.join(sorted(known))}")
    values.update(overrides)
    return Stage2Config(stage1=stage1, **values)


# --------------------------------------------------------------------------- MaxNorm

class MaxNorm:
    """Projection onto ``{w : ||w_c|| <= delta for every row c}``, delta relative to the starting rows.

    ``delta = min_c r_c + thresh * (max_c r_c - min_c r_c)`` over the row norms r of ``weight`` at
    construction. Rows at or below delta are left bit-identical; larger rows are rescaled to delta.
    """

    def __init__(self, weight: torch.Tensor, thresh: float) -> None:
        if not 0 <= thresh <= 1:
            raise ConfigError(f"MaxNorm thresh must be in [0, 1], got {thresh}")
        norms = weight.detach().float().norm(dim=1)
        self.delta = float(norms.min() + thresh * (norms.max() - norms.min()))

    @torch.no_grad()
    def project(self, weight: torch.Tensor) -> torch.Tensor:
        """Project ``weight`` (rows = classes) in place; return the fraction of rows clipped (0-d tensor)."""
        norms = weight.norm(dim=1, keepdim=True)
        clipped = norms > self.delta
        weight.mul_(torch.where(clipped, self.delta / norms, torch.ones_like(norms)))
        return clipped.float().mean()


# --------------------------------------------------------------------------- the stage-2 step

def freeze_batchnorm(model: nn.Module) -> None:
    """BatchNorm layers to eval mode: they normalise with, and no longer update, their running statistics."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class Stage2Step:
    """A step strategy around another: frozen BN before it, the MaxNorm projection after it.

    ``every`` is the number of steps between projections: 1 (per iteration) or the steps per epoch
    (once per epoch, after the epoch's last step, as the demo does). Clip fractions stay on the device
    until :meth:`epoch_log` reads them once per epoch.
    """

    def __init__(self, inner, weight: torch.Tensor, maxnorm: MaxNorm | None, every: int, freeze_bn: bool) -> None:
        self.inner, self.weight, self.maxnorm = inner, weight, maxnorm
        self.every, self.freeze_bn = every, freeze_bn
        self.count = 0
        self._fractions: list[torch.Tensor] = []

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.inner.optimizer

    def start_epoch(self, epoch: int) -> None:
        if hasattr(self.inner, "start_epoch"):
            self.inner.start_epoch(epoch)

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, loss_fn) -> StepResult:
        if self.freeze_bn:
            freeze_batchnorm(model)
        out = self.inner(model, images, labels, loss_fn)
        self.count += 1
        if self.maxnorm is not None and self.count % self.every == 0:
            self._fractions.append(self.maxnorm.project(self.weight))
        return out

    def epoch_log(self) -> dict:
        inner = self.inner.epoch_log() if hasattr(self.inner, "epoch_log") else {}
        if self.maxnorm is None:
            return inner
        fractions = torch.stack(self._fractions).tolist() if self._fractions else []
        self._fractions = []
        return {**inner, "maxnorm_delta": self.maxnorm.delta, "clip_fraction_mean": float(np.mean(fractions)) if fractions else 0.0,
                "clip_fractions": fractions}


def build_stage2(config: Stage2Config, data: LongTailData, device: torch.device, stage1_model: nn.Module) -> Setup:
    """Freeze a copy of the stage-1 model's backbone and set up classifier-only training. The run layer
    (:func:`ltlib.runs.experiment.run`) resolves ``config.stage1`` to its trained model and hands it in."""
    classes = classifier_weight(stage1_model.classifier).shape[0]
    if classes != data.num_classes:
        raise ConfigError(f"the stage-1 model ({config.stage1.run_name}) classifies {classes} classes, but stage 2 "
                          f"trains on {data.name} with {data.num_classes}")
    model = copy.deepcopy(stage1_model).to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    if config.reinit_classifier:
        torch.manual_seed(config.seed)
        reset_classifier(model.classifier)
    for p in model.classifier.parameters():
        p.requires_grad_(True)
    optimizer = build_sgd(model.classifier, config.lr, config.momentum, config.weight_decay,
                          impl=config.base.optimizer_impl)
    loss_kw = {"beta": config.cb_beta} if config.loss == "cb_bce" else {}
    # no mixing in stage 2, and the last partial batch is kept (CC-SAM's class-aware loader does)
    loader = train_loader(config.stage1, data, config.sampler, config.batch_size, device, drop_last=False)
    weight = classifier_weight(model.classifier)
    maxnorm = MaxNorm(weight, config.maxnorm_thresh) if config.maxnorm_thresh is not None else None
    every = 1 if config.maxnorm_every == "iteration" else len(loader)
    autocast = autocast_for(config.base.precision, device)
    if config.step == "ccsam":
        inner = CCSAMFeatureStep(optimizer, model, data.class_counts.tolist(), epochs=config.epochs,
                                 scale=config.adv_scale, div=config.adv_div, up_limit=config.up_limit,
                                 autocast=autocast)
    else:
        inner = SGDStep(optimizer, autocast)
    step = Stage2Step(inner, weight, maxnorm, every, config.bn == "frozen")
    return Setup(model, optimizer, step, build_loss(config.loss, data.class_counts.tolist(), **loss_kw).to(device),
                 build_schedule(config.schedule, config.lr, config.epochs), loader, epoch_log=step.epoch_log)
