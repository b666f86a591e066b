# Generated from notebooks/01_first_stage_training.ipynb by `make scripts` (nbconvert). Edit the notebook, not this file.
# Run: python scripts/01_first_stage_training.py  (LTLIB_PROFILE=smoke for a quick check)

# # 01 · First-stage training: cross-entropy, with and without weight decay
# 
# **The question.** Train a network with plain cross-entropy on a long-tailed training set: what happens to
# the rare classes? And does weight decay help them, as *Long-Tailed Recognition via Weight Balancing*
# (Alshammari et al., CVPR 2022) reports in its first demo?
# 
# **What you will learn**
# - how a long-tailed training set is built from a balanced one (the exponential profile every paper uses);
# - how to train, cache and reload runs with `ltlib` (one config line per run);
# - how to read per-class accuracy and the many / medium / few groups, and why the few-shot group is noisy;
# - why people look at the per-class norms of the classifier's weights;
# - how to compare two settings honestly: several seeds, paired seed by seed.
# 
# Everything below is computed when the notebook runs. The `quick` profile (the default) takes about
# 7 minutes on a 2-core laptop CPU; `smoke` takes seconds and only checks that the code runs.

# In[ ]:


# Parameters (papermill: -p name value). LTLIB_PROFILE overrides `profile` for the exported script.
dataset = "fashion_mnist_lt"    # or "cifar10_lt" / "cifar100_lt" when their files are present
imbalance_factor = 100          # n_max / n_min
profile = "quick"               # "smoke" (tests), "quick" (CPU, minutes), "paper" (the published recipe, GPU)
recipe = "wb"                   # "wb": weight balancing's lr 0.01 cosine; "ce": LDAM-DRW's lr 0.1 recipe
epochs = None                   # None: the profile's number of epochs
weight_decays = [0.0, 5e-3]     # weight balancing's "naive" model and its tuned WD
seeds = [0, 1, 2]               # claims about few-shot classes need several seeds
device = "auto"                 # CUDA when present, else CPU


# In[ ]:


import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

import ltlib.plots as lp
from ltlib.config import make_config
from ltlib.experiment import load_data, run_seeds
from ltlib.notebook import describe, resolve_profile, setup
from ltlib.results import caption, display_table, paired_differences, summarize

profile = resolve_profile(profile)
dev = setup(device)
overrides = {} if epochs is None else {"epochs": int(epochs)}
base = make_config(profile, recipe, dataset, imbalance_factor=imbalance_factor, **overrides)
print(describe(base))


# ## 1. A long-tailed training set
# 
# The standard construction (LDAM-DRW, CMO, weight balancing, ImbSAM) keeps
# $n_i = \lfloor n_{\max} \cdot (1/\mathrm{IF})^{i/(C-1)} \rfloor$ images of class $i$, so class 0 is the head and
# class $C-1$ the tail, with $n_{\max}/n_{\min} = \mathrm{IF}$. The test set stays balanced, so "overall"
# accuracy is the mean of per-class accuracies.
# 
# The CPU `quick` profile caps the head at 1,000 images (2,478 images at IF = 100) so that a run takes about
# a minute. Classes are grouped the way weight balancing, ImbSAM and CMO do (*strict*: many > 100, medium
# 20–100, few < 20 training images). On Fashion-MNIST-LT the few group is only Bag and Ankle boot, and the
# medium group holds Shirt, a hard class even when training is balanced. The figures below show every class
# so that nobody has to trust the group averages blindly.

# In[ ]:


data = load_data(base)
print(data.groups(base.group_scheme).label())
print(f"training {len(data.train)}, validation {0 if data.val is None else len(data.val)} "
      f"({base.val_split}), test {len(data.test)} images")
fig = lp.plot_class_counts(data, base.group_scheme)
lp.save_figure(fig, f"01_class_counts_{profile}")
plt.show()


# ## 2. Train cross-entropy with and without weight decay
# 
# One config per weight-decay value, run once per seed. `run_seeds` trains what is missing and loads the
# rest from `exp/<dataset>/<name>-<hash>/`, so re-running the notebook (or running notebook 02, which
# starts from these models) costs nothing. The seed sets the initialisation, the batch order and the
# augmentation draws, so runs with the same seed see the same batches: only the weight decay differs.
# That is what makes a seed-by-seed comparison meaningful.
# 
# Weight decay applies to every parameter, BatchNorm and biases included, as in the weight-balancing code.

