"""Run the notebook series headless, in order, and time it: ``make tutorial`` (``python -m ltlib.tools.tutorial``).

By default it is the short path: every notebook on seed 0 with ``extras=False`` (their sweeps skipped), except
notebook 07, the series' summary, whose headline rows get ``--seeds`` seeds (training the missing ones); notebook
08 (add your own method) runs after it. ``--full`` is the long path:
every notebook with its own defaults (every model on seeds 0-2, sweeps and ablations included); when it ends, the
results file each notebook saved is published to ``exp/summaries/longpath/`` (:func:`ltlib.report.longpath.publish`),
the copies that are committed and that the short path shows beside the reader's numbers.
Each executed notebook, its HTML and ``timings.json`` (also kept as ``timings-<start time>.json``, with each
notebook's count of stream outputs) are written to ``exp/tutorial/``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from ..core import io
from ..core.env import SOURCE_ROOT, available_cpus, cpu_model, git_commit
from ..report import longpath
from ..runs.experiment import default_exp_dir


ROOT = SOURCE_ROOT
SUMMARY = "07"          # the notebook that gathers the series: its headline rows get --seeds seeds


def notebooks(folder: str | Path = ROOT / "notebooks") -> list[Path]:
    """The numbered notebooks, in order."""
    found = sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no numbered notebooks in {folder}")
    return found


def is_summary(notebook: str | Path) -> bool:
    """Whether ``notebook`` is the series' summary (07), the one whose headline rows get ``--seeds`` seeds."""
    return Path(notebook).name.startswith(SUMMARY + "_")


def tutorial_parameters(notebook: str | Path, known: set[str], profile: str, dataset: str,
                        seeds: int | None = None, full: bool = False, last: bool = False,
                        device: str | None = None) -> dict:
    """The papermill parameters of one notebook of the series.

    ``known`` is the notebook's parameter names. The short path gives every notebook but the summary one seed and
    ``extras=False``; the summary (``last``: 07, :func:`is_summary`) gets ``seeds`` seeds for its headline rows. ``full`` keeps each notebook's
    own defaults, except ``seeds`` when given. ``device`` (e.g. ``"cuda:1"``) replaces the notebooks' ``"auto"``.
    """
    if seeds is not None and seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    params = {"profile": profile, "dataset": dataset, **({"device": device} if device is not None else {})}
    if full:
        chosen = None if seeds is None else list(range(seeds))
    else:
        chosen = list(range(seeds or 1)) if last else [0]
        if "extras" in known and not last:
            params["extras"] = False
    if chosen is not None and "seeds" in known:
        params["seeds"] = chosen
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"{Path(notebook).name} has no parameter(s) {unknown} in its parameters cell")
    return params


def save_timings(out_dir: Path, timings: dict) -> list[Path]:
    """Write ``timings.json`` (the latest series) and ``timings-<started>.json`` (this series, kept when the next
    one runs), so that two series can be compared."""
    paths = [out_dir / "timings.json", out_dir / f"timings-{timings['started']}.json"]
    for path in paths:
        io.write_json(path, timings)
    return paths


def run_tutorial(out_dir: str | Path, profile: str = "quick", dataset: str = "fashion_mnist_lt",
                 seeds: int | None = None, full: bool = False, only: list[str] | None = None,
                 device: str | None = None) -> dict:
    """Execute the series with papermill, export each notebook to HTML, and return (and save) the timings."""
    import papermill
    from nbconvert import HTMLExporter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    series = notebooks()
    chosen = [nb for nb in series if only is None or any(nb.name.startswith(o) for o in only)]
    timings = {"profile": profile, "dataset": dataset, "seeds": seeds, "full": full, "commit": git_commit(),
               "hardware": f"{cpu_model()} ({available_cpus()} cores)",
               "started": datetime.now().strftime("%Y%m%d-%H%M%S"), "notebooks": {}}
    start = time.perf_counter()
    for nb in chosen:
        known = set(papermill.inspect_notebook(str(nb)))
        params = tutorial_parameters(nb, known, profile, dataset, seeds, full, last=is_summary(nb), device=device)
        out = out_dir / nb.name
        print(f"== {nb.name}: {params}", flush=True)
        t0 = time.perf_counter()
        papermill.execute_notebook(str(nb), str(out), parameters=params, cwd=str(nb.parent), kernel_name="python3",
                                   progress_bar=True, store_widget_state=False)
        html, _ = HTMLExporter().from_filename(str(out))
        io.write_text(out.with_suffix(".html"), html)
        seconds = time.perf_counter() - t0
        timings["notebooks"][nb.name] = {"seconds": round(seconds, 1), "parameters": params,
                                         "stream_outputs": stream_outputs(out)}
        timings["seconds"] = round(time.perf_counter() - start, 1)
        save_timings(out_dir, timings)     # after each notebook: a failed series keeps its times
        print(f"== {nb.name}: {seconds / 60:.1f} min", flush=True)
    if full and only is None:
        for path in longpath.publish([nb.name[:2] for nb in chosen], dataset, profile):
            print(f"published {path}", flush=True)
    return timings


def stream_outputs(notebook: str | Path) -> int:
    """How many stream outputs (stdout / stderr blocks) an executed notebook holds."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    return sum(o["output_type"] == "stream" for c in cells if c["cell_type"] == "code" for o in c.get("outputs", []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--dataset", default="fashion_mnist_lt")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds 0..n-1 for notebook 07's headline rows (with --full: for every notebook)")
    parser.add_argument("--full", action="store_true", help="every notebook with its own defaults")
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 06 07")
    parser.add_argument("--out", default=None, help="default: exp/tutorial/ (or $LTLIB_EXP_DIR/tutorial/)")
    parser.add_argument("--device", default=None, help="the notebooks' device (default: theirs, 'auto')")
    args = parser.parse_args(argv)
    args.out = args.out or str(default_exp_dir() / "tutorial")
    timings = run_tutorial(args.out, args.profile, args.dataset, args.seeds, args.full, args.only, device=args.device)
    exp = default_exp_dir()
    print(f"Executed notebooks and their HTML: {args.out}/  figures: {exp / 'figures'}/  runs: {exp / args.dataset}/")
    print(f"Wall time: {timings['seconds'] / 60:.1f} min ({timings['hardware']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
