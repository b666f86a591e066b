# Generated from notebooks/01_first_stage_training.ipynb by `make scripts` (nbconvert). Edit the notebook, not this file.
# Run: python scripts/01_first_stage_training.py  (LTLIB_PROFILE=smoke for a quick check)

# # 01 · First-stage training: cross-entropy, with and without weight decay
# 
# **The question.** Train a network with plain cross-entropy on a long-tailed training set: what happens to
# the rare classes? And does weight decay help them, as *Long-Tailed Recognition via Weight Balancing*
# (Alshammari et al., CVPR 2022) reports in its first demo?
# 
# **Paper and code.** Weight balancing: [arXiv:2203.14197](https://arxiv.org/abs/2203.14197), code
# [ShadeAlsha/LTR-weight-balancing](https://github.com/ShadeAlsha/LTR-weight-balancing) (its `demo1` is this
# notebook's recipe). The long-tailed CIFAR construction and the groups follow
# [kaidic/LDAM-DRW](https://github.com/kaidic/LDAM-DRW) (Cao et al., NeurIPS 2019).
# 
# **What you will learn**
# - how a long-tailed training set is built from a balanced one (the exponential profile every paper uses);
# - how to train, cache and reload runs with `ltlib` (one config line per run);
# - how to read per-class accuracy and the many / medium / few groups, and why the few-shot group is noisy;
# - why people look at the per-class norms of the classifier's weights;
# - how to compare two settings honestly: several seeds, paired seed by seed, and a stated rule for the verdict.
# 
# Every number in this notebook's text is computed from the runs it shows: the prose that states a result is
# rendered by a code cell, and results of other runs (the long path, a pilot) are loaded from committed files
# and labelled as such. `make tutorial` runs this notebook on seed 0 (the short path); `make tutorial FULL=1`
# runs it as it stands, on seeds 0, 1 and 2. `smoke` takes seconds and only checks that the code runs.

# In[ ]:


# Parameters (papermill: -p name value). LTLIB_PROFILE overrides `profile` for the exported script.
dataset = "fashion_mnist_lt"    # or "cifar10_lt" / "cifar100_lt" when their files are present
imbalance_factor = 100          # n_max / n_min
profile = "quick"               # "smoke" (tests), "quick" (CPU, minutes), "paper" (the published recipe, GPU)
recipe = "wb"                   # "wb": weight balancing's lr 0.01 cosine; "ce": LDAM-DRW's lr 0.1 recipe
epochs = None                   # None: the profile's number of epochs
precision = None                # None: the profile's ("fp32"); "bf16" autocast is faster per step
weight_decays = [0.0, 5e-3]     # weight balancing's "naive" model and its tuned WD
seeds = [0, 1, 2]               # claims about few-shot classes need several seeds
device = "auto"                 # CUDA when present, else CPU


# In[ ]:


import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

import ltlib.report.plots as lp
from ltlib.methods.step import build_sgd
from ltlib.report import findings as F
from ltlib.report import longpath
from ltlib.report.notebook import describe, finish, resolve_profile, setup
from ltlib.report.papers import reported, sources
from ltlib.report.results import caption, confusion_matrix, display_table, format_mean_std, per_class, summarize
from ltlib.runs.config import make_config
from ltlib.runs.evaluate import predict_logits
from ltlib.runs.experiment import eval_options, load_data
from ltlib.runs.jobs import run_grid

profile = resolve_profile(profile)
dev = setup(device)
overrides = {k: v for k, v in (("epochs", epochs), ("precision", precision)) if v is not None}
base = make_config(profile, recipe, dataset, imbalance_factor=imbalance_factor, **overrides)
results = longpath.NotebookResults("01", dataset, profile)
print(describe(base))


# ## 1. A long-tailed training set
# 
# The standard construction (LDAM-DRW, CMO, weight balancing, ImbSAM) keeps
# $n_i = \lfloor n_{\max} \cdot (1/\mathrm{IF})^{i/(C-1)} \rfloor$ images of class $i$, so class 0 is the head and
# class $C-1$ the tail, with $n_{\max}/n_{\min} = \mathrm{IF}$. The test set stays balanced, so "overall"
# accuracy is the mean of per-class accuracies.
# 
# The CPU `quick` profile caps the head at `n_max=1000` images so that a run takes about a minute. Classes are
# grouped the way weight balancing, ImbSAM and CMO do (*strict*: many > 100, medium 20–100, few < 20 training
# images); the cell prints which classes fall in each group. The figures below show every class, so that
# nobody has to trust the group averages blindly.

