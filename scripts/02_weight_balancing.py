# Generated from notebooks/02_weight_balancing.ipynb by `make scripts` (nbconvert). Edit the notebook, not this file.
# Run: python scripts/02_weight_balancing.py  (LTLIB_PROFILE=smoke for a quick check)

# # 02 · Weight balancing: fixing the classifier of a trained model
# 
# **The question.** Notebook 01 trained a first-stage model whose tail classes lag. Weight balancing
# (Alshammari et al., CVPR 2022) keeps that model's features and only repairs its last layer. How far do
# the cheap repairs go: rescaling the classifier's rows after training (L2- and τ-normalisation), or
# retraining the classifier for a few epochs with a class-balanced loss, weight decay and a MaxNorm
# constraint (the paper's second stage)? And how does that compare with classifier re-training (cRT)?
# 
# **What you will learn**
# - τ-normalisation, $w_c \leftarrow w_c / \lVert w_c\rVert^{\tau}$, and how to choose τ without looking at the test set;
# - weight balancing's second stage exactly as its code runs it: a class-balanced *binary* cross-entropy on
#   the softmax, weight decay 0.1, and MaxNorm by projected gradient descent, projected after every step
#   (the paper) or after every epoch (the released demo);
# - whether MaxNorm actually binds: the fraction of rows it clips at each projection;
# - what each repair does to the per-class weight norms.
# 
# The stage-1 models are notebook 01's (loaded from `exp/`, or trained if missing). In the `quick` profile
# this notebook adds about 3 minutes on a 2-core CPU when notebook 01 has run. `make tutorial` runs it on seed 0 only (the README gives each notebook's time); `make tutorial FULL=1` runs it as it stands.

# In[ ]:


# Parameters (papermill: -p name value). LTLIB_PROFILE overrides `profile` for the exported script.
dataset = "fashion_mnist_lt"
imbalance_factor = 100
profile = "quick"               # "smoke" (tests), "quick" (CPU, minutes), "paper" (GPU)
stage1_recipe = "wb"            # notebook 01's recipe: "wb" (lr 0.01) or "ce" (lr 0.1)
stage1_weight_decay = 5e-3      # the stage-1 model to repair: notebook 01's weight-decay model
seeds = [0, 1, 2]
maxnorm_thresh = 0.1            # MaxNorm radius: min + thresh * (max - min) of the starting row norms
stage2_bn = "train"             # "train": BN statistics keep updating, as the demo does; "frozen"
device = "auto"


# In[ ]:


import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

import ltlib.plots as lp
from ltlib.config import make_config
from ltlib.experiment import load_data
from ltlib.jobs import run_grid
from ltlib.notebook import describe, resolve_profile, setup
from ltlib.results import caption, display_table, paired_differences, summarize
from ltlib.stage2 import best_tau, make_stage2, tau_result, tau_sweep

profile = resolve_profile(profile)
dev = setup(device)
stage1 = make_config(profile, stage1_recipe, dataset, imbalance_factor=imbalance_factor)
data = load_data(stage1)
print(describe(stage1.replace(weight_decay=stage1_weight_decay)))


# ## 1. The stage-1 models
# 
# Notebook 01 trained cross-entropy with and without weight decay. We repair the weight-decay model (as the
# demo does) and keep the model without weight decay as the baseline row. Same names and settings as
# notebook 01, so these load from its cache.

# In[ ]:


def stage1_config(wd):
    return stage1.replace(name=f"01-{stage1_recipe}-wd{wd:g}", weight_decay=float(wd))

stage1_runs = run_grid({"WD 0": stage1_config(0.0), "WD": stage1_config(stage1_weight_decay)}, seeds, device=dev)
naive, with_wd = stage1_runs["WD 0"], stage1_runs["WD"]
print(caption(with_wd))


# ## 2. L2- and τ-normalisation: rescale the rows, keep everything else
# 
# The classifier scores class $c$ with $w_c^\top z + b_c$. Dividing each row by $\lVert w_c\rVert^{\tau}$
# shrinks large rows more than small ones: τ = 0 leaves the model as trained, τ = 1 gives unit rows
# (L2-normalisation). The bias is left as it is, as in weight balancing's code. The features are computed
# once, so a sweep over 21 values of τ costs seconds.
# 
# The demo uses τ = 1.9, tuned for CIFAR-100-LT. Here τ is chosen per model on the **validation split**
# (100 images per class from training images the long-tailed subset left unused, never the test set).

# In[ ]:


sweeps = [tau_sweep(r, data, device=dev) for r in with_wd]
chosen = [best_tau(s, "val") if (s["split"] == "val").any() else 1.0 for s in sweeps]
print("tau chosen on validation, per seed:", dict(zip(seeds, chosen)))
fig = lp.plot_tau_sweep(sweeps, chosen, title=f"τ-normalising the WD {stage1_weight_decay:g} model: "
                        + caption(with_wd))
