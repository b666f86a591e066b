"""One process trains a run folder at a time (ltlib.runs.claim): a second one waits and loads, a dead one's claim is
taken over. The two-process test runs real processes on the tiny synthetic data set."""
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ltlib.runs.claim import LOCK_NAME, OWNER_NAME, claimed
from ltlib.runs.config import make_config
from ltlib.runs.experiment import is_finished, run, run_dir

ROOT = Path(__file__).resolve().parents[1]

# process A: the real run(), with training held back until the test creates `go`, so that B surely arrives while A
# holds the claim; process B: a plain run() of the same config
SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import ltlib.runs.experiment as E
    from ltlib.runs.config import make_config
    go = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    if go is not None:
        real = E._train
        def held(*args, **kwargs):
            while not go.exists():
                time.sleep(0.05)
            return real(*args, **kwargs)
        E._train = held
    r = E.run(make_config("smoke", test_per_class=None, name=sys.argv[1]), progress=False)
    print("RESULT", r.metrics["last"]["test"]["overall"], r.path.name)
""")


def _wait_for(condition, what: str, timeout: float = 120.0) -> None:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_second_process_waits_for_the_first_and_loads_its_run(fake_fmnist, exp_dir, tmp_path):
    env = dict(os.environ, LTLIB_FASHION_MNIST_DIR=str(fake_fmnist), LTLIB_EXP_DIR=str(exp_dir), PYTHONPATH=str(ROOT))
    path = run_dir(make_config("smoke", test_per_class=None, name="claimed"), exp_dir)
    go = tmp_path / "go"
    logs = {name: (open(tmp_path / f"{name}.out", "w+"), open(tmp_path / f"{name}.err", "w+")) for name in "ab"}
    a = subprocess.Popen([sys.executable, "-c", SCRIPT, "claimed", str(go)], env=env, stdout=logs["a"][0],
                         stderr=logs["a"][1])
    try:
        _wait_for(lambda: (path / OWNER_NAME).is_file(), "process A's claim")
        b = subprocess.Popen([sys.executable, "-c", SCRIPT, "claimed"], env=env, stdout=logs["b"][0],
                             stderr=logs["b"][1])
        _wait_for(lambda: "waiting for it to finish" in (tmp_path / "b.err").read_text(), "process B to wait")
        go.touch()
        assert a.wait(timeout=300) == 0 and b.wait(timeout=300) == 0
    finally:
        for p in [a] + ([b] if "b" in locals() else []):
            p.kill()
    out = {name: (tmp_path / f"{name}.out").read_text() for name in "ab"}
    err = {name: (tmp_path / f"{name}.err").read_text() for name in "ab"}
    assert f"being trained by pid {a.pid} on " in err["b"]
    assert f"loading {path.name}: pid {a.pid} on " in err["b"] and "trained it while this process waited" in err["b"]
    assert "waiting" not in err["a"]
    result = [line for line in out["a"].splitlines() if line.startswith("RESULT")]
    assert result and result == [line for line in out["b"].splitlines() if line.startswith("RESULT")]
    assert is_finished(path) and not (path / OWNER_NAME).exists()


def test_a_dead_process_claim_is_taken_over_with_a_warning(fake_fmnist, exp_dir):
    config = make_config("smoke", test_per_class=None, name="stale")
    path = run_dir(config, exp_dir)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    path.mkdir(parents=True)
    (path / OWNER_NAME).write_text(f'{{"pid": {dead_pid}, "host": "old-host", "started": "2026-12-06 00:00:00"}}')
    with pytest.warns(UserWarning, match=f"taking over the run claimed by pid {dead_pid} on old-host"):
        r = run(config, progress=False)
    assert is_finished(r.path) and not (path / OWNER_NAME).exists()


def test_inactive_claim_touches_nothing(tmp_path):
    with claimed(tmp_path / "run", active=False) as before:
        assert before is None
    assert not (tmp_path / "run").exists()


def test_claim_releases_on_error_and_leaves_nothing_when_nothing_was_written(tmp_path):
    with pytest.raises(RuntimeError):
        with claimed(tmp_path / "exp" / "run"):
            assert (tmp_path / "exp" / "run" / OWNER_NAME).is_file()
            raise RuntimeError("the data is missing")
    assert not (tmp_path / "exp").exists()          # the folders the claim made are gone again
    with pytest.raises(RuntimeError):
        with claimed(tmp_path / "run"):
            (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")
            raise RuntimeError("killed mid-way")
    assert not (tmp_path / "run" / OWNER_NAME).exists() and (tmp_path / "run" / LOCK_NAME).exists()
    with claimed(tmp_path / "run") as before:       # free again at once, and nobody to take over
        assert before is None
