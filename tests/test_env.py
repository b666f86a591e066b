import pytest
import torch

from ltlib.core.env import configure_threads, derived_seed, environment, hardware_label, resolve_device
from ltlib.core.errors import ConfigError


def test_auto_device_is_cuda_only_when_present():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_bad_devices_say_what_to_use():
    with pytest.raises(ConfigError, match="'auto', 'cpu' or 'cuda"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no GPU is visible"):
            resolve_device("cuda")


def test_threads_follow_environment(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("LTLIB_NUM_THREADS", "1")
    try:
        assert configure_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_derived_seeds_are_distinct_and_stable():
    seeds = {derived_seed(s, e, k) for s in range(3) for e in range(50) for k in range(2)}
    assert len(seeds) == 300 and derived_seed(1, 2, 3) == derived_seed(1, 2, 3)


def test_environment_record():
    env = environment(torch.device("cpu"))
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["torch_threads"] >= 1
    assert "thread" in hardware_label(env)
