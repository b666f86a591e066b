"""SAM, adaptive SAM, ASAM and ImbSAM as step strategies (algorithms.md sections 4 and 6).

Each strategy does its own forward / backward passes and then steps the *base* optimizer, so the
learning-rate schedule, momentum and weight decay stay in plain SGD: weight decay is never part of the
perturbation. The perturbation scale T_w picks the variant:

* ``sam``           davda54/sam: T = 1, a global gradient norm, epsilon = rho g / (||g|| + 1e-12);
* ``sam_adaptive``  davda54/sam with ``adaptive=True``: T = |w| on every parameter, no eta;
* ``asam``          SamsungLabs/ASAM (official): T = |w| + eta on tensors whose name contains "weight"
                    (conv, linear and BN gamma), T = 1 on biases and BN beta; guard 1e-16;
* ``imbsam``        ImbSAM (official PyTorch code): the head loss at w, the tail loss at w + epsilon
                    where epsilon comes from the tail gradient alone; the tail is {c : n_c < eta}.

For all of them epsilon = rho * T * (T g) / ||T g||, with rho read per parameter group (``group["rho"]``).
Choices where the references disagree are named options (:class:`SAMOptions`): how the weights are
restored (an exact copy, as davda54; or subtraction, as ASAM and ImbSAM), what BatchNorm does in the
second pass (update its running statistics again, as ASAM / ImbSAM / Saddle-LongTail; or keep the first
pass's, as davda54's example), ImbSAM's x2 tail factor and its division by the full batch. Under DDP
(:mod:`ltlib.runs.distributed`) the ascent is per replica by default, as the SAM paper does (``perturbation``).
"""
from __future__ import annotations

import math
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..core.errors import ConfigError
from ..core.replicas import average_gradients, local_pass
from ..core.settings import Settings
from ..core.targets import Targets, primary_labels
from .step import STEPS, Autocast, LossFn, StepResult, forward_loss, forward_losses


BN_MODES = ("update", "bypass")
PERTURBATION_MODES = ("replica", "global")
RESTORE_MODES = ("copy", "subtract")
TAIL_DIVISORS = ("batch", "group")


@dataclass(frozen=True)
class SAMSettings(Settings):
    """The SAM family's fields of a run config (``step`` in sam, sam_adaptive, asam, imbsam): algorithms.md
    sections 4 and 6. They are hashed whenever the step is not plain ``"sgd"`` (``sam_perturbation`` only when it is
    not the default), so every run cached before a field was added keeps its hash."""

    rho: float = 0.05                   # radius of the perturbation ball (SAM / ASAM / ImbSAM)
    asam_eta: float = 0.01              # ASAM's T = |w| + eta
    imbsam_eta: int = 20                # ImbSAM's tail: the classes with fewer than this many training images
    imbsam_tail_factor: float = 2.0     # ImbSAM's x2 on the tail loss (official code; 1.0 = before 2023-09-15)
    imbsam_divisor: str = "batch"       # ImbSAM's partial losses / the full batch ("batch") or / group size
    bn_second_pass: str = "update"      # BN running stats in SAM's second pass: "update" again or "bypass"
    sam_restore: str = "copy"           # back to w by an exact "copy" or by "subtract"ing epsilon
    sam_perturbation: str = "replica"   # under DDP: epsilon per replica (the SAM paper) or "global" (all-reduced);
    #                                     CC-SAM: its per-class gradients from the replica's slice or the global batch

    @classmethod
    def check_block(cls, config) -> None:
        if not config.rho >= 0 or not math.isfinite(config.rho):
            raise ConfigError(f"RunConfig.rho: the SAM radius must be a finite number >= 0, got {config.rho!r}")
        if not config.asam_eta >= 0:
            raise ConfigError(f"RunConfig.asam_eta: must be >= 0, got {config.asam_eta!r}")
        if not config.imbsam_tail_factor > 0:
            raise ConfigError(f"RunConfig.imbsam_tail_factor: must be > 0, got {config.imbsam_tail_factor!r}")
        if config.imbsam_eta < 0:
            raise ConfigError(f"RunConfig.imbsam_eta: a class-count threshold, must be >= 0, got {config.imbsam_eta}")
        for name, valid in (("bn_second_pass", BN_MODES), ("sam_restore", RESTORE_MODES),
                            ("imbsam_divisor", TAIL_DIVISORS), ("sam_perturbation", PERTURBATION_MODES)):
            if getattr(config, name) not in valid:
                raise ConfigError(f"RunConfig.{name}: {getattr(config, name)!r} is not one of {valid}")

    @classmethod
    def used(cls, config) -> bool:
        return config.step != "sgd"

    @classmethod
    def hashed_fields(cls, config) -> tuple[str, ...]:
        if not cls.used(config):
            return ()
        return tuple(n for n in cls.block_fields() if n != "sam_perturbation" or config.sam_perturbation != "replica")

    @classmethod
    def options(cls, config, class_counts: Sequence[int]) -> "SAMOptions":
        """The step's options; ImbSAM's tail set comes from the training counts."""
        tail = tail_classes_from_counts(class_counts, config.imbsam_eta) if config.step == "imbsam" else ()
        return SAMOptions(rho=config.rho, asam_eta=config.asam_eta, bn_second_pass=config.bn_second_pass,
                          restore=config.sam_restore, tail_classes=tail, tail_factor=config.imbsam_tail_factor,
                          tail_divisor=config.imbsam_divisor, perturbation=config.sam_perturbation)


