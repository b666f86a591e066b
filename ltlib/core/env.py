"""The machine a run uses: device choice, CPU threads, seeds and an environment record."""
from __future__ import annotations

import ctypes
import os
import platform
import random
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .. import __version__
from .errors import ConfigError


# the folder ltlib is installed from: a source checkout (with pyproject.toml, exp/ and notebooks/) in this project
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` means CUDA when present, else CPU; anything else is passed to ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device {device!r} is not a device: use 'auto', 'cpu' or 'cuda[:N]'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for CUDA, but no GPU is visible: use device='auto' or 'cpu'")
    return dev


def free_device_memory(device: str | torch.device) -> int | None:
    """Bytes free on ``device`` now (CUDA), or None where the device's memory is the host's (CPU)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def configure_threads(num_threads: int | None = None) -> int:
    """Use one intra-op thread per available core (the measured best on 2-core machines), and tune
    the allocator (:func:`tune_allocator`). ``LTLIB_NUM_THREADS`` overrides the thread count.
    Returns the thread count in use.
    """
    tune_allocator()
    n = num_threads or int(os.environ.get("LTLIB_NUM_THREADS", 0)) or available_cpus()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def run_threads(device: torch.device) -> int | None:
    """Intra-op threads inside one training run or analysis on CPU: ``LTLIB_RUN_THREADS``, default 1.

    The thread count changes float rounding, so with a fixed count a run gives the same numbers on any
    machine with the same CPU type, whatever its core count and however many runs train beside it. One
    thread per run and one run per core trains quick-profile models 1.42x faster on 2 cores than 2 threads
    per run, one run at a time (:mod:`ltlib.runs.jobs`). ``None`` on a GPU: the process keeps its threads.
    """
    return env_count("LTLIB_RUN_THREADS", 1, "threads") if device.type == "cpu" else None


def env_count(name: str, default: int, what: str) -> int:
    """The whole number >= 1 in the environment variable ``name`` (``default`` when unset); a clear error else."""
    text = os.environ.get(name, str(default))
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{name}={text!r}: give a whole number of {what} >= 1")
    return int(text)


@contextmanager
def threads_for_run(device: torch.device) -> Iterator[int]:
    """Run the block with :func:`run_threads` threads (and a tuned allocator), then restore the process's."""
    before = torch.get_num_threads()
    n = configure_threads(run_threads(device))
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_allocator_tuned: bool | None = None


def tune_allocator() -> bool:
    """Keep activation-sized buffers in glibc's heap instead of fresh ``mmap`` pages.

    With the default settings every 8 MB activation of a CPU training step is a new mapping that
    page-faults on first touch (about 600k minor faults per 24 steps measured); a 32 MiB mmap
    threshold and no trimming cut that 20x and make fp32 steps about 1.3x faster (``python -m
    ltlib.tools.bench``). Linux with glibc only; ``LTLIB_MALLOC_TUNING=0`` turns it off. Idempotent.
    """
    global _allocator_tuned
    if _allocator_tuned is None:
        _allocator_tuned = False
        if os.environ.get("LTLIB_MALLOC_TUNING", "1") != "0" and sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                _allocator_tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)) and bool(
                    libc.mallopt(_M_TRIM_THRESHOLD, 2**30))
            except (OSError, AttributeError):  # not glibc
                pass
    return _allocator_tuned


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA): used before a model is built."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derived_seed(*keys: int) -> int:
    """A 63-bit seed that mixes several integers (seed, epoch, stream) without collisions."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> 1)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: torch.device) -> dict:
    """What a result was computed on: versions, device, CPU model, threads and the date."""
    info = {
        "ltlib": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": available_cpus(),
        "torch_threads": torch.get_num_threads(),
        "malloc_tuned": bool(_allocator_tuned),
        "device": str(device),
        "date": datetime.now().strftime("%Y-%m-%d"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def hardware_label(env: dict) -> str:
    """A short hardware string for figure captions and tables."""
    if env.get("gpu"):
        return f"{env['gpu']}"
    threads = env.get("torch_threads", "?")
    return f"{env.get('cpu', 'CPU')}, {threads} thread{'' if threads == 1 else 's'}"
