"""Pilot for notebook 01: does weight decay help at CPU quick scale, under which recipe?

Runs through ltlib (cached in exp/), then writes pilot_wd.csv beside this file:
    python exp/summaries/pilot_wd.py [recipe ...]
Rows already in pilot_wd.csv are kept and not re-run (runs are bitwise reproducible; delete the CSV to redo them).
Variants (the pilot began in bf16 autocast, before fp32 became the default; each names its precision):
wb (lr 0.01, cosine stepped per epoch), ce (lr 0.1, warm-up + cosine), wb200 (wb at 200 epochs), all bf16; wb_fp32, ce_fp32, wb200_fp32: the same in
fp32 (wb_fp32 is notebook 01's quick run; wb/wb_fp32 and ce/ce_fp32 pair bf16 against fp32 by seed).
"""
import sys
from pathlib import Path

import pandas as pd

from ltlib.runs.config import make_config
from ltlib.runs.experiment import run

VARIANTS = {
    "wb": dict(recipe="wb", precision="bf16"),
    "ce": dict(recipe="ce", precision="bf16"),
    "wb200": dict(recipe="wb", epochs=200, eval_every=50, precision="bf16"),
    "wb_fp32": dict(recipe="wb", precision="fp32"),
    "ce_fp32": dict(recipe="ce", precision="fp32"),
    "wb200_fp32": dict(recipe="wb", epochs=200, eval_every=50, precision="fp32"),
}
WDS = (0.0, 5e-3)
SEEDS = (0, 1, 2)

rows = []
out = Path(__file__).with_name("pilot_wd.csv")
done = set()
if out.exists():
    done = {(v, float(w), int(s)) for v, w, s in pd.read_csv(out)[["variant", "wd", "seed"]].itertuples(index=False)}
for variant in sys.argv[1:] or ["wb"]:
    kw = dict(VARIANTS[variant])
    recipe = kw.pop("recipe")
    for seed in kw.pop("seeds", SEEDS):
        for wd in WDS:
            if (variant, wd, seed) in done:
                continue
            cfg = make_config("quick", recipe, name=f"01-{recipe}-wd{wd:g}", weight_decay=wd, seed=seed, **kw)
            r = run(cfg, progress=False)
            norms = r.metrics["classifier_norms"]
            for sel in r.metrics["selections"]:
                t = r.result(sel)
                rows.append(dict(variant=variant, wd=wd, seed=seed, selection=sel, epochs=cfg.epochs, precision=cfg.precision,
                                 lr=cfg.lr, batch=cfg.batch_size, overall=t["overall"], many=t["many"],
                                 medium=t["medium"], few=t["few"], norm_ratio=norms[0] / norms[-1],
                                 wall_s=r.metrics["wall_time_s"], **{f"c{i}": a for i, a in enumerate(t["per_class"])}))
            print(variant, wd, seed, {k: round(v, 1) for k, v in rows[-2].items() if k in ("overall", "many", "medium", "few", "norm_ratio", "wall_s")}, flush=True)
            old = pd.read_csv(out) if out.exists() else pd.DataFrame()
            pd.concat([old, pd.DataFrame(rows[-len(r.metrics['selections']):])]).drop_duplicates(
                subset=["variant", "wd", "seed", "selection"], keep="last").to_csv(out, index=False)
