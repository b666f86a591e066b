"""CC-SAM, class-conditional SAM (Zhou et al., CVPR 2023), both stages, as its released code runs them.

Stage 1 (:class:`CCSAMStep`, algorithms.md §3.4). Only the linear classifier theta = (W, b) is perturbed,
once per class present in the batch, along that class's own gradient g_c = grad_theta mean_{y_i = c} l_i,
per tensor t in {W, b}, with the radius

    ||eps_c^t|| = r * (P ||theta||^2 / (4 (n_c - 1) ||g_c^t||^2))^(1/4)

(P = numel(W) + numel(b), ||theta|| the joint norm, n_c the *training* count of class c). Each sample's
"flat" loss is plain CE on its (first) label at theta + eps_{y_i}; the backbone gets that gradient through
the features. The step minimises (1 - f) * clean loss + f * flat loss, with one backbone forward and one
backward, like a plain step.

The per-class gradients are not computed by a Python loop of autograd calls. For a linear head
g_c^W = sum_{i in c} m_i G_i z_i^T and g_c^b = sum_{i in c} m_i G_i, where G_i = dl_i/do_i and m_i is one over
the class's batch count, so everything the flat loss needs comes from two B x B Gram matrices:
||g_c^W||^2 = sum_{i,j in c} m_i m_j (G_i . G_j)(z_i . z_j), and the flat logits of sample j are its clean
logits plus s^W sum_{i in c} m_i (z_i . z_j) G_i + s^b sum_{i in c} m_i G_i. That is exactly the classifier at
theta + eps_c applied to z_j (tested against ``torch.func.functional_call``), in O(B^2 (C + d)) and no
K x C x d tensor.

Two properties of the formula to keep in mind: the radius grows as ||g_c||^(-1/2), so it diverges for a class
whose loss gradient vanishes (at r = 0.3 on Fashion-MNIST-LT one class reached ||eps_c|| / ||theta|| ~ 8e3 in
the last epoch; notebook 04 logs the ratio per class and epoch, ``epoch_log``); and n_c - 1 is floored at 1,
where the released code divides by zero for a class with one training image.

Stage 2 (:class:`CCSAMFeatureStep`, §3.5). The backbone is frozen; the classifier trains on
alpha_e * mean(w_c CE(theta(z + delta_c))) + (1 - alpha_e) * mean(CE(theta(z))), with
delta_c = lambda w_c G_c / ||G_c||_F (G_c: the feature gradient of class c's mean loss, normalised over the
class's whole block), w_c = ln(n_max / n_c + 0.01) / div and alpha_e = min((e + 1) / E_2, up_limit).
"""
from __future__ import annotations

import functools
import inspect
import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from ..core.errors import ConfigError
from ..core.replicas import gather_rows, unwrap
from ..core.settings import Settings
from ..core.targets import Targets, mixed_losses, primary_labels
from .sam import PERTURBATION_MODES
from .step import STEPS, Autocast, LossFn, StepResult


DIRECTIONS = ("gradient", "random")
MAGNITUDES = ("formula", "constant")


@dataclass(frozen=True)
class CCSAMSettings(Settings):
    """CC-SAM stage 1's fields of a run config (algorithms.md §3.4), hashed when ``step="ccsam"``. Under DDP it
    reads the SAM family's ``sam_perturbation`` too."""

    ccsam_radius: float = 1e-6          # the code's noise_ratio r: 1e-6 as released, where it is negligible
    ccsam_flat_ratio: float = 0.3       # f in (1 - f) clean + f flat (Cifar10.json 0.3, Cifar100.json 0.5)
    ccsam_direction: str = "gradient"   # "gradient" (the method) or "random" (the poster's magnitude-only ablation)
    ccsam_magnitude: str = "formula"    # "formula" (the method) or "constant" r (the direction-only ablation)

    @classmethod
    def check_block(cls, config) -> None:
        if not config.ccsam_radius >= 0 or not math.isfinite(config.ccsam_radius):
            raise ConfigError(f"RunConfig.ccsam_radius: CC-SAM's noise_ratio r must be a finite number >= 0, "
                              f"got {config.ccsam_radius!r}")
        if not 0 <= config.ccsam_flat_ratio <= 1:
            raise ConfigError(f"RunConfig.ccsam_flat_ratio: f weighs (1 - f) clean + f flat loss, so it must be in "
                              f"[0, 1]; got {config.ccsam_flat_ratio!r}")
        for name, valid in (("ccsam_direction", DIRECTIONS), ("ccsam_magnitude", MAGNITUDES)):
            if getattr(config, name) not in valid:
                raise ConfigError(f"RunConfig.{name}: {getattr(config, name)!r} is not one of {valid}")
        if config.step == "ccsam" and config.classifier != "linear":
            raise ConfigError("RunConfig.step='ccsam' perturbs a linear classifier: set classifier='linear'")

    @classmethod
    def used(cls, config) -> bool:
        return config.step == "ccsam"

    @classmethod
    def options(cls, config, class_counts: Sequence[int]) -> "CCSAMOptions":
        return CCSAMOptions(class_counts=tuple(class_counts), radius=config.ccsam_radius,
                            flat_ratio=config.ccsam_flat_ratio, direction=config.ccsam_direction,
                            magnitude=config.ccsam_magnitude, perturbation=config.sam_perturbation)


