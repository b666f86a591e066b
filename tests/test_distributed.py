"""DDP on CPU: gloo, 2 processes launched by torchrun. An epoch of SGD equals the single-process epoch over
the same global batches; SAM, ImbSAM and CC-SAM perturb per replica (or globally, by option); a whole run trains,
evaluates (gathered over the ranks) and writes its folder from rank 0; bad input is named."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ddp_worker as W
from ltlib.runs.config import make_config
from ltlib.core.targets import MixedTargets
from ltlib.runs.distributed import DistInfo, ShardedLoader, check_batch, check_supported, shard_batch
from ltlib.core.errors import ConfigError
from ltlib.runs.evaluate import evaluate
from ltlib.runs.experiment import eval_options, load_data, load_run
from ltlib.methods.ccsam import CCSAMStep
from ltlib.methods.step import build_sgd
from ltlib.runs.stage2 import make_stage2

ROOT = Path(__file__).resolve().parents[1]
CASES = ("sgd:replica", "sam:replica", "sam:global", "imbsam:replica", "imbsam:global", "ccsam:replica",
         "ccsam:global", "sam:replica:compile", "ccsam:replica:compile")


def torchrun(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def ddp_params(tmp_path_factory) -> dict[str, dict]:
    """The parameters rank 0 holds after each toy training of :data:`CASES` (one torchrun launch)."""
    out = tmp_path_factory.mktemp("ddp")
    # the compiled cases trace with the eager backend: the same wrappers as inductor, without its minutes of codegen
    torchrun([str(ROOT / "tests" / "ddp_worker.py"), str(out), *CASES], out, env={"LTLIB_COMPILE_BACKEND": "eager"})
    return {case: torch.load(out / f"{case.replace(':', '-')}.pt", weights_only=True) for case in CASES}


def assert_same(state: dict, model: torch.nn.Module, atol: float = 1e-6) -> None:
    for name, value in model.state_dict().items():
        torch.testing.assert_close(state[name], value, atol=atol, rtol=0, msg=name)


def train_by_hand(slice_gradient, world: int = 2) -> torch.nn.Module:
    """The toy training in one process, each step's gradient the mean over the replicas' slices of
    ``slice_gradient(model, params, x, y)``: what DDP computes when each replica's step stays local."""
    model = W.toy_model()
    params = list(model.parameters())
    optimizer = build_sgd(model, lr=W.LR, momentum=0.9, weight_decay=5e-4)
    for epoch in range(W.EPOCHS):
        for images, labels in W.toy_loader().epoch(epoch):
            total = [torch.zeros_like(p) for p in params]
            for r in range(world):
                part = slice(len(labels) * r // world, len(labels) * (r + 1) // world)
                grads = slice_gradient(model, params, images[part], labels[part])
                total = [t + g / world for t, g in zip(total, grads)]
            for p, t in zip(params, total):
                p.grad = t
            optimizer.step()
    return model


def per_replica_reference(step: str) -> torch.nn.Module:
    """SAM / ImbSAM with each replica's own perturbation, written out by hand in one process: the final
    gradient is the mean over the replicas of their gradients at w + epsilon_r (ImbSAM: plus the mean head
    gradient at w), epsilon_r = rho g_r / ||g_r|| from the replica's slice alone."""
    tail = torch.tensor(W.TAIL)

    def partial(losses, mask, factor=1.0):
        return factor * torch.where(mask, losses, torch.zeros(())).sum() / len(losses)

    def gradient(model, params, x, y):
        losses = W.loss_fn(model(x), y)
        is_tail = torch.isin(y, tail)
        if step == "sam":
            at_w, ascent = [torch.zeros_like(p) for p in params], losses.mean()
        else:
            at_w = torch.autograd.grad(partial(losses, ~is_tail), params, retain_graph=True)
            ascent = partial(losses, is_tail, 2.0)
        g = torch.autograd.grad(ascent, params)
        norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
        eps = [W.RHO * gi / (norm + 1e-12) for gi in g]
        with torch.no_grad():
            torch._foreach_add_(params, eps)
        second = W.loss_fn(model(x), y)
        second = second.mean() if step == "sam" else partial(second, is_tail, 2.0)
        h = torch.autograd.grad(second, params)
        with torch.no_grad():
            torch._foreach_sub_(params, eps)
        return [a + b for a, b in zip(at_w, h)]

    return train_by_hand(gradient)


def per_replica_ccsam_reference() -> torch.nn.Module:
    """CC-SAM with each replica's per-class gradients from its own slice: the mean over the replicas of the
    gradients of (1 - f) clean + f flat, each slice's eps_c computed from that slice alone."""
    options = W.options("ccsam", "replica")
    f = options.flat_ratio

    def gradient(model, params, x, y):
        shift_of = CCSAMStep(build_sgd(model, lr=0.0), model=model, options=options).logit_shift
        feats = model.features(x)
        logits = model.classifier(feats)
        clean = W.loss_fn(logits, y)
        grads, = torch.autograd.grad(clean.sum(), logits, retain_graph=True)
        flat = W.loss_fn(logits + shift_of(feats, grads, y), y)
        return torch.autograd.grad((1 - f) * clean.mean() + f * flat.mean(), params)

    return train_by_hand(gradient)


def test_a_ddp_sgd_epoch_equals_the_single_process_epoch(ddp_params):
    assert_same(ddp_params["sgd:replica"], W.train("sgd"))


@pytest.mark.parametrize("step", ["sam", "imbsam", "ccsam"])
def test_a_global_perturbation_equals_single_process_sam(ddp_params, step):
    assert_same(ddp_params[f"{step}:global"], W.train(step))


@pytest.mark.parametrize("step", ["sam", "imbsam", "ccsam"])
def test_the_default_perturbation_is_per_replica(ddp_params, step):
    reference = per_replica_ccsam_reference() if step == "ccsam" else per_replica_reference(step)
    assert_same(ddp_params[f"{step}:replica"], reference, atol=1e-5)
    # and it is not the global one: the test would catch a perturbation that is silently all-reduced
    diff = max((ddp_params[f"{step}:replica"][k] - ddp_params[f"{step}:global"][k]).abs().max().item()
               for k in ddp_params[f"{step}:replica"])
    assert diff > 1e-4


@pytest.mark.parametrize("step", ["sam", "ccsam"])
def test_a_compiled_model_under_ddp_keeps_the_per_replica_step(ddp_params, step):
    """compile=True compiles the model and then wraps it in DDP: SAM's ascent still stays per replica (no_sync) and
    CC-SAM reaches the features. Compiling the DDP wrapper instead hid it from both."""
    reference = per_replica_ccsam_reference() if step == "ccsam" else per_replica_reference(step)
    assert_same(ddp_params[f"{step}:replica:compile"], reference, atol=1e-5)


def test_sharding_keeps_every_sample_once_and_slices_mixed_targets():
    images = torch.arange(10.0).view(10, 1, 1, 1)
    labels = torch.arange(10)
    parts = [shard_batch(images, labels, DistInfo(r, 3)) for r in range(3)]
    assert torch.cat([p[1] for p in parts]).tolist() == list(range(10))       # a short batch: 3 / 3 / 4
    mixed = MixedTargets(labels, labels.flip(0), torch.linspace(0, 1, 10))
    x, t = shard_batch(images, mixed, DistInfo(1, 2))
    assert t.labels.tolist() == [5, 6, 7, 8, 9] and t.other.tolist() == [4, 3, 2, 1, 0] and len(t.weight) == 5
    _, t = shard_batch(images, MixedTargets(labels, labels, torch.tensor(0.3)), DistInfo(0, 2))
    assert t.weight.dim() == 0                                                  # one lam per batch stays one


def test_bad_input_is_named():
    with pytest.raises(ConfigError, match="not divisible by the world size 5"):
        check_batch(12, 5)
    with pytest.raises(ConfigError, match="not divisible"):
        ShardedLoader(W.toy_loader(), DistInfo(0, 5))
    stage1 = make_config("smoke")
    with pytest.raises(ConfigError, match="without torchrun"):
        check_supported(make_stage2(stage1, "crt"))
    check_supported(stage1.replace(step="imbsam"))
    check_supported(stage1.replace(step="ccsam"))


def test_torchrun_trains_a_run_and_rank_0_writes_it(fake_fmnist, exp_dir, tmp_path):
    args = ["-m", "ltlib.tools.cli", "--profile", "smoke", "--recipe", "ce", "--set", "step=sam", "test_per_class=null"]
    proc = torchrun(args, tmp_path, env={"LTLIB_EXP_DIR": str(exp_dir)})
    folders = list((exp_dir / "fashion_mnist_lt").iterdir())
    assert len(folders) == 1 and str(folders[0]) in proc.stdout
    assert json.loads((folders[0] / "environment.json").read_text())["world_size"] == 2
    assert not (folders[0] / "checkpoint.pt").exists()
    # the accuracy the ranks gathered equals a single-process evaluation of the saved model
    run = load_run(folders[0])
    data = load_data(run.config)
    result = evaluate(run.model, data.test, **eval_options(run.config, data))
    assert run.metrics["last"]["test"]["overall"] == pytest.approx(result.overall)


def test_cli_overrides_parse_as_json_or_text():
    from ltlib.tools.cli import parse_overrides

    assert parse_overrides(["epochs=5", "step=sam", "rho=0.1", "test_per_class=null"]) == \
        {"epochs": 5, "step": "sam", "rho": 0.1, "test_per_class": None}
    with pytest.raises(ConfigError, match="field=value"):
        parse_overrides(["epochs"])


def test_backend_follows_the_device_the_ranks_use(monkeypatch):
    """--device cpu under torchrun on a machine with CUDA must not pick NCCL (issue 25, point 4)."""
    from ltlib.runs.distributed import pick_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_backend("cpu") == "gloo" and pick_backend(torch.device("cpu")) == "gloo"
    assert pick_backend("auto") == "nccl" and pick_backend("cuda") == "nccl"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_backend("auto") == "gloo"


def test_collective_timeout_is_an_hour_by_default_and_configurable(monkeypatch):
    from datetime import timedelta

    from ltlib.core.errors import ConfigError
    from ltlib.runs.distributed import TIMEOUT_ENV, dist_timeout

    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert dist_timeout() == timedelta(minutes=60)
    monkeypatch.setenv(TIMEOUT_ENV, "90")
    assert dist_timeout() == timedelta(minutes=90)
    for bad in ("0", "-5", "soon", "nan", "inf"):
        monkeypatch.setenv(TIMEOUT_ENV, bad)
        with pytest.raises(ConfigError, match=TIMEOUT_ENV):
            dist_timeout()


def test_a_last_global_batch_smaller_than_the_world_is_left_out_so_no_rank_gets_nothing():
    """Issue 25, point 1: 9 images in batches of 4 on 2 ranks give 4, 4, 1; the 1-image batch would leave rank 1
    empty (a NaN loss), so both ranks stop after two steps. 10 images (a last batch of 2) keep all three."""
    from ltlib.core.replicas import steps_per_epoch
    from ltlib.data.loader import DeviceLoader
    from ltlib.data.sources import ImageSet

    assert [steps_per_epoch(n, 4, False, 2) for n in (8, 9, 10, 11)] == [2, 2, 3, 3]
    assert steps_per_epoch(9, 4, False, 1) == 3 and steps_per_epoch(11, 4, True, 2) == 2
    for n, steps in ((9, 2), (10, 3)):
        images = ImageSet(torch.zeros(n, 1, 4, 4, dtype=torch.uint8), torch.arange(n) % 2, ("a", "b"))
        seen = []
        for rank in (0, 1):
            loader = ShardedLoader(DeviceLoader(images, batch_size=4, mean=(0.5,), std=(0.5,)), DistInfo(rank, 2))
            batches = list(loader.epoch(0))
            assert len(batches) == len(loader) == steps and all(len(x) > 0 for x, _ in batches)
            seen += [y for _, ys in batches for y in ys.tolist()]
        assert len(seen) == (8 if n == 9 else 10)


def test_torchrun_trains_through_a_last_global_batch_of_one_image(fake_fmnist, exp_dir, tmp_path):
    """481 training images (n_max 195) in global batches of 32 on 2 ranks: the last batch holds 1 image, which would
    leave rank 1 with none (a NaN loss, which stopped the run before the fix). Left out, the run trains to the end."""
    args = ["-m", "ltlib.tools.cli", "--profile", "smoke", "--recipe", "ce", "--set", "n_max=195", "batch_size=32",
            "test_per_class=null"]
    proc = torchrun(args, tmp_path, env={"LTLIB_EXP_DIR": str(exp_dir)})
    folder, = (exp_dir / "fashion_mnist_lt").iterdir()
    assert str(folder) in proc.stdout
    run = load_run(folder)
    assert run.metrics["data"]["train_size"] == 481
    assert len(run.history) == 2 and run.history["loss"].notna().all()
