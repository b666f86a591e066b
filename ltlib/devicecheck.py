"""One check of a new device: ``python -m ltlib.devicecheck`` (``make devicecheck``). Run it first on a GPU machine.

On the best device present it

1. runs one step of every step strategy, every loss (with DRW where it applies) and every mixing rule on the same
   small batch on the device and on the CPU, and checks that the loss and the updated weights agree; and a few steps
   of the captured step (``graph_step``) against the eager one on the device;
2. executes every notebook under papermill in the smoke profile on the device (needs Fashion-MNIST; skipped
   otherwise);
3. times steps of each paper recipe on CIFAR-100-LT (the real files when present, else random images with the same
   shape and class counts), eager, compiled and captured, and extrapolates the full run, evaluation included;
4. trains one smoke epoch under torchrun on every visible GPU and once in one process, and checks that both finish
   and land within ``TORCHRUN_TOLERANCE`` points of test accuracy (skipped with fewer than two GPUs);

and writes a JSON report (``exp/devicecheck/devicecheck-<time>.json``) and prints a short table. ``--tiny`` runs the
same code at toy sizes (a few steps, no notebooks, no torchrun; compiled with the ``eager`` backend unless
``LTLIB_COMPILE_BACKEND`` says otherwise): the test suite runs it on the CPU, so the check cannot rot.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from .core import io
from .core.env import environment, resolve_device, threads_for_run
from .core.errors import DataError, LtlibError
from .core.progress import Progress
from .core.replicas import DistInfo
from .core.targets import map_targets
from .data.datasets import DATASETS, LongTailData
from .data.longtail import lt_counts
from .data.mixing import MIXINGS
from .data.sources import ImageSet
from .methods.losses import LOSSES
from .methods.step import STEPS
from .runs.config import RECIPES, make_config
from .runs.distributed import wrap_model
from .runs.evaluate import evaluate
from .runs.experiment import default_exp_dir
from .runs.setup import build_stage1, eval_options, load_data
from .runs.train import begin_epoch, set_lr
from .tools.tutorial import run_tutorial

# agreement: relative to the largest weight change of the step (the CPU's), what the device may differ by
AGREE_RTOL = 1e-3
# torchrun: how far (test accuracy points) one smoke epoch under torchrun may land from the single process's
TORCHRUN_TOLERANCE = 10.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _largest_difference(a: dict, b: dict) -> float:
    """The largest absolute difference between two state dicts' floating-point entries (``b``'s keys)."""
    return max((a[k].float().cpu() - v.float().cpu()).abs().max().item() for k, v in b.items() if v.is_floating_point())


def _fashion_mnist_missing() -> dict | None:
    """A "skipped" entry when Fashion-MNIST, which the smoke runs train on, is not installed; None when it is."""
    try:
        load_data(make_config("smoke"))
    except DataError as err:
        return {"skipped": f"Fashion-MNIST is not installed ({err}); `make data` installs it"}
    return None


def synthetic_longtail(dataset: str = "cifar100_lt", n_max: int = 500, imbalance_factor: float = 100,
                       test_per_class: int = 100, seed: int = 0) -> LongTailData:
    """Random uint8 images of ``dataset``'s shape with its long-tailed class counts (a stand-in for the real files:
    the same cost per step)."""
    spec = DATASETS.get(dataset)
    counts = lt_counts(n_max, spec.num_classes, imbalance_factor)
    gen = torch.Generator().manual_seed(seed)

    def images(labels: torch.Tensor) -> ImageSet:
        x = torch.randint(0, 256, (len(labels), *spec.image_shape), dtype=torch.uint8, generator=gen)
        return ImageSet(x, labels, tuple(f"class {c}" for c in range(spec.num_classes)))

    train = torch.repeat_interleave(torch.arange(spec.num_classes), torch.tensor(counts))
    test = torch.arange(spec.num_classes).repeat_interleave(test_per_class)
    return LongTailData(f"{dataset} (random images)", images(train), None, images(test), np.asarray(counts),
                        spec.mean, spec.std, spec.crop_padding, {"synthetic": True})


def _cases() -> list[dict]:
    """Every step strategy (CC-SAM with its mixup), every loss (DRW where it applies), every mixing rule."""
    cases = [dict(step=s, **({"mixing": "mixup"} if s == "ccsam" else {})) for s in STEPS]
    for loss in LOSSES:
        case = dict(loss=loss, **({"classifier": "normed"} if loss == "ldam" else {}))
        cases.append(case)
        if loss in ("ce", "ldam", "focal"):
            cases.append(dict(case, reweight="drw"))
    cases += [dict(mixing=m, cmo_start=0, cmo_end=0, cmo_prob=1.0) if m == "cmo" else dict(mixing=m)
              for m in MIXINGS if m != "none"]
    return cases


def agreement(device: torch.device, data: LongTailData, batch_size: int = 32, progress: bool = True) -> list[dict]:
    """One step of each case of :func:`_cases` from the same weights on the same batch (drawn on the CPU), on the
    CPU and on ``device``: the loss and the largest weight difference, relative to the largest weight change."""
    rows = []
    cases = _cases()
    with Progress(len(cases), f"agreement, {device} against the CPU", "cases", enabled=progress) as bar:
        for case in cases:
            rows.append(_agree(case, device, data, batch_size))
            bar.update(1, rows[-1]["case"])
    return rows


def _agree(case: dict, device: torch.device, data: LongTailData, batch_size: int) -> dict:
    """One case of :func:`agreement`."""
    config = make_config("smoke", "ce", "cifar100_lt", batch_size=batch_size, epochs=2, **case)
    label = " ".join(f"{k}={v}" for k, v in case.items() if not k.startswith("cmo_"))
    try:
        ref = build_stage1(config, data, torch.device("cpu"))
        begin_epoch(config.epochs - 1, ref.step, ref.loss_fn)     # DRW's weights and CMO are on in the last epoch
        images, targets = next(iter(ref.loader.epoch(config.epochs - 1)))
        other = build_stage1(config, data, device)
        other.model.load_state_dict(ref.model.state_dict())
        begin_epoch(config.epochs - 1, other.step, other.loss_fn)
        start = copy.deepcopy(ref.model.state_dict())
        out_ref = ref.step(ref.model, images, targets, ref.loss_fn)
        out_dev = other.step(other.model, images.to(device), map_targets(lambda t: t.to(device), targets),
                             other.loss_fn)
        change = _largest_difference(ref.model.state_dict(), start)
        diff = _largest_difference(other.model.state_dict(), ref.model.state_dict())
        loss_ref, loss_dev = float(out_ref.loss), float(out_dev.loss)
        ok = (math.isclose(loss_ref, loss_dev, rel_tol=AGREE_RTOL, abs_tol=1e-6)
              and diff <= AGREE_RTOL * max(change, 1e-12))
        return dict(case=label, loss_cpu=loss_ref, loss_device=loss_dev, weight_change=change, weight_diff=diff,
                    ok=ok)
    except (LtlibError, RuntimeError, ValueError) as err:
        return dict(case=label, ok=False, error=f"{type(err).__name__}: {err}")


def graph_agreement(device: torch.device, data: LongTailData, steps: int = 6, batch_size: int = 32) -> list[dict]:
    """``steps`` steps of a few step strategies and mixing rules, eager and with ``graph_step`` (captured on CUDA after
    its warm-up steps), from the same weights on the same batches on ``device``: the largest weight difference,
    relative to the largest weight change."""
    rows = []
    for case in (dict(), dict(step="sam"), dict(step="ccsam", mixing="mixup"),
                 dict(mixing="cmo", cmo_start=0, cmo_end=0, reweight="drw")):
        config = make_config("smoke", "ce", "cifar100_lt", batch_size=batch_size, epochs=2, optimizer_impl="fused",
                             **case)
        label = "graph " + (" ".join(f"{k}={v}" for k, v in case.items() if not k.startswith("cmo_")) or "step=sgd")
        try:
            states = []
            for graph in (False, True):
                setup = build_stage1(config.replace(graph_step=graph), data, device)   # seeded: the same weights
                if not graph:
                    start = copy.deepcopy(setup.model.state_dict())
                begin_epoch(config.epochs - 1, setup.step, setup.loss_fn)
                for i, (images, targets) in enumerate(itertools.islice(setup.loader.epoch(config.epochs - 1), steps)):
                    set_lr(setup.optimizer, setup.schedule(config.epochs - 1, i, len(setup.loader)))
                    setup.step(setup.model, images, targets, setup.loss_fn)
                states.append(setup.model.state_dict())
            change = _largest_difference(states[0], start)
            diff = _largest_difference(states[1], states[0])
            rows.append(dict(case=label, captured=device.type == "cuda", steps=steps, weight_change=change,
                             weight_diff=diff, ok=diff <= AGREE_RTOL * max(change, 1e-12)))
        except (LtlibError, RuntimeError, ValueError) as err:
            rows.append(dict(case=label, ok=False, error=f"{type(err).__name__}: {err}"))
    return rows


def time_recipes(device: torch.device, data: LongTailData, steps: int, warmup: int, compiled: bool,
                 tiny: bool, progress: bool = True) -> list[dict]:
    """Seconds per step of each paper recipe (eager, and with ``compiled`` also compiled and as a captured CUDA graph,
    ``graph_step``, which elsewhere runs the eager step), and the full run's time extrapolated: its epochs x steps per
    epoch, plus its evaluations of the test set."""
    variants = [(False, False)] + ([(True, False), (False, True)] if compiled else [])
    rows = []
    recipes = RECIPES.names()
    with Progress(len(recipes) * len(variants), f"timing the paper recipes on {device}", "variants",
                  enabled=progress) as bar:
        for recipe in recipes:
            toy = {"model": "resnet32", "width": 0.25, "batch_size": 8} if tiny else {}
            config = make_config("paper", recipe, "cifar100_lt", **toy)
            eval_s = None                 # evaluation runs the eager model: timed once per recipe
            for compile, graph in variants:
                rows.append(_time_variant(recipe, config, compile, graph, device, data, steps, warmup, eval_s))
                eval_s = rows[-1]["eval_s"]
                bar.update(1, f"{recipe}: {rows[-1]['ms_per_step']:.1f} ms a step, {variant_name(rows[-1])}")
    return rows


def variant_name(row: dict) -> str:
    """A timed row's variant: "graph" (``graph_step``), "compiled" or "eager"."""
    return "graph" if row.get("graph") else "compiled" if row["compiled"] else "eager"


