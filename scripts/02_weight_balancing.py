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
# **Papers and code.** Weight balancing: [arXiv:2203.14197](https://arxiv.org/abs/2203.14197),
# [ShadeAlsha/LTR-weight-balancing](https://github.com/ShadeAlsha/LTR-weight-balancing) (`demo2`). τ-normalisation
# and cRT: Kang et al., ICLR 2020 ([arXiv:1910.09217](https://arxiv.org/abs/1910.09217),
# [facebookresearch/classifier-balancing](https://github.com/facebookresearch/classifier-balancing)). The
# class-balanced loss: Cui et al., CVPR 2019 ([arXiv:1901.05555](https://arxiv.org/abs/1901.05555),
# [richardaecn/class-balanced-loss](https://github.com/richardaecn/class-balanced-loss)).
# 
# **What you will learn**
# - τ-normalisation, $w_c \leftarrow w_c / \lVert w_c\rVert^{\tau}$, and how to choose τ without looking at the test set;
# - weight balancing's second stage exactly as its code runs it: a class-balanced *binary* cross-entropy on
#   the softmax, `weight_decay=0.1`, and MaxNorm by projected gradient descent, projected after every step
#   (the paper) or after every epoch (the released demo);
# - whether MaxNorm actually binds: the fraction of rows it clips at each projection;
# - what each repair does to the per-class weight norms.
# 
# The stage-1 models are notebook 01's (loaded from `exp/`, or trained if missing); stage 2 trains only the
# classifier, so this notebook is quick once notebook 01 has run. `make tutorial` runs it on seed 0;
# `make tutorial FULL=1` on seeds 0–2. Every result in the text is rendered from the runs above it.

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
import torch
from IPython.display import display

import ltlib.report.plots as lp
from ltlib.analysis.posthoc import best_tau, tau_normalized_weight, tau_result, tau_sweep
from ltlib.methods.losses import effective_number_weights
from ltlib.report import findings as F
from ltlib.report import longpath, toys
from ltlib.report.notebook import describe, finish, resolve_profile, setup
from ltlib.report.papers import reference_column, sources
from ltlib.report.results import caption, display_table, per_class, summarize
from ltlib.runs.config import make_config
from ltlib.runs.experiment import load_data
from ltlib.runs.jobs import run_grid
from ltlib.runs.stage2 import MaxNorm, make_stage2

profile = resolve_profile(profile)
dev = setup(device)
stage1 = make_config(profile, stage1_recipe, dataset, imbalance_factor=imbalance_factor)
data = load_data(stage1)
results = longpath.NotebookResults("02", dataset, profile)
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
# shrinks large rows more than small ones: $\tau = 0$ leaves the model as trained, $\tau = 1$ gives unit rows
# (L2-normalisation). The bias is left as it is, as in weight balancing's code. The features are computed
# once, so a sweep over 21 values of τ costs seconds.
# 
# The demo uses $\tau = 1.9$, tuned for CIFAR-100-LT. Here τ is chosen per model on the **validation split**
# (images the long-tailed subset left unused, `val_per_class` per class; never the test set).
# 
# **The core lines.** τ-normalisation of the first seed's trained classifier, written out in plain torch and
# checked against ltlib's `tau_normalized_weight` (the one the sweep uses):

# In[ ]:


W = with_wd[0].model.classifier.weight.detach().float()      # one row per class
tau = 1.9
mine = W / W.norm(dim=1, keepdim=True) ** tau                 # each row divided by its norm to the power tau
torch.testing.assert_close(mine, tau_normalized_weight(W, tau))
head, tail = int(np.argmax(data.class_counts)), int(np.argmin(data.class_counts))
print(f"row norms, head class ({data.classes[head]}) / tail class ({data.classes[tail]}): "
      f"{W[head].norm():.3f} / {W[tail].norm():.3f} as trained, {mine[head].norm():.3f} / {mine[tail].norm():.3f} "
      f"at tau = {tau:g}; the from-scratch lines equal ltlib's")


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
#   each sample weighted by its class's effective-number weight ($\beta = 0.9999$), averaged over batch × classes;
# - SGD, `lr=0.01`, `momentum=0.9`, cosine stepped before each epoch, **`weight_decay=0.1`**;
# - **MaxNorm**: after a step, every row whose norm exceeds $\delta = \min_c r_c + 0.1\,(\max_c r_c - \min_c r_c)$
#   of the *starting* row norms is scaled back to δ; the bias is never constrained.
# 
# The paper projects after every iteration; the released demo after every epoch. We run both.
# `stage2_bn` says whether BatchNorm keeps updating its running statistics (the demo's behaviour) or not.
# cRT retrains the classifier with plain cross-entropy on class-balanced batches instead.
# 
# **The core lines.** The effective-number class weights and one MaxNorm projection, written out and checked against
# ltlib's (`effective_number_weights`, `MaxNorm.project`), on the same trained classifier:

# In[ ]:


beta = 0.9999
n = torch.tensor(data.class_counts, dtype=torch.float64)
weights = (1 - beta) / (1 - beta ** n)                         # Cui et al.'s effective number of samples
weights = (weights / weights.sum() * len(n)).float()           # normalised to sum to the number of classes
torch.testing.assert_close(weights, effective_number_weights(data.class_counts.tolist(), beta))

norms = W.norm(dim=1)
delta = norms.min() + maxnorm_thresh * (norms.max() - norms.min())   # relative to the starting rows
projected = W * torch.clamp(delta / norms, max=1.0)[:, None]          # rows above delta scaled back to it
ours = W.clone()
MaxNorm(W, maxnorm_thresh).project(ours)
torch.testing.assert_close(projected, ours)
print(f"class weights from {weights.min():.3f} ({data.classes[int(weights.argmin())]}) to {weights.max():.3f} "
      f"({data.classes[int(weights.argmax())]}); MaxNorm at thresh {maxnorm_thresh:g} clips "
      f"{int((norms > delta).sum())} of {len(norms)} rows of this classifier; both equal ltlib's")


# **The projection, drawn.** The same classifier's rows: each class is a spoke (the angles are only a layout; the
# projection keeps a row's direction and changes its length), the shaded disc is MaxNorm's ball, and an arrow shows
# each row that the projection shortens to δ.

# In[ ]:


fig, drawn = toys.plot_maxnorm_rows(W, maxnorm_thresh, data.classes)
lp.save_figure(fig, f"02_maxnorm_ball_{profile}")
plt.show()
inside = [data.classes[c] for c in np.flatnonzero(drawn["before"] <= drawn["delta"])]
print(f"delta = {drawn['delta']:.3g}; rows already inside the ball, left as they are: {', '.join(inside) or 'none'}")


# In[ ]:


base = stage1_config(stage1_weight_decay)
stage2 = run_grid({
    "WB stage 2, MaxNorm per iteration": make_stage2(base, "wb", maxnorm_thresh=maxnorm_thresh,
                                                     maxnorm_every="iteration", bn=stage2_bn),
    "WB stage 2, MaxNorm per epoch (demo)": make_stage2(base, "wb", maxnorm_thresh=maxnorm_thresh,
                                                        maxnorm_every="epoch", bn=stage2_bn),
    "cRT (CE, class-balanced sampler)": make_stage2(base, "crt", bn=stage2_bn),
}, seeds, device=dev)
wb_iter, wb_epoch, crt = stage2
print(f"stage 2: {stage2[wb_iter][0].config.epochs} epochs, BN {stage2_bn}")


# ### Does MaxNorm bind?
# 
# A constraint that never clips does nothing. Each point is one projection: the fraction of the classifier's
# rows that were longer than δ and got scaled back.

# In[ ]:


fig = lp.plot_clip_fractions({k: v for k, v in stage2.items() if "MaxNorm" in k})
lp.save_figure(fig, f"02_maxnorm_clip_fractions_{profile}")
plt.show()
clipping = {}
for label in (wb_iter, wb_epoch):
    fractions = [np.asarray(r.metrics["clip_fractions"]) for r in stage2[label]]
    final = np.array([r.metrics["classifier_norms"] for r in stage2[label]])
    clipping[label] = {
        "projections per run": len(fractions[0]),
        "delta": np.mean([r.history["maxnorm_delta"].iloc[0] for r in stage2[label]]),
        "clipped at the first projection": np.mean([f[0] for f in fractions]),
        "clipped, mean over all projections": np.mean([f.mean() for f in fractions]),
        "projections after the first that clip": np.mean([(f[1:] > 0).mean() for f in fractions]),
        "final row norm, max / min": np.mean(final.max(1) / final.min(1)),
    }
clipping = pd.DataFrame(clipping).T
display(clipping.round(3))


# ## 4. Every repair side by side
# 
# Last-epoch test accuracy in %, mean ± std over seeds, strict groups. The last column is what weight
# balancing's demo notebook **reports** for CIFAR-100-LT at IF = 100 (from `ltlib.report.papers`; source below): a
# reference for the direction of each step, not a number to match.

# In[ ]:


rows = {
    f"stage 1, no WD": naive,
    f"stage 1, WD {stage1_weight_decay:g}": with_wd,
    "+ L2-norm (τ = 1)": [tau_result(r, s, 1.0) for r, s in zip(with_wd, sweeps)],
    "+ τ-norm, τ chosen on validation": [tau_result(r, s, t) for r, s, t in zip(with_wd, sweeps, chosen)],
    "+ τ-norm, τ = 1.9 (the demo's)": [tau_result(r, s, 1.9) for r, s in zip(with_wd, sweeps)],
    **stage2,
}
reported_keys = {"stage 1, no WD": "wb/stage1-no-wd", f"stage 1, WD {stage1_weight_decay:g}": "wb/stage1-wd",
                 "+ L2-norm (τ = 1)": "wb/l2-norm", "+ τ-norm, τ = 1.9 (the demo's)": "wb/tau-norm",
                 "WB stage 2, MaxNorm per epoch (demo)": "wb/stage2"}
summary = summarize(rows)
table = display_table(summary)
table["reported, CIFAR-100-LT (demo)"] = reference_column(reported_keys, table.index)
results.add_runs("repairs", rows)
print(caption(with_wd))
display(table)
F.show("Reported numbers:", sources(reported_keys.values()))


# Each repair against the weight-decay model it starts from, paired by seed (`ltlib.report.findings`: one seed gives
# no verdict; several seeds give a sign count and a 95 % t-interval):

# In[ ]:


start = f"stage 1, WD {stage1_weight_decay:g}"
against_start = [F.compare(start, with_wd, label, rows[label], m)
                 for label in rows if label not in ("stage 1, no WD", start) for m in ("overall", "few")]
display(F.findings_table(against_start))


# ## 5. What each repair does to the per-class norms

# In[ ]:


fig = lp.plot_classifier_norms({
    f"stage 1, WD {stage1_weight_decay:g}": with_wd,
    "+ τ-norm (τ on validation)": rows["+ τ-norm, τ chosen on validation"],
    "WB stage 2 (per iteration)": stage2[wb_iter],
    "cRT": stage2[crt],
})
lp.save_figure(fig, f"02_classifier_norms_{profile}")
plt.show()


# ## 6. What this run shows
# 
# Rendered from the tables above. Two rules besides the paired-seed rule: a classifier's rows count as
# *nearly equal* when the head / tail norm ratio lies between `0.9` and `1.1`, and MaxNorm *binds* after its first
# projection when any later projection clips a row.

# In[ ]:


def finding(label, metric, against=start):
    return F.compare(against, rows[against], label, rows[label], metric)