# In[ ]:


data = load_data(base)
groups = data.groups(base.group_scheme)
print(groups.label())
for name, members in groups.as_dict().items():
    print(f"  {name:>6}: " + ", ".join(f"{data.classes[c]} ({data.class_counts[c]})" for c in members))
print(f"training {len(data.train)}, validation {0 if data.val is None else len(data.val)} "
      f"({base.val_split}), test {len(data.test)} images")
fig = lp.plot_class_counts(data, base.group_scheme)
lp.save_figure(fig, f"01_class_counts_{profile}")
plt.show()


# ## 2. Train cross-entropy with and without weight decay
# 
# One config per weight-decay value, run once per seed. `run_grid` trains what is missing and loads the
# rest from `exp/<dataset>/<name>-<hash>/`, so re-running the notebook (or running notebook 02, which
# starts from these models) costs nothing. The seed sets the initialisation, the batch order and the
# augmentation draws, so runs with the same seed see the same batches: only the weight decay differs.
# That is what makes a seed-by-seed comparison meaningful. On a CPU the missing runs train side by side, one
# per core with one thread each, and a run's numbers do not depend on how many train at once (`ltlib.runs.jobs`).
# 
# Weight decay applies to every parameter, BatchNorm and biases included, as in the weight-balancing code.

# In[ ]:


configs = {f"WD {wd:g}": base.replace(name=f"01-{recipe}-wd{wd:g}", weight_decay=float(wd)) for wd in weight_decays}
runs = run_grid(configs, seeds, device=dev)
labels = list(runs)
results.add_runs("runs", runs)
print(caption([r for rs in runs.values() for r in rs]))


# ## 3. Overall, many, medium, few
# 
# Test accuracy of the last epoch (no test-set model selection, no flip test-time augmentation), in %.
# Mean ± sample standard deviation over seeds.

# In[ ]:


summary = summarize(runs)
display(display_table(summary))


# **The core lines.** How those numbers are counted, written out in plain torch on the first model's test
# predictions: the accuracy of each class, "overall" as their mean (so every class counts the same, however rare),
# and each group as the mean over its classes (strict: many > 100, few < 20 training images). Then what weight decay
# adds to a step: PyTorch's SGD (ltlib's `build_sgd`) steps along $g + \lambda w$, so every weight is pulled towards 0
# in proportion to its size. Both are checked against ltlib's.

# In[ ]:


r = runs[labels[0]][0]
predicted = predict_logits(r.model, data.test.images, **eval_options(r.config, data)).argmax(1)
y = data.test.labels
accuracy = np.array([100.0 * float((predicted[y == c] == c).double().mean()) for c in range(data.num_classes)])
n = np.asarray(data.class_counts)
groups_by_hand = {"many": n > 100, "medium": (n >= 20) & (n <= 100), "few": n < 20}
mine = {"overall": accuracy.mean(), **{g: accuracy[m].mean() if m.any() else np.nan for g, m in groups_by_hand.items()}}
assert all(np.isclose(v, r.result()[k], equal_nan=True) for k, v in mine.items()), (mine, r.result())

lam = float(max(weight_decays))                             # the largest weight decay of this notebook
layer = torch.nn.Linear(8, 4)
x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
layer(x).pow(2).mean().backward()
w0, g = layer.weight.detach().clone(), layer.weight.grad.clone()
build_sgd(layer, lr=base.lr, momentum=base.momentum, weight_decay=lam).step()
torch.testing.assert_close(layer.weight.detach(), w0 - base.lr * (g + lam * w0))
print(f"first model, by hand: overall {mine['overall']:.1f}, many {mine['many']:.1f}, few {mine['few']:.1f} "
      f"(equal to ltlib's); one SGD step with weight decay {lam:g} equals w - lr (g + {lam:g} w)")


