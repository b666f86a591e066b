# Generated from notebooks/05_cmo.ipynb by `make scripts` (nbconvert). Edit the notebook, not this file.
# Run: python scripts/05_cmo.py  (LTLIB_PROFILE=smoke for a quick check)

# # 05 · CMO: minority oversampling with context, and the losses it is paired with
# 
# **The question.** Oversampling the tail shows the network the same few images again and again. *Context-rich
# Minority Oversampling* (CMO, Park et al., CVPR 2022) pastes a patch of a minority-class image onto a
# majority-class image, so each rare object appears on a new, varied background, and mixes the labels by area.
# It is orthogonal to the loss: the paper pairs it with cross-entropy, CE with deferred re-weighting (CE-DRW),
# Balanced Softmax (BS) and LDAM-DRW. Which of these help on our data, and does CMO add to them?
# 
# **Papers and code.** CMO: [arXiv:2112.00412](https://arxiv.org/abs/2112.00412),
# [naver-ai/cmo](https://github.com/naver-ai/cmo). LDAM-DRW: Cao et al., NeurIPS 2019
# ([arXiv:1906.07413](https://arxiv.org/abs/1906.07413), [kaidic/LDAM-DRW](https://github.com/kaidic/LDAM-DRW)).
# Balanced Softmax: Ren et al., NeurIPS 2020 ([arXiv:2007.10740](https://arxiv.org/abs/2007.10740),
# [jiawei-ren/BalancedMetaSoftmax-Classification](https://github.com/jiawei-ren/BalancedMetaSoftmax-Classification)).
# 
# **What you will learn**
# - how CMO builds a batch: a second, minority-weighted stream (class $c$ drawn with weight $n_c^{1-\alpha}$, with
#   replacement), one box per batch at the same place in both images, the label weight $\lambda' = 1 -$ box area;
# - the four losses: CE; CE-DRW (effective-number class weights from `drw_start` of training, when the learning
#   rate drops); Balanced Softmax ($\mathrm{CE}(z + \log \pi)$, training only); LDAM-DRW (a margin
#   $m_c \propto n_c^{-1/4}$ on the target logit of a cosine classifier, scale $s = 30$, plus DRW);
# - which of them CMO helps, seed by seed, and what it costs;
# - that CMO is one config line on top of any loss *and* any step strategy (here CC-SAM).
# 
# Every run uses the LDAM-DRW / CMO recipe scaled to the profile: SGD `lr=0.1`, a warm-up, then $\times 0.01$ and $\times 0.0001$
# late in training. `make tutorial` runs this notebook on seed 0 with CMO on CE and Balanced Softmax only, and
# without the extra runs of sections 5 and 6 (`extras=False`); `make tutorial FULL=1` runs it on seeds 0–2 with CMO on all four
# losses, section 5 and the imbalance-factor sweep of section 6, and the short path shows those runs from its committed
# results (sections 6 and 8). Every result in the text is rendered from the runs above it.

# In[ ]:


# Parameters (papermill: -p name value). LTLIB_PROFILE overrides `profile` for the exported script.
dataset = "fashion_mnist_lt"
imbalance_factor = 100
profile = "quick"               # "smoke" (tests), "quick" (CPU, minutes), "paper" (GPU)
seeds = [0, 1, 2]
cmo_prob = 0.5                  # the chance that a batch is mixed (the paper's mixup_prob)
combine_step = "ccsam"          # the step strategy of the CMO combination in section 5
if_sweep = [10, 50, 200]        # section 6: more imbalance factors for CE and BS (imbalance_factor above is the fourth)
extras = True                   # False: CMO on CE and BS only, no section 5 and no IF sweep, as make tutorial does
device = "auto"


# In[ ]:


import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as Fn
from IPython.display import display

import ltlib.report.plots as lp
from ltlib.data.mixing import cmo_box
from ltlib.methods.losses import DRW, LDAM, BalancedSoftmax, effective_number_weights
from ltlib.report import findings as F
from ltlib.report import longpath, toys
from ltlib.report.notebook import describe, finish, resolve_profile, setup
from ltlib.report.papers import reference_column, reported, sources
from ltlib.report.results import caption, display_table, epoch_cost, extreme_classes_accuracy, summarize, sweep_table
from ltlib.runs.config import make_config
from ltlib.runs.experiment import load_data, sample_batch
from ltlib.runs.jobs import run_grid

