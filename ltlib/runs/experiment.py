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
from typing import Callable

import pandas as pd
import torch
import torch.distributed as dist
import torch.nn as nn

from ..core import io
from ..core.determinism import deterministic_algorithms
from ..core.env import SOURCE_ROOT, derived_seed, environment, resolve_device, seed_everything, threads_for_run
from ..core.errors import CheckpointError, TrainingDivergedError
from ..core.replicas import from_rank0
from ..data.datasets import LongTailData
from ..models import classifier_weight
from .claim import claimed, describe_owner, say
from .config import RunConfig
from .distributed import ShardedLoader, check_supported, dist_info, evaluate_sharded, wrap_model
from .setup import (Setup, build_stage1, eval_options, load_data, loss_for, new_model, sample_batch, stage1_loader,
                    train_loader)
from .stage2 import Stage2Config, build_stage2
from .train import fit


# what notebooks and tests import from here: the run layer's API, and the setup helpers it re-exports
__all__ = ["Run", "Setup", "cached_seeds", "config_from_dict", "default_exp_dir", "eval_options", "is_finished",
           "load_data", "load_run", "loss_for", "new_model", "run", "run_dir", "run_seeds", "sample_batch",
           "stage1_loader", "train_loader"]


def default_exp_dir() -> Path:
    """``$LTLIB_EXP_DIR``, else ``exp/`` of the source checkout ltlib is installed from, else ``./exp``."""
    if os.environ.get("LTLIB_EXP_DIR"):
        return Path(os.environ["LTLIB_EXP_DIR"])
    repo = SOURCE_ROOT
    return repo / "exp" if (repo / "pyproject.toml").is_file() else Path.cwd() / "exp"


def run_dir(config: RunConfig, exp_dir: str | Path | None = None, device: str | torch.device = "auto") -> Path:
    """The folder of ``config``'s run on ``device``'s kind. The kind is part of a run's identity, because a GPU
    run does not compute a CPU run's numbers: a CPU run's folder is ``<name>-<hash>`` (as it always was), any other
    kind's ``<name>-<hash>-<kind>`` (``-cuda``), so neither reuses nor resumes the other's folder."""
    kind = device.type if isinstance(device, torch.device) else resolve_device(device).type
    name = config.run_name if kind == "cpu" else f"{config.run_name}-{kind}"
    return Path(exp_dir or default_exp_dir()) / config.data_config.dataset / name


def is_finished(path: Path) -> bool:
    """Whether the run folder ``path`` holds a finished run: ``metrics.json`` is written last."""
    return (path / "metrics.json").is_file()


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


def run(config: RunConfig | Stage2Config, *, exp_dir: str | Path | None = None, device: str | torch.device = "auto",
        data_dir: str | None = None, retrain: bool = False, progress: bool = True) -> Run:
    """Train ``config`` (a RunConfig or a stage-2 config; resuming an interrupted run), or load it if
    it finished before."""
    dev = resolve_device(device)
    path = run_dir(config, exp_dir, dev)
    damaged = False
    if not retrain and is_finished(path):
        try:
            return load_run(path, device=dev)
        except CheckpointError as err:
            warnings.warn(f"{err}\nltlib retrains {path.name} from scratch.", stacklevel=2)
            damaged = True
    info = dist_info()
    # one process trains a folder at a time (ltlib.runs.claim); under DDP rank 0 claims it and decides for all ranks
    with claimed(path, active=info.is_main) as before:
        if not retrain and not damaged and from_rank0(is_finished(path)):   # finished while this process waited
            if info.is_main:
                say(f"loading {path.name}: {describe_owner(before)} trained it while this process waited")
            return load_run(path, device=dev)
        with threads_for_run(dev), deterministic_algorithms(config.base.deterministic):
            return _train(config, path, dev, data_dir, progress)


def run_seeds(config, seeds: list[int], **kwargs) -> list[Run]:
    """The same config once per seed (each cached on its own)."""
    return [run(config.with_seed(int(s)), **kwargs) for s in seeds]


def cached_seeds(config, seeds: list[int], exp_dir: str | Path | None = None,
                 device: str | torch.device = "auto") -> list[int]:
    """The seeds among ``seeds`` whose run of ``config`` on ``device`` finished before (loading them trains
    nothing)."""
    dev = resolve_device(device)
    return [int(s) for s in seeds if is_finished(run_dir(config.with_seed(int(s)), exp_dir, dev))]


def config_from_dict(values: dict) -> RunConfig | Stage2Config:
    """A RunConfig, or a Stage2Config when the dict (a run folder's ``config.json``) has a ``stage1`` entry."""
    return Stage2Config.from_dict(values) if "stage1" in values else RunConfig.from_dict(values)


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


