from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ltlib.runs.config import make_config
from ltlib.runs.experiment import Run
from ltlib.report.results import caption, per_class, summarize


def _run(seed, overall, few, norms=(2.0, 1.0)):
    cfg = make_config("quick", seed=seed)
    result = {"overall": overall, "many": 80.0, "medium": 60.0, "few": few, "per_class": [overall, few]}
    metrics = {"selections": ["last"], "last": {"test": result}, "classifier_norms": list(norms),
               "class_counts": [100, 10], "class_names": ["a", "b"], "group_scheme": "strict",
               "data": {"train_size": 110, "n_max": 100}}
    env = {"cpu": "Test CPU", "torch_threads": 2}
    return Run(cfg, Path(f"/x/{seed}"), metrics, pd.DataFrame(), env, model=None)


def test_summarize_mean_and_sample_std():
    table = summarize({"A": [_run(0, 70, 40), _run(1, 72, 50), _run(2, 74, 60)]})
    assert table.loc["A", "overall"] == pytest.approx(72.0)
    assert table.loc["A", "few_std"] == pytest.approx(10.0)
    assert table.loc["A", "few (%)"] == "50.0 ± 10.0" and table.loc["A", "seeds"] == "0,1,2"


def test_findings_pair_run_objects_by_seed():
    """The notebooks' comparisons (ltlib.report.findings) on Run objects: b - a per shared seed."""
    from ltlib.report.findings import compare
    a = [_run(0, 70, 40), _run(1, 72, 50), _run(2, 74, 60)]
    b = [_run(0, 71, 30), _run(1, 71, 45), _run(2, 75, 55)]
    few = compare("a", a, "b", b, "few")
    assert list(few.differences) == [-10, -5, -5] and few.consistency == "lower in every seed"
    assert compare("a", a, "b", b, "many").consistency == "equal in every seed"
    assert compare("a", a[:1], "b", b[:1]).verdict == "one seed: no verdict"


def test_per_class_and_caption():
    runs = [_run(0, 70, 40), _run(1, 72, 50)]
    assert np.array_equal(per_class(runs), [[70, 40], [72, 50]])
    assert per_class(runs, "classifier_norms").shape == (2, 2)
    text = caption(runs)
    assert "IF=100" in text and "seeds 0,1" in text and "Test CPU, 2 threads" in text and "30 epochs" in text
    models = {"A": runs, "B": [_run(0, 60, 30)], "C": [_run(0, 61, 31)]}
    assert "seeds 0,1 for 1 model, 0 for 2 models," in caption(models)
    assert caption({"A": runs}) == text
