# Generated from notebooks/07_results.ipynb by `make scripts` (nbconvert). Edit the notebook, not this file.
# Run: python scripts/07_results.py  (LTLIB_PROFILE=smoke for a quick check)

# # 07 · The whole series in one table and one figure
# 
# **The question.** Notebooks 01–05 trained the methods one family at a time, each against its own baseline, and
# notebook 06 measured how sharp their minima are. Side by side, on the same data and the same seeds: which method
# is best overall, which one serves the rare classes, how well calibrated is each, and which of the papers' claims
# hold on our data?
# 
# **What you will learn**
# - how to gather every cached run under `exp/` into one pandas table (`ltlib.gather.gather_runs`), aggregate it
#   over seeds and export it as CSV and Markdown;
# - the headline model of each notebook, with many / medium / few accuracy, the expected calibration error (ECE,
#   15 bins) and the training cost, beside what the papers report for CIFAR-100-LT;
# - reliability diagrams: what "calibrated" means, and which methods are over-confident;
# - which of the papers' qualitative claims reproduce on Fashion-MNIST-LT.
# 
# Every model comes from `exp/` (trained by notebooks 01–06; anything missing is trained here at the chosen
# profile). With the models cached, this notebook spends its time computing each model's test-set calibration once
# (a few seconds per model, cached beside the run).

# In[ ]:


# Parameters (papermill: -p name value). LTLIB_PROFILE overrides `profile` for the exported script.
dataset = "fashion_mnist_lt"
imbalance_factor = 100
profile = "quick"               # "smoke" (tests), "quick" (CPU, minutes), "paper" (GPU)
# the headline rows (ltlib.series.HEADLINE_MODELS) run on every seed, training what is missing; the other
# models show those of these seeds that are cached (at least the first)
seeds = [0, 1, 2]
# labels from ltlib.series.series_configs; None: every headline model of notebooks 01-05 (a few in "smoke")
models = None
device = "auto"


# In[ ]:


import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

import ltlib.plots as lp
from ltlib.calibration import run_calibration
from ltlib.experiment import cached_seeds, default_exp_dir
from ltlib.jobs import run_grid
from ltlib.gather import display_summary, export_table, gather_runs, headline_table, summarize_runs
from ltlib.notebook import resolve_profile, setup
from ltlib.results import caption, format_mean_std
from ltlib.series import HEADLINE_MODELS, REPORTED_C100, default_models, select, series_configs

profile = resolve_profile(profile)
dev = setup(device)
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
# `ltlib.series.HEADLINE_MODELS`) run on every one of `seeds`; the others show the seeds that notebooks 01–05 ran: last-epoch test accuracy (mean ± std over
# seeds), strict groups (many > 100, few < 20 training images), ECE on the test set (in %; a cosine classifier's
# logits are scaled by LDAM's s first), the training time of one run (for a stage-2 model, of its stage 2 only),
# the hardware. The last column is what the
# papers **report** for CIFAR-100-LT at IF = 100 with their own networks and 200-epoch recipes: it says which way
# each method moved there, and is not a number to match on Fashion-MNIST.

# In[ ]:


runs = run_grid(configs, {label: seeds if label in HEADLINE_MODELS else cached_seeds(config, seeds) or seeds[:1]
                          for label, config in configs.items()}, device=dev)
head = headline_table(runs, REPORTED_C100)
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
# Measured with this notebook's defaults, from the table above: quick profile, Fashion-MNIST-LT at IF = 100, 30
# epochs, seeds 0–2 for every model (`make tutorial FULL=1`), a 2-core CPU. "Paper" means the CIFAR-100-LT numbers in the last column, or the claim that
# notebook names.
# 
# | claim (paper) | on Fashion-MNIST-LT | reproduces? |
# |---|---|---|
# | Weight decay lifts a CE model (WB: 40.0 → 47.9) | 65.4 → 64.7 overall, few-shot 37.8 → 34.1 (notebook 01) | no, not at 30 epochs |
# | WB's stage 2 (CB loss + WD + MaxNorm) lifts it further (→ 53.1) | 64.7 → 69.5, few-shot +18 | yes |
# | SAM beats SGD (ImbSAM README: 47.6 → 48.9) | 63.9 → 61.6, every seed lower | no |
# | ImbSAM beats SAM and SGD (51.1) | 70.0, few-shot 65.5 | yes, but through its ×2 tail weight: at ρ = 0 it gives the same 70.0 (notebook 03) |
# | Mixup lifts CE (CC-SAM poster: 38.43 → 40.01) | 71.9 → 64.8 on notebook 04's recipe | no, not at 30 epochs |
# | CC-SAM beats every other method (50.83) | 66.5, below 8 of the other 15 headline rows; its stage 1 is below CE + mixup in every seed | no |
# | CMO lifts CE (CMO paper: 38.6 → 43.9) | 73.1 → 76.9, few-shot 49.9 → 74.2, every seed | yes |
# | BS + CMO beats CE + CMO (46.6 against 43.9) | 79.9 against 76.9 | yes |
# | LDAM-DRW beats CE (42.04 against 38.43 / 38.6) | 74.6 ± 3.9 against 73.1 ± 1.9; few-shot 58.8 ± 21.0 | within the seed noise |
# | LDAM-DRW sits in a sharper minimum than CE (CC-SAM poster) | it depends on the loss and the noise (notebook 06) | not robustly |
# | The tail's loss is sharper than the head's (Saddle-LongTail) | 13 of 16 models (notebook 06) | yes |
# 
# The best models overall are Balanced Softmax (80.0 ± 2.3), BS + CMO (79.9 ± 2.2) and CE-DRW (79.2 ± 1.7); the
# best few-shot model is BS + CMO (92.6 ± 2.5). They are also among the best calibrated: ECE 1.9–8.3, against
# 8.7 for CE. LDAM-DRW is over-confident once its cosines are scaled by s = 30 (ECE 19.5). Weight balancing's
# stage 2 has the worst ECE (29.8): its class-balanced sigmoid loss does not train a softmax to be calibrated. The
# SAM-family optimisers cost 2–2.7× the training time of SGD, and none of them beats the re-weighting losses of
# notebook 05, which cost what CE costs.

# ## Summary
# 
# - `gather_runs` / `summarize_runs` / `export_table` turn `exp/` into one table; `headline_table` adds ECE
#   (`ltlib.calibration`) and the reported numbers; the tables are written to `exp/tables/`.
# - `make tutorial` runs notebooks 01 → 07 headless and writes each executed notebook and its HTML to
#   `exp/tutorial/`, with their timings. It runs 01–06 on seed 0 without their sweeps and ablations;
#   `make tutorial SEEDS=3` reruns this notebook's headline rows on seeds 0–2, and `make tutorial FULL=1` runs
#   every notebook with its own defaults.
# - At paper scale on a GPU: `make tutorial PROFILE=paper DATASET=cifar100_lt`, with the CIFAR-100 python files in
#   `~/.cache/ltlib/cifar-100-python` or `$LTLIB_CIFAR100_DIR`.
