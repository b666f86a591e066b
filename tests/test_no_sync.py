"""No host sync inside a training step. On CUDA every tensor made from host data, and every read of a device value on
the host (``.item()``, ``.tolist()``, ``bool(t)``, ...), waits for the device. On the CPU a torch-function mode
records such calls while the loader draws a batch and the step trains on it, for every step strategy, every loss
(with DRW where it applies) and every mixing rule. A first step may fill caches (ImbSAM's tail classes on the
device); the next ones must make none."""
from __future__ import annotations

import traceback

import pytest
import torch
from torch.overrides import TorchFunctionMode

from ltlib.data.mixing import MIXINGS
from ltlib.methods.losses import LOSSES
from ltlib.methods.step import STEPS
from ltlib.runs.config import make_config
from ltlib.runs.setup import build_stage1, load_data

# torch functions that move data between the host and the device
HOST_TRANSFERS = {"tensor", "as_tensor", "item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__",
                  "__index__", "nonzero"}


class HostTransfers(TorchFunctionMode):
    """Records each call of :data:`HOST_TRANSFERS` with the line that made it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_TRANSFERS:
            caller = next((f for f in reversed(traceback.extract_stack()[:-1]) if "/ltlib/" in f.filename), None)
            self.calls.append(f"{name} at {caller.filename.split('/ltlib/')[-1]}:{caller.lineno}" if caller else name)
        return func(*args, **(kwargs or {}))


def steady_state_transfers(config) -> list[str]:
    setup = build_stage1(config, load_data(config), torch.device("cpu"))
    epoch = config.epochs - 1                          # DRW's weights and CMO are on in the last epoch
    for part in (setup.step, setup.loss_fn):
        if hasattr(part, "start_epoch"):
            part.start_epoch(epoch)
    batches = setup.loader.epoch(epoch)
    images, targets = next(batches)
    setup.step(setup.model, images, targets, setup.loss_fn)   # the first step may fill caches
    spy = HostTransfers()
    with spy:
        for _, (images, targets) in zip(range(2), batches):
            setup.step(setup.model, images, targets, setup.loss_fn)
    return spy.calls


def test_the_spy_catches_a_host_transfer():
    spy = HostTransfers()
    with spy:
        x = torch.ones(3)
        x.sum().item()
        torch.tensor([1.0])
    assert [c.split(" ")[0] for c in spy.calls] == ["item", "tensor"]


@pytest.mark.parametrize("step", list(STEPS))
def test_no_step_strategy_waits_for_the_device(fake_fmnist, step):
    config = make_config("smoke", step=step, test_per_class=None, batch_size=16,
                         **({"mixing": "mixup"} if step == "ccsam" else {}))
    assert steady_state_transfers(config) == []


@pytest.mark.parametrize("loss, mixing", [(loss, "none") for loss in LOSSES]
                         + [("ce", mixing) for mixing in MIXINGS if mixing != "none"])
def test_no_loss_or_mixing_rule_waits_for_the_device(fake_fmnist, loss, mixing):
    extra = {"classifier": "normed"} if loss == "ldam" else {}
    if mixing == "cmo":
        extra.update(cmo_start=0, cmo_end=0, cmo_prob=1.0)
    if loss in ("ce", "ldam", "focal"):
        extra["reweight"] = "drw"
    config = make_config("smoke", loss=loss, mixing=mixing, test_per_class=None, batch_size=16, **extra)
    assert steady_state_transfers(config) == []


def test_the_captured_steps_tensor_learning_rate_is_set_without_a_transfer(fake_fmnist):
    """graph_step: the loop fills the learning-rate tensor in place and the fused SGD reads it on the device."""
    from ltlib.runs.train import set_lr

    config = make_config("smoke", test_per_class=None, batch_size=16, graph_step=True, optimizer_impl="fused")
    setup = build_stage1(config, load_data(config), torch.device("cpu"))
    batches = setup.loader.epoch(0)
    setup.step(setup.model, *next(batches), setup.loss_fn)
    spy = HostTransfers()
    with spy:
        for i, (images, targets) in zip(range(1, 3), batches):
            set_lr(setup.optimizer, setup.schedule(0, i, len(setup.loader)))
            setup.step(setup.model, images, targets, setup.loss_fn)
    assert spy.calls == []
