"""A run is a frozen, validated dataclass; recipes and profiles fill it in.

* A **recipe** is a paper's training choices (model, optimiser, schedule, subset selection) at
  paper scale, plus the values validated for the CPU ``quick`` scale.
* A **profile** is the scale: ``paper`` (the published recipe, for a GPU), ``quick`` (the CPU tutorial
  scale: minutes per run on 2 cores; the series aims at about 30 minutes, see below) and ``smoke`` (tests:
  seconds).

``make_config(profile, recipe, dataset, **overrides)`` resolves them in that order.

Why the quick profile is what it is (2-core AMD EPYC, torch 2.14.1, fp32; ``python -m ltlib.tools.bench`` and
``exp/summaries/pilot_wd.csv``):

* **Input 28x28x1, natively.** The 1-channel stem at 28x28 trains at 726 img/s against 567 at the
  CIFAR shape 32x32x3 (same ResNet-32, same run of the benchmark): 0.76x the FLOPs.
* **Width 0.5.** 1,199 img/s at width 0.5 against 726 at width 1: below width 1 the step is
  overhead-bound, so 4x fewer FLOPs buy only 1.65x; width 0.25 would buy little more and learns less.
* **Head class 1,000 images (2,478 at IF = 100).** It keeps the strict many / medium / few groups
  non-empty (5 / 3 / 2 classes); at 6,000 the few group is empty. 20 steps per epoch.
* **30 epochs, test at 10 / 20 / 30.** One run takes 69-78 s (training about 62 s, evaluation of the
  10k test and 1k validation images about 2 s per pass), so notebook 01's six runs take about 7.5 min
  and 20-25 such runs fit the series' 30 minutes. (On 2026-12-01 the same machine type ran 1.2x slower:
  83-95 s per run.) The SAM family breaks that budget: a SAM run costs 2x, an ImbSAM run 2.7x, and
  notebook 03's 21 runs take about an hour. A CC-SAM run costs a plain one, but notebook 04's sweep,
  baselines and ablation add up to 22 stage-1 runs (about 37 minutes).
* **It still shows what the notebooks teach.** The head / tail gap (many 81 %, few 38 %, Shirt 0 %),
  and weight decay's effect on the classifier norms and on the tail: with lr 0.1 the head / tail norm
  ratio goes from 1.3 to 2.2 and few-shot accuracy falls by 5-36 points in every seed.
* **fp32, not bf16.** bf16 autocast is 1.37-1.44x faster per step at width 1 (1.15x per quick run),
  but over 6 seed-paired quick runs of weight balancing's recipe it lowered overall accuracy in every
  pair (-0.3 to -1.6, mean -0.9); with lr 0.1 the shift was not consistent (mean +0.1). It is one
  switch: ``precision="bf16"``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from numbers import Integral, Real

from ..core.errors import ConfigError
from ..core.precision import PRECISIONS
from ..core.registry import Registry
from ..core.settings import Settings
from ..data.datasets import DATASETS, check_natural_tail
from ..data.longtail import GROUP_SCHEMES, IMBALANCE_PROFILES, SUBSET_MODES, check_imbalance_factor
from ..data.mixing import MIXINGS, CMOSettings, MixupSettings
from ..data.samplers import SAMPLERS
from ..data.strong import StrongAugmentSettings
from ..methods.ccsam import CCSAMSettings
from ..methods.graphs import check_graph_step
from ..methods.logit_adjustment import LASettings
from ..methods.losses import LOSSES, DRWSettings, FocalSettings, LDAMSettings
from ..methods.sam import SAMSettings
from ..methods.schedules import SCHEDULES
from ..methods.step import STEPS
from ..models import MODELS


# Fields that label a run but do not change what it computes: left out of the hash.
LABEL_FIELDS = ("name", "profile", "recipe")
# Execution switches: they change speed and floating-point rounding only (like the device or the thread
# count), never the recipe, so a run cached with one setting is reused with another. Left out of the hash.
EXECUTION_FIELDS = ("channels_last", "optimizer_impl", "compile", "eval_batch_size", "fold_bn", "num_workers",
                    "deterministic", "graph_step")
# Fields added after runs were cached are hashed only where they matter, so that every earlier run keeps its
# hash (and its cache folder). A method's fields follow its settings block's rule (``hashed_fields``: the SAM
# family's when the step is not plain "sgd", CC-SAM's when it is "ccsam", a mixing rule's when it is on, a loss's
# when it is that loss, DRW's when re-weighting is on); the common fields added later follow these:
_HASHED_WHEN = {
    "mixing": lambda c: c.mixing != "none",
    # the folder data sets' fields, hashed when set
    "image_size": lambda c: c.image_size is not None,
    "color_jitter": lambda c: c.color_jitter != 0,
    "data_path": lambda c: c.data_path != "memory",
}
_CHOICES = {"val_split": ("none", "holdout", "unused", "official"), "data_path": ("memory", "stream"),
            "classifier": ("linear", "normed"),
            "precision": PRECISIONS, "optimizer_impl": ("foreach", "fused", "loop")}


@dataclass(frozen=True)
class RunConfig(DRWSettings, LDAMSettings, FocalSettings, LASettings, MixupSettings, CMOSettings, SAMSettings,
                CCSAMSettings, StrongAugmentSettings):
    """Everything that determines a training run. Build it with :func:`make_config`.

    The common fields are below; each method's fields come from its settings block (its bases here, declared,
    checked and hashed in the method's own file: DRW and the losses in ``methods/losses.py``, mixup and CMO in
    ``data/mixing.py``, logit adjustment in ``methods/logit_adjustment.py``, the SAM family in ``methods/sam.py``,
    CC-SAM in ``methods/ccsam.py``, the strong augmentation in ``data/strong.py``)."""

    name: str = "ce"
    # data
    dataset: str = "fashion_mnist_lt"
    imbalance_factor: float | None = None   # None: 100, or a natural data set's own (ImageNet-LT: 256)
    imbalance_profile: str = "exp"
    n_max: int | None = None            # head-class size; None = the data set's full per-class count
    subset: str = "shuffle"             # which images: "first" in file order or a seeded "shuffle"
    subset_seed: int = 0                # draws the subset and the validation split; not the training seed
    val_split: str = "none"             # "none", "holdout" (carved from the LT set), "unused" (balanced) or
    #                                     "official" (a folder data set's validation list)
    val_fraction: float = 0.1           # per class, for val_split="holdout"
    val_per_class: int = 100            # for val_split="unused"
    test_per_class: int | None = None   # None = the whole balanced test set
    crop_padding: int | None = None     # None = the data set's standard (4 for CIFAR, 2 for 28x28)
    flip: bool = True
    image_size: int | None = None       # folder data sets: the side images are kept at (None: 256; crops 7/8)
    color_jitter: float = 0.0           # ColorJitter(s, s, s) on the training crops (CMO's ImageNet-LT: 0.4)
    data_path: str = "memory"           # folder data sets: a decoded copy in memory, or "stream" the JPEGs each epoch
    # model
    model: str = "resnet32"
    width: float = 1.0
    classifier: str = "linear"
    # method: loss x sampler x mixing x step strategy
    loss: str = "ce"                    # its settings: ldam_*, focal_gamma, la_tau; re-weighting: reweight, drw_*
    sampler: str = "instance"
    mixing: str = "none"                # "mixup" (one lam ~ Beta(alpha, alpha) per batch) or "cmo"; mixup_alpha, cmo_*
    step: str = "sgd"                   # its settings: rho, asam_eta, imbsam_*, bn_second_pass, sam_*; ccsam_*
    # optimisation
    epochs: int = 200
    batch_size: int = 128
    drop_last: bool = False
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    nesterov: bool = False
    schedule: str = "warmup_multistep"
    warmup_epochs: float = 5
    precision: str = "fp32"             # or "bf16" autocast (no GradScaler): changes numerics, so hashed
    # execution switches (not hashed; see EXECUTION_FIELDS and `python -m ltlib.tools.bench`)
    channels_last: bool = True          # NHWC memory: 1.35x for fp32 convolutions on CPU
    optimizer_impl: str = "foreach"     # SGD as one multi-tensor kernel ("foreach"), "fused" or a "loop"
    compile: bool = False               # torch.compile the model: ~1.05-1.1x on CPU for 30-50 s of compile
    eval_batch_size: int = 250          # 100-250 is fastest on CPU; 1000 in fp32 is 2.4x slower
    fold_bn: bool = True                # evaluate with BatchNorm folded into the convolutions
    num_workers: int = 8                # data_path="stream": the processes that decode the training images
    deterministic: bool = False         # CUDA: deterministic kernels, so a rerun repeats a run bit for bit (slower)
    graph_step: bool = False            # CUDA: replay each step as a captured CUDA graph (ltlib.methods.graphs)
    # evaluation
    eval_every: int = 1
    tta: bool = False                   # flip TTA on the reported numbers (WB / ImbSAM report with it)
    select_on_test: bool = False        # also report the best epoch on the *test* set (the papers' protocol)
    group_scheme: str = "strict"
    seed: int = 0                       # initialisation, data order and augmentation
    # labels (not hashed)
    profile: str = "custom"
    recipe: str = "custom"

    def __post_init__(self) -> None:
        spec = DATASETS.get(self.dataset) if self.dataset in DATASETS else None
        if spec is not None and spec.natural:
            _check_natural(self, spec)
        if self.imbalance_factor is None:
            object.__setattr__(self, "imbalance_factor", spec.imbalance_factor if spec and spec.natural else 100.0)
        _validate(self)
        spec = DATASETS.get(self.dataset)
        if self.n_max is None:
            object.__setattr__(self, "n_max", spec.n_max)
        if self.crop_padding is None:
            object.__setattr__(self, "crop_padding", spec.crop_padding)
        object.__setattr__(self, "imbalance_factor", float(self.imbalance_factor))
        if not 1 <= self.n_max <= spec.n_max:
            raise ConfigError(f"RunConfig.n_max: must be in 1..{spec.n_max} for {self.dataset}, got {self.n_max}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"RunConfig.warmup_epochs: must be in [0, epochs={self.epochs}), got {self.warmup_epochs}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """A stable 10-hex-digit hash of everything that changes the result."""
        skip = set(LABEL_FIELDS + EXECUTION_FIELDS)
        for block in BLOCKS:               # a method's fields count only where the run uses them
            skip.update(set(block.block_fields()) - set(block.hashed_fields(self)))
        payload = {k: v for k, v in self.to_dict().items()
                   if k not in skip and _HASHED_WHEN.get(k, lambda c: True)(self)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]

    @property
    def run_name(self) -> str:
        return f"{self.name}-{self.hash()}"

    def replace(self, **changes) -> "RunConfig":
        """A copy with ``changes``. Moving to or from a folder data set drops the derived imbalance factor and
        head-class size (unless given), which belong to the data set."""
        if "dataset" in changes and changes["dataset"] != self.dataset and any(
                name in DATASETS and DATASETS.get(name).natural for name in (self.dataset, changes["dataset"])):
            changes = {"imbalance_factor": None, "n_max": None, **changes}
        return dataclasses.replace(self, **_check_names(changes))

    def with_seed(self, seed: int) -> "RunConfig":
        return self.replace(seed=seed)

    @property
    def base(self) -> "RunConfig":
        """The config whose seed, precision, execution switches and evaluation protocol the run uses (itself; a
        stage-2 run's is its stage-1 config)."""
        return self

    @property
    def data_config(self) -> "RunConfig":
        """The config whose data fields define the training and test sets (itself)."""
        return self

    @property
    def model_config(self) -> "RunConfig":
        """The config whose model fields define the architecture (itself)."""
        return self

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        return cls(**_check_names(values))



# The method settings blocks a run config is made of, in the order of its bases.
BLOCKS: tuple[type[Settings], ...] = tuple(b for b in RunConfig.__mro__[1:] if issubclass(b, Settings) and b is not Settings)

def _check_names(values: dict) -> dict:
    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown RunConfig field(s) {unknown}. Valid fields: {', '.join(sorted(known))}")
    return values


_REGISTRIES = {"dataset": DATASETS, "imbalance_profile": IMBALANCE_PROFILES, "subset": SUBSET_MODES,
               "model": MODELS, "loss": LOSSES, "sampler": SAMPLERS, "step": STEPS, "schedule": SCHEDULES,
               "mixing": MIXINGS,
               "group_scheme": GROUP_SCHEMES}


def _validate(cfg: RunConfig) -> None:
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        _check_type(f.name, value, hints[f.name])
        if f.name in _REGISTRIES:
            try:
                _REGISTRIES[f.name].get(value)
            except ConfigError as err:
                raise ConfigError(f"RunConfig.{f.name}: {err}") from None
        if f.name in _CHOICES and value not in _CHOICES[f.name]:
            raise ConfigError(f"RunConfig.{f.name}: {value!r} is not one of {_CHOICES[f.name]}")
    try:
        check_imbalance_factor(cfg.imbalance_factor)
    except ConfigError as err:
        raise ConfigError(f"RunConfig.{err}") from None
    positive = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "eval_every": cfg.eval_every,
                "eval_batch_size": cfg.eval_batch_size, "lr": cfg.lr, "width": cfg.width,
                "val_per_class": cfg.val_per_class}
    for name, value in positive.items():
        if not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"RunConfig.{name}: must be a positive number, got {value!r}")
    if not 0 <= cfg.momentum < 1:
        raise ConfigError(f"RunConfig.momentum: must be in [0, 1), got {cfg.momentum}")
    if not cfg.weight_decay >= 0:
        raise ConfigError(f"RunConfig.weight_decay: must be >= 0, got {cfg.weight_decay}")
    if not 0 < cfg.val_fraction < 1:
        raise ConfigError(f"RunConfig.val_fraction: must be in (0, 1), got {cfg.val_fraction}")
    for name in ("crop_padding", "test_per_class", "n_max"):
        value = getattr(cfg, name)
        if value is not None and value < (0 if name == "crop_padding" else 1):
            raise ConfigError(f"RunConfig.{name}: must be {'>= 0' if name == 'crop_padding' else '>= 1'}, got {value}")
    if cfg.seed < 0 or cfg.subset_seed < 0:
        raise ConfigError("RunConfig.seed and RunConfig.subset_seed must be >= 0")
    natural = DATASETS.get(cfg.dataset).natural
    if not natural and (cfg.image_size is not None or cfg.val_split == "official" or cfg.data_path != "memory"):
        raise ConfigError(f"RunConfig: image_size, data_path and val_split='official' are for folder data sets "
                          f"({', '.join(n for n in DATASETS if DATASETS.get(n).natural)}), not {cfg.dataset}")
    if cfg.num_workers < 0:
        raise ConfigError(f"RunConfig.num_workers: must be >= 0, got {cfg.num_workers}")
    if not 0 <= cfg.color_jitter or not math.isfinite(cfg.color_jitter):
        raise ConfigError(f"RunConfig.color_jitter: a ColorJitter strength >= 0, got {cfg.color_jitter!r}")
    if cfg.color_jitter and DATASETS.get(cfg.dataset).image_shape[0] != 3:
        raise ConfigError(f"RunConfig.color_jitter: jitters colour, but {cfg.dataset} is greyscale; set it to 0")
    check_graph_step(cfg)
    for block in BLOCKS:                   # each method checks its own fields
        block.check_block(cfg)


