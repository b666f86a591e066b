import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch

from ltlib.core import io
from ltlib.runs.config import make_config
from ltlib.core.errors import CheckpointError, DataError
from ltlib.runs.experiment import cached_seeds, load_run, run, run_dir, run_seeds


def _config(**kw):
    # tiny: 492 images at width 0.25; the synthetic test split has 20 images per class
    return make_config("smoke", test_per_class=None, **kw)


def test_run_writes_the_folder_and_reloads(fake_fmnist, exp_dir):
    cfg = _config()
    r = run(cfg, progress=False)
    assert r.path == exp_dir / "fashion_mnist_lt" / cfg.run_name
    assert {"config.json", "environment.json", "history.csv", "metrics.json", "model.pt"} <= set(os.listdir(r.path))
    assert not list(r.path.glob("*.tmp")) and not (r.path / "checkpoint.pt").exists()
    m = r.metrics
    assert m["class_counts"] == [200, 119, 71, 43, 25, 15, 9, 5, 3, 2]
    assert m["groups"] == {"many": [0, 1], "medium": [2, 3, 4], "few": [5, 6, 7, 8, 9]}
    assert m["selections"] == ["last", "best_val"] and len(r.history) == 2
    assert json.loads((r.path / "config.json").read_text())["seed"] == 0
    assert r.environment["torch"] == torch.__version__

    mtime = (r.path / "metrics.json").stat().st_mtime_ns
    again = run(cfg, progress=False)                          # cached: loaded, not trained
    assert (r.path / "metrics.json").stat().st_mtime_ns == mtime
    assert again.metrics == m
    for p, q in zip(r.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(p, q)


def test_select_on_test_is_named_and_optional(fake_fmnist, exp_dir):
    r = run(_config(select_on_test=True), progress=False)
    assert r.metrics["selections"] == ["last", "best_val", "best_test"]
    assert r.result("best_test")["overall"] >= r.result("last")["overall"]


def test_seeds_are_separate_runs(fake_fmnist, exp_dir):
    assert cached_seeds(_config(), [0, 1, 2]) == []
    runs = run_seeds(_config(), [0, 1], progress=False)
    assert runs[0].path != runs[1].path and runs[1].config.seed == 1
    assert cached_seeds(_config(), [2, 1, 0]) == [1, 0]   # finished runs only, in the order asked


def test_corrupt_model_is_reported_and_retrained(fake_fmnist, exp_dir):
    cfg = _config()
    other = run(cfg.replace(seed=5), progress=False)
    first = run(cfg, progress=False)
    model_file = first.path / "model.pt"
    model_file.write_bytes(model_file.read_bytes()[:200])     # truncated
    with pytest.raises(CheckpointError, match="truncated, corrupt or was not written by ltlib"):
        load_run(first.path)
    with pytest.warns(UserWarning, match="truncated, corrupt or was not written by ltlib.*\n.*retrains") as caught:
        again = run(cfg, progress=False)
    assert not any("weights_only" in str(w.message) for w in caught)     # torch's advice is not relayed
    assert again.metrics["last"] == first.metrics["last"]     # the same seed gives the same run
    assert load_run(other.path).metrics == other.metrics      # nothing else was touched


class Payload:
    """Any class: a weights-only load must refuse to build it."""


def test_checkpoints_load_weights_only(tmp_path):
    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt cannot be read as an ltlib checkpoint") as caught:
        io.load_checkpoint(tmp_path / "evil.pt")
    assert "weights_only" not in str(caught.value)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        io.load_checkpoint(tmp_path / "missing.pt")


def test_corrupt_resume_checkpoint_restarts_cleanly(fake_fmnist, exp_dir):
    cfg = _config()
    clean = run(cfg.replace(name="clean"), progress=False)
    path = run_dir(cfg)
    path.mkdir(parents=True)
    (path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="cannot resume"):
        r = run(cfg, progress=False)
    assert r.metrics["last"] == clean.metrics["last"] and r.metrics["resumed_from_epoch"] == 0


def test_missing_data_leaves_nothing_behind(tmp_path, exp_dir, monkeypatch):
    from ltlib.data import datasets

    monkeypatch.setenv("LTLIB_FASHION_MNIST_DIR", str(tmp_path / "absent"))
    datasets._raw.cache_clear()
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        run(_config(), progress=False)
    assert not exp_dir.exists() or not any(exp_dir.rglob("*"))
    datasets._raw.cache_clear()


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "metrics.json"
    io.write_json(target, {"a": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        io.write_json(target, {"a": Boom()})
    assert json.loads(target.read_text()) == {"a": 1} and os.listdir(tmp_path) == ["metrics.json"]


RESUME_SCRIPT = """
from ltlib.runs.config import make_config
from ltlib.runs.experiment import run
run(make_config("smoke", test_per_class=None, epochs={epochs}, eval_every=2), progress=False)
"""


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(fake_fmnist, exp_dir, tmp_path):
    epochs = 10
    cfg = _config(epochs=epochs, eval_every=2)
    env = dict(os.environ, LTLIB_EXP_DIR=str(exp_dir), LTLIB_FASHION_MNIST_DIR=str(fake_fmnist))
    proc = subprocess.Popen([sys.executable, "-c", RESUME_SCRIPT.format(epochs=epochs)], env=env)
    ckpt = run_dir(cfg) / "checkpoint.pt"
    killed_at = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            try:
                killed_at = io.load_checkpoint(ckpt)["epoch"]
            except CheckpointError:
                continue
            if killed_at >= 3:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.01)
    proc.wait()
    assert killed_at is not None and 3 <= killed_at < epochs, "the run was not interrupted mid-way"
    assert not (run_dir(cfg) / "metrics.json").exists()

    with pytest.warns(UserWarning) as caught:                  # the killed process's claim is taken over ...
        resumed = run(cfg, progress=False)
    assert [str(w.message) for w in caught if "taking over the run claimed by pid" not in str(w.message)] == []
    assert len(caught) == 1                                    # ... and resuming does not fall back to a restart
    assert resumed.metrics["resumed_from_epoch"] >= 3
    whole = run(cfg, exp_dir=tmp_path / "uninterrupted", progress=False)
    assert resumed.metrics["resumed_from_epoch"] != whole.metrics["resumed_from_epoch"]
    for key in ("last", "best_val", "classifier_norms"):
        assert resumed.metrics[key] == whole.metrics[key], key
    assert resumed.history["loss"].tolist() == whole.history["loss"].tolist()
    for p, q in zip(resumed.model.state_dict().values(), whole.model.state_dict().values()):
        assert torch.equal(p, q)


def test_final_numbers_equal_a_fresh_evaluation(fake_fmnist, exp_dir):
    """The final metrics reuse the last epoch's evaluation; it must be what evaluating the saved model gives."""
    from ltlib.runs.evaluate import evaluate
    from ltlib.runs.experiment import load_data

    r = run(_config(epochs=3, eval_every=2), progress=False)
    data = load_data(r.config)
    groups = data.groups(r.config.group_scheme)
    kw = dict(mean=data.mean, std=data.std, precision=r.config.precision, channels_last=r.config.channels_last)
    assert r.metrics["last"]["test"] == evaluate(r.model, data.test, **kw).summary(groups)
    assert r.metrics["last"]["val"] == evaluate(r.model, data.val, **kw).summary(groups)
    best = load_run(r.path).model
    best.load_state_dict(torch.load(r.path / "model.pt", weights_only=True)["best_val_model"])
    assert r.metrics["best_val"]["test"] == evaluate(best, data.test, **kw).summary(groups)


def test_the_device_kind_is_part_of_a_runs_folder(fake_fmnist, exp_dir, monkeypatch):
    """A CPU run keeps its folder name; a CUDA run of the same config gets its own folder (``-cuda``), so a GPU never
    loads nor resumes a CPU run's folder (their numbers differ). Without a GPU, the CUDA side is faked: the device
    resolves to "cuda" and training is intercepted where it would start."""
    from ltlib.runs import experiment
    config = make_config("smoke", test_per_class=None, name="kind")
    cpu_run = experiment.run(config, progress=False, device="cpu")
    assert cpu_run.path == exp_dir / config.data_config.dataset / config.run_name
    cuda_dir = experiment.run_dir(config, exp_dir, torch.device("cuda"))
    assert cuda_dir.name == f"{config.run_name}-cuda"
    started = []
    with monkeypatch.context() as patch:
        patch.setattr(experiment, "resolve_device", lambda device: torch.device("cuda"))
        patch.setattr(experiment, "_train", lambda config, path, dev, *args: started.append((path, dev)))
        experiment.run(config, progress=False, device="cuda")
        assert experiment.cached_seeds(config, [0, 1], device="cuda") == []
    assert started == [(cuda_dir, torch.device("cuda"))]     # trained afresh, not loaded from the CPU folder
    assert experiment.cached_seeds(config, [0, 1], device="cpu") == [0]