ratio = np.mean([r.metrics["classifier_norms"][0] / r.metrics["classifier_norms"][-1] for r in with_wd])
gain = per_class(stage2[wb_iter]).mean(0) - per_class(with_wd).mean(0)
up, down = int(np.argmax(gain)), int(np.argmin(gain))
clip = clipping.loc[wb_iter]
binds = clip["projections after the first that clip"] > 0
F.show(
    f"**Your run:** {caption(with_wd)}.",
    F.bullets([
        f"**The stage-1 model's rows** have a head / tail norm ratio of {ratio:.2f} (mean over seeds): "
        + ("nearly equal, so τ has little to undo." if abs(ratio - 1) <= 0.1 else "unequal, so τ has something to undo."),
        f"**τ chosen on validation:** {', '.join(f'{t:g}' for t in chosen)} (seed{'s' * (len(chosen) > 1)} "
        f"{', '.join(map(str, seeds))}). " + finding("+ τ-norm, τ chosen on validation", "overall").sentence(),
        finding("+ τ-norm, τ = 1.9 (the demo's)", "overall").sentence(),
        finding(wb_iter, "overall").sentence(),
        finding(wb_iter, "few").sentence()
        + f" The class that gains most is {data.classes[up]} ({F.signed(gain[up])} points, mean over seeds), the one "
          f"that loses most {data.classes[down]} ({F.signed(gain[down])}).",
        f"**MaxNorm** (per iteration): δ = {clip['delta']:.3f}; the first projection clips "
        f"{clip['clipped at the first projection']:.0%} of the rows, and "
        f"{clip['projections after the first that clip']:.1%} of the later projections clip any row "
        f"({clip['clipped, mean over all projections']:.1%} of the rows over all "
        f"{clip['projections per run']:.0f} projections). "
        + ("After the first projection it does not bind: the weight decay keeps the rows below δ. "
           if not binds else "It keeps binding after the first projection. ")
        + f"The rows end with a max / min norm ratio of {clip['final row norm, max / min']:.2f}.",
        finding(wb_epoch, "overall", against=wb_iter).sentence("**Per epoch against per iteration**, overall accuracy"),
        finding(crt, "overall").sentence(),
        finding(crt, "few").sentence(),
        finding(crt, "overall", against=wb_iter).sentence(f"**cRT** against **{wb_iter}**, overall accuracy"),
    ]),
    f"Verdict rule: {F.RULE}.",
)


# ## 7. What the long path measured
# 
# The same repairs on seeds 0–2, as `make tutorial FULL=1` ran them, from the committed results file.

# In[ ]:


committed = longpath.load("02", dataset, profile)
if committed is None:
    print(f"no long-path results are committed for {dataset} in the {profile!r} profile")
else:
    long_rows = longpath.results(committed, "repairs")
    F.show(f"**Long path:** {longpath.provenance(committed)}.")
    display(display_table(summarize(long_rows)))
    F.show(F.bullets([F.compare(start, long_rows[start], label, long_rows[label], m).sentence()
                      for label in (wb_iter, crt, "+ τ-norm, τ chosen on validation") if label in long_rows
                      and start in long_rows for m in ("overall", "few")]))


# ## Summary and what comes next
# 
# - τ- and L2-normalisation fix classifiers whose rows have *unequal* norms; whether notebook 01's model has
#   such rows, and what rescaling them did, is in section 6.
# - Retraining only the classifier (weight balancing's CB loss + `weight_decay=0.1` + MaxNorm, or cRT) changes the
#   few-shot classes most: read the paired findings, and the classes that pay for it.
# - Whether MaxNorm does the work, or the large weight decay does, shows in its clip fractions: a constraint
#   that stops clipping after its first projection is not what balances the rows.
# 
# **Try this**
# - `-p maxnorm_thresh 0.5`: a looser MaxNorm radius. Does it still clip after the first projection?
# - `-p stage2_bn frozen`: freeze BatchNorm's statistics in stage 2 and compare the paired findings.
# - `-p stage1_recipe ce`: repair a model trained at lr 0.1. Compare its head / tail norm ratio with the `wb` model's first.
# 
# Notebook 03 changes the optimiser instead of the classifier: sharpness-aware minimisation (SAM, ASAM,
# ImbSAM) in the first stage.

# In[ ]:


results.save()
finish()