lp.save_figure(fig, f"02_tau_sweep_{profile}")
plt.show()


# ## 3. Weight balancing's second stage: CB loss + weight decay + MaxNorm
# 
# The backbone is frozen and only the classifier (weight and bias) is retrained for 10 epochs with:
# - the class-balanced loss *as its code computes it*: a binary cross-entropy on the softmax probabilities,
#   each sample weighted by its class's effective-number weight (β = 0.9999), averaged over batch × classes;
# - SGD, lr 0.01, momentum 0.9, cosine stepped before each epoch, **weight decay 0.1**;
# - **MaxNorm**: after a step, every row whose norm exceeds $\delta = \min_c r_c + 0.1\,(\max_c r_c - \min_c r_c)$
#   of the *starting* row norms is scaled back to δ; the bias is never constrained.
# 
# The paper projects after every iteration; the released demo after every epoch. We run both.
# `stage2_bn` says whether BatchNorm keeps updating its running statistics (the demo's behaviour) or not.

# In[ ]:


base = stage1_config(stage1_weight_decay)
stage2 = run_grid({
    "WB stage 2, MaxNorm per iteration": make_stage2(base, "wb", maxnorm_thresh=maxnorm_thresh,
                                                     maxnorm_every="iteration", bn=stage2_bn),
    "WB stage 2, MaxNorm per epoch (demo)": make_stage2(base, "wb", maxnorm_thresh=maxnorm_thresh,
                                                        maxnorm_every="epoch", bn=stage2_bn),
    "cRT (CE, class-balanced sampler)": make_stage2(base, "crt", bn=stage2_bn),
}, seeds, device=dev)
print(f"stage 2: {stage2['WB stage 2, MaxNorm per iteration'][0].config.epochs} epochs, BN {stage2_bn}")


# ### Does MaxNorm bind?
# 
# A constraint that never clips does nothing. Each point is one projection: the fraction of the 10 rows
# that were longer than δ and got scaled back.

# In[ ]:


fig = lp.plot_clip_fractions({k: v for k, v in stage2.items() if "MaxNorm" in k})
lp.save_figure(fig, f"02_maxnorm_clip_fractions_{profile}")
plt.show()
for label, runs in stage2.items():
    if "MaxNorm" in label:
        fr = [np.asarray(r.metrics["clip_fractions"]) for r in runs]
        delta = np.mean([r.history["maxnorm_delta"].iloc[0] for r in runs])
        print(f"{label}: {len(fr[0])} projections per run, delta {delta:.3f}; rows clipped: first projection "
              f"{np.mean([f[0] for f in fr]):.2f}, mean {np.mean([f.mean() for f in fr]):.3f}, "
              f"last {np.mean([f[-1] for f in fr]):.2f} (means over seeds)")


# ## 4. Every repair side by side
# 
# Last-epoch test accuracy in %, mean ± std over seeds, strict groups. The last column is what weight
# balancing's demo notebook **reports** for CIFAR-100-LT at IF = 100 (its ResNet-34 variant, 320 + 10 epochs,
# flip test-time augmentation, best epoch chosen on the test set): a reference for the direction of each
# step, not a number to match.

# In[ ]:


rows = {
    f"stage 1, no WD": naive,
    f"stage 1, WD {stage1_weight_decay:g}": with_wd,
    "+ L2-norm (τ = 1)": [tau_result(r, s, 1.0) for r, s in zip(with_wd, sweeps)],
    "+ τ-norm, τ chosen on validation": [tau_result(r, s, t) for r, s, t in zip(with_wd, sweeps, chosen)],
    "+ τ-norm, τ = 1.9 (the demo's)": [tau_result(r, s, 1.9) for r, s in zip(with_wd, sweeps)],
    **stage2,
}
reported = {"stage 1, no WD": 40.0, f"stage 1, WD {stage1_weight_decay:g}": 47.9, "+ L2-norm (τ = 1)": 51.0,
            "+ τ-norm, τ = 1.9 (the demo's)": 52.6, "WB stage 2, MaxNorm per epoch (demo)": 53.1}
table = display_table(summarize(rows))
table["reported, CIFAR-100-LT (demo)"] = [f"{reported[k]:.1f}" if k in reported else "" for k in table.index]
print(caption(with_wd))
display(table)


# Paired by seed against the weight-decay model (percentage points; the last column says whether the sign
# holds in every seed):

# In[ ]:


pairs = {label: paired_differences(with_wd, runs).loc[["overall", "few"]]
         for label, runs in rows.items() if label not in ("stage 1, no WD", f"stage 1, WD {stage1_weight_decay:g}")}