profile = resolve_profile(profile)
dev = setup(device)
base = make_config(profile, "cmo", dataset, imbalance_factor=imbalance_factor, cmo_prob=cmo_prob)
data = load_data(base)
results = longpath.NotebookResults("05", dataset, profile)
print(describe(base.replace(mixing="cmo")))
print(f"CMO is on in epochs {base.cmo_start + 1}..{base.epochs - base.cmo_end - 1} (0-based) of {base.epochs}; "
      f"DRW weights from epoch {int(base.drw_start * base.epochs)}")


# ## 1. What a CMO batch looks like
# 
# The background batch comes from the usual stream: every image once per epoch, so mostly head classes. The
# patches come from a second stream that draws class $c$ with probability proportional to $n_c^{1-\alpha}$
# ($\alpha = 1$: every class equally often, with replacement). One $\lambda \sim \mathrm{Beta}(1, 1)$ and one box per
# batch, at the same place in the background and the patch image; the label weight is recomputed from the
# clipped box, $\lambda' = 1 - \text{box area}/\text{image area}$, and goes to the background label ($1 - \lambda'$ to
# the patch's). Below, a batch with CMO forced on; each title gives both labels and their weights.

# In[ ]:


counts = data.class_counts
share = pd.DataFrame({"n_c": counts, "background stream": counts / counts.sum(),
                      "patch stream (alpha = 1)": np.full(len(counts), 1 / len(counts))}, index=data.classes)
display(share.T.round(3))
images, targets = sample_batch(base.replace(mixing="cmo", cmo_prob=1.0), data, epoch=base.cmo_start + 1)
fig = lp.plot_mixed_batch(images, targets, data.classes, data.mean, data.std, count=8)
lp.save_figure(fig, f"05_cmo_batch_{profile}")
plt.show()


# One λ per batch means one box size per batch, so the batch above shows a single size. Below, the same pair of
# images (the first image of the largest and of the smallest class) pasted with ltlib's `cmo_box` at several λ,
# with the box centre fixed: a small λ pastes most of the patch image, and λ' (the background label's weight) is
# recomputed from the box after clipping, so it is not exactly λ.
# 
# **A caveat for this data set.** CMO is named for the *context* a majority image lends a minority object: a
# street behind a rare car. Fashion-MNIST's images are single garments on black, so the "background" is mostly
# black pixels or part of another garment, and a pasted patch cuts a piece out of one garment and drops it on
# another. Whatever CMO gains here it gains as a CutMix-style regulariser with minority oversampling, not from
# richer backgrounds; on CIFAR or ImageNet-LT the backgrounds carry more.

# In[ ]:


fig, pasted = toys.plot_cmo_lambdas(data)
lp.save_figure(fig, f"05_cmo_lambdas_{profile}")
plt.show()
print("lambda -> lambda':", ", ".join(f"{row['lam']:g} -> {row['lam_prime']:.2f}" for row in pasted))