class BestEpochs:
    """Model selection while training: for ``"best_val"`` (on the validation split) and, when the config allows it,
    ``"best_test"``, the epoch with the highest overall accuracy so far, its weights and its summaries.
    ``state`` is a plain dict, saved in the checkpoint and handed back on resume."""

    def __init__(self, select_on_test: bool, state: dict | None = None) -> None:
        self.select_on_test = select_on_test
        self.state: dict = {} if state is None else state

    def update(self, epoch: int, results: dict, summaries: dict, model: nn.Module) -> None:
        for selection, split in (("best_val", "val"), ("best_test", "test")):
            if split not in results or (selection == "best_test" and not self.select_on_test):
                continue
            if selection not in self.state or results[split].overall > self.state[selection]["score"]:
                self.state[selection] = {"epoch": epoch + 1, "score": results[split].overall,
                                         "model": copy.deepcopy(model.state_dict()), "summaries": summaries}


class Checkpoint:
    """``checkpoint.pt`` of a run folder: the last finished epoch's weights, optimiser state, history and best
    epochs, written by rank 0 after every epoch and removed when the run is complete."""

    def __init__(self, path: Path, write: bool) -> None:
        self.path, self.write = path, write

    def resume(self, setup: Setup, device: torch.device) -> tuple[int, list, dict]:
        """Load the last finished epoch into ``setup``'s model and optimiser: (epoch, history, best). A run
        without a checkpoint starts at epoch 0; a damaged or mismatched one raises :class:`CheckpointError`."""
        if not self.path.is_file():
            return 0, [], {}
        state = io.load_checkpoint(self.path, map_location=device)
        try:
            setup.model.load_state_dict(state["model"])
            setup.optimizer.load_state_dict(state["optimizer"])
            return int(state["epoch"]), list(state["history"]), dict(state["best"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"{self.path} does not match this run ({err})") from err

    def save(self, setup: Setup, epoch: int, history: list, best: dict) -> None:
        if self.write:
            io.save_checkpoint({"model": setup.model.state_dict(), "optimizer": setup.optimizer.state_dict(),
                                "epoch": epoch + 1, "history": history, "best": best}, self.path)

    def remove(self) -> None:
        if self.write:
            self.path.unlink(missing_ok=True)


def _train(config: RunConfig | Stage2Config, path: Path, device: torch.device, data_dir: str | None,
           progress: bool) -> Run:
    """The shared part of every run: data, setup, resume, train (evaluating, selecting and checkpointing each
    epoch), final results, the run folder."""
    info = dist_info()
    data = _load_data(config, data_dir, info)
    groups = data.groups(config.base.group_scheme)
    build = _setup_builder(config, data, device, path.parent.parent, info, progress)
    setup = build()
    checkpoint = Checkpoint(path / "checkpoint.pt", write=info.is_main)
    try:
        start_epoch, history, best_state = checkpoint.resume(setup, device)
    except CheckpointError as err:
        warnings.warn(f"cannot resume: {err}; training {path.name} from scratch.", stacklevel=3)
        setup = build()
        start_epoch, history, best_state = 0, [], {}
    env = {**environment(device), "world_size": info.world_size}
    if info.is_main:           # rank 0 alone writes the run folder
        io.write_json(path / "config.json", config.to_dict())
        io.write_json(path / "environment.json", env)

    model = setup.model        # the plain model, never a compiled or DDP wrapper: its state dict is what gets saved
    eval_kw = eval_options(config, data)
    best = BestEpochs(config.base.select_on_test, best_state)
    last_eval: dict = {}

    def evaluate_epoch(_: nn.Module, epoch: int) -> dict:
        results = {"test": evaluate_sharded(model, data.test, **eval_kw)}
        if data.val is not None:
            results["val"] = evaluate_sharded(model, data.val, **eval_kw)
        summaries = {split: res.summary(groups) for split, res in results.items()}
        last_eval.update(epoch=epoch + 1, summaries=summaries)  # reused by the final results (no TTA)
        best.update(epoch, results, summaries, model)
        return {f"{split}_{k}": v for split, summary in summaries.items() for k, v in summary.items()
                if k != "per_class"}

    def end_epoch(epoch: int, record: dict) -> None:
        if setup.epoch_log is not None:
            record.update(setup.epoch_log())
        history.append(record)
        checkpoint.save(setup, epoch, history, best.state)

    t0 = time.perf_counter()
    try:
        fit(wrap_model(model, info, compile=config.base.compile), setup.loader, setup.step, setup.loss_fn,
            setup.schedule, epochs=config.epochs, start_epoch=start_epoch, evaluate=evaluate_epoch,
            eval_every=config.eval_every, on_epoch_end=end_epoch, progress=progress, desc=path.name)
    except TrainingDivergedError as err:
        raise TrainingDivergedError(f"{path.name}: {err} {divergence_advice(config)}") from None
    metrics = _describe(config, data, groups)
    metrics.update(_final_results(model, best.state, last_eval, config, data, groups, eval_kw))
    metrics.update(resumed_from_epoch=start_epoch, train_time_s=sum(r["train_time_s"] for r in history),
                   wall_time_s=time.perf_counter() - t0)
    hist = _write_folder(path, model, best.state, history, metrics, info)
    checkpoint.remove()
    if info.enabled:
        dist.barrier()         # the folder is complete before any rank moves on
    return Run(config, path, metrics, hist, env, model)


def divergence_advice(config: RunConfig | Stage2Config) -> str:
    """What to change when ``config``'s run diverged, from its own settings: the learning rate it used, fp32 only if
    it trained in lower precision, a warm-up only if it had none, the SAM family's radius, CC-SAM's mixup."""
    base = config.base
    tips = [f"lower lr (this run: {config.lr:g})"]
    if base.precision != "fp32":
        tips.append(f"train in precision='fp32' (this run: {base.precision!r})")
    if isinstance(config, RunConfig):
        if config.warmup_epochs == 0 and config.lr >= 0.05:     # a large lr from the first step
            tips.append("add a warm-up (warmup_epochs=5, as LDAM-DRW's recipe does)")
        if config.step == "ccsam":
            tips.append(f"lower ccsam_radius (this run: {config.ccsam_radius:g})"
                        + ("; CC-SAM without mixup can let a fitted class's radius run away (notebook 04), so "
                           "mixing='mixup' keeps it finite" if config.mixing == "none" else ""))
        elif config.step != "sgd":
            tips.append(f"lower rho (this run: {config.rho:g})")
    return "Try: " + "; ".join(tips) + "."


def _load_data(config: RunConfig | Stage2Config, data_dir: str | None, info) -> LongTailData:
    """The run's data; under DDP the first rank of each machine decodes a folder data set's copy first."""
    if info.enabled and info.local_rank != 0:
        dist.barrier()
    data = load_data(config.data_config, data_dir)
    if info.enabled and info.local_rank == 0:
        dist.barrier()
    return data


def _setup_builder(config: RunConfig | Stage2Config, data: LongTailData, device: torch.device, exp_dir: Path,
                   info, progress: bool) -> Callable[[], Setup]:
    """A function that builds the run's :class:`Setup` (again, when a damaged checkpoint forces a fresh start).

    A stage-2 run's stage-1 run is resolved first (loaded, or trained) and its model handed to stage 2. Under DDP
    every rank draws the same global batches and keeps its slice."""
    if info.enabled:
        check_supported(config)
    if isinstance(config, Stage2Config):
        first = run(config.stage1, exp_dir=exp_dir, device=device, progress=progress)
        builder = functools.partial(build_stage2, config, data, device, stage1_model(first, config.start_from))
    else:
        builder = functools.partial(build_stage1, config, data, device)

    def build() -> Setup:
        setup = builder()
        if info.enabled:
            if not getattr(setup.loader, "shards_itself", False):   # (the streaming loader decodes its slice only)
                setup.loader = ShardedLoader(setup.loader, info)
            seed_everything(derived_seed(config.base.seed, info.rank))   # the global generator (dropout, say) per rank
        return setup

    return build


def stage1_model(first: Run, start_from: str = "last") -> nn.Module:
    """The stage-1 model a stage-2 run starts from: the run's last epoch, or (``"best_test"``) a copy with the
    weights of its best epoch on the test set, saved in its ``model.pt``."""
    if start_from == "last":
        return first.model
    state = io.load_checkpoint(first.path / "model.pt", map_location=next(first.model.parameters()).device)
    key = f"{start_from}_model"
    if key not in state:
        raise CheckpointError(f"{first.path / 'model.pt'} holds no {key!r}: the stage-1 run did not keep its best "
                              "epoch on the test set (select_on_test=True)")
    model = copy.deepcopy(first.model)
    model.load_state_dict(state[key])
    return model


def _write_folder(path: Path, model: nn.Module, best: dict, history: list, metrics: dict, info) -> pd.DataFrame:
    """The finished run's model (last and selected epochs), history and metrics; list-valued records (MaxNorm's
    clip fractions) go to the metrics. ``metrics.json`` is written last: its presence marks a finished run."""
    hist = pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, list)} for r in history])
    lists = {k for r in history for k, v in r.items() if isinstance(v, list)}
    metrics.update({k: [x for r in history for x in r.get(k, [])] for k in lists})
    if info.is_main:
        io.save_checkpoint({"model": model.state_dict(), **{f"{s}_model": b["model"] for s, b in best.items()}},
                           path / "model.pt")
        io.write_text(path / "history.csv", hist.to_csv(index=False))
        io.write_json(path / "metrics.json", metrics)
    return hist


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
        if summaries is None or config.base.tta:
            scratch.load_state_dict(weights)
            splits = {"test": data.test} if data.val is None else {"test": data.test, "val": data.val}
            summaries = {name: evaluate_sharded(scratch, split, tta=config.base.tta, **eval_kw).summary(groups)
                         for name, split in splits.items()}
        out[selection] = {"epoch": epoch, **summaries}
    out["selections"] = list(states)
    out["classifier_norms"] = classifier_weight(model.classifier).detach().float().norm(dim=1).cpu().tolist()
    return out


def _describe(config: RunConfig, data: LongTailData, groups) -> dict:
    return {
        "run": config.run_name, "dataset": config.data_config.dataset, "imbalance_factor": config.imbalance_factor,
        "epochs": config.epochs, "seed": config.seed, "tta": config.base.tta,
        "class_names": list(data.classes), "class_counts": data.class_counts.tolist(),
        "group_scheme": groups.scheme, "groups": groups.as_dict(), "data": data.info,
    }