def _check_natural(cfg: RunConfig, spec) -> None:
    """A natural long tail (a folder data set) has its own imbalance factor, head class and subset."""
    try:
        check_natural_tail(cfg.dataset, spec, cfg.imbalance_factor, cfg.n_max)
    except ConfigError as err:
        raise ConfigError(f"RunConfig: {err}") from None
    if cfg.val_split == "unused":
        raise ConfigError(f"RunConfig.val_split: {cfg.dataset} leaves no unused images; use 'official' (its "
                          "validation list), 'holdout' or 'none'")
    if cfg.image_size is not None and cfg.image_size < 8:
        raise ConfigError(f"RunConfig.image_size: must be at least 8 pixels, got {cfg.image_size}")


def _check_type(name: str, value: object, hint: object) -> None:
    if name == "imbalance_factor":  # checked by check_imbalance_factor, with its own message
        return
    args = typing.get_args(hint)
    if value is None:
        if type(None) in args:
            return
        raise ConfigError(f"RunConfig.{name}: must not be None")
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, Integral) and not isinstance(value, bool),
        float: isinstance(value, Real) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(base, True)
    if not ok:
        raise ConfigError(f"RunConfig.{name}: must be {base.__name__}, got {value!r} ({type(value).__name__})")


# --------------------------------------------------------------------------- recipes and profiles

