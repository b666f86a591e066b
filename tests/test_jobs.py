"""Runs trained side by side in worker processes equal runs trained one at a time in this process."""
import os

import pytest
import torch

import ltlib.analysis.sharpness as S
from ltlib.runs.config import make_config
from ltlib.core.env import run_threads, threads_for_run
from ltlib.core.errors import ConfigError
from ltlib.runs.jobs import JobError, Task, default_jobs, run_grid, run_tasks, train_missing
from ltlib.runs.stage2 import make_stage2


def _config(**kw):
    return make_config("smoke", test_per_class=None, **kw)


def _same_weights(a, b) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_workers_give_the_numbers_of_one_process(fake_fmnist, tmp_path):
    stage1 = _config(name="j-ce")
    configs = {"CE": stage1, "SAM": _config(name="j-sam", step="sam"), "cRT": make_stage2(stage1, "crt", epochs=1)}
    seeds = {"CE": [0, 1], "SAM": [0], "cRT": [0]}
    alone = run_grid(configs, seeds, jobs=1, exp_dir=tmp_path / "alone", progress=False)
    # two workers: the stage-1 runs first (cRT's parent among them), then cRT in this process
    assert train_missing([c.with_seed(s) for label, c in configs.items() for s in seeds[label]], jobs=2,
                         exp_dir=tmp_path / "side", progress=False) == 4
    side = run_grid(configs, seeds, jobs=2, exp_dir=tmp_path / "side", progress=False)
    assert [len(v) for v in side.values()] == [2, 1, 1]
    for label in configs:
        for a, b in zip(alone[label], side[label]):
            assert a.path.name == b.path.name
            assert _same_weights(a, b), label
            assert a.metrics["last"]["test"]["overall"] == b.metrics["last"]["test"]["overall"]
            assert b.environment["torch_threads"] == 1


def test_a_failing_worker_names_its_run_and_stops(tmp_path):
    with pytest.raises(JobError, match="(?s)(bad-job|other) failed in its worker.*ltlib.<module>:<function>"):
        run_tasks([Task("bad-job", "nonsense", []), Task("other", "nonsense", [])], 2, progress=False)


def test_thread_and_job_settings(monkeypatch):
    cpu = torch.device("cpu")
    assert run_threads(cpu) == 1 and run_threads(torch.device("meta")) is None
    before = torch.get_num_threads()
    with threads_for_run(cpu) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    monkeypatch.setenv("LTLIB_JOBS", "3")
    assert default_jobs("cpu") == 3
    monkeypatch.setenv("LTLIB_JOBS", "many")
    with pytest.raises(ConfigError, match="LTLIB_JOBS"):
        default_jobs("cpu")
    monkeypatch.setenv("LTLIB_RUN_THREADS", "0")
    with pytest.raises(ConfigError, match="LTLIB_RUN_THREADS"):
        run_threads(cpu)


def test_seeds_must_name_known_labels(tmp_path):
    with pytest.raises(ConfigError, match="not in configs"):
        run_grid({"CE": _config()}, {"SAM": [0]}, exp_dir=tmp_path)


def test_analyses_in_workers_equal_analyses_here(fake_fmnist, tmp_path):
    runs = run_grid({"a": _config(name="j-a"), "b": _config(name="j-b", step="sam")}, [0], jobs=1,
                    exp_dir=tmp_path, progress=False)
    runs = {label: rs[0] for label, rs in runs.items()}
    settings = S.analysis_settings("smoke")
    here = {label: S.analyse_run(r, settings, cache=False) for label, r in runs.items()}
    side = S.analyse_runs(runs, settings, ascent_eta={"b": 20}, jobs=2)
    assert all(len(list(r.path.glob("sharpness-*.json"))) == 1 for r in runs.values())   # the workers' files
    for label in runs:
        assert here[label].spread.equals(side[label].spread), label
    assert "SAM ascent" in set(side["b"].landscape["direction"]) and set(side["a"].landscape["direction"]) == {"random"}


def test_on_a_gpu_workers_are_opt_in_and_share_the_cores(fake_fmnist, exp_dir, monkeypatch):
    """On a GPU the runs train one after the other in this process unless jobs (LTLIB_JOBS) asks for more; then
    long-lived workers train on the GPU, each with its share of the CPU cores. The GPU is faked: the tasks are
    caught."""
    from ltlib.runs import jobs as J
    from ltlib.runs.config import make_config
    configs = [make_config("smoke", name=f"gpu-{i}", test_per_class=None) for i in range(3)]
    caught = []
    monkeypatch.setattr(J, "resolve_device", lambda device: torch.device("cuda"))
    monkeypatch.setattr(J, "default_jobs", lambda device: 1)
    monkeypatch.setattr(J, "available_cpus", lambda: 8)
    monkeypatch.setattr(J, "run_tasks", lambda tasks, n, **kw: caught.append((tasks, n, kw["threads"],
                                                                               kw["long_lived"])))
    assert J.train_missing(configs, device="cuda") == 0 and not caught       # the default: no workers
    assert J.train_missing(configs, jobs=4, device="cuda") == 3
    tasks, n, threads, long_lived = caught[0]
    assert n == 4 and threads == 2 and long_lived and {t.args[-1] for t in tasks} == {"cuda"}


def test_long_lived_workers_take_task_after_task(tmp_path):
    """Five tasks, two long-lived workers: every task runs, in one of two processes."""
    tasks = [Task(f"ping-{i}", "ltlib.runs.workers:ping", [str(tmp_path / f"{i}.pid")]) for i in range(5)]
    run_tasks(tasks, 2, progress=False, long_lived=True)
    pids = {(tmp_path / f"{i}.pid").read_text() for i in range(5)}
    assert len(pids) == 2 and str(os.getpid()) not in pids


def test_runs_trained_one_after_another_in_a_long_lived_worker_equal_runs_trained_here(fake_fmnist, tmp_path):
    """Nothing of one run (seeds, caches, threads) leaks into the next one its worker trains."""
    from ltlib.runs.experiment import run
    from ltlib.runs.jobs import train_task

    configs = [_config(name="ll-ce"), _config(name="ll-ce", seed=1)]
    run_tasks([train_task(c, tmp_path / "pool") for c in configs], 1, progress=False, long_lived=True)
    assert len(list((tmp_path / "pool").rglob("metrics.json"))) == 2     # the worker trained both, one after another
    for config in configs:
        here = run(config, exp_dir=tmp_path / "here", progress=False)
        there = run(config, exp_dir=tmp_path / "pool", progress=False)       # loads what the worker trained
        assert _same_weights(here, there), config.name


def test_a_failing_long_lived_worker_names_its_task_and_stops(tmp_path):
    tasks = [Task("bad-job", "nonsense", [], cost=2), Task("ok", "ltlib.runs.workers:ping", [str(tmp_path / "p")])]
    with pytest.raises(JobError, match="(?s)bad-job failed in its worker.*ltlib.<module>:<function>"):
        run_tasks(tasks, 2, progress=False, long_lived=True)
