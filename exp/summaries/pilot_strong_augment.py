"""Pilot: the strong-augmentation recipes beside their base recipes at the CPU quick scale (issue 25).

Fashion-MNIST-LT, IF 100, the quick profile (30 epochs, ResNet-32 width 0.5), seeds 0-2, trained through ltlib
(cached in exp/, two runs side by side); writes pilot_strong_augment.json beside this file:
    python exp/summaries/pilot_strong_augment.py [--exp-dir DIR]
Each pair differs in more than the augmentation: cmo_400 also changes the schedule (paco_multistep: a 3-epoch warm-up
peaking at 4/3 lr, x0.1 / x0.01 drops, against cmo's x0.01 / x0.0001), and ccsam_autoaug turns mixup off. Read a gap
as "this recipe at 30 epochs", not as "strong augmentation alone".
"""
import argparse
import json
from datetime import date
from pathlib import Path

from ltlib.runs.config import make_config
from ltlib.runs.experiment import default_exp_dir
from ltlib.runs.jobs import run_grid

PAIRS = {
    "BS + CMO (cmo recipe)": dict(recipe="cmo", loss="bs", mixing="cmo", name="sq-bs-cmo"),
    "cmo_400": dict(recipe="cmo_400", name="sq-cmo400"),
    "CC-SAM + mixup (ccsam recipe)": dict(recipe="ccsam", name="sq-ccsam"),
    "ccsam_autoaug": dict(recipe="ccsam_autoaug", name="sq-ccsam-aa"),
}
SEEDS = [0, 1, 2]

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--exp-dir", default=None, help="where the runs are cached (default: exp/)")
args = parser.parse_args()
exp = Path(args.exp_dir) if args.exp_dir else default_exp_dir()
configs = {label: make_config("quick", kw.pop("recipe"), **kw) for label, kw in ((k, dict(v)) for k, v in PAIRS.items())}
runs = run_grid(configs, SEEDS, exp_dir=exp, jobs=2)
rows = []
for label, seeds in runs.items():
    for r in seeds:
        t = r.result()
        env = r.environment
        rows.append(dict(label=label, recipe=r.config.recipe, seed=r.config.seed, run=r.path.name,
                         overall=t["overall"], many=t["many"], medium=t["medium"], few=t["few"],
                         train_time_s=float(r.history["train_time_s"].sum()), commit=env.get("git_commit"),
                         cpu=env.get("cpu"), threads=env.get("torch_threads")))
out = Path(__file__).with_name("pilot_strong_augment.json")
out.write_text(json.dumps({"command": "python exp/summaries/pilot_strong_augment.py", "dataset": "fashion_mnist_lt",
                           "imbalance_factor": 100, "profile": "quick", "written": date.today().isoformat(),
                           "runs": rows}, indent=1) + "\n")
for label in configs:
    mine = [r for r in rows if r["label"] == label]
    print(f"{label:32s}", "  ".join(f"s{r['seed']}: {r['overall']:.1f} (few {r['few']:.1f}, {r['train_time_s']:.0f} s)"
                                    for r in mine))
