# Generated from notebooks/07_results.ipynb by `make scripts` (nbconvert). Edit the notebook, not this file.
# Run: python scripts/07_results.py  (LTLIB_PROFILE=smoke for a quick check)

# # 07 · The whole series in one table and one figure
# 
# **The question.** Notebooks 01–05 trained the methods one family at a time, each against its own baseline, and
# notebook 06 measured how sharp their minima are. Side by side, on the same data and the same seeds: which method
# is best overall, which one serves the rare classes, how well calibrated is each, and which of the papers' claims
# hold on our data?
# 
# **Papers and code.** Each method's paper and repository are linked at the top of its notebook (01–06, 08); the
# reported numbers below carry their source and link (`ltlib.report.papers`).
# 
# **What you will learn**
# - how to gather every cached run under `exp/` into one pandas table (`ltlib.report.gather.gather_runs`), aggregate it
#   over seeds and export it as CSV and Markdown;
# - the headline model of each notebook, with many / medium / few accuracy, the expected calibration error (ECE,
#   15 bins) and the training cost, beside what the papers report for CIFAR-100-LT;
# - reliability diagrams: what "calibrated" means, and which methods are over-confident;
# - which of the papers' qualitative claims reproduce on Fashion-MNIST-LT.
# 
# Every model comes from `exp/` (trained by notebooks 01–06; anything missing is trained here at the chosen
# profile). With the models cached, this notebook spends its time computing each model's test-set calibration once
# (cached beside the run). Every result in the text is rendered from the runs and tables above it.

# In[ ]:


# Parameters (papermill: -p name value). LTLIB_PROFILE overrides `profile` for the exported script.
dataset = "fashion_mnist_lt"
imbalance_factor = 100
profile = "quick"               # "smoke" (tests), "quick" (CPU, minutes), "paper" (GPU)
# the headline rows (ltlib.report.series.HEADLINE_MODELS) run on every seed, training what is missing; the other
# models show those of these seeds that are cached (at least the first)
seeds = [0, 1, 2]
# labels from ltlib.report.series.series_configs; None: every headline model of notebooks 01-05 (a few in "smoke")
models = None
device = "auto"


# In[ ]:


import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

import ltlib.report.plots as lp
from ltlib.analysis.calibration import run_calibration
from ltlib.report import claims as C
from ltlib.report import findings as F
from ltlib.report import longpath
from ltlib.report.gather import display_summary, export_table, gather_runs, headline_table, summarize_runs
from ltlib.report.notebook import finish, resolve_profile, setup
from ltlib.report.papers import sources
from ltlib.report.findings import signed
from ltlib.report.results import caption, confusion_matrix, format_mean_std
from ltlib.report.series import HEADLINE_MODELS, REPORTED_KEYS, default_models, select, series_configs
from ltlib.runs.experiment import cached_seeds, default_exp_dir, load_data
from ltlib.runs.jobs import run_grid

profile = resolve_profile(profile)
dev = setup(device)
record = longpath.NotebookResults("07", dataset, profile)
configs = select(series_configs(profile, dataset, imbalance_factor), models or default_models(profile))
tables = default_exp_dir() / "tables"


# ## 1. Every run in `exp/`
# 
# Each finished run folder holds its config and its metrics, so the table below is built without loading a
# model. Runs that differ only in their seed are grouped; the columns say what the run combined (loss,
# re-weighting, sampler, mixing, step strategy, stage 2), and `variant` the settings that set a configuration
# apart from others of the same name (a swept ρ, say). Sweeps, ablations and every baseline are here, not only
# the headline rows.

# In[ ]:


every = gather_runs(dataset=dataset)
every = every[(every["profile"] == profile) & (every["imbalance_factor"] == imbalance_factor)]
summary = summarize_runs(every)
print(f"{len(every)} finished runs of {dataset} at IF={imbalance_factor:g} in the {profile!r} profile, "
      f"{len(summary)} configurations")
csv, md_path = export_table(display_summary(summary).assign(stage=summary["stage"]), tables / f"all_runs_{dataset}_{profile}")
print(f"written: {csv} and {md_path}")
display(display_summary(summary).sort_values("name").reset_index(drop=True))


# ## 2. The headline models, side by side
# 
# One model per method, with each notebook's defaults. The headline rows (the CE baseline and each paper's method,
# `ltlib.report.series.HEADLINE_MODELS`) run on every one of `seeds`; the others show the seeds that notebooks 01–05 ran: last-epoch test accuracy (mean ± std over
# seeds), strict groups (many > 100, few < 20 training images), ECE on the test set (in %; a cosine classifier's
# logits are scaled by LDAM's s first), the training time of one run (for a stage-2 model, of its stage 2 only),
# the hardware. The last column is what the
# papers **report** for CIFAR-100-LT at IF = 100 with their own networks and 200-epoch recipes: it says which way
# each method moved there, and is not a number to match on Fashion-MNIST.

