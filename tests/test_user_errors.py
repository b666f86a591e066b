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