@dataclass(frozen=True)
class Recipe:
    """A paper's stage-1 training choices at paper scale, and the values used at CPU quick scale.

    ``large`` holds, per folder data set, the values the paper's own code trains that data set with (the
    ``paper`` profile on it); a recipe without them refuses the large data sets at paper scale rather than
    guess. ``datasets`` holds, per CIFAR-style data set, where the paper's config for it differs from ``paper``
    (CC-SAM's Cifar100.json).
    """

    paper: dict
    quick: dict
    common: dict = field(default_factory=dict)
    large: dict = field(default_factory=dict)
    datasets: dict = field(default_factory=dict)


RECIPES: Registry[Recipe] = Registry("recipe")
# CMO's imagenet_train.py / inat18_train.py (naver-ai/cmo; README commands): torchvision ResNet-50, SGD lr 0.1,
# WD 2e-4, 100 epochs, 5-epoch warm-up, many / medium / few as OLTR (>100, 21-100, <=20). ImageNet-LT: batch
# 128 (the default), ColorJitter 0.4, x0.1 / x0.01 after epochs 60 / 80, DRW from epoch 80. iNaturalist:
# batch 256 (README), no jitter, its own normalisation, x0.1 after epoch 75; its DRW and second drop sit at
# epoch 160, which 100 epochs never reach (kept: drw_start 1.0).
_CMO_LARGE = dict(model="resnet50", epochs=100, lr=0.1, weight_decay=2e-4, warmup_epochs=5, eval_every=1,
                  group_scheme="oltr", subset="first")
