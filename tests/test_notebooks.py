"""Every notebook runs under papermill in the smoke profile, with its own exp/, and what it renders is checked
against its runs' own metrics.json; its exported script runs with python."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ltlib.report import findings as F
from ltlib.tools.tutorial import is_summary, tutorial_parameters

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
# one pytest-xdist group per notebook: its exported script runs after it, in the same worker, and reuses its runs
GROUPED = [pytest.param(nb, marks=pytest.mark.xdist_group(nb.stem)) for nb in NOTEBOOKS]
FMNIST = os.environ.get("LTLIB_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")

pytestmark = pytest.mark.slow

# A rendered finding per notebook: (results table, a, b, metric), as the notebook's "What this run shows" words it.
FINDINGS = {
    "01": ("runs", "WD 0", "WD 0.005", "overall"),
    "02": ("repairs", "stage 1, WD 0.005", "WB stage 2, MaxNorm per iteration", "few"),
    "03": ("runs", "SGD", "ImbSAM ρ=0.05", "few"),
    "04": ("runs", "CE + mixup", "CC-SAM stage 1 (r=0.03)", "overall"),
    "05": ("runs", "CE", "CE + CMO", "overall"),
    "08": ("runs", "CE", "LA loss (τ = 1)", "overall"),
}


@pytest.fixture(autouse=True)
def _real_fashion_mnist():
    if not Path(FMNIST, "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST is not in {FMNIST}: run `make data` (apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def exp_dirs(tmp_path_factory):
    """One exp/ per notebook (its script reuses it): a notebook's checks see only the runs it trained itself."""
    return {nb.stem: tmp_path_factory.mktemp(nb.stem[:2]) / "exp" for nb in NOTEBOOKS}


def _outputs(notebook: Path) -> tuple[str, str]:
    """The executed notebook's markdown outputs and its text outputs (streams and text/plain), each joined."""
    markdown, text = [], []
    for cell in json.loads(notebook.read_text())["cells"]:
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                text.append("".join(out["text"]))
            elif "data" in out:
                markdown.append("".join(out["data"].get("text/markdown", "")))
                text.append("".join(out["data"].get("text/plain", "")))
    return "\n".join(markdown), "\n".join(text)


def _metrics(exp: Path, run: str) -> dict:
    return json.loads((exp / "fashion_mnist_lt" / run / "metrics.json").read_text())


def check_rendered_results(stem: str, exp: Path, out: Path) -> None:
    """The notebook's results file holds its runs' own metrics.json numbers, and its rendered text shows them."""
    nb = stem[:2]
    table = pd.read_csv(exp / "tables" / f"results-{nb}-fashion_mnist_lt-smoke.csv", dtype={"run": str})
    from_runs = table[table["run"].notna() & table["metric"].isin(["overall", "many", "medium", "few"])]
    assert len(from_runs), f"notebook {nb} saved no result of a run"
    for row in from_runs.itertuples():
        assert row.value == pytest.approx(_metrics(exp, row.run)["last"]["test"][row.metric], nan_ok=True), row
    markdown, text = _outputs(out)
    if nb in FINDINGS:               # the finding's sentence, recomputed from the two runs' metrics.json
        part, a, b, metric = FINDINGS[nb]
        value = {label: {int(r.seed): _metrics(exp, r.run)["last"]["test"][metric]
                         for r in from_runs[(from_runs["table"] == part) & (from_runs["label"] == label)
                                            & (from_runs["metric"] == metric)].itertuples()} for label in (a, b)}
        sentence = F.from_values(a, value[a], b, value[b], metric).sentence()
        assert sentence in markdown, f"notebook {nb} does not render: {sentence}"
    elif nb == "06":                 # the accuracy table of section 1
        row = from_runs[from_runs["metric"] == "overall"].iloc[0]
        assert f"{_metrics(exp, row.run)['last']['test']['overall']:.1f}" in text
    elif nb == "07":                 # the most accurate headline model, and its mean over its seeds
        rows = from_runs[(from_runs["table"] == "headline") & (from_runs["metric"] == "overall")]
        means = {label: sum(_metrics(exp, r)["last"]["test"]["overall"] for r in part["run"]) / len(part)
                 for label, part in rows.groupby("label")}
        top = [label for label, mean in means.items() if mean == pytest.approx(max(means.values()))]
        assert any(f"**Most accurate overall:** {label} ({means[label]:.1f}" in markdown for label in top), top


@pytest.mark.parametrize("notebook", GROUPED, ids=lambda p: p.name)
def test_notebook_runs_with_papermill_and_renders_its_own_runs(notebook, tmp_path, monkeypatch, exp_dirs):
    """Planted slips this catches: a finding rendered from another run's numbers (or typed), a results file that
    does not hold the runs' metrics, a notebook that trains nothing (its exp/ is its own, so no earlier test's
    runs can stand in)."""
    import papermill

    exp = exp_dirs[notebook.stem]
    monkeypatch.setenv("LTLIB_EXP_DIR", str(exp))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("LTLIB_PROFILE", raising=False)
    out = tmp_path / notebook.name
    # make tutorial's short path (one seed, extras off; 07's headline rows on two seeds); the script below runs
    # each notebook's own defaults (three seeds, extras on)
    params = tutorial_parameters(notebook, set(papermill.inspect_notebook(str(notebook))), "smoke",
                                 "fashion_mnist_lt", seeds=2, last=is_summary(notebook))
    papermill.execute_notebook(str(notebook), str(out), parameters=params, kernel_name="python3",
                               cwd=str(notebook.parent), progress_bar=False)
    text = out.read_text()
    assert "injected-parameters" in text and "Traceback" not in text
    check_rendered_results(notebook.stem, exp, out)


@pytest.mark.parametrize("notebook", GROUPED, ids=lambda p: p.name)
def test_exported_script_runs_with_python(notebook, tmp_path, exp_dirs):
    script = ROOT / "scripts" / f"{notebook.stem}.py"
    exp = exp_dirs[notebook.stem]
    env = dict(os.environ, LTLIB_PROFILE="smoke", LTLIB_EXP_DIR=str(exp), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (exp / "tables" / f"results-{notebook.stem[:2]}-fashion_mnist_lt-smoke.csv").is_file()