@dataclass(frozen=True)
class SAMOptions:
    """The knobs of the SAM family; defaults follow the references (see the module docstring)."""

    rho: float = 0.05
    asam_eta: float = 0.01             # ASAM's T = |w| + eta (the ASAM class default; example_cifar.py uses 0)
    bn_second_pass: str = "update"     # "update": running stats move in both passes; "bypass": first pass only
    restore: str = "copy"              # "copy": bit-exact restore; "subtract": w + eps - eps, as ASAM / ImbSAM
    tail_classes: tuple[int, ...] = ()  # ImbSAM's tail set T (see tail_classes_from_counts)
    tail_factor: float = 2.0           # ImbSAM's x2 on the tail loss (official code since 2023-09-15)
    tail_divisor: str = "batch"        # "batch": both partial losses / B (official); "group": / group size
    perturbation: str = "replica"      # under DDP: epsilon from each replica's own gradient (the SAM paper), or
                                       # "global": from the gradient averaged over the ranks (single-process SAM)

    def __post_init__(self) -> None:
        if not self.rho >= 0:
            raise ConfigError(f"SAM rho must be >= 0 (the radius of the perturbation ball), got {self.rho}")
        if not self.asam_eta >= 0:
            raise ConfigError(f"ASAM eta must be >= 0, got {self.asam_eta}")
        if not self.tail_factor > 0:
            raise ConfigError(f"ImbSAM tail_factor must be > 0, got {self.tail_factor}")
        for name, value, choices in (("bn_second_pass", self.bn_second_pass, BN_MODES),
                                     ("restore", self.restore, RESTORE_MODES),
                                     ("tail_divisor", self.tail_divisor, TAIL_DIVISORS),
                                     ("perturbation", self.perturbation, PERTURBATION_MODES)):
            if value not in choices:
                raise ConfigError(f"SAM option {name}: {value!r} is not one of {choices}")


def tail_classes_from_counts(class_counts: Sequence[int], eta: int) -> tuple[int, ...]:
    """ImbSAM's tail set {c : n_c < eta}, warning when it is empty or covers every class."""
    tail = tuple(c for c, n in enumerate(class_counts) if n < eta)
    if not tail:
        warnings.warn(f"ImbSAM: no class has fewer than eta={eta} training images (smallest: {min(class_counts)}), "
                      "so the tail set is empty and ImbSAM reduces to SGD on the head loss. Raise eta to "
                      "perturb the rarest classes.", stacklevel=2)
    elif len(tail) == len(class_counts):
        warnings.warn(f"ImbSAM: every class has fewer than eta={eta} training images (largest: {max(class_counts)}), "
                      "so the head set is empty and ImbSAM reduces to SAM on the (scaled) full loss. Lower eta.",
                      stacklevel=2)
    return tail