# In[ ]:


runs = run_grid(configs, {label: seeds if label in HEADLINE_MODELS else cached_seeds(config, seeds) or seeds[:1]
                          for label, config in configs.items()}, device=dev)
head = headline_table(runs, REPORTED_KEYS)
record.add_runs("headline", runs, metrics=("overall", "many", "medium", "few", "ece", "train_time_s"),
                extra={"ece": lambda r: run_calibration(r)["ece"]})
shown = pd.DataFrame({"seeds": head["seeds"]})
for m in ("overall", "many", "medium", "few", "ece"):
    shown[m if m != "ece" else "ECE"] = [format_mean_std(a, b) for a, b in zip(head[f"{m}_mean"], head[f"{m}_std"])]
shown["train s / run"] = [f"{v:.0f}" for v in head["train_time_s_mean"]]
shown["reported C100-LT IF100"] = head["reported C100-LT IF100"]
print(caption(runs))
export_table(shown.reset_index(names="model"), tables / f"headline_{dataset}_{profile}")
means = head[[f"{m}_mean" for m in ("overall", "many", "medium", "few")]].astype(float).round(1)
means.columns = ["overall", "many", "medium", "few"]
display(means.style.background_gradient(cmap="RdYlGn", subset=["many", "medium", "few"], vmin=0, vmax=100)
        .format("{:.1f}"))
display(shown)
F.show("Reported numbers:", sources(REPORTED_KEYS[label] for label in head.index if label in REPORTED_KEYS))


# ## 3. One figure: what each method does for the head and the tail
# 
# Up is better for the rare classes, right for the frequent ones; a method that sits up and to the left of another
# traded head accuracy for tail accuracy. The error bars are the standard deviation over seeds. Below it, per-class accuracy against class frequency for the CE baseline and the best model of each
# notebook.

# In[ ]:


fig = lp.plot_few_vs_many(head, title=caption(runs))
lp.save_figure(fig, f"07_few_vs_many_{profile}")
plt.show()
families = {}
for label in head.index:
    best = families.get(label[:2])
    if best is None or head.loc[label, "overall_mean"] > head.loc[best, "overall_mean"]:
        families[label[:2]] = label
baseline = "05 CE" if "05 CE" in head.index else head.index[0]
chosen = dict.fromkeys([baseline, *families.values()])
fig = lp.plot_accuracy_vs_frequency({label: runs[label] for label in chosen})
lp.save_figure(fig, f"07_accuracy_vs_frequency_{profile}")
plt.show()


# Where the errors go: the confusion matrices of the CE baseline and of the best model overall (first seed, test
# set, rows normalised to the true class, so the diagonal is per-class accuracy).

# In[ ]:


top = head["overall_mean"].astype(float).idxmax()
pair = {label: runs[label][0] for label in dict.fromkeys([baseline, top])}
pair_data = {label: load_data(r.config.data_config) for label, r in pair.items()}
matrices = {f"{label} (seed {r.config.seed})": confusion_matrix(r, pair_data[label]) for label, r in pair.items()}
names = pair_data[baseline].classes
fig = lp.plot_confusions(matrices, names)
lp.save_figure(fig, f"07_confusion_{profile}")
plt.show()
diagonals = [100 * np.diag(m) / m.sum(1) for m in matrices.values()]
moved = diagonals[-1] - diagonals[0]
F.show(f"Best overall: **{top}**. " + (
    f"Against {baseline} (first seed) its per-class accuracy moves most for {names[int(moved.argmax())]} "
    f"({signed(moved.max())} points) and least for {names[int(moved.argmin())]} ({signed(moved.min())} points)."
    if top != baseline else "It is the CE baseline itself."))


# ## 4. Calibration
# 
# A reliability diagram bins the test predictions by confidence (the top softmax probability) and shows each bin's
# accuracy: a calibrated model's bars meet the diagonal. ECE is the gap, weighted by how many predictions fall in
# each bin. Shown for the first seed of the CE baseline and the best model of each notebook.

# In[ ]:


fig = lp.plot_reliability({label: run_calibration(runs[label][0])["table"] for label in chosen})
lp.save_figure(fig, f"07_reliability_{profile}")
plt.show()


