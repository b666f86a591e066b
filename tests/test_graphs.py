"""The captured step (``graph_step``): on the CPU it computes what the eager step computes, its tensor learning rate
included, and its graph bookkeeping (one graph per input structure, fresh each epoch, static buffers) is checked
under CUDA-graph semantics emulated on the CPU."""
from __future__ import annotations

import copy

import pytest
import torch

from ltlib.core.errors import ConfigError
from ltlib.core.targets import MixedTargets
from ltlib.methods.graphs import GraphedStep, _copy_into, _key
from ltlib.runs.config import make_config
from ltlib.runs.setup import build_stage1, load_data
from ltlib.runs.train import train_epoch

CPU = torch.device("cpu")


def _baked(*objects) -> list[dict]:
    """What a graph bakes in at capture: the Python scalars the step and the loss read, and which tensors they hold
    (a replay reads the tensors' memory, so only a different tensor object escapes it)."""
    out = []
    for obj in objects:
        values = dict(vars(obj), **{f"buffer {k}": v for k, v in getattr(obj, "_buffers", {}).items()})
        out.append({k: id(v) if isinstance(v, torch.Tensor) else v for k, v in values.items()
                    if isinstance(v, (torch.Tensor, int, float, bool, str, type(None)))})
    return out


class EmulatedGraphs(GraphedStep):
    """CUDA-graph semantics on the CPU: a capture leaves every state as it was (a real capture records kernels
    without running them); a replay reruns the recorded step on the static buffers and writes the static outputs,
    and fails if a Python value the capture baked in has changed since (a real replay would not see the change)."""

    def __call__(self, model, images, targets, loss_fn):
        self.model, self.loss_fn = model, loss_fn
        return super().__call__(model, images, targets, loss_fn)

    def captures(self, images):
        return True

    def warm(self, run, device):
        return run()

    def capture(self, run, device):
        model, opt, step = self.model, self.step.optimizer, self.step
        saved = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()), torch.get_rng_state(),
                 {k: v.clone() for k, v in vars(step).items() if isinstance(v, torch.Tensor)})
        out = run()
        model.load_state_dict(saved[0])
        lrs = [g["lr"] for g in opt.param_groups]
        opt.load_state_dict(saved[1])
        for g, lr in zip(opt.param_groups, lrs):       # the graph reads the live lr tensor, not a copy
            g["lr"] = lr
        torch.set_rng_state(saved[2])
        for k, v in saved[3].items():
            getattr(step, k).copy_(v)

        baked = _baked(step, self.loss_fn)

        def replay():
            assert _baked(step, self.loss_fn) == baked, "a value baked into the graph changed"
            fresh = run()
            out.loss.copy_(fresh.loss)
            out.logits.copy_(fresh.logits)
        return replay, out


CASES = {
    "sgd + CMO + DRW": dict(mixing="cmo", cmo_start=0, cmo_end=0, reweight="drw", drw_start=0.5),
    "sam": dict(step="sam"),       # the SAM family's ascent and restore (ImbSAM's split adds nothing to capture)
    "ccsam + mixup": dict(step="ccsam", mixing="mixup"),
}


def _train(config, data, graphed: type | None) -> tuple[dict, GraphedStep | None]:
    setup = build_stage1(config, data, CPU)
    if graphed is not None:
        setup.step = graphed(setup.step.step if isinstance(setup.step, GraphedStep) else setup.step)
    for epoch in range(config.epochs):
        train_epoch(setup.model, setup.loader, setup.step, setup.loss_fn, setup.schedule, epoch)
    return setup.model.state_dict(), setup.step


@pytest.mark.parametrize("case", CASES)
def test_the_graphed_step_computes_what_the_eager_step_computes(fake_fmnist, case):
    """Two epochs (a ragged last batch each; DRW switching on in the second; CMO mixing some batches and not others):
    eager with a float learning rate, the captured step as the CPU runs it, and the captured step under emulated
    graph semantics give the same weights."""
    config = make_config("smoke", "ce", test_per_class=None, optimizer_impl="fused", batch_size=48, **CASES[case])
    data = load_data(config)
    assert len(data.train.labels) % 48, "the case needs a ragged last batch"
    eager, _ = _train(config, data, None)
    on_cpu, _ = _train(config.replace(graph_step=True), data, None)
    emulated, step = _train(config.replace(graph_step=True), data, EmulatedGraphs)
    for name, value in eager.items():
        assert torch.allclose(on_cpu[name].float(), value.float(), rtol=1e-5, atol=1e-6), name
        assert torch.allclose(emulated[name].float(), value.float(), rtol=1e-5, atol=1e-6), name
    assert step.graphs >= 2           # the full batches and the ragged last one (and CMO's mixed / unmixed)


def test_a_tensor_learning_rate_is_filled_in_place_and_follows_the_schedule(fake_fmnist):
    config = make_config("smoke", "ce", test_per_class=None, optimizer_impl="fused", graph_step=True)
    setup = build_stage1(config, load_data(config), CPU)
    lr = setup.optimizer.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and lr.dim() == 0
    record = train_epoch(setup.model, setup.loader, setup.step, setup.loss_fn, setup.schedule, 1)
    assert setup.optimizer.param_groups[0]["lr"] is lr          # the same tensor: a graph keeps reading it
    steps = len(setup.loader)
    assert float(lr) == pytest.approx(setup.schedule(1, steps - 1, steps))
    assert record["lr"] == setup.schedule(1, 0, steps)


def test_input_structures_get_their_own_graphs_and_buffers():
    x, y = torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)
    mixed = MixedTargets(y, y, torch.tensor(0.5))
    keys = {_key(x, y), _key(x[:3], y[:3]), _key(x, mixed), _key(x.contiguous(memory_format=torch.channels_last), y)}
    assert len(keys) == 4
    static = MixedTargets(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), torch.tensor(0.0))
    _copy_into(static, MixedTargets(y + 1, y + 2, torch.tensor(0.25)))
    assert static.labels.tolist() == [1] * 4 and static.other.tolist() == [2] * 4 and float(static.weight) == 0.25


def test_graph_step_settings_are_checked_and_not_hashed():
    with pytest.raises(ConfigError, match="optimizer_impl='fused'"):
        make_config("quick", "ce", graph_step=True)
    with pytest.raises(ConfigError, match="precision='fp32'"):
        make_config("quick", "ce", graph_step=True, optimizer_impl="fused", precision="bf16")
    base = make_config("quick", "ce")
    assert base.replace(graph_step=True, optimizer_impl="fused").hash() == base.hash()