# The few-shot group holds only a couple of classes, so a single seed can move it by ten points or more. So the
# notebooks compare two settings **seed by seed**, with one rule for the verdict words, `ltlib.report.findings.RULE`:
# with one seed there is no verdict; with several, the seeds where the difference is positive are counted, and
# the 95 % t-interval of the mean paired difference says whether it is beyond the seed noise. Each row below is
# such a *finding*: the second setting minus the first, in percentage points.

# In[ ]:


print("rule:", F.RULE)
headline = [F.compare(labels[0], runs[labels[0]], labels[-1], runs[labels[-1]], m) for m in ("overall", "many", "few")]
display(F.findings_table(headline))


# ### Training curves
# 
# The training loss, the training accuracy (on the augmented long-tailed batches, so dominated by the head classes)
# and the accuracy on the balanced validation split (`val_split="unused"`: images the long-tailed subset left out,
# measured every `eval_every` epochs), one line per run.

# In[ ]:


fig = lp.plot_training_curves(runs)
lp.save_figure(fig, f"01_training_curves_{profile}")
plt.show()
last = {label: (np.mean([r.history["train_acc"].iloc[-1] for r in rs]),
                np.mean([r.history["val_overall"].dropna().iloc[-1] for r in rs]) if "val_overall" in rs[0].history
                else np.nan) for label, rs in runs.items()}
F.show(F.bullets([f"{label}: {a:.1f} % training accuracy in the last epoch, {v:.1f} % on the balanced validation "
                  "split at its last evaluation (means over seeds)." for label, (a, v) in last.items()]))


# ## 4. Per-class accuracy against class frequency
# 
# Each point is one class: its number of training images (log scale) and its test accuracy, mean ± std over
# seeds.

# In[ ]:


fig = lp.plot_accuracy_vs_frequency(runs)
lp.save_figure(fig, f"01_accuracy_vs_frequency_{profile}")
plt.show()


# ### The cost of the long tail: a balanced control
# 
# Is a class weak because it is rare, or because it is hard? The control trains the same pipeline (same recipe,
# seeds and number of training images, and the first row's weight decay) on a **balanced** subset: every class
# gets the long-tailed set's total divided by the number of classes. The test set is the same. Bars are per-class
# test accuracy; the confusion matrices (first seed, rows normalised to the true class) show where each model's
# errors go.

# In[ ]:


per_class_n = int(data.class_counts.sum()) // data.num_classes
control = run_grid({"balanced": configs[labels[0]].replace(name=f"01-{recipe}-balanced", imbalance_factor=1,
                                                            n_max=per_class_n)}, seeds, device=dev)["balanced"]
balanced = f"balanced control ({per_class_n} per class)"
results.add_runs("balanced control", {labels[0]: runs[labels[0]], balanced: control})
fig = lp.plot_per_class_bars({f"long-tailed, {labels[0]}": runs[labels[0]], balanced: control}, data.classes,
                             data.class_counts)
lp.save_figure(fig, f"01_balanced_control_{profile}")
plt.show()
matrices = {f"long-tailed, {labels[0]} (seed {runs[labels[0]][0].config.seed})": confusion_matrix(runs[labels[0]][0], data),
            f"{balanced} (seed {control[0].config.seed})": confusion_matrix(control[0], data)}
fig = lp.plot_confusions(matrices, data.classes)
lp.save_figure(fig, f"01_confusion_{profile}")
plt.show()


def by_seed_mean(rs, classes):
    """seed -> mean test accuracy over ``classes`` (the long-tailed set's groups, for both models)."""
    return {r.config.seed: float(np.mean(np.asarray(r.result()["per_class"])[classes])) for r in rs}


lt_acc, bal_acc = per_class(runs[labels[0]]).mean(0), per_class(control).mean(0)
hard_lt, hard_bal = int(np.argmin(lt_acc)), int(np.argmin(bal_acc))
confusions = []
for name, m in matrices.items():
    off = m * (1 - np.eye(len(m)))
    i, j = np.unravel_index(int(off.argmax()), off.shape)
    confusions.append(f"{name}: {data.classes[i]} taken for {data.classes[j]} in {100 * m[i, j] / m[i].sum():.0f} % of "
                      f"its test images")
