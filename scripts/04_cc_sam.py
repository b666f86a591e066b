# Generated from notebooks/04_cc_sam.ipynb by `make scripts` (nbconvert). Edit the notebook, not this file.
# Run: python scripts/04_cc_sam.py  (LTLIB_PROFILE=smoke for a quick check)

# # 04 · CC-SAM: class-conditional sharpness, in two stages
# 
# **The question.** *Class-Conditional SAM* (CC-SAM, Zhou et al., CVPR 2023) perturbs differently from SAM and
# ImbSAM (notebook 03): each class gets its own perturbation of the **classifier**, along that class's own
# gradient, with a radius that grows as the class gets rarer. A second stage then retrains the classifier alone on
# class-balanced batches, against features pushed in the direction that hurts them most. Which parts help, and at
# what radius does the perturbation do anything at all?
# 
# **Paper and code.** Zhou et al., CVPR 2023 (the CVF open-access paper and the authors' poster); code
# [zzpustc/CC-SAM](https://github.com/zzpustc/CC-SAM), which `ltlib/methods/ccsam.py` follows (its docstring says
# where and how). Mixup: Zhang et al., ICLR 2018 ([arXiv:1710.09412](https://arxiv.org/abs/1710.09412)).
# 
# **What you will learn**
# - stage 1: the flat loss $\frac{1}{B}\sum_i \mathrm{CE}\big((\theta + \varepsilon_{y_i})(z_i), y_i\big)$ with a
#   per-class $\varepsilon_c$ along $g_c = \nabla_\theta \operatorname{mean}_{y_i = c}\ell_i$ and
#   $\lVert\varepsilon_c^t\rVert = r\,\big(P\,\lVert\theta\rVert^2 / (4\,(n_c - 1)\,\lVert g_c^t\rVert^2)\big)^{1/4}$,
#   mixed with the clean (mixup) loss as $(1 - f)\,L_{clean} + f\,L_{flat}$;
# - why the released radius ($r = 10^{-6}$) does next to nothing, and what a radius that bites does;
# - why CC-SAM without mixup can run away, and how to see it in the logged radii;
# - stage 2: a frozen backbone, a class-aware sampler, and adversarial features
#   $z + \lambda w_c G_c / \lVert G_c\rVert_F$ phased in with $\alpha_e = \min\big((e+1)/E_2, \text{up\_limit}\big)$;
# - the poster's ablation (direction, magnitude, both, stage 2), rerun on our data.
# 
# Stage 1 is a *step strategy* (`step="ccsam"`) and mixup a *mixing rule* (`mixing="mixup"`); stage 2 is a
# stage-2 recipe (`make_stage2(stage1, "ccsam")`). A CC-SAM step costs about one plain step: the per-class
# gradients of a linear classifier have a closed form (two B × B Gram matrices), so there is no backward pass per
# class. `make tutorial` runs this notebook on seed 0 without the radius sweep and the poster's ablation
# (`extras=False`); `make tutorial FULL=1` runs it on seeds 0–2 with both. Every result in the text is rendered
# from the runs above it.

# In[ ]:


# Parameters (papermill: -p name value). LTLIB_PROFILE overrides `profile` for the exported script.
dataset = "fashion_mnist_lt"
imbalance_factor = 100
profile = "quick"               # "smoke" (tests), "quick" (CPU, minutes), "paper" (GPU)
seeds = [0, 1, 2]
# CC-SAM's r (noise_ratio); None = the recipe's: 1e-6 at paper scale as released, 0.03 at quick scale (section 2)
radius = None
radius_sweep = [1e-6, 0.01, 0.1, 0.3]    # extra radii (the one above is the fifth), on sweep_seeds
sweep_seeds = [0]
# False runs only r above and skips the poster's ablation (section 6), as make tutorial does
extras = True
flat_ratio = 0.3                # f: Cifar10.json 0.3 (10 classes, like Fashion-MNIST); Cifar100.json 0.5
up_limit = 1.0                  # cap on stage 2's alpha: Cifar10.json 1.0, Cifar100.json 0.3
device = "auto"


# In[ ]:


import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as Fn
from IPython.display import display

