"""Side-by-side speed benchmark: ``python -m ltlib.tools.bench`` (or ``make bench``).

In one process, on the same model (ResNet-32), data shape, batch size and optimizer, it times:

* a *reference-style* training loop written the way the original repositories do it: a Dataset of PIL
  images, torchvision ``RandomCrop(32, padding=4)`` + flip + ``ToTensor`` + ``Normalize``, a DataLoader,
  fp32, ``loss.item()`` every step;
* ltlib's loop exactly as the notebooks run it (:func:`ltlib.runs.train.train_epoch` on a
  :class:`~ltlib.data.loader.DeviceLoader`), with the default speed switches of :class:`RunConfig`;
* the same for the SAM family, CC-SAM (with and without its mixup), a plain step with CMO (p = 0.5) and a plain
  step with each strong augmentation (AutoAugment + Cutout; CMO's 400-epoch per-image mix);
* evaluation of the 10k test set against a reference-style evaluation (DataLoader, batch 100, fp32);
* the machine's ceiling: FLOP/s of a conv shaped like ResNet-32's first stage, forward + backward;
* on a GPU, ltlib's loop compiled too (``compile=True``), and at least 100 steps per segment.

Variants run interleaved, ``--repeats`` times; the table gives median [min..max], and every ratio is
paired within a repeat, because these machines are noisy and only same-process ratios count. Results
go to ``exp/bench/bench-<time>.json``. ``--tiny`` is a seconds-long smoke mode for the tests.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core import io
from ..core.env import configure_threads, cpu_model, resolve_device
from ..data.loader import DeviceLoader
from ..data.mixing import build_mixing
from ..data.sources import ImageSet, load_fashion_mnist
from ..data.strong import STRONG_AUGMENTS, build_strong_augment
from ..methods.ccsam import CCSAMOptions
from ..methods.losses import CrossEntropy
from ..methods.sam import SAMOptions
from ..methods.schedules import build_schedule
from ..methods.step import autocast_for, build_sgd, build_step, step_passes
from ..models import build_model
from ..runs.config import RunConfig
from ..runs.distributed import compile_model
from ..runs.evaluate import eval_mode, evaluate
from ..runs.experiment import default_exp_dir
from ..runs.train import train_epoch


MEAN, STD = (0.2860,) * 3, (0.3530,) * 3
# The step strategies and mixing rules the benchmark times beside the plain step; a step's cost in plain steps
# (for its FLOP count) is its registry entry's ``passes``.
BENCH_STEPS = ("sam", "asam", "imbsam", "ccsam")
BENCH_TAIL = (7, 8, 9)  # ImbSAM's tail classes in the benchmark (its cost does not depend on which)
# CMO as its recipe runs it (p 0.5), on in every epoch of the benchmark
BENCH_MIXING = {"cmo": dict(prob=0.5, epochs=10**9, start=-1, end=0)}
# every strong augmentation of the registry (CC-SAM's AutoAug variant, CMO's 400-epoch mix): per-image transforms
BENCH_STRONG = tuple(name for name in STRONG_AUGMENTS if name != "none")


# --------------------------------------------------------------------------- data

def bench_images(n: int, shape: tuple[int, int, int], split: str = "test", seed: int = 0) -> ImageSet:
    """``n`` Fashion-MNIST images in ``shape`` (28x28x1 native, or 32x32x3: zero-padded by 2 and
    replicated, the CIFAR shape); random images when the data set is not installed."""
    try:
        raw = load_fashion_mnist(split)
        images, labels = raw.images[:n], raw.labels[:n]
    except Exception:  # noqa: BLE001 - no data set: timing needs only the shape
        gen = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=gen)
        labels = torch.randint(0, 10, (n,), generator=gen)
    if shape[1] == 32:
        images = F.pad(images, (2, 2, 2, 2))
    if shape[0] == 3:
        images = images.expand(-1, 3, -1, -1).contiguous()
    return ImageSet(images, labels, tuple(str(i) for i in range(10)))


class PILDataset(torch.utils.data.Dataset):
    """The reference repositories' data path: one PIL image per item, transformed per sample."""

    def __init__(self, data: ImageSet, transform: Callable) -> None:
        from PIL import Image
        mode = "RGB" if data.images.shape[1] == 3 else "L"
        arrays = data.images.permute(0, 2, 3, 1).numpy()
        self.images = [Image.fromarray(a if mode == "RGB" else a[..., 0], mode) for a in arrays]
        self.labels = data.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def reference_transforms(train: bool, size: int = 32):
    import torchvision.transforms as T
    tail = [T.ToTensor(), T.Normalize(MEAN, STD)]
    return T.Compose(([T.RandomCrop(size, padding=4), T.RandomHorizontalFlip()] if train else []) + tail)