# In[ ]:


runs = {}
for wd in weight_decays:
    config = base.replace(name=f"01-{recipe}-wd{wd:g}", weight_decay=float(wd))
    runs[f"WD {wd:g}"] = run_seeds(config, seeds, device=dev)
print(caption([r for rs in runs.values() for r in rs]))


# ## 3. Overall, many, medium, few
# 
# Test accuracy of the last epoch (no test-set model selection, no flip test-time augmentation), in %.
# Mean ± sample standard deviation over seeds.

# In[ ]:


summary = summarize(runs)
display(display_table(summary))


# The few-shot group holds two classes, so a single seed can move it by ten points or more. The table below
# pairs the runs by seed: each cell is (second setting − first setting) in percentage points. Only a
# difference whose sign holds in every seed is worth a sentence.

# In[ ]:


labels = list(runs)
paired = paired_differences(runs[labels[0]], runs[labels[-1]])
print(f"{labels[-1]} minus {labels[0]}, percentage points")
display(paired.round(1))


# ## 4. Per-class accuracy against class frequency
# 
# Each point is one class: its number of training images (log scale) and its test accuracy, mean ± std over
# seeds.

# In[ ]:


fig = lp.plot_accuracy_vs_frequency(runs)
lp.save_figure(fig, f"01_accuracy_vs_frequency_{profile}")
plt.show()


# ## 5. Per-class classifier weight norms
# 
# The last layer scores class $c$ as $w_c^\top z + b_c$. A class whose weight row $w_c$ has a larger norm wins
# more often; weight balancing's figure shows cross-entropy giving head classes larger norms, and weight
# decay evening them out. Here is what our runs learned.

# In[ ]:


fig = lp.plot_classifier_norms(runs)
lp.save_figure(fig, f"01_classifier_norms_{profile}")
plt.show()
norms = pd.DataFrame({label: [r.metrics["classifier_norms"][0] / r.metrics["classifier_norms"][-1] for r in rs]
                      for label, rs in runs.items()}, index=[f"seed {s}" for s in seeds])
print("head / tail norm ratio ‖w_0‖ / ‖w_C-1‖ per seed")
display(norms.round(2))


# ## 6. What the data shows
# 
# FINDINGS

# In[ ]:


few = paired.loc["few"]
overall = paired.loc["overall"]
print(f"{labels[-1]} vs {labels[0]} over {len(seeds)} seed(s):")
for metric, row in (("overall", overall), ("few", few)):
    values = ", ".join(f"{v:+.1f}" for v in row.drop("same sign in every seed"))
    verdict = "same sign in every seed" if row["same sign in every seed"] else "sign not consistent: not resolved"
    print(f"  {metric:>7}: {values} points ({verdict})")


# ## 7. For reference: the weight-balancing demo on CIFAR-100-LT
# 
# These are **reported** numbers, read from the outputs committed in weight balancing's demo notebook
# (CIFAR-100-LT, IF = 100, its 21M-parameter ResNet-34 variant, 320 epochs, with flip test-time
# augmentation and the best epoch chosen on the test set). They are not comparable cell by cell with ours:
# different data, network, schedule and protocol.
# 
# | model (reported, CIFAR-100-LT IF=100) | overall | many | medium | few |
# |---|---|---|---|---|
# | cross-entropy, no WD ("naive") | 40.0 | 67.4 | 38.1 | 10.4 |
# | cross-entropy, WD 5e-3 | 47.9 | 78.0 | 46.9 | 13.9 |
# 
# To run this notebook at that scale on a GPU: `papermill notebooks/01_first_stage_training.ipynb out.ipynb
# -p dataset cifar100_lt -p profile paper -p recipe wb` (CIFAR-100 files in `~/.cache/ltlib/cifar-100-python`
# or `$LTLIB_CIFAR100_DIR`).
# 
# ## Summary and what comes next
# 
# SUMMARY
# 
# Notebook 02 starts from the weight-decay model trained here and retrains only its classifier: L2- and
# τ-normalisation of the weight rows, and weight balancing's second stage (class-balanced loss, weight
# decay and a MaxNorm constraint).