import ltlib.report.plots as lp
from ltlib.analysis.features import feature_view
from ltlib.methods.ccsam import CCSAMOptions, CCSAMStep, class_weights, feature_perturbation, progressive_alpha
from ltlib.report import findings as F
from ltlib.report import longpath
from ltlib.report.notebook import describe, finish, resolve_profile, setup
from ltlib.report.papers import reference_column, reported, sources
from ltlib.report.results import caption, display_table, epoch_cost, eps_ratios, summarize
from ltlib.runs.config import make_config
from ltlib.runs.experiment import load_data
from ltlib.runs.jobs import run_grid
from ltlib.runs.stage2 import make_stage2

profile = resolve_profile(profile)
dev = setup(device)
base = make_config(profile, "ccsam", dataset, imbalance_factor=imbalance_factor, ccsam_flat_ratio=flat_ratio,
                   **({} if radius is None else {"ccsam_radius": radius}))
radius = base.ccsam_radius
data = load_data(base)
results = longpath.NotebookResults("04", dataset, profile)
print(describe(base))


# ## 1. The class-conditional radius
# 
# CC-SAM's code perturbs only the linear classifier θ = (W, b), $P$ = numel(W) + numel(b) parameters, once per
# class present in the batch. For each tensor $t \in \{W, b\}$ the perturbation of class $c$ points along that
# class's gradient $g_c^t$ and has the length
# 
# $$\lVert\varepsilon_c^t\rVert = r \left(\frac{P\,\lVert\theta\rVert^2}{4\,(n_c - 1)\,\lVert g_c^t\rVert^2}\right)^{1/4},$$
# 
# with $\lVert\theta\rVert$ the joint norm of W and b, $\lVert g_c^t\rVert$ per tensor and $n_c$ the class's
# **training** count. Rare classes get larger radii, by $(n_c - 1)^{-1/4}$: at IF = 100 the rarest class's
# radius is about $100^{1/4} \approx 3.2$ times the largest's for equal gradient norms. A class with a single
# training image would divide by zero (the released code gives NaN there); `ltlib` floors $n_c - 1$ at 1.
# 
# **Where $(n_c - 1)^{-1/4}$ comes from.** The paper derives the radius from a generalisation bound; the poster
# gives only the result, $\rho_c^* = \big(\lVert\theta\rVert / (2\lVert g_c\rVert)\big)^{1/2} P^{-1/4} (n_c - 1)^{-1/4}$ with
# $\lVert\varepsilon_c\rVert = \sqrt{P}\,\rho_c^*$. Its form is that of a balance, the same one that gives LDAM's margins
# (notebook 05): a sharpness cost that grows with the radius, $a\rho^2$ with $a \propto \lVert g_c\rVert^2$, against a
# complexity cost that shrinks with it and with the class's sample count, $b/\rho^2$ with
# $b \propto P\lVert\theta\rVert^2/(n_c - 1)$. Setting the derivative $2a\rho - 2b/\rho^3$ to zero gives
# $\rho = (b/a)^{1/4}$: the fourth root of $P\lVert\theta\rVert^2 / (4 (n_c - 1) \lVert g_c\rVert^2)$, which is the formula
# above. (This sketch reproduces the formula's form; it is not the paper's proof.)
# 
# The perturbed classifier is applied to that class's own samples; the backbone gets the flat loss's gradient
# through the features. The class count factor on this data set:

# In[ ]:


counts = data.class_counts
factor = (np.maximum(counts - 1, 1) / (counts.max() - 1)) ** -0.25
display(pd.DataFrame({"class": data.classes, "n_c": counts, "(n_c - 1)^(-1/4), relative to the largest": factor.round(2)})
        .set_index("class").T)


# **The core lines.** The flat logits of one batch, written the readable way: one autograd call per class for
# $g_c$, the radius formula per tensor, and the classifier at $\theta + \varepsilon_c$ applied to that class's
# samples. Random features and a random linear head, on this data set's training counts and $r$; checked against
# ltlib's closed form (two B × B Gram matrices, no loop over classes), which is what the runs use.

# In[ ]:


gen = torch.Generator().manual_seed(0)
z = torch.randn(48, 16, generator=gen)                        # 48 features of dimension 16
y = torch.randint(0, data.num_classes, (48,), generator=gen)
head = torch.nn.Linear(16, data.num_classes)
logits = head(z)
clean = Fn.cross_entropy(logits, y, reduction="none")
theta = torch.sqrt(head.weight.detach().norm() ** 2 + head.bias.detach().norm() ** 2)   # the joint norm
P = head.weight.numel() + head.bias.numel()
flat, ratio = torch.empty_like(logits), {}
for c in y.unique().tolist():
    rows = y == c
    g_w, g_b = torch.autograd.grad(clean[rows].mean(), [head.weight, head.bias], retain_graph=True)
    n1 = max(int(counts[c]) - 1, 1)                            # n_c - 1, floored at 1
    e_w, e_b = [radius * (P * theta ** 2 / (4 * n1 * g.norm() ** 2)) ** 0.25 * g / g.norm() for g in (g_w, g_b)]
    flat[rows] = (z[rows] @ (head.weight + e_w).T + head.bias + e_b).detach()   # theta + eps_c on class c's rows
    ratio[data.classes[c]] = float(torch.sqrt(e_w.norm() ** 2 + e_b.norm() ** 2) / theta)

toy = torch.nn.Module()
toy.features, toy.classifier = torch.nn.Identity(), head
ltlib_step = CCSAMStep(torch.optim.SGD(head.parameters(), lr=0.1), model=toy,
                       options=CCSAMOptions(class_counts=tuple(int(n) for n in counts), radius=radius))
G, = torch.autograd.grad(clean.sum(), logits, retain_graph=True)    # dl_i / d logits_i, what ltlib starts from
torch.testing.assert_close(flat, (logits + ltlib_step.logit_shift(z, G, y)).detach())
print(f"||eps_c|| / ||theta|| on this toy batch at r = {radius:g}:",
      ", ".join(f"{name} {v:.2g}" for name, v in sorted(ratio.items(), key=lambda kv: -kv[1])),
      "\nthe per-class loop equals ltlib's closed form")


# ## 2. How large is the perturbation?
# 
# Every run logs $\lVert\varepsilon_c\rVert / \lVert\theta\rVert$ per class and epoch. With the released
# `noise_ratio` $r = 10^{-6}$ the classifier moves by about a millionth of its norm: the flat loss is then the
# clean loss on the unmixed labels, and CC-SAM's stage 1 is "mixup plus some plain CE". At quick scale the
# recipe uses a larger $r$, at which the perturbation bites. Below, the logged ratio per class at that $r$; on
# the long path (`extras=True`) a sweep of $r$ on `sweep_seeds` adds the released $10^{-6}$ and three more radii,
# with CE + mixup (CC-SAM with $r = 0$ and $f = 0$) as the dotted baseline.

# In[ ]:


def stage1(name, **kw):
    return base.replace(name=f"04-{name}", **kw)

ccsam = stage1("ccsam")
mixup = stage1("mixup", step="sgd")
radii = sorted({radius, *(radius_sweep if extras else [])})
sweep = run_grid({"mixup": mixup, **{r: ccsam.replace(ccsam_radius=r) for r in radii}},
                 {"mixup": seeds, **{r: sweep_seeds for r in radii}}, device=dev)   # radius -> runs
mixup_runs = sweep.pop("mixup")
fig = lp.plot_perturbation_radius({f"r={r:g}": rs for r, rs in sweep.items()})
lp.save_figure(fig, f"04_radius_per_class_{profile}")
plt.show()
ratios = pd.DataFrame({f"r={r:g}": np.nanmean(eps_ratios(rs), axis=(0, 1)) for r, rs in sweep.items()},
                      index=data.classes).T
print("||eps_c|| / ||theta||, mean over epochs and seeds:")
display(ratios.map(lambda v: f"{v:.2g}"))
results.add_values("eps ratio", pd.DataFrame([
    {"label": f"r={r:g}", "seed": run.config.seed, "metric": name, "value": value}
    for r, rs in sweep.items() for run in rs
    for name, value in zip(data.classes, np.nanmean(eps_ratios([run])[0], axis=0))]))
