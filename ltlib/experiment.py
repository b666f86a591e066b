"""Run a config once, cache it under ``exp/<dataset>/<name>-<hash>/``, and load it the next time.

A run folder holds ``config.json``, ``environment.json``, ``history.csv``, ``metrics.json`` and
``model.pt``. While training, ``checkpoint.pt`` holds the last finished epoch, so an interrupted run
(Ctrl-C, a killed process) resumes where it stopped and ends with the same numbers. Every write is
atomic; a damaged checkpoint is reported and retrained, and nothing else is touched.
"""
from __future__ import annotations

import copy
import functools
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
import torch.nn as nn

from . import io
from .config import RunConfig
from .data.datasets import DATASETS, LongTailData, load_longtail
from .data.loader import DeviceLoader
from .data.stream import StreamedImages, StreamLoader
from .data.mixing import build_mixing
from .data.samplers import build_sampler
from .distributed import ShardedLoader, check_supported, dist_info, evaluate_sharded, wrap_model
from .env import derived_seed, environment, resolve_device, seed_everything, threads_for_run
from .errors import CheckpointError
from .losses import DRW, build_loss
from .models import build_model, classifier_weight
from .optim.schedules import build_schedule
from .optim.ccsam import CCSAMOptions
from .optim.sam import SAMOptions, tail_classes_from_counts
from .optim.step import autocast_for, build_sgd, build_step
from .train import fit


def default_exp_dir() -> Path:
    """``$LTLIB_EXP_DIR``, else ``exp/`` of the source checkout ltlib is installed from, else ``./exp``."""
    if os.environ.get("LTLIB_EXP_DIR"):
        return Path(os.environ["LTLIB_EXP_DIR"])
    repo = Path(__file__).resolve().parents[1]
    return repo / "exp" if (repo / "pyproject.toml").is_file() else Path.cwd() / "exp"


def run_dir(config: RunConfig, exp_dir: str | Path | None = None) -> Path:
    return Path(exp_dir or default_exp_dir()) / config.data_config.dataset / config.run_name