# --------------------------------------------------------------------------- variants

@dataclass
class Variant:
    """Something to time: ``run()`` does one timed segment of ``images`` images (``steps`` steps)."""

    name: str
    kind: str                      # "train", "eval" or "ceiling"
    run: Callable[[], None]
    images: int
    steps: int
    baseline: str | None = None    # ratios are paired against this variant
    flops_per_image: float = 0.0   # forward + backward for training, forward for evaluation
    seconds: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    peak_cuda_mb: float = 0.0


def model_flops(model: nn.Module, shape: tuple[int, int, int], device: torch.device) -> float:
    """Forward FLOPs per image (convolutions and linear layers), counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with eval_mode(model), counter, torch.no_grad():
        model(torch.zeros(1, *shape, device=device))
    return float(counter.get_total_flops())


def reference_train(data: ImageSet, batch_size: int, steps: int, device: torch.device, width: float) -> Variant:
    torch.manual_seed(0)
    model = build_model("resnet32", 10, in_channels=3, width=width).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(PILDataset(data, reference_transforms(True)), batch_size=batch_size,
                                         shuffle=True, num_workers=0, drop_last=True)
    batches = iter(loader)

    def run() -> None:
        nonlocal batches
        model.train()
        for _ in range(steps):
            try:
                images, labels = next(batches)
            except StopIteration:
                batches = iter(loader)
                images, labels = next(batches)
            images, labels = images.to(device), labels.to(device)
            loss = F.cross_entropy(model(images), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()  # the per-step host sync the reference loops do for logging

    return Variant("reference train (PIL, DataLoader, fp32)", "train", run, steps * batch_size, steps,
                   flops_per_image=3 * model_flops(model, (3, 32, 32), device))


def ltlib_train(name: str, data: ImageSet, shape: tuple[int, int, int], batch_size: int, steps: int,
                device: torch.device, width: float, config: RunConfig, step_name: str = "sgd",
                baseline: str | None = None, mixing: str = "none", compile_backend: str | None = None,
                strong: str = "none") -> Variant:
    """ltlib's training loop as the notebooks run it, over exactly ``steps`` batches per segment."""
    torch.manual_seed(0)
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    model = build_model("resnet32", 10, in_channels=shape[0], width=width).to(device=device, memory_format=fmt)
    optimizer = build_sgd(model, 0.1, 0.9, 5e-4, impl=config.optimizer_impl)
    # CC-SAM at a radius that bites, on long-tailed class counts
    options = (CCSAMOptions(class_counts=(1000, 599, 359, 215, 129, 77, 46, 27, 16, 10), radius=0.1)
               if step_name == "ccsam" else SAMOptions(tail_classes=BENCH_TAIL))
    step = build_step(step_name, optimizer, autocast_for(config.precision, device), model=model, options=options)
    trained = compile_model(model, compile_backend) if config.compile else model
    subset = ImageSet(data.images[: steps * batch_size], data.labels[: steps * batch_size], data.classes)
    loader = DeviceLoader(subset, batch_size=batch_size, mean=MEAN[: shape[0]], std=STD[: shape[0]],
                          padding=4 if shape[1] == 32 else 2, flip=True, channels_last=config.channels_last,
                          device=device, mix=build_mixing(mixing, **BENCH_MIXING.get(mixing, {})),
                          strong=build_strong_augment(strong))
    schedule = build_schedule("cosine", 0.1, epochs=10_000)
    loss_fn = CrossEntropy()
    epoch = iter(range(10**9))
    flops = 3 * model_flops(model, shape, device) * step_passes(step_name)

    def run() -> None:
        train_epoch(trained, loader, step, loss_fn, schedule, next(epoch))

    return Variant(name, "train", run, steps * batch_size, steps, baseline=baseline, flops_per_image=flops)


def reference_eval(model: nn.Module, data: ImageSet, device: torch.device) -> Variant:
    loader = torch.utils.data.DataLoader(PILDataset(data, reference_transforms(False)), batch_size=100,
                                         shuffle=False, num_workers=0)

    @torch.no_grad()
    def run() -> None:
        model.eval()
        for images, _ in loader:
            model(images.to(device)).argmax(1).cpu()

    return Variant("reference eval (PIL, DataLoader, b100, fp32)", "eval", run, len(data), len(loader),
                   flops_per_image=model_flops(model, (3, 32, 32), device))