if len(radii) > 1:
    fig = lp.plot_sweep(sweep, "CC-SAM radius r", baseline=[r for r in mixup_runs if r.config.seed in sweep_seeds],
                        baseline_label="CE + mixup")
    lp.save_figure(fig, f"04_radius_sweep_{profile}")
    plt.show()
    results.add_runs("radius sweep", {f"r={r:g}": rs for r, rs in sweep.items()})
    display(display_table(summarize({f"r={r:g}": rs for r, rs in sweep.items()})))


# ## 3. Stage 1: CE, CE + mixup and CC-SAM, from the same initialisation
# 
# CC-SAM's released CIFAR config trains with input mixup (λ ~ Beta(1, 1), one per batch), so the fair baseline for
# its stage 1 is CE + mixup; plain CE is shown too. Same recipe for all (at quick scale the `ce` recipe's
# schedule: SGD `lr=0.1`, `momentum=0.9`, `weight_decay=5e-4`, a 2-epoch warm-up then cosine; `drop_last` as
# CC-SAM's loader), same seeds, only `step` and `mixing` differ. Under mixup the classes of a batch are grouped by
# the *first* label of each pair, and the flat loss is plain CE on that label, as in the code. The last row takes
# mixup away from CC-SAM, to separate the perturbation from the mixing.

# In[ ]:


ce = stage1("ce", step="sgd", mixing="none")
label = f"CC-SAM stage 1 (r={radius:g})"
nomix = f"CC-SAM stage 1 (r={radius:g}), no mixup"
runs = run_grid({"CE": ce, "CE + mixup": mixup, label: ccsam, nomix: stage1("ccsam-nomix", mixing="none")},
                seeds, device=dev)
print(caption(runs["CE"]))
display(display_table(summarize(runs)))
stage1_findings = [F.compare("CE + mixup", runs["CE + mixup"], label, runs[label], "overall"),
                   F.compare("CE", runs["CE"], "CE + mixup", runs["CE + mixup"], "overall"),
                   F.compare("CE", runs["CE"], nomix, runs[nomix], "overall")]
display(F.findings_table(stage1_findings))


# ### Why CC-SAM without mixup can collapse
# 
# The radius grows as $\lVert g_c\rVert^{-1/2}$. Once a class is fitted, its loss gradient shrinks and its
# radius grows without bound; nothing in the formula caps it. Mixup keeps every sample's loss away from zero
# (a mixed image never has a one-hot target), which keeps the gradients, and the radii, finite. The figure
# shows the largest logged ratio per epoch and the training loss, with and without mixup:

# In[ ]:


fig = lp.plot_radius_and_loss({"CC-SAM, no mixup": runs[nomix], "CC-SAM with mixup": runs[label]})
lp.save_figure(fig, f"04_radius_blowup_{profile}")
plt.show()
blowup = pd.DataFrame({
    name: {"largest ||eps_c|| / ||theta|| (any class, epoch, seed)": np.nanmax(eps_ratios(runs[key])),
           "largest training loss of an epoch": max(r.history["loss"].max() for r in runs[key]),
           "seeds": ",".join(str(r.config.seed) for r in runs[key])}
    for name, key in (("no mixup", nomix), ("with mixup", label))}).T
display(blowup)