few_classes = list(groups.as_dict()["few"])
F.show(F.bullets([
    F.compare(labels[0], runs[labels[0]], balanced, control, "overall").sentence(),
    F.from_values(labels[0], by_seed_mean(runs[labels[0]], few_classes), balanced, by_seed_mean(control, few_classes),
                  "accuracy on the long-tailed set's few-shot classes").sentence() if few_classes else
    "The long-tailed set has no few-shot class at this imbalance factor.",
    f"The least accurate class is {data.classes[hard_bal]} ({bal_acc[hard_bal]:.1f} %) when balanced and "
    f"{data.classes[hard_lt]} ({lt_acc[hard_lt]:.1f} %) under the long tail (means over seeds).",
    "The most frequent confusion: " + "; ".join(confusions) + ".",
]))


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
                      for label, rs in runs.items()}, index=[f"seed {r.config.seed}" for r in runs[labels[0]]])
results.add_values("norm ratio", norms.rename(index=lambda s: int(s.split()[1])).stack().rename_axis(["seed", "label"])
                   .reset_index(name="value").assign(metric="head/tail norm ratio"))
print("head / tail norm ratio ‖w_0‖ / ‖w_C-1‖ per seed")
display(norms.round(2))


# ## 6. What this run shows
# 
# The cell below writes the findings of *your* run from the tables above: the paired findings by
# `ltlib.report.findings.RULE`, and the two norm ratios as *about the same* when they differ by at most `0.05`.

# In[ ]:


first = summary.loc[labels[0]]
accuracy = per_class(runs[labels[0]]).mean(0)
worst = int(np.argmin(accuracy))
members = groups.as_dict()
ratios = norms.mean()
F.show(
    f"**Your run:** {caption([r for rs in runs.values() for r in rs])}.",
    F.bullets([
        f"**What the long tail costs.** Without weight decay ({labels[0]}) the {len(members['many'])} many-shot "
        f"classes average {first['many']:.1f} % and the {len(members['few'])} few-shot classes {first['few']:.1f} %; "
        f"the least accurate class is {data.classes[worst]} ({data.class_counts[worst]} training images) at "
        f"{accuracy[worst]:.1f} %.",
        *[f.sentence() for f in headline],
        f"**Classifier norms.** The head / tail norm ratio is {ratios[labels[0]]:.2f} with {labels[0]} and "
        f"{ratios[labels[-1]]:.2f} with {labels[-1]} (mean over seeds): "
        + ("about the same (within `0.05`)." if abs(ratios[labels[-1]] - ratios[labels[0]]) <= 0.05 else
           "weight decay made the rows *more* unequal here." if ratios[labels[-1]] > ratios[labels[0]] else
           "weight decay evened the rows out here, as the paper describes."),
    ]),
    f"Verdict words follow `ltlib.report.findings.RULE`: {F.RULE}.",
)


# ## 7. What the long path measured
# 
# The short path trains one seed. Here are the same two settings on seeds 0–2, as `make tutorial FULL=1` ran
# them, loaded from the committed results file with its provenance. When you run the long path yourself, the
# two tables show the same numbers: every run is bitwise reproducible on a given thread count.

# In[ ]:


committed = longpath.load("01", dataset, profile)
if committed is None:
    print(f"no long-path results are committed for {dataset} in the {profile!r} profile")
else:
    long_runs = longpath.results(committed, "runs")
    F.show(f"**Long path:** {longpath.provenance(committed)}.")
    display(display_table(summarize(long_runs)))
    shared = [label for label in labels if label in long_runs]
    if len(shared) == 2:
        F.show(F.bullets([F.compare(shared[0], long_runs[shared[0]], shared[1], long_runs[shared[1]], m).sentence()
                          for m in ("overall", "few")]))


# **Does the paper's effect need a longer schedule?** A pilot trained the same two settings for 200 epochs, and
# for contrast with LDAM-DRW's `lr=0.1` (`ce` recipe) for 30 epochs, three seeds each, in fp32 and in
# bf16 autocast: `python exp/summaries/pilot_wd.py wb200_fp32 wb200 ce_fp32` writes `exp/summaries/pilot_wd.csv`,
# which the cell below reads. Its runs trained with two threads each, before ltlib pinned one thread per run,
# and the file records neither the commit nor the date.

# In[ ]:


pilot = pd.read_csv(longpath.longpath_dir().parent / "pilot_wd.csv")
pilot = pilot[pilot["selection"] == "last"]