@dataclass(frozen=True)
class CCSAMOptions:
    """CC-SAM stage 1. ``radius`` is the code's ``noise_ratio`` r (1e-6 in the released configs, where the
    perturbation is negligible); ``flat_ratio`` is f. ``direction`` / ``magnitude`` give the poster's
    ablation: a random unit direction, or a constant radius r instead of the formula. Under DDP the per-class
    gradients come from the replica's slice (``perturbation="replica"``) or the gathered global batch
    (``"global"``: single-process CC-SAM over the global batch)."""

    class_counts: tuple[int, ...]
    radius: float = 1e-6
    flat_ratio: float = 0.3
    direction: str = "gradient"
    magnitude: str = "formula"
    perturbation: str = "replica"

    def __post_init__(self) -> None:
        if not self.class_counts or min(self.class_counts) < 1:
            raise ConfigError("CC-SAM needs the training count of every class (each >= 1)")
        if not (self.radius >= 0 and math.isfinite(self.radius)):
            raise ConfigError(f"CC-SAM radius (noise_ratio r) must be a finite number >= 0, got {self.radius!r}")
        if not 0 <= self.flat_ratio <= 1:
            raise ConfigError(f"CC-SAM flat_ratio f weighs the flat loss against the clean one, (1 - f) clean + "
                              f"f flat, so it must be in [0, 1]; got {self.flat_ratio!r}")
        for name, value, choices in (("direction", self.direction, DIRECTIONS),
                                     ("magnitude", self.magnitude, MAGNITUDES),
                                     ("perturbation", self.perturbation, PERTURBATION_MODES)):
            if value not in choices:
                raise ConfigError(f"CC-SAM {name}: {value!r} is not one of {choices}")


def check_linear_head(model: nn.Module, method: str = "CC-SAM") -> nn.Linear:
    """The model's classifier, which must be an ``nn.Linear`` (CC-SAM's closed forms assume one)."""
    head = getattr(model, "classifier", None)
    if not isinstance(head, nn.Linear) or not hasattr(model, "features"):
        raise ConfigError(f"{method} perturbs a linear classifier on model.features(x): the model needs "
                          f"`features` and an nn.Linear `classifier` (got {type(head).__name__}); use "
                          "classifier='linear'")
    return head


def count_guard(class_counts: Sequence[int]) -> torch.Tensor:
    """n_c - 1, floored at 1: the released code divides by (n_c - 1)^(1/4) and gives NaN when n_c = 1."""
    return (torch.as_tensor(list(class_counts), dtype=torch.float64) - 1).clamp(min=1).float()


def ccsam_radius(radius: float, param_count: int, theta_norm: torch.Tensor, grad_norm: torch.Tensor,
                 n_minus_1: torch.Tensor, guard: float = 1e-12) -> torch.Tensor:
    """||eps_c^t|| = r sqrt(||theta|| / ||g_c^t||) P^(1/4) / (sqrt 2 (n_c - 1)^(1/4)), as the code computes it."""
    return (radius * torch.sqrt(theta_norm / (grad_norm + guard)) * param_count ** 0.25
            / (math.sqrt(2.0) * n_minus_1 ** 0.25))