# ## 4. Stage 2: class-aware classifier training with adversarial features
# 
# Stage 2 starts from the last stage-1 model (the released code reloads the best stage-1 epoch *on the test set*;
# we do not select on test). The backbone is frozen and stays in train mode, so BatchNorm's running statistics
# keep moving under the class-balanced batches, as in the code. The classifier trains with SGD at a constant
# `lr=0.01` (`momentum=0.9`, `weight_decay=2e-4`) on a class-aware stream: classes in reshuffled cycles, each class's
# images in turn. The loss moves from clean CE towards a class-weighted CE on perturbed features,
# 
# $$L = \alpha_e \tfrac{1}{B}\textstyle\sum_i w_{y_i}\,\mathrm{CE}\big(\theta(z_i + \delta_{y_i}), y_i\big) + (1 - \alpha_e)\,\tfrac{1}{B}\sum_i \mathrm{CE}(\theta(z_i), y_i),\qquad
# \delta_c = \lambda\, w_c\, \frac{G_c}{\lVert G_c\rVert_F},\quad w_c = \frac{\ln(n_{max}/n_c + 0.01)}{2},$$
# 
# with $G_c$ the feature gradient of class $c$'s mean loss (normalised over the class's whole block), $\lambda = 1$
# and $\alpha_e = \min((e + 1)/E_2, \text{up\_limit})$. At quick scale stage 2 runs 10 epochs (the paper: 30 after
# 200). `ccsam_crt` is the same stage 2 without the adversarial term: the ablation's "cRT", here on the CE, the
# CE + mixup and the CC-SAM backbones. Two more rows: the CIFAR-100 config's cap `up_limit = 0.3` (the CIFAR-10
# config, our default, lets α reach 1), and CC-SAM's stage 2 on the CE + mixup backbone, to separate the two
# stages. The class weights $w_c$ on this data:

# In[ ]:


def stage2(first, recipe, name):
    return make_stage2(first, recipe, name=f"04-s2-{name}", up_limit=up_limit)

w = pd.Series(np.log(counts.max() / counts + 0.01) / 2, index=data.classes, name="w_c")
display(w.round(3).to_frame().T)


# **The core lines of stage 2**, on the toy batch of section 1: each class's feature gradient $G_c$ by its own
# autograd call, the adversarial features $z + \lambda w_c G_c / \lVert G_c\rVert_F$, and the weight $\alpha_e$ per
# epoch; checked against ltlib's `feature_perturbation` (one backward for all classes) and `progressive_alpha`.

# In[ ]:


feats = z.clone().requires_grad_(True)
losses = Fn.cross_entropy(head(feats), y, reduction="none")
w_c = torch.tensor(w.values, dtype=torch.float32)
delta = torch.zeros_like(z)
for c in y.unique().tolist():
    rows = y == c
    G_c = torch.autograd.grad(losses[rows].mean(), feats, retain_graph=True)[0][rows]   # class c's block
    delta[rows] = 1.0 * w_c[c] * G_c / G_c.norm()                  # lambda = 1, Frobenius norm of the block
in_batch = torch.bincount(y, minlength=data.num_classes).float()
all_grads, = torch.autograd.grad((losses / in_batch[y]).sum(), feats)   # every class's mean loss, one backward
torch.testing.assert_close(delta, feature_perturbation(all_grads, y, class_weights(counts.tolist())))
epochs2 = make_stage2(ccsam, "ccsam", up_limit=up_limit).epochs
alphas = [min((e + 1) / epochs2, up_limit) for e in range(epochs2)]
assert alphas == [progressive_alpha(e, epochs2, up_limit) for e in range(epochs2)]
print(f"adversarial shift ||delta_i|| per sample from {delta.norm(dim=1).min():.3f} to {delta.norm(dim=1).max():.3f}; "
      f"alpha over {epochs2} stage-2 epochs at up_limit {up_limit:g}: {[round(a, 2) for a in alphas]}; both equal ltlib's")
crt_mixup, both = "CE + mixup → cRT (class-aware)", "CC-SAM stages 1 + 2"
runs.update(run_grid({
    "CE → cRT (class-aware)": stage2(ce, "ccsam_crt", "crt"),
    crt_mixup: stage2(mixup, "ccsam_crt", "crt"),
    "CC-SAM stage 1 → cRT (class-aware)": stage2(ccsam, "ccsam_crt", "crt"),
    both: stage2(ccsam, "ccsam", "ccsam"),
    # two cheap variants: the CIFAR-100 config's cap on alpha, and stage 2 on the CE + mixup backbone
    "CC-SAM stages 1 + 2, up_limit 0.3": make_stage2(ccsam, "ccsam", name="04-s2-ccsam", up_limit=0.3),
    "CE + mixup → CC-SAM stage 2": stage2(mixup, "ccsam", "ccsam"),
}, seeds, device=dev))
results.add_runs("runs", runs)
print("alpha per stage-2 epoch:", runs[both][0].history["alpha"].round(3).tolist())