def _time_variant(recipe: str, config, compile: bool, graph: bool, device: torch.device, data: LongTailData,
                  steps: int, warmup: int, eval_s: float | None = None) -> dict:
    """One recipe and variant of :func:`time_recipes` (``eval_s``: the recipe's evaluation time, when measured)."""
    setup = build_stage1(config.replace(graph_step=True, optimizer_impl="fused") if graph else config, data, device)
    module = wrap_model(setup.model, DistInfo(), compile=compile)
    batches = itertools.chain.from_iterable(setup.loader.epoch(e) for e in itertools.count())
    t_compile = time.perf_counter()
    for _ in range(warmup):
        setup.step(module, *next(batches), setup.loss_fn)
    _sync(device)
    t0 = time.perf_counter()
    done = 0
    for images, targets in batches:
        setup.step(module, images, targets, setup.loss_fn)
        done += 1
        if done == steps:
            break
    _sync(device)
    per_step = (time.perf_counter() - t0) / max(done, 1)
    if eval_s is None:
        t_eval = time.perf_counter()
        evaluate(setup.model, data.test, **eval_options(config, data))
        eval_s = time.perf_counter() - t_eval
    evals = math.ceil(config.epochs / config.eval_every)
    return dict(recipe=recipe, model=config.model, step=config.step, compiled=compile, graph=graph,
                captured=graph and device.type == "cuda", batch_size=config.batch_size, steps_timed=done,
                ms_per_step=1e3 * per_step, warmup_s=t0 - t_compile, steps_per_epoch=len(setup.loader),
                epochs=config.epochs, eval_s=eval_s,
                full_run_min=(config.epochs * len(setup.loader) * per_step + evals * eval_s) / 60)