@contextmanager
def bn_stats_frozen(model: nn.Module, active: bool = True) -> Iterator[None]:
    """Zero every BatchNorm momentum for the duration: the layers still normalise with batch statistics
    (train mode) but leave running_mean / running_var unchanged (davda54's bypass_bn)."""
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)] if active else []
    saved = [m.momentum for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(layers, saved):
            m.momentum = momentum


class Perturbation:
    """Ascent to w + epsilon and back, over the base optimizer's parameters, with foreach kernels and no
    host sync. ``scale`` is "none" (SAM), "abs" (|w| everywhere) or "asam" (|w| + eta on "weight" tensors)."""

    def __init__(self, optimizer: torch.optim.Optimizer, options: SAMOptions, *, scale: str = "none",
                 guard: float = 1e-12, names: dict[int, str] | None = None) -> None:
        self.optimizer = optimizer
        self.options = options
        self.scale = scale
        self.guard = guard
        for group in optimizer.param_groups:
            group.setdefault("rho", options.rho)
        if scale == "asam":
            if not names:
                raise ValueError("ASAM scales the tensors named 'weight': build the step with model=...")
            self.adaptive_ids = {id(p) for g in optimizer.param_groups for p in g["params"]
                                 if "weight" in names.get(id(p), "")}
        self._saved: list[torch.Tensor] = []
        self._eps: list[torch.Tensor] = []
        self._params: list[torch.Tensor] = []

    def _groups(self) -> Iterator[tuple[float, list[torch.Tensor]]]:
        for group in self.optimizer.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                yield group["rho"], params

    def _t(self, p: torch.Tensor) -> torch.Tensor | None:
        """T_w for one parameter, or None for T = 1."""
        if self.scale == "abs":
            return p.detach().abs()
        if self.scale == "asam" and id(p) in self.adaptive_ids:
            return p.detach().abs().add_(self.options.asam_eta)
        return None

    @torch.no_grad()
    def ascend(self) -> torch.Tensor:
        """w <- w + epsilon from the gradients now in ``.grad``; returns ||T g|| (a 0-d tensor)."""
        groups = list(self._groups())
        params = [p for _, ps in groups for p in ps]
        if self.scale == "none":
            scaled = [p.grad for p in params]
            ts: list[torch.Tensor | None] = [None] * len(params)
        else:
            ts = [self._t(p) for p in params]
            scaled = [p.grad if t is None else p.grad * t for p, t in zip(params, ts)]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(scaled))) if scaled else torch.zeros(())
        if self.options.restore == "copy":
            if len(self._saved) != len(params) or any(s.shape != p.shape for s, p in zip(self._saved, params)):
                self._saved = [torch.empty_like(p) for p in params]
            torch._foreach_copy_(self._saved, params)
        eps: list[torch.Tensor] = []
        start = 0
        for rho, ps in groups:
            n = len(ps)
            factor = rho / (norm + self.guard)
            e = torch._foreach_mul(scaled[start:start + n], factor)
            for i, t in enumerate(ts[start:start + n]):
                if t is not None:
                    e[i].mul_(t)
            eps += e
            start += n
        torch._foreach_add_(params, eps)
        self._params, self._eps = params, eps
        return norm

    @torch.no_grad()
    def restore(self) -> None:
        """Back to w: the saved copy (bit-exact) or w + epsilon - epsilon."""
        if self.options.restore == "copy":
            torch._foreach_copy_(self._params, self._saved)
        else:
            torch._foreach_sub_(self._params, self._eps)
        self._params, self._eps = [], []

    @property
    def epsilon(self) -> list[torch.Tensor]:
        """The current perturbation, per parameter (valid between ascend and restore)."""
        return self._eps


def _param_names(model: nn.Module | None) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()} if model is not None else {}


class SAMStep:
    """SAM / adaptive SAM / ASAM: gradient at w, ascend to w + epsilon, gradient there, restore w, base step."""

    scale = "none"
    guard = 1e-12

    def __init__(self, optimizer: torch.optim.Optimizer, autocast: Autocast = nullcontext, *,
                 model: nn.Module | None = None, options: SAMOptions | None = None, **_) -> None:
        self.optimizer = optimizer
        self.autocast = autocast
        self.options = options or SAMOptions()
        self.perturbation = Perturbation(optimizer, self.options, scale=self.scale, guard=self.guard,
                                         names=_param_names(model))

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: Targets,
                 loss_fn: LossFn) -> StepResult:
        with local_pass(model, self.options.perturbation == "replica"):   # DDP: the ascent stays per replica
            loss, logits = forward_loss(model, images, labels, loss_fn, self.autocast)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        self.perturbation.ascend()
        self.optimizer.zero_grad(set_to_none=True)
        with bn_stats_frozen(model, self.options.bn_second_pass == "bypass"):
            perturbed, _ = forward_loss(model, images, labels, loss_fn, self.autocast)
        perturbed.backward()
        self.perturbation.restore()
        self.optimizer.step()
        return StepResult(loss.detach(), logits.detach())


class AdaptiveSAMStep(SAMStep):
    """davda54's adaptive mode: T = |w| on every parameter (biases and BN included), no eta."""

    scale = "abs"


class ASAMStep(SAMStep):
    """Official ASAM: T = |w| + eta on "weight" tensors, 1 elsewhere; norm guard 1e-16."""

    scale = "asam"
    guard = 1e-16


def keep_saved_buffers():
    """Keep a compiled model's saved buffers for a second backward through the same graph (``retain_graph=True``).

    torch.compile's backward may free ("donate") the buffers its forward saved, and refuses a retained graph if it
    did; it compiles one graph for every model of a class, so a plain step compiled first decides for ImbSAM's.
    Compiled in this context, the graph keeps them (donation only saves memory); an eager model is unaffected.
    """
    try:
        from torch._functorch import config     # not imported by `import torch`; compiling reads it
    except ImportError:
        return nullcontext()
    return config.patch(donated_buffer=False) if hasattr(config, "donated_buffer") else nullcontext()