def ltlib_eval(name: str, model: nn.Module, data: ImageSet, device: torch.device, config: RunConfig,
               baseline: str | None = None) -> Variant:
    channels = data.images.shape[1]
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    model = copy.deepcopy(model).to(memory_format=fmt)  # Module.to is in place: keep the caller's layout
    kw = dict(mean=MEAN[:channels], std=STD[:channels], batch_size=config.eval_batch_size,
              precision=config.precision, channels_last=config.channels_last, fold_bn=config.fold_bn, device=device)
    images = data.images.to(device)
    gpu_data = ImageSet(images, data.labels.to(device), data.classes)

    def run() -> None:
        evaluate(model, gpu_data, **kw)

    steps = -(-len(data) // config.eval_batch_size)
    return Variant(name, "eval", run, len(data), steps, baseline=baseline,
                   flops_per_image=model_flops(model, tuple(data.images.shape[1:]), device))


def conv_ceiling(precision: str, channels_last: bool, device: torch.device, batch: int = 128,
                 iters: int = 10) -> Variant:
    """A 3x3 conv 16->16 at 32x32 (ResNet-32's first stage), forward + backward (input and weight)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    conv = nn.Conv2d(16, 16, 3, padding=1, bias=False).to(device=device, memory_format=fmt)
    x = torch.randn(batch, 16, 32, 32, device=device).contiguous(memory_format=fmt).requires_grad_()
    autocast = autocast_for(precision, device)

    def run() -> None:
        for _ in range(iters):
            with autocast():
                out = conv(x)
            out.backward(torch.ones_like(out))
        if device.type == "cuda":
            torch.cuda.synchronize()

    flops = 3 * 2 * 32 * 32 * 16 * 16 * 9  # forward + grad-input + grad-weight, per image
    label = f"ceiling: conv3x3 16->16 32x32, fwd+bwd, {precision}{' channels_last' if channels_last else ''}"
    return Variant(label, "ceiling", run, batch * iters, iters, flops_per_image=flops)


# --------------------------------------------------------------------------- timing

class PeakRSS:
    """Samples this process's resident set size every 2 ms while active (Linux /proc)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page
        except OSError:
            return 0

    def __enter__(self) -> "PeakRSS":
        self.peak = self._rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def time_interleaved(variants: list[Variant], repeats: int, device: torch.device, progress: bool = True) -> None:
    """Warm each variant up once, then run them in turn ``repeats`` times, recording seconds."""
    for v in variants:
        v.run()
    for r in range(repeats):
        for v in variants:
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            with PeakRSS() as rss:
                t0 = time.perf_counter()
                v.run()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                v.seconds.append(time.perf_counter() - t0)
            v.peak_rss_mb = max(v.peak_rss_mb, rss.peak / 2**20)
            if device.type == "cuda":
                v.peak_cuda_mb = max(v.peak_cuda_mb, torch.cuda.max_memory_allocated() / 2**20)
        if progress:
            print(f"  repeat {r + 1}/{repeats} done", flush=True)


def summarize(variants: list[Variant]) -> list[dict]:
    by_name = {v.name: v for v in variants}
    rows = []
    for v in variants:
        rate = [v.images / s for s in v.seconds]
        row = {
            "name": v.name, "kind": v.kind,
            "images_per_s": statistics.median(rate), "images_per_s_min": min(rate), "images_per_s_max": max(rate),
            "ms_per_step": 1000 * statistics.median(v.seconds) / v.steps,
            "gflops_per_s": statistics.median(rate) * v.flops_per_image / 1e9,
            "peak_rss_mb": v.peak_rss_mb,
        }
        if v.peak_cuda_mb:
            row["peak_cuda_mb"] = v.peak_cuda_mb
        if v.baseline:
            base = by_name[v.baseline]
            paired = [(v.images / s) / (base.images / b) for s, b in zip(v.seconds, base.seconds)]
            row.update(baseline=v.baseline, ratio=statistics.median(paired), ratio_min=min(paired),
                       ratio_max=max(paired))
        rows.append(row)
    return rows


def print_table(rows: list[dict], machine: dict) -> None:
    print(f"\nltlib.tools.bench on {machine['cpu']} ({machine['threads']} threads), device {machine['device']}, "
          f"torch {machine['torch']}")
    head = f"{'variant':<58} {'img/s median [min..max]':>26} {'ms/step':>8} {'GFLOP/s':>8} {'x baseline':>20} {'RSS MB':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        rate = f"{r['images_per_s']:.0f} [{r['images_per_s_min']:.0f}..{r['images_per_s_max']:.0f}]"
        ratio = f"{r['ratio']:.2f} [{r['ratio_min']:.2f}..{r['ratio_max']:.2f}]" if "ratio" in r else ""
        print(f"{r['name'][:58]:<58} {rate:>26} {r['ms_per_step']:>8.1f} {r['gflops_per_s']:>8.1f} {ratio:>20} "
              f"{r['peak_rss_mb']:>7.0f}")


# --------------------------------------------------------------------------- main

def run_benchmark(*, tiny: bool = False, repeats: int = 5, steps: int = 8, batch_size: int = 128,
                  eval_images: int = 10_000, device: str = "auto", out_dir: str | Path | None = None,
                  progress: bool = True) -> dict:
    """Build every variant, time them interleaved, and write and return the results."""
    t_start = time.perf_counter()
    dev = resolve_device(device)
    threads = configure_threads()
    config = RunConfig()  # the default execution switches, as every run uses them
    if tiny:
        repeats, steps, batch_size, eval_images = 1, 2, 32, 200
    elif dev.type == "cuda":
        steps = max(steps, 100)      # a GPU step takes milliseconds: a few would time the launches, not the step
    width = 0.25 if tiny else 1.0
    cifar, native = (3, 32, 32), (1, 28, 28)
    train32 = bench_images(steps * batch_size, cifar, "train")
    train28 = bench_images(steps * batch_size, native, "train")
    test32 = bench_images(eval_images, cifar, "test")
    test28 = bench_images(eval_images, native, "test")
    other = config.replace(precision="fp32" if config.precision == "bf16" else "bf16")

    ref = reference_train(train32, batch_size, steps, dev, width)
    plain = ltlib_train(f"ltlib train, 32x32x3, {config.precision} (defaults; same shape)", train32, cifar,
                        batch_size, steps, dev, width, config, baseline=ref.name)
    native_run = ltlib_train(f"ltlib train, 28x28x1 native, {config.precision}", train28, native, batch_size,
                             steps, dev, width, config, baseline=ref.name)
    variants = [
        ref, plain,
        ltlib_train(f"ltlib train, 32x32x3, {other.precision} switch", train32, cifar, batch_size, steps, dev,
                    width, other, baseline=ref.name),
        native_run,
        ltlib_train(f"ltlib train, 28x28x1 native, {other.precision} switch", train28, native, batch_size, steps,
                    dev, width, other, baseline=ref.name),
        ltlib_train(f"ltlib train, 28x28x1, width 0.5, {config.precision} (quick profile)", train28, native,
                    batch_size, steps, dev, width / 2, config, baseline=ref.name),
    ]
    compiled = None
    if dev.type == "cuda" or tiny:   # the GPU section: ltlib compiled (tiny: traced by the eager backend, the wiring only)
        compiled = ltlib_train(f"ltlib train, 32x32x3, {config.precision}, compiled", train32, cifar, batch_size,
                               steps, dev, width, config.replace(compile=True), baseline=ref.name,
                               compile_backend="eager" if tiny else None)
        variants.append(compiled)
    # half the steps for two-pass steps: they cost about two plain ones (ratios are per image)
    step_runs = {name: ltlib_train(f"ltlib {name} step, 32x32x3", train32, cifar, batch_size,
                                   max(steps // int(step_passes(name) + 0.5), 1), dev, width, config, step_name=name,
                                   baseline=plain.name)
                 for name in BENCH_STEPS}
    if "ccsam" in step_runs:   # as its recipe runs it: with input mixup
        step_runs["ccsam+mixup"] = ltlib_train("ltlib ccsam step + mixup, 32x32x3", train32, cifar, batch_size, steps,
                                               dev, width, config, step_name="ccsam", baseline=plain.name,
                                               mixing="mixup")
    step_runs.update({name: ltlib_train(f"ltlib sgd step + {name}, 32x32x3", train32, cifar, batch_size, steps, dev,
                                        width, config, baseline=plain.name, mixing=name)
                      for name in BENCH_MIXING})
    step_runs.update({name: ltlib_train(f"ltlib sgd step + {name} augmentation, 32x32x3", train32, cifar, batch_size,
                                        steps, dev, width, config, baseline=plain.name, strong=name)
                      for name in BENCH_STRONG})
    variants += step_runs.values()
    eval_model = build_model("resnet32", 10, in_channels=3, width=width).to(dev)
    ref_eval = reference_eval(eval_model, test32, dev)
    fast_eval = ltlib_eval(f"ltlib eval, 32x32x3, {config.precision} (same model)", eval_model, test32, dev, config,
                           baseline=ref_eval.name)
    quick_model = build_model("resnet32", 10, in_channels=1, width=width / 2).to(dev)
    ceiling_run = conv_ceiling(config.precision, config.channels_last, dev, iters=2 if tiny else 10)
    variants += [
        ref_eval, fast_eval,
        ltlib_eval(f"ltlib eval, 32x32x3, {other.precision} switch", eval_model, test32, dev, other,
                   baseline=ref_eval.name),
        ltlib_eval(f"ltlib eval, 28x28x1 width 0.5, {config.precision} (quick profile)", quick_model, test28, dev,
                   config, baseline=ref_eval.name),
        ceiling_run,
        conv_ceiling(other.precision, other.channels_last, dev, iters=2 if tiny else 10),
    ]
    if progress:
        print(f"timing {len(variants)} variants x {repeats} repeats ({steps} steps of {batch_size} per train segment, "
              f"{eval_images} images per eval pass)", flush=True)
    time_interleaved(variants, repeats, dev, progress)
    rows = summarize(variants)

    by_name = {r["name"]: r for r in rows}
    ceiling = by_name[ceiling_run.name]["gflops_per_s"]
    share = 100 * by_name[plain.name]["gflops_per_s"] / ceiling
    other_share = 100 * by_name[variants[2].name]["gflops_per_s"] / by_name[variants[-1].name]["gflops_per_s"]
    machine = {"cpu": cpu_model() if dev.type == "cpu" else torch.cuda.get_device_name(dev), "threads": threads,
               "torch": torch.__version__, "device": str(dev), "dtype": config.precision,
               "channels_last": config.channels_last, "optimizer_impl": config.optimizer_impl,
               "compile": config.compile, "eval_batch_size": config.eval_batch_size, "fold_bn": config.fold_bn}
    result = {
        "machine": machine,
        "settings": {"tiny": tiny, "repeats": repeats, "steps": steps, "batch_size": batch_size,
                     "eval_images": eval_images, "width": width},
        "results": rows,
        "train_speedup": by_name[plain.name]["ratio"],
        "train_speedup_native_28x28x1": by_name[native_run.name]["ratio"],
        "eval_speedup": by_name[fast_eval.name]["ratio"],
        "train_speedup_compiled": by_name[compiled.name]["ratio"] if compiled else None,
        "ceiling_gflops_per_s": ceiling,
        "ceiling_share_percent": share,
        f"ceiling_share_percent_{other.precision}_switch": other_share,
        # each two-pass strategy's time per step relative to the plain SGD step (paired by repeat)
        "step_cost_vs_sgd": {name: 1 / by_name[v.name]["ratio"] for name, v in step_runs.items()},
        "wall_time_s": time.perf_counter() - t_start,
    }
    if progress:
        print_table(result["results"], machine)
        print(f"\ntrain_speedup {result['train_speedup']:.2f}x (same shape), "
              f"{result['train_speedup_native_28x28x1']:.2f}x with native 28x28x1 input; "
              f"eval_speedup {result['eval_speedup']:.2f}x; ltlib at {share:.0f}% of the {config.precision} conv "
              f"ceiling ({ceiling:.0f} GFLOP/s); wall time {result['wall_time_s']:.0f} s")
        if result["step_cost_vs_sgd"]:
            print("step cost vs SGD: " + ", ".join(f"{k} {v:.2f}x" for k, v in result["step_cost_vs_sgd"].items()))
    return write_report(result, "bench", tiny=tiny, out_dir=out_dir, progress=progress)


def write_report(result: dict, prefix: str, *, tiny: bool, out_dir: str | Path | None, progress: bool) -> dict:
    """Write ``result`` to ``<out_dir or exp/bench>/<prefix>-<time>[-tiny].json``; returns it with its ``path``."""
    out = Path(out_dir) if out_dir else default_exp_dir() / "bench"
    path = out / f"{prefix}-{datetime.now().strftime('%Y%m%d-%H%M%S')}{'-tiny' if tiny else ''}.json"
    io.write_json(path, result)
    result["path"] = str(path)
    if progress:
        print(f"written: {path}")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m ltlib.tools.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="seconds-long smoke mode (tests)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median, min, max)")
    parser.add_argument("--steps", type=int, default=8, help="training steps per timed segment")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--eval-images", type=int, default=10_000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="output folder (default exp/bench)")
    args = parser.parse_args(argv)
    return run_benchmark(tiny=args.tiny, repeats=args.repeats, steps=args.steps, batch_size=args.batch_size,
                         eval_images=args.eval_images, device=args.device, out_dir=args.out)


if __name__ == "__main__":
    main()