def is_finished(path: Path) -> bool:
    """Whether the run folder ``path`` holds a finished run: ``metrics.json`` is written last."""
    return (path / "metrics.json").is_file()


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
    memory format, BN folding), for :func:`~ltlib.evaluate.evaluate` and :func:`~ltlib.evaluate.predict_logits`."""
    return dict(mean=data.mean, std=data.std, batch_size=config.eval_batch_size, precision=config.precision,
                channels_last=config.channels_last, fold_bn=config.fold_bn, center_crop=data.crop_size)


def new_model(config: RunConfig, num_classes: int, device: torch.device) -> nn.Module:
    in_channels = DATASETS.get(config.dataset).image_shape[0]
    model = build_model(config.model, num_classes, in_channels, config.width, config.classifier)
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    return model.to(device=device, memory_format=fmt)


@dataclass
class Run:
    """A finished run: its config, folder, metrics, per-epoch history, environment and model."""

    config: RunConfig
    path: Path
    metrics: dict
    history: pd.DataFrame
    environment: dict
    model: nn.Module

    def result(self, selection: str = "last", split: str = "test") -> dict:
        """The summary (overall / many / medium / few / per_class) of one selection and split."""
        if selection not in self.metrics["selections"]:
            raise KeyError(f"{self.path.name} has no {selection!r} result; it has {self.metrics['selections']}")
        return self.metrics[selection][split]

    def row(self, selection: str = "last") -> dict:
        r = self.result(selection)
        return {"name": self.config.name, "seed": self.config.seed, "selection": selection,
                "overall": r["overall"], "many": r["many"], "medium": r["medium"], "few": r["few"]}

    def __repr__(self) -> str:
        r = self.result()
        return (f"Run({self.path.name}: overall {r['overall']:.1f}, many {r['many']:.1f}, "
                f"medium {r['medium']:.1f}, few {r['few']:.1f})")


def run(config, *, exp_dir: str | Path | None = None, device: str | torch.device = "auto",
        data_dir: str | None = None, retrain: bool = False, progress: bool = True) -> Run:
    """Train ``config`` (a RunConfig or a stage-2 config; resuming an interrupted run), or load it if
    it finished before."""
    path = run_dir(config, exp_dir)
    dev = resolve_device(device)
    if not retrain and is_finished(path):
        try:
            return load_run(path, device=dev)
        except CheckpointError as err:
            warnings.warn(f"{err}\nRetraining {path.name}.", stacklevel=2)
    with threads_for_run(dev):
        return _train(config, path, dev, data_dir, progress)


def run_seeds(config, seeds: list[int], **kwargs) -> list[Run]:
    """The same config once per seed (each cached on its own)."""
    return [run(config.with_seed(int(s)), **kwargs) for s in seeds]


def cached_seeds(config, seeds: list[int], exp_dir: str | Path | None = None) -> list[int]:
    """The seeds among ``seeds`` whose run of ``config`` finished before (loading them trains nothing)."""
    return [int(s) for s in seeds if is_finished(run_dir(config.with_seed(int(s)), exp_dir))]


def _builder(config):
    if isinstance(config, RunConfig):
        return build_stage1
    from .stage2 import build_stage2  # stage 2 builds on this module
    return build_stage2


def config_from_dict(values: dict):
    """A RunConfig, or a Stage2Config when the dict has a ``stage1`` entry."""
    if "stage1" in values:
        from .stage2 import Stage2Config
        return Stage2Config.from_dict(values)
    return RunConfig.from_dict(values)


def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """Load a finished run folder; a damaged model file raises :class:`CheckpointError`."""
    path = Path(path)
    try:
        config = config_from_dict(io.read_json(path / "config.json"))
        metrics = io.read_json(path / "metrics.json")
        env = io.read_json(path / "environment.json")
    except (OSError, ValueError) as err:
        raise CheckpointError(f"run folder {path} is incomplete or damaged ({err})") from err
    dev = resolve_device(device)
    state = io.load_checkpoint(path / "model.pt", map_location=dev)
    model = new_model(config.model_config, len(metrics["class_counts"]), dev)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path / 'model.pt'} does not match the run's model ({err})") from err
    history = pd.read_csv(path / "history.csv") if (path / "history.csv").is_file() else pd.DataFrame()
    return Run(config, path, metrics, history, env, model)


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


def build_stage1(config: RunConfig, data: LongTailData, device: torch.device, **_) -> Setup:
    """Model at initialisation (seeded), SGD over all parameters, the config's step, loss and sampler."""
    seed_everything(config.seed)
    model = new_model(config, data.num_classes, device)
    optimizer = build_sgd(model, config.lr, config.momentum, config.weight_decay, config.nesterov,
                          config.optimizer_impl)
    step = build_step(config.step, optimizer, autocast_for(config.precision, device), model=model,
                      options=step_options(config, data.class_counts.tolist()))
    return Setup(model, optimizer, step, loss_for(config, data.class_counts.tolist()),
                 build_schedule(config.schedule, config.lr, config.epochs, config.warmup_epochs),
                 stage1_loader(config, data, device),
                 epoch_log=getattr(step, "epoch_log", None))


def mixing_options(config: RunConfig) -> dict:
    """The options of ``config``'s mixing rule."""
    if config.mixing == "mixup":
        return {"alpha": config.mixup_alpha}
    if config.mixing == "cmo":
        return dict(prob=config.cmo_prob, beta=config.cmo_beta, alpha=config.cmo_alpha, epochs=config.epochs,
                    start=config.cmo_start, end=config.cmo_end)
    return {}


def loss_for(config: RunConfig, class_counts: list[int]) -> nn.Module:
    """``config``'s loss on the training counts, with DRW class weights when ``reweight="drw"``."""
    kwargs: dict = {}
    if config.reweight == "drw":
        kwargs["drw"] = DRW(class_counts, int(config.drw_start * config.epochs), config.drw_beta)
    if config.loss == "ldam":
        kwargs.update(max_m=config.ldam_max_m, s=config.ldam_s)
    if config.loss == "focal":
        kwargs["gamma"] = config.focal_gamma
    return build_loss(config.loss, class_counts, **kwargs)


def step_options(config: RunConfig, class_counts: list[int]) -> SAMOptions | CCSAMOptions:
    """The options of ``config``'s step strategy: CC-SAM's, or the SAM family's (for SGD they are unused)."""
    if config.step == "ccsam":
        return CCSAMOptions(class_counts=tuple(class_counts), radius=config.ccsam_radius,
                            flat_ratio=config.ccsam_flat_ratio, direction=config.ccsam_direction,
                            magnitude=config.ccsam_magnitude, perturbation=config.sam_perturbation)
    return sam_options(config, class_counts)


