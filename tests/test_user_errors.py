"""What a user meets when something is wrong: one line from the CLI, files the group can read, advice that fits."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ltlib.core import io
from ltlib.core.errors import TrainingDivergedError
from ltlib.runs.config import make_config
from ltlib.runs.experiment import divergence_advice, run
from ltlib.runs.stage2 import make_stage2
from ltlib.tools import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv, says", [
    (["--set", "lr=-1"], "RunConfig.lr: must be a positive number, got -1"),
    (["--set", "epochs=abc"], "RunConfig.epochs: must be int, got 'abc'"),
    (["--recipe", "nosuch"], "unknown recipe 'nosuch'"),
    (["--set", "lr"], "--set expects field=value, got 'lr'"),
])
def test_cli_turns_ltlib_errors_into_one_message_and_exit_status_2(argv, says, capsys):
    assert cli.main(["--profile", "smoke", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ltlib: error: ") and says in err and "Traceback" not in err


def test_cli_exit_status_and_stderr_from_a_shell(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ltlib.tools.cli", "--profile", "smoke", "--set", "lr=-1"],
                          capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["ltlib: error: RunConfig.lr: must be a positive number, got -1"]


def test_cli_keeps_the_traceback_of_an_unexpected_error(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not a user error")
    monkeypatch.setattr(cli, "make_config", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["--profile", "smoke"])


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        io.write_json(tmp_path / "a.json", {"x": 1})
        io.save_checkpoint({"w": [1]}, tmp_path / "c.pt")
    finally:
        os.umask(old)
    for name in ("a.json", "c.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode


def test_divergence_advice_fits_the_runs_own_settings():
    fp32 = make_config("quick", "ce")                      # fp32, a warm-up, plain SGD
    text = divergence_advice(fp32)
    assert "lower lr (this run: 0.1)" in text and "precision" not in text and "warm-up" not in text
    bf16 = make_config("quick", "ce", precision="bf16", warmup_epochs=0)
    text = divergence_advice(bf16)
    assert "precision='fp32' (this run: 'bf16')" in text and "warm-up" in text
    imbsam = divergence_advice(make_config("quick", "imbsam", step="imbsam"))     # lr 0.01: no warm-up advice
    assert "lower rho (this run: 0.05)" in imbsam and "warm-up" not in imbsam
    nomix = make_config("quick", "ccsam", mixing="none")
    assert "mixing='mixup'" in divergence_advice(nomix) and "ccsam_radius" in divergence_advice(nomix)
    assert "mixing='mixup'" not in divergence_advice(make_config("quick", "ccsam"))
    assert divergence_advice(make_stage2(fp32, "crt")).startswith("Try: lower lr (this run: ")


def test_a_diverged_run_names_itself_and_the_advice(fake_fmnist, exp_dir):
    config = make_config("smoke", test_per_class=None, lr=1e30, name="diverges")
    with pytest.raises(TrainingDivergedError, match=r"diverges-\w+: the training loss became .* Try: lower lr "
                                                    r"\(this run: 1e\+30\)") as caught:
        run(config, progress=False)
    assert "precision" not in str(caught.value)


def test_a_training_set_too_large_for_the_device_is_refused_with_what_to_change(monkeypatch):
    """iNaturalist-2018 at 256 px is 86 GB of uint8 images per rank, more than an 80 GB GPU holds: refused before the
    copy, naming the largest image_size that fits and the streaming path. The device's free memory is faked."""
    import torch
    from ltlib.core import env
    from ltlib.core.errors import DeviceMemoryError
    from ltlib.runs.setup import DEVICE_RESERVE_BYTES, check_device_memory
    assert env.free_device_memory("cpu") is None and env.free_device_memory(torch.device("cpu")) is None
    images = torch.empty((437_513, 3, 256, 256), dtype=torch.uint8, device="meta")    # sizes only, no memory
    needed = images.numel()
    monkeypatch.setattr(env, "free_device_memory", lambda device: 80 * 10 ** 9)
    with pytest.raises(DeviceMemoryError) as caught:
        check_device_memory(make_config("paper", "ce", "inat2018"), images, torch.device("cuda"))
    said = str(caught.value)
    assert "86.0 GB" in said and "80.0 GB free" in said and 'data_path="stream"' in said
    fits = int(said.split("image_size=")[1].split(" ")[0])
    assert fits % 16 == 0 and needed * (fits / 256) ** 2 + DEVICE_RESERVE_BYTES <= 80 * 10 ** 9
    assert needed * ((fits + 16) / 256) ** 2 + DEVICE_RESERVE_BYTES > 80 * 10 ** 9     # the largest that fits
    # ImageNet-LT's 22.8 GB fit; a CPU run is never checked (its images are already in host memory)
    check_device_memory(make_config("paper", "ce", "imagenet_lt"), images[:115_846], torch.device("cuda"))
    monkeypatch.setattr(env, "free_device_memory", lambda device: 0 if device.type == "cuda" else None)
    check_device_memory(make_config("paper", "ce", "inat2018"), images, torch.device("cpu"))
    with pytest.raises(DeviceMemoryError, match="device='cpu'"):
        check_device_memory(make_config("paper", "ce", "cifar100_lt"), images[:10_847, :, :32, :32],
                            torch.device("cuda"))


def test_a_run_checks_the_device_memory_before_it_builds_its_loader(fake_fmnist, exp_dir, monkeypatch):
    """The check sits on the run's path: with (faked) no free memory, the run stops with the message and writes
    nothing."""
    from ltlib.core import env
    from ltlib.core.errors import DeviceMemoryError
    monkeypatch.setattr(env, "free_device_memory", lambda device: 0)
    config = make_config("smoke", test_per_class=None, name="too-big")
    with pytest.raises(DeviceMemoryError, match="do not fit"):
        run(config, device="cpu", progress=False)
    assert not any(p.is_file() for p in exp_dir.rglob("*") if p.name != ".claim.lock")
