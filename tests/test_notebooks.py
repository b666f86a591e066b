"""Every notebook runs under papermill in the smoke profile, and its exported script runs with python."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ltlib.tutorial import notebooks, tutorial_parameters

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
FMNIST = os.environ.get("LTLIB_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _real_fashion_mnist():
    if not Path(FMNIST, "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST is not in {FMNIST}: run `make data` (apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def series_exp(tmp_path_factory) -> Path:
    """One exp/ for every notebook test, as ``make tutorial`` shares one: a notebook loads what the earlier ones
    trained (06 and 07 take 01-05's models) and each script its notebook's cached seed-0 runs, so the series
    trains each smoke run once. A test run alone still trains all it needs."""
    return tmp_path_factory.mktemp("series") / "exp"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_with_papermill(notebook, tmp_path, monkeypatch, series_exp):
    import papermill

    monkeypatch.setenv("LTLIB_EXP_DIR", str(series_exp))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("LTLIB_PROFILE", raising=False)
    out = tmp_path / notebook.name
    # make tutorial's short path (one seed, extras off; 07's headline rows on two seeds); the script below runs
    # each notebook's own defaults (three seeds, extras on)
    series = notebooks()
    params = tutorial_parameters(notebook, set(papermill.inspect_notebook(str(notebook))), "smoke",
                                 "fashion_mnist_lt", seeds=2, last=notebook == series[-1])
    papermill.execute_notebook(str(notebook), str(out), parameters=params,
                               kernel_name="python3", cwd=str(notebook.parent), progress_bar=False)
    text = out.read_text()
    assert "injected-parameters" in text and "Traceback" not in text
    assert any(series_exp.rglob("metrics.json")), "the notebook found no run"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_exported_script_runs_with_python(notebook, tmp_path, series_exp):
    script = ROOT / "scripts" / f"{notebook.stem}.py"
    env = dict(os.environ, LTLIB_PROFILE="smoke", LTLIB_EXP_DIR=str(series_exp), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any(series_exp.rglob("metrics.json"))