# ## 5. Results, beside the poster's
# 
# Last-epoch test accuracy in %, mean ± std over seeds, strict groups (many > 100, few < 20 training images).
# The last two columns are what the CC-SAM poster **reports** for CIFAR-10-LT and CIFAR-100-LT at IF = 100
# (from `ltlib.report.papers`; an unstated choice of r, f and up_limit per column). They say which way each step moved
# there; they are not numbers to match.

# In[ ]:


c10 = {"CE": "ccsam/ce-c10", "CE + mixup": "ccsam/mixup-c10", crt_mixup: "ccsam/mixup-crt-c10", both: "ccsam/ccsam-c10"}
c100 = {"CE": "ccsam/ce", "CE + mixup": "ccsam/mixup", crt_mixup: "ccsam/mixup-crt", both: "ccsam/ccsam"}
table = display_table(summarize(runs))
table["reported C10-LT IF100"] = reference_column(c10, table.index)
table["reported C100-LT IF100"] = reference_column(c100, table.index)
print(caption(runs))
display(table)
F.show("Reported numbers:", sources([*c10.values(), *c100.values()]))
stage2_findings = [F.compare(crt_mixup, runs[crt_mixup], other, runs[other], m)
                   for other in ("CC-SAM stage 1 → cRT (class-aware)", both, "CC-SAM stages 1 + 2, up_limit 0.3",
                                 "CE + mixup → CC-SAM stage 2") for m in ("overall", "few")]
display(F.findings_table(stage2_findings))
fig = lp.plot_group_accuracy({k: runs[k] for k in ("CE", "CE + mixup", label, crt_mixup, both,
                                                    "CC-SAM stages 1 + 2, up_limit 0.3")})
lp.save_figure(fig, f"04_group_accuracy_{profile}")
plt.show()
fig = lp.plot_accuracy_vs_frequency({k: runs[k] for k in ("CE + mixup", label, both)})
lp.save_figure(fig, f"04_accuracy_vs_frequency_{profile}")
plt.show()


# ### What the backbones learned
# 
# The test features (the classifier's input) of three models, each on its own first two principal components
# (`ltlib.analysis.features`, first seed): CE; CE followed by cRT, whose stage 2 trains only the classifier (its
# backbone is CE's, with BatchNorm's statistics moved by the class-aware batches); and CC-SAM's two stages. The
# few-shot classes are drawn larger. A 2-D picture loses most of the feature space, so the table measures each
# class's separation in the full space: the mean distance of its features to their class mean over the distance to
# the nearest other class mean (below 1: the cloud is tighter than the gap to its neighbour).

# In[ ]:


pictured = {"CE": runs["CE"][0], "CE → cRT (class-aware)": runs["CE → cRT (class-aware)"][0], both: runs[both][0]}
views = {f"{name} (seed {r.config.seed})": feature_view(r, data) for name, r in pictured.items()}
group_members = data.groups(base.group_scheme).as_dict()
few = list(group_members["few"])
fig = lp.plot_feature_views(views, data.classes, few=few)
lp.save_figure(fig, f"04_features_{profile}")
plt.show()
separation = pd.DataFrame({name: v.separation for name, v in zip(pictured, views.values())}, index=data.classes).T
display(separation.round(2))
group_means = {name: {g: float(separation.loc[name, [data.classes[c] for c in m]].mean()) if len(m) else float("nan")
                      for g, m in group_members.items()} for name in pictured}
F.show(F.bullets([f"{name}: separation {v['many']:.2f} for the many-shot classes, {v['few']:.2f} for the few-shot "
                  "ones (mean over the group's classes; lower is better separated)." for name, v in group_means.items()]))


# ## 6. The poster's ablation
# 
# The poster ablates stage 1 on top of cRT: the perturbation's **direction** alone (along $g_c$ with a constant
# length, here $r$ per tensor), its **magnitude** alone (the formula's length in a random direction, redrawn
# each step), both (CC-SAM's stage 1), and then stage 2 instead of cRT. Its numbers (data set not stated) are the
# reference column. It runs on the long path (`extras=True`); section 9 shows its committed numbers otherwise.