CMO_LARGE = {
    "imagenet_lt": dict(_CMO_LARGE, batch_size=128, color_jitter=0.4, schedule="imagenet_multistep", drw_start=0.8),
    "inat2018": dict(_CMO_LARGE, batch_size=256, schedule="inat_multistep", drw_start=1.0),
}
# CC-SAM's radius r at quick scale, where the released 1e-6 leaves the flat loss unperturbed (notebook 04)
QUICK_CCSAM_RADIUS = 0.03
RECIPES.add("ce", Recipe(
    common=dict(model="resnet32", loss="ce", momentum=0.9, subset="shuffle"),
    # LDAM-DRW / CMO cifar_train.py defaults (algorithms.md §5.3)
    paper=dict(epochs=200, batch_size=128, lr=0.1, weight_decay=2e-4, schedule="warmup_multistep",
               warmup_epochs=5, eval_every=1),
    # quick-profile-pilot.md: lr 0.1, 2-epoch warm-up + per-step cosine, 30 epochs, width 0.5
    quick=dict(epochs=30, batch_size=128, lr=0.1, weight_decay=5e-4, schedule="cosine", warmup_epochs=2,
               eval_every=10, width=0.5),
    large=CMO_LARGE,
), "cross-entropy as LDAM-DRW / CMO train it: ResNet-32, SGD lr 0.1, warm-up + steps at 160/180 of 200")
RECIPES.add("wb", Recipe(
    common=dict(loss="ce", momentum=0.9, subset="first", schedule="cosine_epoch_start", warmup_epochs=0),
    # weight balancing demo1 (algorithms.md §2.2): ResNet-34 variant, batch 64, lr 0.01, 320 epochs. Its released
    # protocol reports with flip TTA and keeps the best epoch on the test set: both on, as in the ImbSAM recipe
    # (the last epoch is reported too, and results label the test-selected numbers; tta=False for the plain view)
    paper=dict(model="resnet34_wb", epochs=320, batch_size=64, lr=0.01, weight_decay=5e-3, eval_every=1, tta=True,
               select_on_test=True),
    # CPU scale: ResNet-32 width 0.5; see notebook 01 and exp/README.md for the pilot behind these values
    quick=dict(model="resnet32", width=0.5, epochs=30, batch_size=128, lr=0.01, weight_decay=5e-3,
               eval_every=10),
), "weight balancing stage 1: CE, SGD lr 0.01, cosine stepped before each epoch, WD 5e-3 on all parameters")
RECIPES.add("imbsam", Recipe(
    # ImbSAM scripts/train.py (algorithms.md §4.4): weight balancing's pipeline with WD 1e-3, batch 64,
    # rho 0.05, eta 20, and the ImbSAM step; notebook 03 sets the step of each of its rows (step="sgd" for SGD)
    common=dict(loss="ce", momentum=0.9, subset="first", schedule="cosine_epoch_start", warmup_epochs=0,
                weight_decay=1e-3, rho=0.05, imbsam_eta=20, step="imbsam"),
    paper=dict(model="resnet34_wb", epochs=200, batch_size=64, lr=0.01, eval_every=1, tta=True, select_on_test=True),
    # CPU scale: notebook 01's `wb` quick scale (batch 128 keeps 20 steps per epoch)
    quick=dict(model="resnet32", width=0.5, epochs=30, batch_size=128, lr=0.01, eval_every=10),
), "ImbSAM's stage 1: weight balancing's recipe with WD 1e-3, batch 64, 200 epochs; rho 0.05, eta 20")

