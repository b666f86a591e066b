"""Run a config once, cache it under ``exp/<dataset>/<name>-<hash>/``, and load it the next time.

A run folder holds ``config.json``, ``environment.json``, ``history.csv``, ``metrics.json`` and
``model.pt``. While training, ``checkpoint.pt`` holds the last finished epoch, so an interrupted run
(Ctrl-C, a killed process) resumes where it stopped and ends with the same numbers. Every write is
atomic; a damaged checkpoint is reported and retrained, and nothing else is touched.
"""
from __future__ import annotations

import copy
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn as nn

from . import io
from .config import RunConfig
from .data.datasets import DATASETS, LongTailData, load_longtail
from .data.loader import DeviceLoader
from .data.samplers import build_sampler
from .env import configure_threads, environment, resolve_device, seed_everything
from .errors import CheckpointError
from .evaluate import evaluate
from .losses import build_loss
from .models import build_model, classifier_weight
from .optim.schedules import build_schedule
from .optim.step import STEPS, autocast_for, build_sgd
from .train import fit


def default_exp_dir() -> Path:
    """``$LTLIB_EXP_DIR``, else ``exp/`` of the source checkout ltlib is installed from, else ``./exp``."""
    if os.environ.get("LTLIB_EXP_DIR"):
        return Path(os.environ["LTLIB_EXP_DIR"])
    repo = Path(__file__).resolve().parents[1]
    return repo / "exp" if (repo / "pyproject.toml").is_file() else Path.cwd() / "exp"


def run_dir(config: RunConfig, exp_dir: str | Path | None = None) -> Path:
    return Path(exp_dir or default_exp_dir()) / config.dataset / config.run_name


def load_data(config: RunConfig, data_dir: str | None = None) -> LongTailData:
    """The long-tailed data a config trains and evaluates on."""
    return load_longtail(
        config.dataset, config.imbalance_factor, imbalance_profile=config.imbalance_profile, n_max=config.n_max,
        subset=config.subset, subset_seed=config.subset_seed, val_split=config.val_split,
        val_fraction=config.val_fraction, val_per_class=config.val_per_class,
        test_per_class=config.test_per_class, data_dir=data_dir,
    )


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


def run(config: RunConfig, *, exp_dir: str | Path | None = None, device: str | torch.device = "auto",
        data_dir: str | None = None, retrain: bool = False, progress: bool = True) -> Run:
    """Train ``config`` (resuming an interrupted run), or load it if it finished before."""
    path = run_dir(config, exp_dir)
    dev = resolve_device(device)
    if not retrain and (path / "metrics.json").is_file():
        try:
            return load_run(path, device=dev)
        except CheckpointError as err:
            warnings.warn(f"{err}\nRetraining {path.name}.", stacklevel=2)
    return _train(config, path, dev, data_dir, progress)


def run_seeds(config: RunConfig, seeds: list[int], **kwargs) -> list[Run]:
    """The same config once per seed (each cached on its own)."""
    return [run(config.replace(seed=int(s)), **kwargs) for s in seeds]


def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """Load a finished run folder; a damaged model file raises :class:`CheckpointError`."""
    path = Path(path)
    try:
        config = RunConfig.from_dict(io.read_json(path / "config.json"))
        metrics = io.read_json(path / "metrics.json")
        env = io.read_json(path / "environment.json")
    except (OSError, ValueError) as err:
        raise CheckpointError(f"run folder {path} is incomplete or damaged ({err})") from err
    dev = resolve_device(device)
    state = io.load_checkpoint(path / "model.pt", map_location=dev)
    model = new_model(config, len(metrics["class_counts"]), dev)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path / 'model.pt'} does not match the run's model ({err})") from err
    history = pd.read_csv(path / "history.csv") if (path / "history.csv").is_file() else pd.DataFrame()
    return Run(config, path, metrics, history, env, model)


def _fresh_model(config: RunConfig, data: LongTailData, device: torch.device):
    """Model, optimizer and step strategy at initialisation (seeded)."""
    seed_everything(config.seed)
    model = new_model(config, data.num_classes, device)
    optimizer = build_sgd(model, config.lr, config.momentum, config.weight_decay, config.nesterov,
                          config.optimizer_impl)
    step = STEPS.get(config.step)(optimizer, autocast_for(config.precision, device))
    return model, optimizer, step


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