class ImbSAMStep:
    """ImbSAM (official PyTorch code): g = grad L_H(w) + grad L_T(w + epsilon), epsilon from grad L_T(w).

    L_H = (1/B) sum of head losses and L_T = (2/B) sum of tail losses by default (``tail_divisor``,
    ``tail_factor``). 2 forwards and 3 backwards: the head and tail backwards share the first graph.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, autocast: Autocast = nullcontext, *,
                 model: nn.Module | None = None, options: SAMOptions | None = None, **_) -> None:
        self.optimizer = optimizer
        self.autocast = autocast
        self.options = options or SAMOptions()
        self.perturbation = Perturbation(optimizer, self.options, guard=1e-16)
        self._tail: torch.Tensor | None = None

    def tail_mask(self, labels: Targets) -> torch.Tensor:
        """True for the samples whose (primary) class is in the tail set."""
        labels = primary_labels(labels)
        if self._tail is None or self._tail.device != labels.device:
            self._tail = torch.tensor(self.options.tail_classes, dtype=labels.dtype, device=labels.device)
        return torch.isin(labels, self._tail)

    def _partial(self, losses: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The (head or tail) partial loss: sum over the masked samples / B, or / the group size."""
        total = torch.where(mask, losses, torch.zeros((), dtype=losses.dtype, device=losses.device)).sum()
        if self.options.tail_divisor == "batch":
            return total / len(losses)
        return total / mask.sum().clamp(min=1)

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: Targets,
                 loss_fn: LossFn) -> StepResult:
        with keep_saved_buffers():       # the head and tail backwards share the first graph
            return self._step(model, images, labels, loss_fn)

    def _step(self, model: nn.Module, images: torch.Tensor, labels: Targets, loss_fn: LossFn) -> StepResult:
        tail = self.tail_mask(labels)
        factor = self.options.tail_factor
        # two backwards share the first graph, so under DDP both stay local and the stored head gradient (and,
        # for a global perturbation, the tail gradient) is averaged over the ranks explicitly
        with local_pass(model):
            losses, logits = forward_losses(model, images, labels, loss_fn, self.autocast)
            head_loss = self._partial(losses, ~tail)
            tail_loss = factor * self._partial(losses, tail)
            self.optimizer.zero_grad(set_to_none=True)
            head_loss.backward(retain_graph=True)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            head_grads = [p.grad for p in params]
            for p in params:
                p.grad = None
            tail_loss.backward()
        tail_grads = [p.grad for p in params] if self.options.perturbation == "global" else []
        average_gradients(head_grads + tail_grads, model)      # one all-reduce for both
        self.perturbation.ascend()
        self.optimizer.zero_grad(set_to_none=True)
        with bn_stats_frozen(model, self.options.bn_second_pass == "bypass"):
            perturbed, _ = forward_losses(model, images, labels, loss_fn, self.autocast)
        (factor * self._partial(perturbed, tail)).backward()
        self.perturbation.restore()
        with torch.no_grad():
            both = [(p.grad, g) for p, g in zip(params, head_grads) if g is not None and p.grad is not None]
            if both:
                torch._foreach_add_([a for a, _ in both], [b for _, b in both])
            for p, g in zip(params, head_grads):
                if p.grad is None and g is not None:
                    p.grad = g
        self.optimizer.step()
        return StepResult(losses.detach().mean(), logits.detach())


# passes: SAM / ASAM 2 forwards + 2 backwards; ImbSAM 2 forwards + 3 backwards (the head and tail backwards share
# the first graph), 8/3 plain steps. settings: the run-config block the step reads; shown: the fields a caption prints
_BN = ("bn_second_pass", "sam_restore")
STEPS.add("sam", SAMStep, "SAM (davda54): global-norm ascent to w + rho g/||g||, exact restore, base step",
          passes=2.0, settings=SAMSettings, shown=("rho", *_BN))
STEPS.add("sam_adaptive", AdaptiveSAMStep, "davda54's adaptive SAM: T = |w| on every parameter, no eta", passes=2.0,
          settings=SAMSettings, shown=("rho", *_BN))
STEPS.add("asam", ASAMStep, "ASAM (official): T = |w| + eta on 'weight' tensors (conv, linear, BN gamma)",
          passes=2.0, settings=SAMSettings, shown=("rho", "asam_eta", *_BN))
STEPS.add("imbsam", ImbSAMStep, "ImbSAM: head loss at w, tail loss (n_c < eta, x2, / B) at w + epsilon",
          passes=8 / 3, settings=SAMSettings,
          shown=("rho", "imbsam_eta", "imbsam_tail_factor", "imbsam_divisor", *_BN))
