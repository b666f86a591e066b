"""The fixed image set every analysis of a model runs on, the loss it measures, and per-scope summaries.

A :class:`Probe` holds normalised images (no augmentation), their labels, the class groups and a
per-sample loss. Every analysis evaluates the model in eval mode (BatchNorm uses its running
statistics), in fp32 and in batches, so the same weights give the same numbers every time.

The loss is cross-entropy on the logits the model predicts with, for every method, so losses are
comparable across methods. A cosine head (LDAM) outputs cosines in [-1, 1]; its logits are scaled by
the run's ``ldam_s`` as LDAM's loss scales them (without the margins), otherwise its loss surface would
look flat only because its logits are small.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...core.errors import ConfigError
from ...data.augment import normalize
from ...data.datasets import LongTailData
from ...data.longtail import GROUP_NAMES, ClassGroups
from ...models.fold import fold_batchnorm
from ...runs.config import RunConfig
from ...runs.evaluate import eval_mode, logit_scale
from ...runs.setup import loss_for
from .directions import Param
from .hessian import HVP


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SPLITS = ("train", "val", "test")
LOSS_KINDS = ("predict", "train")


class ScaledCrossEntropy(nn.Module):
    """Per-sample CE on ``scale * logits`` (scale 1 for a linear head, LDAM's s for a cosine head)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = float(scale)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = logits if logits.dtype == torch.float64 else logits.float()
        return F.cross_entropy(self.scale * x, labels, reduction="none")


def analysis_loss(config) -> ScaledCrossEntropy:
    """The loss the analysis measures for a run's model (a RunConfig or a stage-2 config)."""
    return ScaledCrossEntropy(logit_scale(config))


class ProbeWeighted(nn.Module):
    """A per-sample loss times class weights, normalised over the whole probe (as PyTorch's weighted CE
    normalises a batch): the mean over the probe is sum_i w_i l_i / sum_i w_i, however it is batched."""

    def __init__(self, inner: nn.Module, weights: torch.Tensor, normaliser: float) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("weights", weights.float())
        self.normaliser = float(normaliser)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.inner(logits, labels) * self.weights.to(logits.device)[labels] / self.normaliser


def training_loss(config, class_counts, labels: torch.Tensor) -> nn.Module:
    """A stage-1 run's own training criterion as it stood in its last epoch (LDAM's margins and scale, Balanced
    Softmax's log-prior, DRW's class weights), for the probe with ``labels``."""
    if not isinstance(config, RunConfig):
        raise ConfigError("loss='train' measures a stage-1 run's training loss; for a stage-2 run use loss='predict'")
    loss = loss_for(config, [int(n) for n in class_counts])
    drw = getattr(loss, "drw", None)
    if drw is not None:
        loss.drw = None
        loss.start_epoch(0)
    weights = drw.at(config.epochs - 1) if drw is not None else None
    if weights is None:
        return loss
    return ProbeWeighted(loss, weights, float(weights[labels.cpu()].float().mean()))


@dataclass
class Probe:
    """Normalised images, labels, groups and the per-sample loss of one analysis set."""

    inputs: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    groups: ClassGroups
    loss_fn: LossFn
    batch_size: int = 500
    description: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def with_loss(self, loss_fn: LossFn) -> "Probe":
        return replace(self, loss_fn=loss_fn)

    def class_mask(self, classes) -> torch.Tensor:
        """True for the samples whose label is one of ``classes``."""
        return torch.isin(self.labels, torch.tensor(list(classes), dtype=self.labels.dtype, device=self.labels.device))

    def scopes(self) -> dict[str, torch.Tensor]:
        """Boolean sample masks: ``overall``, the three groups, and each class by name."""
        masks = {"overall": torch.ones_like(self.labels, dtype=torch.bool)}
        for name, members in zip(GROUP_NAMES, self.groups.members):
            masks[name] = self.class_mask(members)
        for c, name in enumerate(self.class_names):
            masks[name] = self.labels == c
        return masks

    def subset(self, mask: torch.Tensor, max_images: int | None = None, seed: int = 0) -> "Probe":
        """The samples under ``mask``, at most ``max_images`` of them (a seeded, class-stratified choice)."""
        idx = torch.nonzero(mask.cpu(), as_tuple=True)[0]
        if max_images is not None and len(idx) > max_images:
            idx = _stratified(self.labels.cpu()[idx], max_images, seed, idx)
        idx = idx.to(self.labels.device)
        return replace(self, inputs=self.inputs[idx], labels=self.labels[idx])


def _stratified(labels: torch.Tensor, k: int, seed: int, index: torch.Tensor) -> torch.Tensor:
    """``k`` of ``index`` (more only when ``k`` is below the number of classes), each class keeping its share
    (largest remainders, at least one image), chosen with a seeded shuffle."""
    gen = torch.Generator().manual_seed(seed)
    classes, counts = labels.unique(return_counts=True)
    share = counts.numpy() * k / len(labels)
    quota = np.maximum(1, np.floor(share)).astype(int)
    for i in np.argsort(-(share - np.floor(share)), kind="stable")[:max(0, k - int(quota.sum()))]:
        quota[i] += 1
    chosen = []
    for c, q in zip(classes.tolist(), quota):
        members = index[labels == c]
        chosen.append(members[torch.randperm(len(members), generator=gen)[:q]])
    return torch.cat(chosen).sort().values


def make_probe(data: LongTailData, config, *, split: str = "train", per_class: int | None = None,
               seed: int = 0, device: torch.device | str = "cpu", batch_size: int = 500,
               loss: str = "predict") -> Probe:
    """The analysis set of a run: ``split`` of ``data`` (the long-tailed training set by default), at most
    ``per_class`` images per class (a seeded choice), normalised once and kept on ``device``.

    ``loss="predict"``: CE on the logits the model predicts with (comparable across methods);
    ``loss="train"``: the run's own training criterion (:func:`training_loss`), whose minimum training sought.
    """
    if loss not in LOSS_KINDS:
        raise ConfigError(f"unknown probe loss {loss!r}: use one of {LOSS_KINDS}")
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: use one of {SPLITS}")
    images = getattr(data, split)
    if images is None:
        raise ConfigError(f"{data.name} has no {split!r} split in this config: set val_split, or use 'train' or 'test'")
    labels = images.labels
    idx = torch.arange(len(labels))
    if per_class is not None:
        if per_class < 1:
            raise ConfigError(f"per_class must be >= 1 or None, got {per_class}")
        gen = torch.Generator().manual_seed(seed)
        idx = torch.cat([(labels == c).nonzero(as_tuple=True)[0][torch.randperm(int((labels == c).sum()),
                                                                                  generator=gen)[:per_class]]
                         for c in range(data.num_classes)]).sort().values
    device = torch.device(device)
    shape = (1, -1, 1, 1)
    mean = torch.tensor(data.mean, device=device).view(shape)
    std = torch.tensor(data.std, device=device).view(shape)
    inputs = normalize(images.images[idx].to(device), mean, std, config.model_config.channels_last)
    counts = torch.bincount(labels[idx], minlength=data.num_classes).tolist()
    cap = f", at most {per_class} per class" if per_class else ""
    loss_fn = analysis_loss(config) if loss == "predict" else training_loss(config, data.class_counts, labels[idx])
    return Probe(inputs, labels[idx].to(device), data.classes, data.groups(config.data_config.group_scheme),
                 loss_fn.to(device), batch_size,
                 f"{data.name} {split} split, {len(idx)} images{cap} (per class {counts}); eval-mode BN, fp32; "
                 f"loss: {'CE on the predicted logits' if loss == 'predict' else 'the run’s training loss'}")


@torch.no_grad()
def probe_outputs(model: nn.Module, probe: Probe, fold_bn: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample losses and correctness (fp32) of ``model`` on ``probe``, in eval mode.

    ``fold_bn`` evaluates a BN-folded copy: the same function, faster. The model's mode is restored.
    """
    losses, correct = [], []
    with eval_mode(model):
        net = fold_batchnorm(model) if fold_bn else model
        for start in range(0, len(probe), probe.batch_size):
            x = probe.inputs[start:start + probe.batch_size]
            y = probe.labels[start:start + probe.batch_size]
            logits = net(x)
            logits = logits if logits.dtype == torch.float64 else logits.float()
            losses.append(probe.loss_fn(logits, y))
            correct.append((logits.argmax(1) == y).float())
    return torch.cat(losses), torch.cat(correct)


def scope_means(values: torch.Tensor, probe: Probe) -> dict[str, float]:
    """The mean of a per-sample quantity over each scope (NaN for an empty one).

    The overall mean weighs each class by its number of probe images, so it equals
    sum_c (m_c / M) * mean_c: the per-class means averaged with the probe's class counts.
    """
    return {name: float(values[m].mean()) if bool(m.any()) else float("nan") for name, m in probe.scopes().items()}


def _loss(model: nn.Module, probe: Probe, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return probe.loss_fn(model(x), y).sum()


def model_hvp(model: nn.Module, probe: Probe, params: list[Param]) -> HVP:
    """Hessian-vector products of the mean loss over ``probe`` w.r.t. ``params``, BN in eval mode.

    One batch: the gradient graph is built once and reused. Several: each product recomputes every
    batch's graph, so memory stays at one batch.
    """
    tensors = [p.tensor for p in params]
    n = len(probe)
    if n == 0:
        raise ValueError("the probe is empty: there are no images to measure the curvature on")
    batches = [(probe.inputs[s:s + probe.batch_size], probe.labels[s:s + probe.batch_size])
               for s in range(0, n, probe.batch_size)]

    def graph(x, y):
        return torch.autograd.grad(_loss(model, probe, x, y) / n, tensors, create_graph=True)

    cached = [graph(*batches[0])] if len(batches) == 1 else None

    def hvp(v):
        total = [torch.zeros_like(t) for t in tensors]
        for i, (x, y) in enumerate(batches):
            grads = cached[0] if cached else graph(x, y)
            out = torch.autograd.grad(grads, tensors, grad_outputs=list(v), retain_graph=cached is not None)
            for acc, h in zip(total, out):
                acc.add_(h.detach())
        return total
    return hvp


def loss_gradient(model: nn.Module, probe: Probe, params: list[Param]) -> list[torch.Tensor]:
    """The gradient of the mean probe loss w.r.t. ``params`` (eval-mode BN), accumulated over batches."""
    tensors = [p.tensor for p in params]
    total = [torch.zeros_like(t) for t in tensors]
    for s in range(0, len(probe), probe.batch_size):
        loss = _loss(model, probe, probe.inputs[s:s + probe.batch_size], probe.labels[s:s + probe.batch_size])
        for acc, g in zip(total, torch.autograd.grad(loss / len(probe), tensors)):
            acc.add_(g)
    return total