# In[ ]:


ablation_keys = {"cRT": "ccsam/ablation-crt", "+ direction": "ccsam/ablation-dir", "+ magnitude": "ccsam/ablation-mag",
                 "+ direction + magnitude": "ccsam/ablation-dir-mag", "+ direction + magnitude + stage 2":
                 "ccsam/ablation-stage2"}
if extras:
    ablation = {
        "cRT": runs[crt_mixup],
        **run_grid({
            "+ direction": stage2(stage1("ccsam-dir", ccsam_magnitude="constant"), "ccsam_crt", "crt"),
            "+ magnitude": stage2(stage1("ccsam-mag", ccsam_direction="random"), "ccsam_crt", "crt"),
        }, seeds, device=dev),
        "+ direction + magnitude": runs["CC-SAM stage 1 → cRT (class-aware)"],
        "+ direction + magnitude + stage 2": runs[both],
    }
    results.add_runs("ablation", ablation)
    table = display_table(summarize(ablation))
    table["reported (poster)"] = reference_column(ablation_keys, table.index)
    display(table)
    display(F.findings_table(F.compare_all(ablation, "cRT", ("overall",))))
else:
    print("skipped (extras=False): set extras = True to train the two ablation backbones; section 9 shows the "
          "long path's")


# ## 7. What it costs
# 
# Training seconds per epoch in these runs, relative to CE + mixup (same batches, same machine). Stage 2 epochs
# are cheap: the backbone only runs forward. `python -m ltlib.tools.bench` times the CC-SAM step against a plain step
# side by side.

# In[ ]:


cost = epoch_cost({k: runs[k] for k in ("CE", "CE + mixup", label, "CC-SAM stage 1 → cRT (class-aware)", both)},
                  "CE + mixup")
display(cost)


# ## 8. What this run shows
# 
# Rendered from the tables above, by the paired-seed rule. A class's radius counts as *larger* than another's when
# its mean logged ratio is higher.

# In[ ]:


def f(a, b, metric):
    return F.compare(a, runs[a], b, runs[b], metric)


rarest, largest = int(np.argmin(counts)), int(np.argmax(counts))
at_r = ratios.loc[f"r={radius:g}"]
no_mix, with_mix = blowup.iloc[:, 0]
F.show(
    f"**Your run:** {caption(runs)}.",
    F.bullets([
        f"**The perturbation at r = {radius:g}** moves the classifier by {at_r.iloc[largest]:.2g} of its norm for "
        f"the largest class ({data.classes[largest]}) and {at_r.iloc[rarest]:.2g} for the rarest "
        f"({data.classes[rarest]}): {at_r.iloc[rarest] / at_r.iloc[largest]:.2f} times as much, where the count "
        f"factor alone would give {factor[rarest] / factor[largest]:.2f}"
        + (" (the rare class's larger loss gradient shrinks its radius)." if at_r.iloc[rarest] / at_r.iloc[largest]
           < factor[rarest] / factor[largest] else "."),
        f("CE + mixup", label, "overall").sentence(),
        f("CE + mixup", label, "few").sentence(),
        f("CE", "CE + mixup", "overall").sentence(),
        f("CE", nomix, "overall").sentence()
        + f" Without mixup the largest logged ratio was {no_mix:.3g} (with mixup {with_mix:.3g}).",
        f("CE", "CE → cRT (class-aware)", "overall").sentence(),
        f("CE", "CE → cRT (class-aware)", "few").sentence(),
        f(crt_mixup, "CC-SAM stage 1 → cRT (class-aware)", "overall").sentence(),
        f(crt_mixup, both, "overall").sentence(), f(crt_mixup, both, "many").sentence(),
        f(crt_mixup, both, "few").sentence(),
        f(crt_mixup, "CC-SAM stages 1 + 2, up_limit 0.3", "overall").sentence(),
        f"**Cost** per epoch, against CE + mixup: CC-SAM stage 1 {cost.loc[label, 'vs CE + mixup']:.2f}×, a stage-2 "
        f"epoch {cost.loc[both, 'vs CE + mixup']:.2f}×.",
    ]),
    f"Verdict rule: {F.RULE}.",
)