RECIPES.add("ccsam", Recipe(
    # CC-SAM configs/Cifar10.json (algorithms.md §3.2): ResNet-32, batch 64, mixup (alpha 1), f 0.3, r 1e-6,
    # SGD lr 0.1 WD 2e-4, 5-epoch warm-up from 1/3, x0.1 at 160 and 180 of 200; drop_last as its loader.
    # The baselines of notebook 04 override step="sgd" (and mixing="none" for plain CE).
    common=dict(model="resnet32", loss="ce", momentum=0.9, subset="shuffle", step="ccsam", mixing="mixup",
                mixup_alpha=1.0, ccsam_flat_ratio=0.3, drop_last=True),
    paper=dict(epochs=200, batch_size=64, lr=0.1, weight_decay=2e-4, schedule="ccsam_multistep", warmup_epochs=5,
               eval_every=1, ccsam_radius=1e-6, select_on_test=True),
    # CPU scale: the `ce` recipe's quick scale; r at which the perturbation bites (notebook 04, section 2)
    quick=dict(epochs=30, batch_size=128, lr=0.1, weight_decay=5e-4, schedule="cosine", warmup_epochs=2,
               eval_every=10, width=0.5, ccsam_radius=QUICK_CCSAM_RADIUS),
    # configs/Cifar100.json: f 0.5 (its stage-2 up_limit 0.3 is in ltlib.runs.stage2.STAGE2_DATASETS)
    datasets={"cifar100_lt": dict(ccsam_flat_ratio=0.5)},
), "CC-SAM stage 1 (Cifar10.json; Cifar100.json's f 0.5 on CIFAR-100): mixup, (1-f) clean + f per-class "
   "perturbed-classifier CE, f 0.3, r 1e-6")