class CCSAMStep:
    """CC-SAM stage 1: (1 - f) * clean (mixup) loss + f * per-class perturbed-classifier CE; one base step."""

    guard = 1e-12

    def __init__(self, optimizer: torch.optim.Optimizer, autocast: Autocast = nullcontext, *,
                 model: nn.Module | None = None, options: CCSAMOptions | None = None, **_) -> None:
        if model is None or options is None:
            raise ConfigError("CC-SAM needs the model (its features and linear classifier) and CCSAMOptions "
                              "with the training class counts: build it with build_step(..., model=, options=)")
        self.optimizer = optimizer
        self.autocast = autocast
        self.options = options
        self.head = check_linear_head(model)
        if self.head.out_features != len(options.class_counts):
            raise ConfigError(f"CC-SAM got {len(options.class_counts)} class counts for a classifier of "
                              f"{self.head.out_features} classes")
        self.param_count = sum(p.numel() for p in self.head.parameters())
        device = self.head.weight.device
        self.n_minus_1 = count_guard(options.class_counts).to(device)
        self.generator: torch.Generator | None = None   # for the random-direction ablation only
        c = len(options.class_counts)
        self._ratio_sum = torch.zeros(c, device=device)
        self._ratio_seen = torch.zeros(c, device=device)

    # ------------------------------------------------------------------ the perturbation
    def theta_norm(self) -> torch.Tensor:
        """The joint norm sqrt(||W||^2 + ||b||^2) + 1e-12 (the code's misnamed ``grad_norm``)."""
        norms = [p.detach().float().norm() for p in self.head.parameters()]
        return torch.linalg.vector_norm(torch.stack(norms)) + self.guard

    @torch.no_grad()
    def class_gradient_norms(self, grads: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor):
        """Per sample j: ||g_{y_j}^W|| and ||g_{y_j}^b||, and the tensors the logit shift and the log reuse: the
        same-class matrix, 1 / the batch count of y_j, and m_j G_j."""
        same = (labels[:, None] == labels[None, :]).float()            # B x B: same class
        m = 1.0 / same.sum(1)                                          # 1 / batch count of y_i
        mg = grads * m[:, None]                                        # m_i G_i
        gram_g = mg @ mg.t()
        gram_z = feats @ feats.t()
        # ||g_c||^2 is the double sum over i, j in c: row sums, then summed over the class's rows
        norm_w = torch.sqrt((same @ (same * gram_g * gram_z).sum(1)).clamp(min=0))
        norm_b = torch.sqrt((same @ (same * gram_g).sum(1)).clamp(min=0))
        return norm_w, norm_b, same, m, mg

    def radii(self, norm_w: torch.Tensor, norm_b: torch.Tensor, labels: torch.Tensor,
              theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample: the radius of the W and b perturbations of its class."""
        opts = self.options
        if opts.magnitude == "constant":
            r = torch.full_like(norm_w, opts.radius)
            return r, r
        n1 = self.n_minus_1[labels]
        return (ccsam_radius(opts.radius, self.param_count, theta, norm_w, n1),
                ccsam_radius(opts.radius, self.param_count, theta, norm_b, n1))

    def logit_shift(self, feats: torch.Tensor, grads: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """eps_{y_j} applied to z_j, per sample: the flat logits are the clean logits plus this (B x C).

        ``feats`` is in the graph (the backbone's gradient flows through it); eps itself is a constant.
        """
        zd = feats.detach()
        if self.options.perturbation == "global":     # the per-class gradients of the global batch (DDP)
            (all_z, start), (all_g, _), (all_y, _) = gather_rows(zd), gather_rows(grads), gather_rows(labels)
        else:
            all_z, all_g, all_y, start = zd, grads, labels, 0
        norm_w, norm_b, same, m, mg = self.class_gradient_norms(all_g, all_z, all_y)
        mine = slice(start, start + len(labels))     # this replica's samples among them
        norm_w, norm_b, same, m = norm_w[mine], norm_b[mine], same[mine], m[mine]
        theta = self.theta_norm()
        rad_w, rad_b = self.radii(norm_w, norm_b, labels, theta)
        self._log(rad_w, rad_b, labels, m, theta)
        if self.options.direction == "random":
            return self._random_shift(feats, labels, rad_w, rad_b)
        s_w = (rad_w / (norm_w + self.guard))[:, None]
        s_b = (rad_b / (norm_b + self.guard))[:, None]
        shift = s_w * ((same * (feats @ all_z.t())) @ mg)
        if self.head.bias is not None:
            shift = shift + s_b * (same @ mg)
        return shift

    def _random_shift(self, feats, labels, rad_w, rad_b) -> torch.Tensor:
        """The magnitude-only ablation: per class, a Gaussian direction per tensor, scaled to the radius.

        Its generator is seeded once from the run's seed and is not checkpointed, so this ablation (alone among
        the options) does not replay bit-exactly after a resume."""
        if self.generator is None or self.generator.device != feats.device:
            self.generator = torch.Generator(device=feats.device).manual_seed(int(torch.initial_seed()) % 2**63)
        c, d = self.head.weight.shape
        dir_w = torch.randn(c, c, d, generator=self.generator, device=feats.device)
        dir_w /= dir_w.flatten(1).norm(dim=1)[:, None, None]
        shift = rad_w[:, None] * torch.einsum("jd,jcd->jc", feats, dir_w[labels])
        if self.head.bias is not None:
            dir_b = torch.randn(c, c, generator=self.generator, device=feats.device)
            dir_b /= dir_b.norm(dim=1, keepdim=True)
            shift = shift + rad_b[:, None] * dir_b[labels]
        return shift

    @torch.no_grad()
    def _log(self, rad_w: torch.Tensor, rad_b: torch.Tensor, labels: torch.Tensor, once: torch.Tensor,
             theta: torch.Tensor) -> None:
        """Accumulate ||eps_c|| / ||theta|| once per class and step, on the device (``once``: 1 / the batch
        count of each sample's class, so each class adds one value per step)."""
        total = torch.sqrt(rad_w ** 2 + (rad_b ** 2 if self.head.bias is not None else 0))
        self._ratio_sum.index_add_(0, labels, total / theta * once)
        self._ratio_seen.index_add_(0, labels, once)

    def epoch_log(self) -> dict:
        """Per class, the mean ||eps_c|| / ||theta|| over the epoch's steps (NaN for a class never drawn)."""
        ratio = (self._ratio_sum / self._ratio_seen).tolist()
        self._ratio_sum.zero_()
        self._ratio_seen.zero_()
        return {"eps_ratio": ratio}

    # ------------------------------------------------------------------ the step
    def __call__(self, model: nn.Module, images: torch.Tensor, targets: Targets, loss_fn: LossFn) -> StepResult:
        f = self.options.flat_ratio
        with self.autocast():
            feats, logits = features_and_logits(model, images)
        clean = mixed_losses(loss_fn, logits, targets)
        loss = clean.mean()
        if f > 0:
            labels = primary_labels(targets)
            grads, = torch.autograd.grad(clean.sum(), logits, retain_graph=True)   # dl_i/do_i, classifier only
            shift = self.logit_shift(feats.float(), grads.float(), labels)
            flat = loss_fn(logits.float() + shift, labels)     # plain CE on the first label, at theta + eps_c
            loss = (1 - f) * loss + f * flat.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return StepResult(loss.detach(), logits.detach())


def features_and_logits(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The pooled features and the logits of one forward. The model is called as a whole, through its DDP or
    ``torch.compile`` wrapper (DDP's forward prepares the gradient all-reduce; a compiled forward stays compiled):
    with ``with_features=True`` where its forward takes it (ltlib's models); otherwise a DDP wrapper's features
    are caught on their way into the classifier, and a bare model's are asked for."""
    inner = unwrap(model)
    if _takes_with_features(type(inner)):
        return model(images, with_features=True)
    if inner is model or not isinstance(model, DistributedDataParallel):
        feats = model.features(images)
        return feats, model.classifier(feats)
    caught: list[torch.Tensor] = []
    handle = inner.classifier.register_forward_hook(lambda module, args, out: caught.append(args[0]))
    try:
        logits = model(images)
    finally:
        handle.remove()
    return caught[0], logits


@functools.lru_cache(maxsize=None)
def _takes_with_features(model_type: type) -> bool:
    return "with_features" in inspect.signature(model_type.forward).parameters


STEPS.add("ccsam", CCSAMStep, "CC-SAM stage 1: (1-f) clean + f CE at the classifier perturbed per class "
                              "(closed-form per-class gradients; one forward and one backward)",
          passes=1.0,   # its per-class work is on the classifier and B x B Gram matrices only
          settings=CCSAMSettings, shown=("ccsam_radius", "ccsam_flat_ratio", "ccsam_direction", "ccsam_magnitude", "drop_last"))


# --------------------------------------------------------------------------- stage 2

def class_weights(class_counts: Sequence[int], div: float = 2.0) -> torch.Tensor:
    """w_c = ln(n_max / n_c + 0.01) / div: about 0.005 for the largest class, largest for the rarest."""
    if not div > 0:
        raise ConfigError(f"CC-SAM stage-2 div must be > 0, got {div}")
    counts = np.asarray(list(class_counts), dtype=np.float64)
    return torch.as_tensor(np.log(counts.max() / counts + 0.01) / div, dtype=torch.float32)


def progressive_alpha(epoch: int, epochs: int, up_limit: float) -> float:
    """alpha_e = min((e + 1) / E_2, up_limit) for stage-2 epoch e = 0 .. E_2 - 1."""
    check_up_limit(up_limit)
    return min((epoch + 1) / epochs, up_limit)


def check_up_limit(up_limit: float) -> None:
    if not 0 < up_limit <= 1:
        raise ConfigError(f"CC-SAM up_limit caps the stage-2 weight of the adversarial loss, so it must be in "
                          f"(0, 1]; got {up_limit!r}")


def feature_perturbation(feat_grads: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                         scale: float = 1.0, guard: float = 1e-12) -> torch.Tensor:
    """delta: for each class c in the batch, lambda w_c G_c / ||G_c||_F on its rows (B x d, detached)."""
    g = feat_grads.detach().float()
    block = torch.zeros(len(weights), device=g.device).index_add_(0, labels, g.pow(2).sum(1)).sqrt()
    return g * (scale * weights[labels] / (block[labels] + guard))[:, None]


class CCSAMFeatureStep:
    """CC-SAM stage 2 on a frozen backbone: alpha * mean(w_c CE(theta(z + delta))) + (1 - alpha) * mean(CE(theta(z)))."""

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module, class_counts: Sequence[int], *,
                 epochs: int, scale: float = 1.0, div: float = 2.0, up_limit: float = 1.0,
                 autocast: Autocast = nullcontext) -> None:
        check_up_limit(up_limit)
        self.optimizer, self.autocast = optimizer, autocast
        self.head = check_linear_head(model, "CC-SAM stage 2")
        self.weights = class_weights(class_counts, div).to(self.head.weight.device)
        self.epochs, self.scale, self.up_limit = epochs, scale, up_limit
        self.alpha = progressive_alpha(0, epochs, up_limit)

    def start_epoch(self, epoch: int) -> None:
        self.alpha = progressive_alpha(epoch, self.epochs, self.up_limit)

    def epoch_log(self) -> dict:
        return {"alpha": self.alpha}

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: Targets, loss_fn: LossFn) -> StepResult:
        labels = primary_labels(targets)
        with torch.no_grad(), self.autocast():
            feats = model.features(images)
        feats = feats.float().requires_grad_(True)
        logits = self.head(feats)
        clean = mixed_losses(loss_fn, logits, targets)
        counts = torch.zeros(len(self.weights), device=labels.device).index_add_(
            0, labels, torch.ones_like(labels, dtype=torch.float32))
        per_class_mean = (clean / counts[labels]).sum()                 # sum over classes of the class means
        feat_grads, = torch.autograd.grad(per_class_mean, feats, retain_graph=True)
        delta = feature_perturbation(feat_grads, labels, self.weights, self.scale)
        adversarial = self.weights[labels] * loss_fn(self.head(feats.detach() + delta), labels)
        loss = self.alpha * adversarial.mean() + (1 - self.alpha) * clean.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return StepResult(loss.detach(), logits.detach())