def notebooks(device: torch.device, out_dir: Path) -> dict:
    """Every notebook under papermill in the smoke profile, on ``device`` (their ``device`` parameter)."""
    missing = _fashion_mnist_missing()
    if missing:
        return missing
    timings = run_tutorial(out_dir / "notebooks", profile="smoke", device=str(device))
    return {"seconds": timings.get("seconds"), "notebooks": {k: v["seconds"] for k, v in timings["notebooks"].items()}}


def torchrun_epoch(device: torch.device, out_dir: Path, processes: int | None = None) -> dict:
    """One smoke epoch of CE under torchrun on every visible GPU (or ``processes`` ranks on the CPU, with gloo), and
    once in one process, with a verdict: both finish, and the torchrun job's test accuracy lies within
    :data:`TORCHRUN_TOLERANCE` points of the single process's. They differ by BatchNorm's per-replica statistics, so
    this checks that the job runs and lands near the single process, not bit equality (the test suite checks DDP's
    arithmetic)."""
    ranks = processes or (torch.cuda.device_count() if device.type == "cuda" else 0)
    if ranks < 2:
        return {"skipped": f"{ranks} GPU(s) visible; the torchrun check needs 2 or more"}
    missing = _fashion_mnist_missing()
    if missing:
        return missing
    results = {}
    where = "GPUs" if device.type == "cuda" else "processes"
    for label, launch in (("1 process", [sys.executable, "-m", "ltlib.tools.cli"]),
                          (f"{ranks} {where}", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                "--nproc_per_node", str(ranks), "-m", "ltlib.tools.cli"])):
        exp = out_dir / f"torchrun-{label.replace(' ', '-')}"
        cmd = [*launch, "--profile", "smoke", "--recipe", "ce", "--exp-dir", str(exp), "--device", device.type,
               "--set", "epochs=1", f"batch_size={16 * ranks}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode:
            return {"ok": False, "failed": label, "stderr": proc.stderr[-2000:]}
        metrics = io.read_json(next(exp.rglob("metrics.json")))
        results[label] = {"test_overall": metrics["last"]["test"]["overall"]}
    single, job = (r["test_overall"] for r in results.values())
    gap = abs(job - single)
    ok = math.isfinite(gap) and gap <= TORCHRUN_TOLERANCE
    return {"ok": ok, "runs": results, "gap_points": gap,
            "rule": f"both finish and the test accuracies differ by at most {TORCHRUN_TOLERANCE:g} points"}


def timing_steps(device: torch.device, tiny: bool, steps: int | None = None) -> tuple[int, int]:
    """Timed and warm-up steps per recipe and variant: enough on a GPU for a steady rate (300 after 20), few on the
    CPU, where 300 steps of every paper recipe, each eager, compiled and captured, would take hours."""
    if tiny:
        return steps or 2, 1
    if device.type == "cpu":
        return steps or 10, 2
    return steps or 300, 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tiny", action="store_true", help="toy sizes, no notebooks, no torchrun (the test suite)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per recipe and variant (default: 300 on a GPU, 10 on the CPU, 2 with --tiny)")
    parser.add_argument("--out", default=None, help="the report's path (default exp/devicecheck/devicecheck-<time>.json)")
    args = parser.parse_args(argv)
    if args.tiny:
        os.environ.setdefault("LTLIB_COMPILE_BACKEND", "eager")
    device = resolve_device(args.device)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else default_exp_dir() / "devicecheck" / f"devicecheck-{stamp}.json"
    try:
        data = load_data(make_config("paper", "ce", "cifar100_lt"))
        source = "CIFAR-100-LT"
    except DataError:
        data = synthetic_longtail(n_max=200 if args.tiny else 500, test_per_class=2 if args.tiny else 100)
        source = "random images with CIFAR-100-LT's shape and counts"
    steps, warmup = timing_steps(device, args.tiny, args.steps)
    print(f"device check on {device} ({source}); {steps} timed steps per recipe and variant after {warmup} warm-up "
          f"steps; report: {out}", flush=True)
    if device.type == "cpu" and not args.tiny:
        print("on the CPU this takes tens of minutes (every paper recipe eager, compiled and captured, each with an "
              "evaluation of the test set, then the notebooks); it is meant for a GPU machine", flush=True)
    t0 = time.perf_counter()
    with threads_for_run(device):         # as a run trains: on a CPU, LTLIB_RUN_THREADS threads (1 by default)
        report = {"device": str(device), "environment": environment(device), "tiny": args.tiny, "data": source,
                  "agreement": agreement(device, data, batch_size=16 if args.tiny else 32)
                  + graph_agreement(device, data, steps=4 if args.tiny else 6, batch_size=16 if args.tiny else 32)}
        report["recipes"] = time_recipes(device, data, steps=steps, warmup=warmup, compiled=True, tiny=args.tiny)
    with tempfile.TemporaryDirectory() as scratch:
        skipped = {"skipped": "--tiny"}
        report["notebooks"] = skipped if args.tiny else notebooks(device, Path(scratch))
        report["torchrun"] = skipped if args.tiny else torchrun_epoch(device, Path(scratch))
    report["seconds"] = time.perf_counter() - t0
    io.write_json(out, report)
    print(summary(report))
    failed = [r["case"] for r in report["agreement"] if not r["ok"]] + (
        ["torchrun"] if report["torchrun"].get("ok") is False else [])
    if failed:
        print(f"FAILED: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


def summary(report: dict) -> str:
    """The report as a few lines: agreement, the recipes' step times and full-run estimates, what was skipped."""
    agree = [r for r in report["agreement"] if not r["case"].startswith("graph ")]
    graphs = [r for r in report["agreement"] if r["case"].startswith("graph ")]
    lines = [f"agreement, {report['device']} against the CPU: {sum(r['ok'] for r in agree)} of {len(agree)} cases "
             f"agree; graph_step against the eager step on {report['device']}: {sum(r['ok'] for r in graphs)} of "
             f"{len(graphs)}" + "".join(f"\n  DIFFERS: {r['case']} {r.get('error', '')}"
                                        for r in agree + graphs if not r["ok"])]
    lines.append(f"{'recipe':14} {'variant':9} {'ms/step':>8} {'full run (min)':>15}")
    for r in report["recipes"]:
        variant = variant_name(r)
        variant += "*" if r.get("graph") and not r.get("captured") else ""
        lines.append(f"{r['recipe']:14} {variant:9} {r['ms_per_step']:8.1f} {r['full_run_min']:15.1f}")
    if any(r.get("graph") and not r.get("captured") for r in report["recipes"]):
        lines.append("* not captured: graphs are CUDA's; on this device graph_step runs the eager step")
    for part in ("notebooks", "torchrun"):
        value = report[part]
        if "skipped" in value:
            lines.append(f"{part}: skipped ({value['skipped']})")
        elif part == "torchrun" and "gap_points" in value:
            runs = ", ".join(f"{k} {v['test_overall']:.1f} %" for k, v in value["runs"].items())
            lines.append(f"torchrun: {'ok' if value['ok'] else 'DIFFERS'} ({runs}; rule: {value['rule']})")
        else:
            lines.append(f"{part}: {json.dumps(value)[:300]}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