def sam_options(config: RunConfig, class_counts: list[int]) -> SAMOptions:
    """The SAM-family options of ``config``; ImbSAM's tail set comes from the training counts."""
    tail = tail_classes_from_counts(class_counts, config.imbsam_eta) if config.step == "imbsam" else ()
    return SAMOptions(rho=config.rho, asam_eta=config.asam_eta, bn_second_pass=config.bn_second_pass,
                      restore=config.sam_restore, tail_classes=tail, tail_factor=config.imbsam_tail_factor,
                      tail_divisor=config.imbsam_divisor, perturbation=config.sam_perturbation)


def train_loader(config: RunConfig, data: LongTailData, sampler: str, batch_size: int,
                 device: torch.device, *, mix=None, drop_last: bool | None = None) -> DeviceLoader:
    """The device-resident loader with ``config``'s augmentation and seed (and ``mix``, a mixing rule)."""
    return DeviceLoader(
        data.train, batch_size=batch_size, mean=data.mean, std=data.std,
        sampler=build_sampler(sampler, data.train.labels.to(device)), padding=config.crop_padding,
        flip=config.flip, seed=config.seed, drop_last=config.drop_last if drop_last is None else drop_last,
        channels_last=config.channels_last, device=device, mix=mix, resized_crop=data.crop_size,
        jitter=config.color_jitter,
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


def training_module(model: nn.Module, config: RunConfig) -> nn.Module:
    """What the loop calls: the model itself, or a ``torch.compile`` wrapper sharing its parameters."""
    return torch.compile(model) if config.compile else model


def _resume(ckpt: Path, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device):
    """Load the last finished epoch into ``model`` and ``optimizer``: (epoch, history, best)."""
    state = io.load_checkpoint(ckpt, map_location=device)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        return int(state["epoch"]), list(state["history"]), dict(state["best"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{ckpt} does not match this run ({err})") from err


def _train(config, path: Path, device: torch.device, data_dir: str | None, progress: bool) -> Run:
    """The shared part of every run: resume, train, evaluate, checkpoint, write the folder."""
    info = dist_info()
    if info.enabled and info.local_rank != 0:
        dist.barrier()         # the first rank of each machine decodes a folder data set's copy first
    data = load_data(config.data_config, data_dir)
    if info.enabled and info.local_rank == 0:
        dist.barrier()
    groups = data.groups(config.group_scheme)
    if info.enabled:
        check_supported(config)
    builder = functools.partial(_builder(config), config, data, device, exp_dir=path.parent.parent, progress=progress)

    def build() -> Setup:
        setup = builder()
        if info.enabled:       # every rank draws the same global batches and keeps its slice
            if not getattr(setup.loader, "shards_itself", False):   # (the streaming loader decodes its slice only)
                setup.loader = ShardedLoader(setup.loader, info)
            seed_everything(derived_seed(config.seed, info.rank))   # the global generator (dropout, say) per rank
        return setup

    setup = build()
    model, optimizer = setup.model, setup.optimizer
    eval_kw = eval_options(config, data)

    # resume from the last finished epoch, if a readable checkpoint is there
    ckpt = path / "checkpoint.pt"
    start_epoch, history, best = 0, [], {}
    if ckpt.is_file():
        try:
            start_epoch, history, best = _resume(ckpt, model, optimizer, device)
        except CheckpointError as err:
            warnings.warn(f"cannot resume: {err}; training {path.name} from scratch.", stacklevel=3)
            setup = build()
            model, optimizer = setup.model, setup.optimizer
    env = {**environment(device), "world_size": info.world_size}
    if info.is_main:           # rank 0 alone writes the run folder
        io.write_json(path / "config.json", config.to_dict())
        io.write_json(path / "environment.json", env)

    last_eval: dict = {}

    def evaluate_epoch(_: nn.Module, epoch: int) -> dict:
        # the plain model, never a compiled wrapper: its state dict is what gets saved
        results = {"test": evaluate_sharded(model, data.test, **eval_kw)}
        if data.val is not None:
            results["val"] = evaluate_sharded(model, data.val, **eval_kw)
        summaries = {split: res.summary(groups) for split, res in results.items()}
        last_eval.update(epoch=epoch + 1, summaries=summaries)  # reused by the final results (no TTA)
        for selection, split in (("best_val", "val"), ("best_test", "test")):
            if split not in results or (selection == "best_test" and not config.select_on_test):
                continue
            if selection not in best or results[split].overall > best[selection]["score"]:
                best[selection] = {"epoch": epoch + 1, "score": results[split].overall,
                                   "model": copy.deepcopy(model.state_dict()), "summaries": summaries}
        record = {}
        for split, summary in summaries.items():
            record.update({f"{split}_{k}": v for k, v in summary.items() if k != "per_class"})
        return record

    def save_epoch(epoch: int, record: dict) -> None:
        if setup.epoch_log is not None:
            record.update(setup.epoch_log())
        history.append(record)
        if info.is_main:
            io.save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "epoch": epoch + 1, "history": history, "best": best}, ckpt)

    t0 = time.perf_counter()
    fit(training_module(wrap_model(model, info), config), setup.loader, setup.step, setup.loss_fn, setup.schedule,
        epochs=config.epochs, start_epoch=start_epoch,
        evaluate=evaluate_epoch, eval_every=config.eval_every, on_epoch_end=save_epoch, progress=progress,
        desc=path.name)
    metrics = _describe(config, data, groups)
    metrics.update(_final_results(model, best, last_eval, config, data, groups, eval_kw))
    metrics["resumed_from_epoch"] = start_epoch
    metrics["train_time_s"] = sum(r["train_time_s"] for r in history)
    metrics["wall_time_s"] = time.perf_counter() - t0

    hist = pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, list)} for r in history])
    lists = {k for r in history for k, v in r.items() if isinstance(v, list)}
    metrics.update({k: [x for r in history for x in r.get(k, [])] for k in lists})  # e.g. MaxNorm clip fractions
    if info.is_main:
        io.save_checkpoint({"model": model.state_dict(), **{f"{s}_model": b["model"] for s, b in best.items()}},
                           path / "model.pt")
        io.write_text(path / "history.csv", hist.to_csv(index=False))
        io.write_json(path / "metrics.json", metrics)  # written last: its presence marks a finished run
        ckpt.unlink(missing_ok=True)
    if info.enabled:
        dist.barrier()         # the folder is complete before any rank moves on
    return Run(config, path, metrics, hist, env, model)