display(pd.concat(pairs).round(1))


# ## 5. What each repair does to the per-class norms

# In[ ]:


fig = lp.plot_classifier_norms({
    f"stage 1, WD {stage1_weight_decay:g}": with_wd,
    "+ τ-norm (τ on validation)": rows["+ τ-norm, τ chosen on validation"],
    "WB stage 2 (per iteration)": stage2["WB stage 2, MaxNorm per iteration"],
    "cRT": stage2["cRT (CE, class-balanced sampler)"],
})
lp.save_figure(fig, f"02_classifier_norms_{profile}")
plt.show()


# ## 6. What the data shows
# 
# **What we measured when we ran this notebook** (quick profile: Fashion-MNIST-LT IF = 100, 2,478 images,
# ResNet-32 width 0.5; stage 1 = notebook 01's `wb` model with weight decay 5e-3, 30 epochs; stage 2 =
# 10 epochs at batch 128, BN in train mode as in the demo; fp32; seeds 0–2; 2-core AMD EPYC CPU). Last-epoch
# test accuracy, mean ± std:
# 
# | model | overall | many | medium | few |
# |---|---|---|---|---|
# | stage 1, WD 5e-3 | 64.7 ± 1.6 | 81.5 ± 1.4 | 57.1 ± 0.2 | 34.1 ± 9.9 |
# | + τ-norm, τ chosen on validation | 64.5 ± 1.7 | 81.3 ± 1.3 | 56.7 ± 0.5 | 33.9 ± 7.3 |
# | WB stage 2, MaxNorm per iteration | 69.5 ± 0.6 | 82.9 ± 1.3 | 58.7 ± 0.8 | 52.2 ± 7.0 |
# | WB stage 2, MaxNorm per epoch (demo) | 69.8 ± 0.8 | 82.9 ± 1.2 | 58.8 ± 1.0 | 53.5 ± 7.9 |
# | cRT | **70.0 ± 1.0** | 77.9 ± 1.8 | 60.1 ± 1.4 | **65.0 ± 7.0** |
# 
# - **Rescaling the rows does nothing for this model.** Its rows are already nearly balanced (head / tail
#   ratio 1.2, notebook 01), so there is nothing for τ to undo: the validation split picks τ = 0.6, 1.3 and 0.1
#   for the three seeds, and the test accuracy moves by −0.2 to −0.3 points. The demo's τ = 1.9 costs 0.7–3.4
#   points overall. τ-normalisation repairs *unequal* norms; on a model with equal norms it is a no-op at best.
# - **Retraining the classifier helps, in every seed.** Weight balancing's second stage lifts overall accuracy
#   by 3.6–5.7 points and few-shot accuracy by 13–23 points (Bag 50 → 70 %, Ankle boot 18 → 35 %), paid for
#   by T-shirt and Pullover (−5 to −8 points).
# - **MaxNorm barely binds.** Its radius δ = min + 0.1·(max − min) of the starting norms is about 1.15. The
#   first projection clips most rows (83 % per iteration, 63 % per epoch, averaged over seeds); after that
#   weight decay 0.1 keeps every row below δ, and the clip fraction is 0 for the rest of training (mean over
#   all 200 projections: 0.4 %). The rows end at about 0.49, **all equal**: it is the large weight decay, not
#   the constraint, that balances them. This is also why per-iteration and per-epoch projection give the same
#   accuracy here (paired: per epoch +0.1 / +0.5 / +0.3 overall), and a likely reason why a user of the
#   original code reported that MaxNorm "doesn't seem to be working".
# - **cRT does better still** on this data: +4.4 to +6.6 overall and +29 to +35 few-shot in every seed, with a
#   class-balanced sampler and plain cross-entropy, at a larger cost to the head (many −3.6 points).
# 
# Caveats: 3 seeds, one data set, a small network; the stage-1 model is undertrained at this scale (notebook
# 01), which leaves a lot for any classifier retraining to fix. The CIFAR-100-LT column is reported by the
# demo for a different network, schedule and protocol.
# 
# ## Summary and what comes next
# 
# - τ- and L2-normalisation fix classifiers whose rows have *unequal* norms; notebook 01's weight-decay
#   model has nearly equal ones, and rescaling it changed nothing.
# - Retraining only the classifier (weight balancing's CB loss + WD 0.1 + MaxNorm, or cRT) lifted few-shot
#   accuracy by 13–35 points in every seed, at a small cost to the head.
# - In weight balancing's second stage the large weight decay equalises the rows; MaxNorm clips only at the
#   first projection.
# 
# Notebook 03 changes the optimiser instead of the classifier: sharpness-aware minimisation (SAM, ASAM,
# ImbSAM) in the first stage.
