"""Losses move with .to(device): their class weights and priors are buffers, so a step on CUDA never copies them
from the host (issue 25, "no host sync inside the step"; checked here on the meta device)."""
import pytest
import torch

from ltlib.methods.losses import DRW, LOSSES, build_loss
from ltlib.runs.config import make_config

COUNTS = [500, 120, 40, 9, 3]


def _tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    held = list(module.buffers()) + [t for t in vars(module).values() if isinstance(t, torch.Tensor)]
    return [t for t in held if t is not None]


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_holds_its_tensors_as_buffers_that_move_with_it(name):
    kwargs = {} if name == "cb_bce" else {"drw": DRW(COUNTS, start=1)}
    loss = build_loss(name, COUNTS, **kwargs).to("meta")
    if hasattr(loss, "start_epoch"):
        loss.start_epoch(5)                               # after the DRW switch: the weights are in use
    held = _tensors(loss)
    assert held and all(t.device.type == "meta" for t in held), [(n, t.device) for n, t in loss.named_buffers()]
    logits, labels = torch.randn(6, len(COUNTS), device="meta"), torch.zeros(6, dtype=torch.long, device="meta")
    assert loss(logits, labels).device.type == "meta"


def test_the_run_setup_moves_the_loss_to_the_runs_device(fake_fmnist, monkeypatch):
    import ltlib.runs.setup as setup_module

    moved = []

    class Recorder(torch.nn.Module):
        def to(self, *args, **kwargs):
            moved.append(args[0] if args else kwargs.get("device"))
            return self

    monkeypatch.setattr(setup_module, "loss_for", lambda config, counts: Recorder())
    config = make_config("smoke", "cmo", loss="ldam", classifier="normed", reweight="drw", test_per_class=None)
    setup = setup_module.build_stage1(config, setup_module.load_data(config), torch.device("cpu"))
    assert isinstance(setup.loss_fn, Recorder) and moved == [torch.device("cpu")]