def _train(config: RunConfig, path: Path, device: torch.device, data_dir: str | None, progress: bool) -> Run:
    configure_threads()
    data = load_data(config, data_dir)
    groups = data.groups(config.group_scheme)
    model, optimizer, step = _fresh_model(config, data, device)
    loss_fn = build_loss(config.loss, data.class_counts.tolist())
    schedule = build_schedule(config.schedule, config.lr, config.epochs, config.warmup_epochs)
    loader = DeviceLoader(
        data.train, batch_size=config.batch_size, mean=data.mean, std=data.std,
        sampler=build_sampler(config.sampler, data.train.labels.to(device)), padding=config.crop_padding,
        flip=config.flip, seed=config.seed, drop_last=config.drop_last, channels_last=config.channels_last,
        device=device,
    )
    eval_kw = dict(mean=data.mean, std=data.std, batch_size=config.eval_batch_size, precision=config.precision,
                   channels_last=config.channels_last, fold_bn=config.fold_bn)

    # resume from the last finished epoch, if a readable checkpoint is there
    ckpt = path / "checkpoint.pt"
    start_epoch, history, best = 0, [], {}
    if ckpt.is_file():
        try:
            start_epoch, history, best = _resume(ckpt, model, optimizer, device)
        except CheckpointError as err:
            warnings.warn(f"cannot resume: {err}; training {path.name} from scratch.", stacklevel=3)
            model, optimizer, step = _fresh_model(config, data, device)
    env = environment(device)
    io.write_json(path / "config.json", config.to_dict())
    io.write_json(path / "environment.json", env)

    def evaluate_epoch(_: nn.Module, epoch: int) -> dict:
        # the plain model, never a compiled wrapper: its state dict is what gets saved
        results = {"test": evaluate(model, data.test, **eval_kw)}
        if data.val is not None:
            results["val"] = evaluate(model, data.val, **eval_kw)
        for selection, split in (("best_val", "val"), ("best_test", "test")):
            if split not in results or (selection == "best_test" and not config.select_on_test):
                continue
            if selection not in best or results[split].overall > best[selection]["score"]:
                best[selection] = {"epoch": epoch + 1, "score": results[split].overall,
                                   "model": copy.deepcopy(model.state_dict())}
        record = {}
        for split, res in results.items():
            record.update({f"{split}_{k}": v for k, v in res.summary(groups).items() if k != "per_class"})
        return record

    def save_epoch(epoch: int, record: dict) -> None:
        history.append(record)
        io.save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "epoch": epoch + 1, "history": history, "best": best}, ckpt)

    t0 = time.perf_counter()
    fit(training_module(model, config), loader, step, loss_fn, schedule, epochs=config.epochs, start_epoch=start_epoch,
        evaluate=evaluate_epoch, eval_every=config.eval_every, on_epoch_end=save_epoch, progress=progress,
        desc=path.name)
    metrics = _describe(config, data, groups)
    metrics.update(_final_results(model, best, config, data, groups, eval_kw))
    metrics["resumed_from_epoch"] = start_epoch
    metrics["train_time_s"] = sum(r["train_time_s"] for r in history)
    metrics["wall_time_s"] = time.perf_counter() - t0

    io.save_checkpoint({"model": model.state_dict(), **{f"{s}_model": b["model"] for s, b in best.items()}},
                       path / "model.pt")
    hist = pd.DataFrame(history)
    io.write_text(path / "history.csv", hist.to_csv(index=False))
    io.write_json(path / "metrics.json", metrics)  # written last: its presence marks a finished run
    ckpt.unlink(missing_ok=True)
    return Run(config, path, metrics, hist, env, model)


def _final_results(model: nn.Module, best: dict, config: RunConfig, data: LongTailData, groups,
                   eval_kw: dict) -> dict:
    """Test (and val) numbers of the last model and of each selected epoch; flip TTA if the config asks."""
    states = {"last": (config.epochs, model.state_dict())}
    states.update({sel: (b["epoch"], b["model"]) for sel, b in best.items()})
    scratch = copy.deepcopy(model)
    out = {}
    for selection, (epoch, weights) in states.items():
        scratch.load_state_dict(weights)
        entry = {"epoch": epoch, "test": evaluate(scratch, data.test, tta=config.tta, **eval_kw).summary(groups)}
        if data.val is not None:
            entry["val"] = evaluate(scratch, data.val, tta=config.tta, **eval_kw).summary(groups)
        out[selection] = entry
    out["selections"] = list(states)
    out["classifier_norms"] = classifier_weight(model.classifier).detach().float().norm(dim=1).cpu().tolist()
    return out


def _describe(config: RunConfig, data: LongTailData, groups) -> dict:
    return {
        "run": config.run_name, "dataset": config.dataset, "imbalance_factor": config.imbalance_factor,
        "epochs": config.epochs, "seed": config.seed, "tta": config.tta,
        "class_names": list(data.classes), "class_counts": data.class_counts.tolist(),
        "group_scheme": groups.scheme, "groups": groups.as_dict(), "data": data.info,
    }