# ## 9. What the long path measured
# 
# The same runs on seeds 0–2, the radius sweep and the poster's ablation, as `make tutorial FULL=1` ran them, from
# the committed results file.

# In[ ]:


committed = longpath.load("04", dataset, profile)
if committed is None:
    print(f"no long-path results are committed for {dataset} in the {profile!r} profile")
else:
    long_runs = longpath.results(committed, "runs")
    F.show(f"**Long path:** {longpath.provenance(committed)}.")
    display(display_table(summarize(long_runs)))
    pairs = [("CE + mixup", label), ("CE", nomix), (crt_mixup, both), (crt_mixup, "CC-SAM stages 1 + 2, up_limit 0.3")]
    F.show(F.bullets([F.compare(a, long_runs[a], b, long_runs[b], "overall").sentence() for a, b in pairs
                      if a in long_runs and b in long_runs]))
    parts = set(committed["table"])
    if "radius sweep" in parts:
        F.show("**CC-SAM's radius, long path** (seed 0; the ratio is the mean logged ‖ε_c‖ / ‖θ‖ of the rarest class):")
        sweep_table = display_table(summarize(longpath.results(committed, "radius sweep")))
        eps = committed[(committed["table"] == "eps ratio") & (committed["metric"] == data.classes[rarest])]
        eps = eps.groupby("label")["value"].mean().reindex(sweep_table.index)
        sweep_table["rarest class's ratio"] = [f"{v:.2g}" for v in eps]
        display(sweep_table)
    if "ablation" in parts:
        F.show("**The poster's ablation, long path:**")
        long_ablation = longpath.results(committed, "ablation")
        table = display_table(summarize(long_ablation))
        table["reported (poster)"] = reference_column(ablation_keys, table.index)
        display(table)
        F.show(F.bullets([F.compare("cRT", long_ablation["cRT"], k, long_ablation[k], "overall").sentence()
                          for k in long_ablation if k != "cRT"]))
    F.show("The poster's ablation numbers:", sources(ablation_keys.values()))


# ## Summary and what comes next
# 
# - CC-SAM's stage 1 is a step strategy (`step="ccsam"`) with mixup as a mixing rule; its per-class classifier
#   gradients have a closed form, so a step costs what a plain step costs.
# - Log $\lVert\varepsilon_c\rVert / \lVert\theta\rVert$ before trusting any CC-SAM result: the released
#   $r = 10^{-6}$ barely moves the classifier, and the radius grows as $\lVert g_c\rVert^{-1/2}$, so it can run
#   away once a class is fitted (the no-mixup run).
# - Which of CC-SAM's parts helps on this data, and how much class-aware retraining (cRT) does on its own, is in
#   sections 8 and 9.
# 
# **Try this**
# - `-p up_limit 0.3`: the CIFAR-100 config's cap on the adversarial term. Watch the many-shot finding.
# - `-p radius 0.1`: a larger radius. Does the no-mixup run still finish, and what does the radius figure show?
# - `-p flat_ratio 0.5`: the CIFAR-100 config's share of the flat loss.
# - CC-SAM's stronger-augmentation variant is a recipe of its own: `run_grid({"AutoAug": make_config(profile,
#   "ccsam_autoaug", dataset)}, seeds)` trains stage 1 with AutoAugment + Cutout and mixup off. Each image is
#   augmented on its own, so a step costs more; compare its few-shot accuracy with the mixup runs above.
# 
# Notebook 05 adds CMO's minority oversampling and the LDAM / Balanced Softmax losses; CMO + CC-SAM is one config
# line there. To run this notebook at paper scale on a GPU: `papermill notebooks/04_cc_sam.ipynb out.ipynb -p dataset
# cifar10_lt -p profile paper` (CIFAR-10 files in `~/.cache/ltlib/cifar-10-batches-py` or `$LTLIB_CIFAR10_DIR`;
# paper scale uses the released r = 1e-6 unless you pass `-p radius`).

# In[ ]:


results.save()
finish()