RECIPES.add("cmo", Recipe(
    # CMO / LDAM-DRW cifar_train.py (algorithms.md §5.3): ResNet-32, batch 128, SGD lr 0.1 WD 2e-4, warm-up to
    # epoch 5, x0.01 after 160 and x0.0001 after 180 of 200; DRW from epoch 160; CMO p 0.5, beta 1, alpha 1,
    # off in the first 4 and last 3 epochs. The loss, re-weighting and mixing are the notebook's variables.
    common=dict(model="resnet32", loss="ce", momentum=0.9, subset="shuffle", schedule="warmup_multistep",
                drw_start=0.8, drw_beta=0.9999, cmo_prob=0.5, cmo_beta=1.0, cmo_alpha=1.0),
    paper=dict(epochs=200, batch_size=128, lr=0.1, weight_decay=2e-4, warmup_epochs=5, eval_every=1,
               cmo_start=3, cmo_end=3),
    # CPU scale: the same schedule scaled to 30 epochs (warm-up 2 epochs, drops after 24 and 27, DRW from 24),
    # CMO off in the first 2 and the last epoch; width 0.5 and WD 5e-4 as the `ce` recipe's quick scale
    quick=dict(epochs=30, batch_size=128, lr=0.1, weight_decay=5e-4, warmup_epochs=2, eval_every=10, width=0.5,
               cmo_start=1, cmo_end=1),
    large={name: dict(values, cmo_start=3, cmo_end=3) for name, values in CMO_LARGE.items()},
), "CMO / LDAM-DRW: ResNet-32, SGD lr 0.1, warm-up then x0.01 / x0.0001 at 80% / 90%, DRW at 80%; CMO p 0.5")