def _final_results(model: nn.Module, best: dict, last_eval: dict, config, data: LongTailData, groups,
                   eval_kw: dict) -> dict:
    """Test (and val) numbers of the last model and of each selected epoch; flip TTA if the config asks.

    Without TTA the numbers are the ones computed when that epoch was evaluated (the same weights and a
    deterministic evaluation give the same result), so nothing is evaluated twice.
    """
    states = {"last": (config.epochs, model.state_dict(),
                       last_eval.get("summaries") if last_eval.get("epoch") == config.epochs else None)}
    states.update({sel: (b["epoch"], b["model"], b.get("summaries")) for sel, b in best.items()})
    scratch = copy.deepcopy(model)
    out = {}
    for selection, (epoch, weights, summaries) in states.items():
        if summaries is None or config.tta:
            scratch.load_state_dict(weights)
            splits = {"test": data.test} if data.val is None else {"test": data.test, "val": data.val}
            summaries = {name: evaluate_sharded(scratch, split, tta=config.tta, **eval_kw).summary(groups)
                         for name, split in splits.items()}
        out[selection] = {"epoch": epoch, **summaries}
    out["selections"] = list(states)
    out["classifier_norms"] = classifier_weight(model.classifier).detach().float().norm(dim=1).cpu().tolist()
    return out


def _describe(config: RunConfig, data: LongTailData, groups) -> dict:
    return {
        "run": config.run_name, "dataset": config.data_config.dataset, "imbalance_factor": config.imbalance_factor,
        "epochs": config.epochs, "seed": config.seed, "tta": config.tta,
        "class_names": list(data.classes), "class_counts": data.class_counts.tolist(),
        "group_scheme": groups.scheme, "groups": groups.as_dict(), "data": data.info,
    }
