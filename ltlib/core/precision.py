"""Floating-point precision of the forward passes, in one place for training and evaluation.

``"fp32"`` is the default everywhere (a run, an evaluation, an analysis); ``"bf16"`` runs the forward passes under
autocast (the losses stay fp32). ``python -m ltlib.tools.bench`` measures what bf16 buys; ``ltlib.runs.config`` says
why the quick profile does not use it.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import torch

from .errors import ConfigError


PRECISIONS = ("fp32", "bf16")
DEFAULT_PRECISION = "fp32"

Autocast = Callable[[], AbstractContextManager]


def autocast_for(precision: str, device: torch.device) -> Autocast:
    """A context factory for the forward passes: bf16 autocast, or nothing for fp32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {PRECISIONS}")
    if precision == "bf16":
        return lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return nullcontext