RECIPES.add("cmo_400", Recipe(
    # CMO's `--loss_type BS --epochs 400 --data_aug CMO --use_randaug` (algorithms.md §5.3, §1.3): the `cmo` recipe
    # with Balanced Softmax, 400 epochs, paco_adjust_learning_rate (10-epoch warm-up peaking at 1.1 lr, x0.1 after
    # epoch 320, x0.01 after 360) and, per image, AutoAugment + Cutout or the SimCLR-style pipeline. No DRW: the
    # code's `epoch // 160` index cannot run past epoch 320 with it.
    common=dict(model="resnet32", loss="bs", momentum=0.9, subset="shuffle", schedule="paco_multistep",
                mixing="cmo", cmo_prob=0.5, cmo_beta=1.0, cmo_alpha=1.0, strong_augment="paco"),
    paper=dict(epochs=400, batch_size=128, lr=0.1, weight_decay=2e-4, warmup_epochs=10, eval_every=1,
               cmo_start=3, cmo_end=3),
    # CPU scale: the `cmo` recipe's quick scale; the warm-up at 3 epochs (it peaks at 4/3 lr)
    quick=dict(epochs=30, batch_size=128, lr=0.1, weight_decay=5e-4, warmup_epochs=3, eval_every=10, width=0.5,
               cmo_start=1, cmo_end=1),
), "CMO's 400-epoch recipe: BS + CMO, AutoAugment + Cutout or SimCLR-style per image, PaCo's step schedule")

RECIPES.add("ccsam_autoaug", Recipe(
    # CC-SAM's stronger-augmentation variant (README; algorithms.md §1.3, §3.6): the `ccsam` recipe with mixup off
    # and AutoAugment + Cutout after the crop and flip (the lines its datasets/Cifar.py leaves commented out)
    common=dict(RECIPES.get("ccsam").common, mixing="none", strong_augment="autoaug_cutout"),
    paper=RECIPES.get("ccsam").paper, quick=RECIPES.get("ccsam").quick, datasets=RECIPES.get("ccsam").datasets,
), "CC-SAM stage 1 with AutoAugment + Cutout and mixup off (its README's variant)")

PROFILES: Registry[dict] = Registry("profile")
PROFILES.add("paper", dict(val_split="none"), "the published recipe at full scale (meant for a GPU)")
PROFILES.add("quick", dict(n_max=1000, val_split="unused", val_per_class=100),
             "CPU tutorial scale: head class 1,000 images (2,478 at IF=100), ResNet-32 width 0.5, 30 epochs")
PROFILES.add("smoke", dict(n_max=200, val_split="unused", val_per_class=20, test_per_class=100, width=0.25,
                           epochs=2, warmup_epochs=0, eval_every=1, cmo_start=0, cmo_end=0),
             "tests: 492 images at IF=100, width 0.25, 2 epochs (CMO on in the second), 1,000 test images")


def make_config(profile: str = "quick", recipe: str = "ce", dataset: str = "fashion_mnist_lt",
                **overrides) -> RunConfig:
    """Resolve recipe (paper or quick values) <- profile scale <- ``overrides`` into a RunConfig."""
    scale = dict(PROFILES.get(profile))
    rec = RECIPES.get(recipe)
    spec = DATASETS.get(dataset)
    if spec.natural:
        values = _natural_values(profile, recipe, rec, dataset, spec, scale)
    else:
        values = {**rec.common, **(rec.paper if profile == "paper" else rec.quick)}
        if profile == "paper":
            values.update(rec.datasets.get(dataset, {}))
        if "n_max" in scale:
            scale["n_max"] = min(scale["n_max"], spec.n_max)
        if scale.get("val_split") == "unused" and scale.get("n_max", spec.n_max) >= spec.n_max:
            scale["val_split"] = "holdout"  # no unused head-class images left: carve from the LT set
    values.update(scale)
    values.update(dataset=dataset, profile=profile, recipe=recipe)
    values.update(overrides)
    return RunConfig.from_dict(values)


def _natural_values(profile: str, recipe: str, rec: Recipe, dataset: str, spec, scale: dict) -> dict:
    """The recipe's values on a folder data set (at paper scale its own for that set, ``Recipe.large``), and the
    profile's scale fitted in place to a long tail taken as it is (no head-class cap, no unused images)."""
    if profile == "paper" and dataset not in rec.large:
        having = sorted(n for n in RECIPES if dataset in RECIPES.get(n).large)
        raise ConfigError(f"recipe {recipe!r} has no published {dataset} recipe in its code: use one of "
                          f"{having or 'none'} (e.g. make_config('paper', 'cmo', {dataset!r}, step='imbsam')), "
                          "or build a RunConfig with every field given")
    scale.pop("n_max", None)
    if scale.get("val_split") == "unused":
        scale["val_split"] = "official" if "val" in spec.splits else "holdout"
    return {**rec.common, **(rec.large[dataset] if profile == "paper" else rec.quick)}