# ## 2. Four losses, each with and without CMO
# 
# | loss | config | what it does |
# |---|---|---|
# | CE | `loss="ce"` | cross-entropy |
# | CE-DRW | `reweight="drw"` | from `drw_start` of the epochs, class weights $(1-\beta)/(1-\beta^{n_c})$ ($\beta = 0.9999$, normalised to sum to $C$); the batch loss is $\sum_i w_{y_i}\ell_i / \sum_i w_{y_i}$, as PyTorch weights it |
# | BS | `loss="bs"` | CE on $z + \log(n_c/N)$ in training; raw logits at test time |
# | LDAM-DRW | `loss="ldam", classifier="normed", reweight="drw"` | CE on $s\,(\cos\theta - m_y \mathbb{1}_y)$, $m_c = 0.5\,(n_{min}/n_c)^{1/4}$, $s = 30$, on a cosine classifier; DRW as above |
# 
# CMO is `mixing="cmo"`; under it each of the two label sets is a separate (weighted) criterion call, as in the code.
# Same seeds, same initialisation per seed (except LDAM's cosine head), same background batches.
# With `extras=False` (the short path) CMO runs with CE and BS only; section 8 shows the other two pairs.
# 
# **Why $n_c^{-1/4}$.** LDAM's paper bounds each class's test error by a term of the form
# $\frac{1}{\gamma_c}\sqrt{\mathcal{C}/n_c}$ ($\mathcal{C}$: the complexity of the model class): a class seen rarely needs a larger margin $\gamma_c$ for the same guarantee. With
# two classes and the total margin fixed ($\gamma_1 + \gamma_2 = \beta$, since shifting the boundary towards one
# class takes margin from the other), minimise $\frac{1}{\gamma_1\sqrt{n_1}} + \frac{1}{\gamma_2\sqrt{n_2}}$: setting
# the derivative in $\gamma_1$ to zero gives $\gamma_1^2\sqrt{n_1} = \gamma_2^2\sqrt{n_2}$, so $\gamma_c \propto n_c^{-1/4}$.
# The code scales the margins so that the rarest class's is `max_m` $= 0.5$; the figure in the next cell draws
# ltlib's margins against the counts on log-log axes, where the law is a line of slope $-1/4$.
# 
# **The core lines**, written out in plain torch and checked against ltlib's on the training counts: CMO's box and
# its label weight, Balanced Softmax's shift, LDAM's margins and DRW's switch.

# In[ ]:


counts = data.class_counts.tolist()
H, W = data.train.images.shape[-2:]
# CMO: the box side int(H sqrt(1 - lam)), a uniform centre, half-sides floored, clipped; lam' from the clipped box
lam, rng_mine, rng_ltlib = 0.7, np.random.default_rng(0), np.random.default_rng(0)
h, w = int(H * np.sqrt(1 - lam)), int(W * np.sqrt(1 - lam))
cy, cx = int(rng_mine.integers(H)), int(rng_mine.integers(W))
box = (max(cy - h // 2, 0), min(cy + h // 2, H), max(cx - w // 2, 0), min(cx + w // 2, W))
assert box == cmo_box(H, W, lam, rng_ltlib)
lam_prime = 1 - (box[1] - box[0]) * (box[3] - box[2]) / (H * W)

# Balanced Softmax: cross-entropy on the logits shifted by log(n_c / N)
gen = torch.Generator().manual_seed(0)
z, y = torch.randn(64, len(counts), generator=gen), torch.randint(0, len(counts), (64,), generator=gen)
prior = torch.tensor(counts, dtype=torch.float64) / sum(counts)
torch.testing.assert_close(Fn.cross_entropy(z + prior.log().float(), y, reduction="none"), BalancedSoftmax(counts)(z, y))

# LDAM: margin m_c proportional to n_c^(-1/4), the rarest class's equal to max_m, on the target cosine, times s
margins = torch.tensor(counts, dtype=torch.float64) ** -0.25
margins = (margins * 0.5 / margins.max()).float()
cosines = torch.tanh(z)                                        # cosine logits in [-1, 1]
mine = Fn.cross_entropy(30 * (cosines - Fn.one_hot(y, len(counts)) * margins[y][:, None]), y, reduction="none")
torch.testing.assert_close(mine, LDAM(counts, max_m=0.5, s=30.0)(cosines, y))
fig, law = toys.plot_ldam_margins(counts, data.classes, max_m=0.5)     # ltlib's margins against the count
lp.save_figure(fig, f"05_ldam_margins_{profile}")
plt.show()

# DRW: no class weights before the switch, effective-number weights (beta 0.9999) from it on
switch = int(base.drw_start * base.epochs)
drw = DRW(counts, switch, 0.9999)
assert drw.at(switch - 1) is None
torch.testing.assert_close(drw.at(switch), effective_number_weights(counts, 0.9999))
print(f"CMO at lam = {lam}: a {box[1] - box[0]}x{box[3] - box[2]} box, lam' = {lam_prime:.3f}; LDAM's margins from "
      f"{margins.min():.3f} (n = {max(counts)}) to {margins.max():.3f} (n = {min(counts)}); DRW switches at epoch "
      f"{switch}. Each equals ltlib's.")


# In[ ]:


losses = {
    "CE": dict(),
    "CE-DRW": dict(reweight="drw"),
    "BS": dict(loss="bs"),
    "LDAM-DRW": dict(loss="ldam", classifier="normed", reweight="drw"),
}
with_cmo = list(losses) if extras else ["CE", "BS"]   # the short path: CMO on the loss that ignores the tail and on BS
configs = {}
for label, kw in losses.items():
    name = "05-" + label.lower()
    configs[label] = base.replace(name=name, **kw)
    if label in with_cmo:
        configs[f"{label} + CMO"] = base.replace(name=name + "-cmo", mixing="cmo", **kw)
runs = run_grid(configs, seeds, device=dev)
results.add_runs("runs", runs)
print(caption(runs["CE"]))


# ## 3. Results
# 
# Last-epoch test accuracy in %, mean ± std over seeds, strict groups (many > 100, few < 20 training images). The
# last column is what the CMO paper **reports** for CIFAR-100-LT at IF = 100 (from `ltlib.report.papers`; source below).
# It says which way each change moved there; it is not a number to match.

# In[ ]:


reported_keys = {"CE": "cmo/ce", "CE + CMO": "cmo/ce-cmo", "BS + CMO": "cmo/bs-cmo", "LDAM-DRW + CMO": "cmo/ldam-drw-cmo"}
summary = summarize(runs)
table = display_table(summary)
table["reported C100-LT IF100"] = reference_column(reported_keys, table.index)
display(table)
F.show("Reported numbers:", sources(reported_keys.values()))
cmo_findings = [F.compare(label, runs[label], f"{label} + CMO", runs[f"{label} + CMO"], m)
                for label in with_cmo for m in ("overall", "many", "few")]
loss_findings = F.compare_all({k: runs[k] for k in losses}, "CE", ("overall", "few"))
print("CMO against the same loss without it, and each loss against CE, paired by seed (percentage points):")
display(F.findings_table(cmo_findings + loss_findings))
fig = lp.plot_group_accuracy(runs)
lp.save_figure(fig, f"05_group_accuracy_{profile}")
plt.show()
best_overall, _ = F.best(summary, "overall")
fig = lp.plot_accuracy_vs_frequency({k: runs[k] for k in dict.fromkeys(["CE", "CE + CMO", best_overall])})
lp.save_figure(fig, f"05_accuracy_vs_frequency_{profile}")
plt.show()


# ## 4. What CMO costs
# 
# Training seconds per epoch in these runs (same machine): a CMO batch gathers, augments and pastes a second batch
# of patches. `python -m ltlib.tools.bench` times a CMO step against a plain step side by side.

# In[ ]:


cost = epoch_cost({k: runs[k] for k in ("CE", "CE + CMO", "BS", "BS + CMO")}, "CE")
display(cost)


# ## 5. CMO with another step strategy: one config line
# 
# CMO is a mixing rule, so it composes with any step strategy. Here it is combined with CC-SAM's stage 1 (notebook
# 04; r and f as that recipe sets them): the flat loss groups the samples by their background label. It runs on
# the long path (`extras=True`).

# In[ ]:


combo = f"CE + CMO + {combine_step}"
if extras:
    ccsam = make_config(profile, "ccsam", dataset)
    runs.update(run_grid({combo: base.replace(name=f"05-ce-cmo-{combine_step}", mixing="cmo", step=combine_step,
                                              ccsam_radius=ccsam.ccsam_radius,
                                              ccsam_flat_ratio=ccsam.ccsam_flat_ratio)}, seeds, device=dev))
    results.add_runs("combination", {combo: runs[combo]})
    display(display_table(summarize({k: runs[k] for k in ("CE", "CE + CMO", combo)})))
    display(F.findings_table([F.compare("CE + CMO", runs["CE + CMO"], combo, runs[combo], "overall")]))
else:
    print(f"skipped (extras=False): set extras = True to train CE + CMO with the {combine_step} step")


# ## 6. How the cost of the tail grows with the imbalance
# 
# The same recipe for CE and Balanced Softmax at imbalance factors `if_sweep` and `imbalance_factor`, with the head
# class fixed at `n_max` images (so a larger IF means fewer tail images, and a smaller training set). The strict
# groups change members with IF (at IF = 10 on a head of 1000 images no class has fewer than 20, so "few" is empty),
# so this section compares a fixed **tail**, the rarest fifth of the classes, with a fixed **head**, the most
# frequent fifth, and plots the tail's accuracy and the head − tail gap against IF. It trains on the long path
# (`extras=True`); the short path shows the committed long-path numbers, labelled.

# In[ ]:


k = max(1, data.num_classes // 5)
head_tail = {"head": lambda r: extreme_classes_accuracy(r, k, rarest=False),
             "tail": lambda r: extreme_classes_accuracy(r, k, rarest=True)}
swept = None
if extras:
    swept = run_grid({f"{label} @ IF {f:g}": configs[label].replace(imbalance_factor=float(f))
                      for label in ("CE", "BS") for f in if_sweep}, seeds, device=dev)
    swept.update({f"{label} @ IF {imbalance_factor:g}": runs[label] for label in ("CE", "BS")})
    results.add_runs("if sweep", swept, metrics=("overall", "head", "tail"), extra=head_tail)
    if_table, source = sweep_table(swept, extra=head_tail), "**Your run.**"
else:
    committed = longpath.load("05", dataset, profile)
    if committed is not None and (committed["table"] == "if sweep").any():
        if_table = sweep_table(longpath.results(committed, "if sweep", metrics=("overall", "head", "tail")))
        source = f"**Long path** (not this run): {longpath.provenance(committed)}."
    else:
        if_table, source = None, ""
        print("skipped (extras=False) and no committed long-path sweep: set extras = True to train CE and BS at "
              f"IF {', '.join(f'{f:g}' for f in if_sweep)}")
if if_table is not None:
    fig = lp.plot_if_sweep(if_table.sort_values("value"), tail_name=f"tail ({k} rarest classes)")
    lp.save_figure(fig, f"05_if_sweep_{profile}")
    plt.show()
    means = if_table.groupby(["method", "value"])[["overall", "head", "tail", "gap"]].mean().round(1)
    display(means.unstack("method"))
    low, high = if_table["value"].min(), if_table["value"].max()
    at = {m: means.loc[m] for m in if_table["method"].unique()}
    def tail_by_seed(method, value):
        part = if_table[(if_table["method"] == method) & (if_table["value"] == value)]
        return part.set_index("seed")["tail"].to_dict()

    pairs = [F.from_values(f"CE @ IF {v:g}", tail_by_seed("CE", v), f"BS @ IF {v:g}", tail_by_seed("BS", v),
                           f"tail accuracy ({k} rarest classes)") for v in sorted(if_table["value"].unique())]
    F.show(source, F.bullets([f"{m}: the head − tail gap is {t.loc[low, 'gap']:.1f} points at IF {low:g} and "
                              f"{t.loc[high, 'gap']:.1f} at IF {high:g} (means over seeds)." for m, t in at.items()]
                             + [p.sentence() for p in pairs]))


# ## 7. What this run shows
# 
# Rendered from the tables above, by the paired-seed rule.

# In[ ]:


def f(a, b, metric):
    return F.compare(a, runs[a], b, runs[b], metric)


best_few, best_few_value = F.best(summary, "few")
paper_best = max(reported_keys, key=lambda label: reported(reported_keys[label]).value)
F.show(
    f"**Your run:** {caption(runs['CE'])}.",
    "**CMO against the same loss without it:**",
    F.bullets([f(label, f"{label} + CMO", m).sentence() for label in with_cmo for m in ("overall", "few")]),
    "**Each loss against CE, without CMO:**",
    F.bullets([f("CE", label, m).sentence() for label in losses if label != "CE" for m in ("overall", "few")]),
    f"**Best overall:** {best_overall} ({summary.loc[best_overall, 'overall (%)']}); **best few-shot:** {best_few} "
    f"({summary.loc[best_few, 'few (%)']}), over seed(s) {summary.loc[best_overall, 'seeds']}. The CMO paper's "
    f"best on CIFAR-100-LT is {paper_best} (the reported column above). A ranking of means is not a paired "
    "finding: check the rows above before calling one method better than another.",
    *([f("CE + CMO", combo, "overall").sentence()] if combo in runs else []),
    f"**Cost** per epoch in these runs: CE + CMO {cost.loc['CE + CMO', 'vs CE']:.2f}× CE, BS + CMO "
    f"{cost.loc['BS + CMO', 'vs CE']:.2f}×.",
    f"Verdict rule: {F.RULE}.",
)


# ## 8. What the long path measured
# 
# The same eight runs, and the CC-SAM combination, on seeds 0–2, as `make tutorial FULL=1` ran them, from the
# committed results file.

# In[ ]:


committed = longpath.load("05", dataset, profile)
if committed is None:
    print(f"no long-path results are committed for {dataset} in the {profile!r} profile")
else:
    long_runs = longpath.results(committed, "runs")
    if (committed["table"] == "combination").any():
        long_runs.update(longpath.results(committed, "combination"))
    F.show(f"**Long path:** {longpath.provenance(committed)}.")
    long_summary = summarize(long_runs)
    display(display_table(long_summary))
    F.show(F.bullets([F.compare(k, long_runs[k], f"{k} + CMO", long_runs[f"{k} + CMO"], m).sentence()
                      for k in losses if k in long_runs and f"{k} + CMO" in long_runs for m in ("overall", "few")]
                     + [F.compare("CE", long_runs["CE"], k, long_runs[k], "overall").sentence()
                        for k in losses if k != "CE" and k in long_runs]
                     + ([F.compare("CE + CMO", long_runs["CE + CMO"], combo, long_runs[combo], "overall").sentence()]
                        if combo in long_runs else [])))
    F.show(f"Long path, best overall: {F.best(long_summary, 'overall')[0]}; best few-shot: "
           f"{F.best(long_summary, 'few')[0]} (means over seeds).")


# ## Summary and what comes next
# 
# - CMO is a mixing rule (`mixing="cmo"`): a minority-weighted second stream, one box and one λ per batch, the
#   label weight recomputed from the clipped box. It composes with any loss and any step strategy.
# - The losses are config fields: `reweight="drw"`, `loss="bs"`, `loss="ldam"` (with `classifier="normed"`).
# - Whether CMO helps a loss that ignores the imbalance (CE) more than one that already re-balances (DRW, Balanced
#   Softmax), and which method leads, is in sections 7 and 8: read the paired findings, not only the means.
# 
# **Try this**
# - `-p cmo_prob 1.0`: mix every batch. Does the few-shot gain grow, and what does the many-shot group pay?
# - `-p combine_step imbsam` (with `extras=True`): CMO with ImbSAM's step instead of CC-SAM's.
# - Fashion-MNIST's images sit on plain black backgrounds, so a pasted patch brings little of the "context" CMO
#   is named after. Look at the batch in section 1 and ask what the background adds here.
# - CMO's long recipe is `make_config(profile, "cmo_400", dataset)`: Balanced Softmax + CMO with PaCo's step
#   schedule, and per image either AutoAugment + Cutout or SimCLR-style crops and colour changes (CMO's patches
#   too). At the quick profile it keeps the quick epoch count; `sample_batch` shows what its batches look like.
# 
# Notebook 06 perturbs the trained models of notebooks 01–05 to measure how sharp their minima are. To run this
# notebook at paper scale on a GPU: `papermill notebooks/05_cmo.ipynb out.ipynb -p dataset cifar100_lt -p profile
# paper` (CIFAR-100 files in `~/.cache/ltlib/cifar-100-python` or `$LTLIB_CIFAR100_DIR`).

# In[ ]:


results.save()
finish()