# ## 5. Which claims reproduce on Fashion-MNIST-LT
# 
# Each paper's claim is a statement that one setting beats another. The table checks each one on the results the
# notebooks of *this* series saved (`exp/tables/results-<notebook>-…csv`, written by each notebook as it ran), and on
# the committed long path (`exp/summaries/longpath/`), pairing the two settings by seed (`ltlib.report.claims.CLAIMS`).
# "reported (paper)" gives the papers' CIFAR-100-LT numbers (`ltlib.report.papers`), which say which way the paper found
# the difference, not a number to match.

# In[ ]:


notebooks = sorted({claim.notebook for claim in C.CLAIMS})
yours = {nb: C.own_results(nb, dataset, profile) for nb in notebooks}
committed = {nb: longpath.load(nb, dataset, profile) for nb in notebooks}
claims = C.claims_table(yours, committed)
display(claims[["claim", "compared", "metric", "reported (paper)", "your run: b − a", "your verdict",
                "long path: b − a", "long-path verdict"]])
F.show(f"Verdict rule (`ltlib.report.claims.VERDICT_RULE`): {C.VERDICT_RULE}.")
provenance = next((t for t in committed.values() if t is not None), None)
if provenance is not None:
    F.show(f"Long-path columns: {longpath.provenance(provenance)}.")


# ## 6. What this run shows
# 
# Rendered from the headline table and the claims above.

# In[ ]:


best_overall = head["overall_mean"].astype(float).idxmax()
best_few = head["few_mean"].astype(float).idxmax()
ece = head["ece_mean"].astype(float)
time = head["train_time_s_mean"].astype(float)
counts = claims["your verdict"].value_counts()
long_counts = claims["long-path verdict"].value_counts()
F.show(
    f"**Your run:** {caption(runs)}.",
    F.bullets([
        f"**Most accurate overall:** {best_overall} ({format_mean_std(head.loc[best_overall, 'overall_mean'], head.loc[best_overall, 'overall_std'])} %); "
        f"**best few-shot:** {best_few} ({format_mean_std(head.loc[best_few, 'few_mean'], head.loc[best_few, 'few_std'])} %). "
        "A ranking of means over few seeds is a description, not a paired finding.",
        f"**Calibration:** ECE ranges from {ece.min():.1f} ({ece.idxmin()}) to {ece.max():.1f} ({ece.idxmax()}); "
        f"the most accurate model's is {ece[best_overall]:.1f}.",
        f"**Training time per run** (as trained, see the hardware column; a stage-2 row counts its stage 2 only): "
        f"{time.min():.0f} s ({time.idxmin()}) to {time.max():.0f} s ({time.idxmax()}).",
        "**Claims, your run:** " + ", ".join(f"{n} {v}" for v, n in counts.items()) + f" (of {len(claims)}).",
        "**Claims, long path:** " + ", ".join(f"{n} {v}" for v, n in long_counts.items()) + f" (of {len(claims)}): "
        + "; ".join(f"{verdict}: " + ", ".join(claims.loc[claims["long-path verdict"] == verdict, "claim"])
                    for verdict in long_counts.index) + ".",
    ]),
)


# ## Summary
# 
# - `gather_runs` / `summarize_runs` / `export_table` turn `exp/` into one table; `headline_table` adds ECE
#   (`ltlib.analysis.calibration`) and the reported numbers (`ltlib.report.papers`); the tables are written to `exp/tables/`.
# - `ltlib.report.claims` checks each paper's claim on the series' own results, seed by seed, by a stated rule.
# - `make tutorial` runs notebooks 01 → 07 headless and writes each executed notebook and its HTML to
#   `exp/tutorial/`, with their timings. It runs 01–06 on seed 0 without their sweeps;
#   `make tutorial SEEDS=3` reruns this notebook's headline rows on seeds 0–2, and `make tutorial FULL=1` runs
#   every notebook with its own defaults and publishes their results files to `exp/summaries/longpath/`.
# - At paper scale on a GPU: `make tutorial PROFILE=paper DATASET=cifar100_lt`, with the CIFAR-100 python files in
#   `~/.cache/ltlib/cifar-100-python` or `$LTLIB_CIFAR100_DIR`.
# 
# **Try this**
# - `-p seeds "[0, 1, 2, 3, 4]"` (papermill `-y "seeds: [0, 1, 2, 3, 4]"`): more seeds for the headline rows. Which
#   claims move from "not resolved" to a verdict?
# - `-y "models: ['05 CE', '05 BS', '05 BS + CMO']"`: a smaller table, faster.

# In[ ]:


record.save()
finish()
