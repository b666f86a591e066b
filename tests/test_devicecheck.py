"""``python -m ltlib.devicecheck --tiny`` on the CPU: the device check's own code, at toy sizes, so it cannot rot
before a GPU is lent. Every step strategy, loss and mixing rule is compared (here the CPU against itself), every
paper recipe is timed eager and compiled, and the report is written."""
from __future__ import annotations

import json

from ltlib import devicecheck
from ltlib.data.mixing import MIXINGS
from ltlib.methods.losses import LOSSES
from ltlib.methods.step import STEPS
from ltlib.runs.config import RECIPES


def test_the_tiny_device_check_passes_and_writes_its_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LTLIB_COMPILE_BACKEND", "eager")
    out = tmp_path / "report.json"
    assert devicecheck.main(["--tiny", "--device", "cpu", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    cases = [row["case"] for row in report["agreement"]]
    assert all(row["ok"] for row in report["agreement"]), report["agreement"]
    assert {f"step={s}" for s in STEPS} <= {c.split(" ")[0] for c in cases}
    assert {f"loss={loss}" for loss in LOSSES} <= {c.split(" ")[0] for c in cases}
    assert {f"mixing={m}" for m in MIXINGS if m != "none"} <= {c.split(" ")[0] for c in cases}
    assert "loss=ce reweight=drw" in cases
    assert {c for c in cases if c.startswith("graph ")} == {"graph step=sgd", "graph step=sam",
                                                              "graph step=ccsam mixing=mixup",
                                                              "graph mixing=cmo reweight=drw"}
    timed = {(row["recipe"], row["compiled"], row["graph"]) for row in report["recipes"]}
    assert timed == {(r, c, g) for r in RECIPES for c, g in ((False, False), (True, False), (False, True))}
    assert not any(row["captured"] for row in report["recipes"])          # graphs are CUDA's
    assert all(row["ms_per_step"] > 0 and row["full_run_min"] > 0 for row in report["recipes"])
    assert report["notebooks"] == {"skipped": "--tiny"} and report["torchrun"] == {"skipped": "--tiny"}
    said = capsys.readouterr().out
    assert f"{len(cases) - 4} of {len(cases) - 4} cases agree; graph_step against the eager step on cpu: 4 of 4" \
        in said and "imbsam" in said


def test_the_cpu_times_a_few_steps_and_a_gpu_a_steady_rate():
    """On the CPU, 300 steps of every recipe and variant would take hours: a laptop's check times a few steps."""
    cpu, gpu = devicecheck.torch.device("cpu"), devicecheck.torch.device("cuda")
    assert devicecheck.timing_steps(gpu, tiny=False) == (300, 20)
    assert devicecheck.timing_steps(cpu, tiny=False) == (10, 2)
    assert devicecheck.timing_steps(cpu, tiny=True) == (2, 1)
    assert devicecheck.timing_steps(cpu, tiny=False, steps=50) == (50, 2)


def test_the_summary_names_a_case_that_differs():
    report = {"device": "cuda", "agreement": [{"case": "step=sam", "ok": True},
                                              {"case": "loss=bs", "ok": False, "error": "RuntimeError: boom"}],
              "recipes": [], "notebooks": {"skipped": "x"}, "torchrun": {"ok": True, "runs": {}}}
    text = devicecheck.summary(report)
    assert "1 of 2 cases agree" in text and "DIFFERS: loss=bs RuntimeError: boom" in text


def test_the_torchrun_part_gives_a_verdict(exp_dir, tmp_path):
    """Two gloo ranks on the CPU stand in for two GPUs: the same code launches both runs (one smoke epoch on the real
    Fashion-MNIST, as on a GPU machine) and judges the gap."""
    result = devicecheck.torchrun_epoch(devicecheck.torch.device("cpu"), tmp_path, processes=2)
    assert set(result["runs"]) == {"1 process", "2 processes"}, result
    assert result["ok"] == (result["gap_points"] <= devicecheck.TORCHRUN_TOLERANCE)
    assert "torchrun: ok" in devicecheck.summary({**_EMPTY, "torchrun": {**result, "ok": True}})
    assert "torchrun: DIFFERS" in devicecheck.summary({**_EMPTY, "torchrun": {**result, "ok": False}})


_EMPTY = {"device": "cpu", "agreement": [], "recipes": [], "notebooks": {"skipped": "x"}}