def pilot_finding(variant, metric):
    """WD 5e-3 against WD 0 in one variant of the pilot, paired by seed."""
    part = pilot[pilot["variant"] == variant]
    low, high = (part[part["wd"] == wd].set_index("seed")[metric].to_dict() for wd in sorted(part["wd"].unique()))
    return F.from_values("WD 0", low, "WD 5e-3", high, metric)


columns = ["overall", "many", "medium", "few", "norm_ratio"]
table = pilot.groupby(["variant", "epochs", "lr", "precision", "wd"], sort=False)[columns].agg(["mean", "std"])
display(pd.DataFrame({m: [format_mean_std(a, b) for a, b in zip(table[(m, "mean")], table[(m, "std")])]
                      for m in columns}, index=table.index))
variants = {"wb200_fp32": "`wb`, 200 epochs, fp32", "wb200": "`wb`, 200 epochs, bf16 autocast",
            "ce_fp32": "`ce` (lr 0.1), 30 epochs, fp32"}
ratio = pilot.groupby(["variant", "wd"])["norm_ratio"].mean()
F.show(
    "**Pilot (a committed file, not this run):** WD 5e-3 against WD 0, paired by seed.",
    F.bullets([pilot_finding(v, m).sentence(f"{name}, {F.METRIC_NAMES[m]}")
               for v, name in variants.items() for m in ("overall", "few")]
              + [f"{name}: head / tail norm ratio {ratio[v].iloc[0]:.2f} with WD 0, {ratio[v].iloc[-1]:.2f} with WD 5e-3."
                 for v, name in variants.items()]),
)


# **How to read these.** Compare the verdicts above with the paper's claim. A difference whose sign changes
# between seeds, or that appears or vanishes when only the arithmetic changes (fp32 against bf16 autocast), is
# not one to build on; that is why ltlib trains in fp32 by default. And if weight decay helps without balancing
# the norms (a head / tail ratio that grows), the paper's explanation is not what is at work on this data.
# Unequal row norms are also an opportunity: rescaling the rows after training (τ-normalisation, notebook 02)
# can undo them without retraining.
# 
# ## 8. For reference: the weight-balancing demo on CIFAR-100-LT
# 
# These are **reported** numbers, read from the outputs committed in weight balancing's demo notebook, from
# `ltlib.report.papers`. They are not comparable cell by cell with ours: different data, network, schedule and
# protocol.

# In[ ]:


keys = {"cross-entropy, no WD (\"naive\")": "wb/stage1-no-wd", "cross-entropy, WD 5e-3": "wb/stage1-wd"}
display(pd.DataFrame({m: [reported(k if m == "overall" else f"{k}:{m}").value for k in keys.values()]
                      for m in ("overall", "many", "medium", "few")}, index=list(keys)))
F.show("Source:", sources(keys.values()))


# To run this notebook at that scale on a GPU: `papermill notebooks/01_first_stage_training.ipynb out.ipynb
# -p dataset cifar100_lt -p profile paper -p recipe wb` (CIFAR-100 files in `~/.cache/ltlib/cifar-100-python`
# or `$LTLIB_CIFAR100_DIR`).
# 
# ## Summary and what comes next
# 
# - Plain cross-entropy on a long-tailed set favours the head: read the many- and few-shot rows of section 3
#   and the per-class figure, never the overall number alone.
# - Few-shot accuracy moves a lot between seeds. Compare settings seed by seed, and believe a difference only when
#   the rule says it is beyond the seed noise; one seed gives no verdict.
# - Whether weight decay helps, and whether it balances the classifier norms, is what sections 6 and 7 computed
#   for this data; the paper's numbers are in section 8.
# 
# **Try this**
# - `-p recipe ce`: the same comparison at LDAM-DRW's `lr=0.1` (ten times the decay per step). Look at
#   the few-shot finding and the norm ratio.
# - `-p epochs 100`: does the weight-decay finding change sign with a longer schedule?
# - `-p imbalance_factor 10`: a milder tail. Which group gains most?
# 
# Notebook 02 starts from the weight-decay model trained here and retrains only its classifier: L2- and
# τ-normalisation of the weight rows, and weight balancing's second stage (class-balanced loss, weight
# decay and a MaxNorm constraint).

# In[ ]:


results.save()
finish()
