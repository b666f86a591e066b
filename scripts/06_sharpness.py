# Generated from notebooks/06_sharpness.ipynb by `make scripts` (nbconvert). Edit the notebook, not this file.
# Run: python scripts/06_sharpness.py  (LTLIB_PROFILE=smoke for a quick check)

# # 06 · How sharp are the minima? Perturbation and curvature analysis of every model in the series
# 
# **The question.** The CC-SAM paper starts from an observation: perturb a trained long-tailed model a few times
# at random and its loss moves more for LDAM-DRW (and GCL) than for plain cross-entropy, so the long-tailed methods
# sit in *sharper* minima. Saddle-LongTail (Rangwani et al., NeurIPS 2022) looks per class and finds the tail
# classes' loss sharper than the head's. Do these hold for the models notebooks 01–05 trained?
# 
# **Papers and code.** CC-SAM's sharpness study: Zhou et al., CVPR 2023 (the poster;
# [zzpustc/CC-SAM](https://github.com/zzpustc/CC-SAM)). Saddle-LongTail: [arXiv:2212.13827](https://arxiv.org/abs/2212.13827),
# [val-iisc/Saddle-LongTail](https://github.com/val-iisc/Saddle-LongTail). Filter-normalised directions and loss
# landscapes: Li et al., NeurIPS 2018 ([arXiv:1712.09913](https://arxiv.org/abs/1712.09913),
# [tomgoldstein/loss-landscape](https://github.com/tomgoldstein/loss-landscape)).
# 
# **What you will learn**
# - three ways to measure sharpness, and what each one is blind to:
#   1. **random perturbation** (the CC-SAM poster's protocol): the loss after $w + \sigma d$ for a few random,
#      *filter-normalised* directions $d$ (each filter of $d$ has the norm of the weights' filter, Li et al. 2018);
#   2. **curvature**: the top eigenvalue of the Hessian (power iteration) and its trace (Hutchinson), of the whole
#      loss and of each group's loss (many / medium / few), both raw and in filter-normalised coordinates;
#   3. **loss landscapes**: the loss along one or two such directions, and along the SAM and ImbSAM ascent directions;
# - why raw Hessian eigenvalues do not compare across training recipes, and which measure does;
# - whether sharpness says anything about tail accuracy on our data.
# 
# Every analysis runs on a fixed probe set: the model's own long-tailed training images (at most 100 per class in
# the `quick` profile), without augmentation, with BatchNorm in eval mode, in fp32. The loss is cross-entropy on
# the logits the model predicts with, for every method; for LDAM's cosine classifier the logits are scaled by its
# $s = 30$, as its loss scales them (without the margins). Randomness comes from a seeded generator, so every
# number below is reproducible, and each model's analysis is cached beside its run in `exp/`.
# 
# The models come from `exp/`: whatever notebooks 01–05 trained is loaded, anything missing is trained here at the
# chosen profile. Each model's analysis is cached beside its run, so a rerun only recomputes the 2-D slices and the
# extra noise checks; section 8 says how long each analysis took. `make tutorial` runs this notebook on seed 0 with
# the filter-scaled Hessian only (`extras=False`); `make tutorial FULL=1` runs it on seeds 0–2 with both Hessian
# scales. Every result in the text is rendered from the analyses above it.

# In[ ]:


# Parameters (papermill: -p name value). LTLIB_PROFILE overrides `profile` for the exported script.
dataset = "fashion_mnist_lt"
imbalance_factor = 100
profile = "quick"               # "smoke" (tests), "quick" (CPU, minutes), "paper" (GPU)
# labels from ltlib.report.series.series_configs; None: every headline model of notebooks 01-05 (a few in "smoke")
models = None
# the first seed is analysed for every model; the `contrast` pair is analysed on all of them
seeds = [0, 1, 2]
contrast = ["05 CE", "05 LDAM-DRW"]                      # the poster's comparison (same recipe, same data)
ascent_models = ["03 SGD", "03 SAM", "03 ImbSAM"]        # landscapes along the SAM / ImbSAM ascent too
imbsam_eta = 20                 # ImbSAM's tail for its ascent direction: classes with fewer training images
absolute_sigma = 0.0316         # a plain N(0, sigma^2) weight noise for the contrast pair (the poster's config: variance 1e-3)
# None: the profile's analysis settings (ltlib.analysis.sharpness.ANALYSIS_PROFILES)
sigmas = None
report_sigma = None
probe_per_class = None
hessian_images = None
extras = True                   # False measures the filter-scaled Hessian only (not the raw one), as make tutorial does
device = "auto"


# In[ ]:


import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display
from torch.func import functional_call

import ltlib.analysis.sharpness as S
import ltlib.report.plots as lp
from ltlib.report import findings as F
from ltlib.report import longpath
from ltlib.report.notebook import finish, resolve_profile, setup
from ltlib.report.results import caption
from ltlib.report.series import default_models, select, series_configs
from ltlib.runs.experiment import run, run_seeds
from ltlib.runs.jobs import run_grid

profile = resolve_profile(profile)
dev = setup(device)
settings = S.analysis_settings(profile, sigmas=sigmas, report_sigma=report_sigma, probe_per_class=probe_per_class,
                               hessian_images=hessian_images, hessian_scales=None if extras else ["filter"])
catalogue = series_configs(profile, dataset, imbalance_factor)
configs = select(catalogue, models or default_models(profile))
select(catalogue, contrast + ascent_models)      # a clear error for an unknown label
sigma = settings.report_sigma
record = longpath.NotebookResults("06", dataset, profile)
print(settings)


# ## 1. The models
# 
# One model per method, seed 0, each trained by the notebook named in its label with that notebook's defaults
# (`ltlib.report.series` builds the same configs, so the runs come from the cache). Test accuracy in %, strict groups
# (many > 100, few < 20 training images).

# In[ ]:


runs = {label: rs[0] for label, rs in run_grid(configs, seeds[:1], device=dev).items()}
record.add_runs("accuracy", {label: [r] for label, r in runs.items()})
accuracy = pd.DataFrame({label: {g: r.result()[g] for g in ("overall", "many", "medium", "few")}
                         for label, r in runs.items()}).T
accuracy["run"] = [r.path.name for r in runs.values()]
display(accuracy.round(1))
print(caption(list(runs.values())[:1]))


# ## 2. Analyse every model
# 
# For each model: the random perturbations (`settings.sigmas` × `settings.draws`), the Hessian of each scope
# (overall, many, medium, few; at most `settings.hessian_images` images each, a seeded stratified choice), raw and
# filter-scaled, and a 1-D landscape along one random direction (plus the SAM and ImbSAM ascent directions for
# `ascent_models`). Two training subsets occur: notebooks 01–03 take the first $n_c$ images of each class
# (weight balancing's and ImbSAM's code), 04–05 a seeded shuffle (LDAM-DRW's); each model is probed on its own.

# In[ ]:


analyses = S.analyse_runs(runs, settings, ascent_eta={label: imbsam_eta for label in ascent_models if label in runs},
                          progress=True)
for probe in dict.fromkeys(res.probe for res in analyses.values()):
    print("probe:", probe)


# **The core lines.** The two pieces every measure above is built from, written out in plain torch on the first
# model and checked against ltlib's:
# - a **filter-normalised random direction**: a Gaussian draw, each filter (output unit) rescaled to the norm of the
#   same filter of the weights;
# - a **Hessian-vector product** $Hv$, without ever forming $H$: the gradient of $g \cdot v$ (Pearlmutter's trick).
#   Its meaning: $v^\top H v$ is the second derivative of the loss along the line $w + t v$ at $t = 0$, which the
#   last lines compute another way. (On a ReLU network that line is only piecewise smooth, so finite differences
#   over a step that flips activations measure something else: the check differentiates along the line instead.)

# In[ ]:


first = next(iter(runs))
model = runs[first].model.eval()
probe = S.probe_for(runs[first], settings)
probe = probe.subset(torch.ones_like(probe.labels, dtype=torch.bool), max_images=settings.hessian_images)
params = S.select_params(model, "weights")                      # conv and linear weights
gen = torch.Generator().manual_seed(0)
v = []
for p in params:
    w, d = p.tensor.detach(), torch.randn(p.tensor.shape, generator=gen)
    dims = [i for i in range(w.dim()) if i != p.filter_dim]     # every dimension but the filter's
    v.append(d * torch.linalg.vector_norm(w, dim=dims, keepdim=True) / torch.linalg.vector_norm(d, dim=dims, keepdim=True))
for mine, theirs in zip(v, S.random_direction(params, torch.Generator().manual_seed(0))):
    torch.testing.assert_close(mine, theirs)

weights = [p.tensor for p in params]
loss = probe.loss_fn(model(probe.inputs), probe.labels).mean()
g = torch.autograd.grad(loss, weights, create_graph=True)
hv = torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, v)), weights)   # H v = d(g . v) / dw
for mine, theirs in zip(hv, S.model_hvp(model, probe, params)(v)):
    torch.testing.assert_close(mine, theirs)
vhv = sum((vi * hi).sum() for vi, hi in zip(v, hv)).detach()

t = torch.zeros((), requires_grad=True)                         # the loss along w + t v
along = probe.loss_fn(functional_call(model, {p.name: p.tensor + t * vi for p, vi in zip(params, v)},
                                      (probe.inputs,)), probe.labels).mean()
slope, = torch.autograd.grad(along, t, create_graph=True)
curvature, = torch.autograd.grad(slope, t)
torch.testing.assert_close(curvature, vhv)
print(f"{first}, {len(probe)} probe images: v^T H v = {float(vhv):.4g} along one filter-normalised direction, "
      f"equal to d^2/dt^2 L(w + t v) at t = 0; the direction and H v equal ltlib's")


# ## 3. The poster's protocol: five random perturbations
# 
# Below, each model's loss after each of the five random filter-normalised perturbations of size σ (dots), and its
# unperturbed loss (bar). The poster reads a larger spread of the dots as a sharper minimum. The second figure
# follows the mean loss increase over the σ grid, overall and for the many- and few-shot groups; bars are the
# standard deviation over the draws. The same five directions are used at every σ (and, since every model of one
# architecture draws them from the same seed, the same raw Gaussian numbers for every model).

# In[ ]:


spreads = {label: res.spread for label, res in analyses.items()}
fig = lp.plot_loss_draws(spreads, sigma)
lp.save_figure(fig, f"06_loss_draws_{profile}")
plt.show()
fig = lp.plot_perturbation_spread(spreads, title=f"{settings.draws} draws per sigma; "
                                  "filter-normalised Gaussian directions over the conv and linear weights")
lp.save_figure(fig, f"06_perturbation_spread_{profile}")
plt.show()
summary = pd.concat({label: s[np.isclose(s["sigma"], sigma)].set_index("scope")[["loss", "loss_increase", "spread"]]
                     for label, s in ((label, S.spread_summary(t)) for label, t in spreads.items())})
display(summary.unstack("scope").round(3))


# ## 4. Curvature of the head's and the tail's loss
# 
# The top Hessian eigenvalue $\lambda_{max}$ and the trace, of the mean loss of each scope. *Raw* values answer "how
# fast does the loss curve per unit of weight change"; they shrink when the weights grow, and BatchNorm makes most
# layers indifferent to their weights' scale, so a recipe with less weight decay looks flatter for no functional
# reason. The *filter-scaled* values ($\tilde\lambda$, $\widetilde{\mathrm{tr}}$: the Hessian of $D H D$, $D$ the RMS of
# each weight's filter) measure curvature per *relative* change; $\tfrac12 \sigma^2 \widetilde{\mathrm{tr}}$ is, to second
# order, the expected loss increase of a σ filter-normalised random perturbation, which ties them to section 3.

# In[ ]:


for scale, name in (("none", "raw"), ("filter", "filter-scaled")):
    hessians = {label: res.hessian[res.hessian["scale"] == scale] for label, res in analyses.items()}
    if not any(len(h) for h in hessians.values()):
        continue
    fig = lp.plot_group_curvature(hessians)
    fig.axes[0].set_title(f"{name} Hessian: top eigenvalue and trace per scope (at most {settings.hessian_images} "
                          "images per scope)", fontsize=10)
    lp.save_figure(fig, f"06_curvature_{scale}_{profile}")
    plt.show()
    display(pd.concat({label: h.set_index("scope")[["top_eigenvalue", "trace", "trace_se"]]
                       for label, h in hessians.items()}).unstack("scope")["top_eigenvalue"].round(1)
            .rename(columns=lambda s: f"{name} λmax {s}"))


# ## 5. Loss landscapes
# 
# The loss along one filter-normalised random direction through each trained model ($\alpha = 0$), for the whole
# probe and for the few-shot classes. For the SAM-family models of notebook 03, also along the direction SAM climbs
# (the gradient of the probe loss) and the one ImbSAM climbs (the gradient of the tail classes' loss only), each
# filter-normalised. Along a gradient the loss rises far faster than along a random direction, so those two
# landscapes are drawn on the scale of SAM's own step: the x axis counts steps of norm $\rho$
# (`settings.ascent_rho`), out to `settings.ascent_steps` of them on each side.

# In[ ]:


fig = lp.plot_landscapes_1d({label: res.landscape for label, res in analyses.items()}, direction="random")
lp.save_figure(fig, f"06_landscape_1d_{profile}")
plt.show()
shown = [label for label in ascent_models if label in analyses]
if shown:
    for direction in ("SAM ascent", "ImbSAM ascent"):
        fig = lp.plot_landscapes_1d({label: analyses[label].landscape for label in shown}, direction=direction)
        lp.save_figure(fig, f"06_landscape_{direction.split()[0].lower()}_{profile}")
        plt.show()


# A 2-D slice for the contrast pair: the loss on the plane $w + \alpha d_1 + \beta d_2$ of two filter-normalised
# random directions, on shared contour levels (log10 of the loss). The red star is the trained model.

# In[ ]:


grids = {}
axis = np.linspace(-settings.grid_range, settings.grid_range, settings.grid_points)
for label in contrast:
    r = run(catalogue[label].with_seed(seeds[0]), device=dev)
    d1, d2 = S.random_directions(r.model, 2, seed=0)
    grids[label] = S.landscape_2d(r.model, S.probe_for(r, settings), d1, d2, axis, progress=True)
fig = lp.plot_landscape_2d(grids)
lp.save_figure(fig, f"06_landscape_2d_{profile}")
plt.show()


# ## 6. Does sharpness go with tail accuracy?
# 
# One row per model: test accuracy, the probe loss, the loss increase and spread at the reported σ, and the
# curvature columns (λ, tr raw; λ~, tr~ filter-scaled). Below it, the Spearman rank correlation of each measure with
# few-shot test accuracy over these models: one seed, a handful of recipes, so read it as a description of these
# models, not as a law.

# In[ ]:


table = S.sharpness_table(analyses, runs, sigma)
display(table.round(3))
display(pd.concat([S.rank_correlations(table, "test few"), S.rank_correlations(table, "test overall")], axis=1).round(2))
fig = lp.plot_sharpness_vs_accuracy(table, "Δloss", "test few")
fig.axes[0].set_xlabel(f"loss increase at sigma = {sigma:g} (mean of the draws)")
lp.save_figure(fig, f"06_sharpness_vs_few_{profile}")
plt.show()


# ## 7. Is LDAM-DRW sharper than CE? Every seed
# 
# The poster's claim, on the pair trained by notebook 05 with the same recipe, the same data and the same seeds.
# Each seed's model is analysed as above; the last table counts in how many seeds the second model measures sharper.
# Two more checks, since the poster does not say how it perturbed or which loss it read: plain Gaussian noise
# $N(0, \sigma^2)$ on every weight (no normalisation, σ = `absolute_sigma`, the kind of noise its unused config keys
# suggest), and each model's own *training* loss instead of CE on its predictions (for LDAM-DRW: the margins, $s$ and
# the final DRW weights; for CE: plain CE), both at the reported σ for the filter-normalised case.

# In[ ]:


analysed = {label: [(r, S.analyse_run(r, settings)) for r in run_seeds(catalogue[label], seeds, device=dev)]
            for label in contrast}
per_seed = S.seed_table(analysed, sigma)
for label, pairs in analysed.items():
    for r, _ in pairs:
        checks = {"absolute noise": (S.probe_for(r, settings), absolute_sigma, "none"),
                  "training loss": (S.probe_for(r, settings, loss="train"), sigma, "filter")}
        for name, (probe, size, norm) in checks.items():
            increase, spread = S.spread_at(r.model, probe, size, draws=settings.draws, norm=norm)
            per_seed.loc[(label, r.config.seed), [f"Δloss ({name})", f"spread ({name})"]] = [increase, spread]
measures = ["Δloss", "spread", "Δloss few", "λ", "λ few", "tr", "λ~", "λ~ few", "tr~",
            "Δloss (absolute noise)", "spread (absolute noise)", "Δloss (training loss)", "spread (training loss)"]
display(per_seed[["test overall", "test few", *[m for m in measures if m in per_seed]]].round(3))
display(S.sharper_count(per_seed, contrast[0], contrast[1], [m for m in measures if m in per_seed]).round(3))


# ## 8. What these analyses show
# 
# Rendered from the tables above. The rules: a model's tail loss is *sharper than its head's* when its
# filter-scaled top eigenvalue of the few-shot loss exceeds that of the many-shot loss (λ~ few > λ~ many); two
# groups of models are *separated* by a measure when the measure's ranges over the two groups do not overlap; the
# contrast pair is compared seed by seed, and with one seed there is no verdict.

# In[ ]:


lr = pd.Series({label: catalogue[label].model_config.lr for label in runs})
recipes = {f"lr {v:g}": lr.index[lr == v].tolist() for v in sorted(lr.unique())}
ranges = []
for measure in [m for m in ("λ", "λ~") if m in table]:
    spans = {name: (table.loc[members, measure].min(), table.loc[members, measure].max())
             for name, members in recipes.items()}
    text = "; ".join(f"the {name} models {lo:.3g} to {hi:.3g}" for name, (lo, hi) in spans.items())
    bounds = sorted(spans.values())
    apart = len(bounds) > 1 and all(a[1] < b[0] for a, b in zip(bounds, bounds[1:]))
    ranges.append(f"**{'raw' if measure == 'λ' else 'filter-scaled'} top eigenvalue ({measure}):** {text}: the "
                  f"recipes' ranges {'do not overlap' if apart else 'overlap'}.")
tail_sharper = [label for label in table.index if table.loc[label, "λ~ few"] > table.loc[label, "λ~ many"]]
exceptions = [f"{label} ({table.loc[label, 'λ~ few']:.3g} against {table.loc[label, 'λ~ many']:.3g})"
              for label in table.index if label not in tail_sharper]
trio = [label for label in ("03 SGD", "03 SAM", "03 ASAM", "03 ImbSAM") if label in table.index]
sam_rows = [f"{label}: λ~ {table.loc[label, 'λ~']:.3g}, Δloss {table.loc[label, 'Δloss']:.3f}, test overall "
            f"{table.loc[label, 'test overall']:.1f} %, few {table.loc[label, 'test few']:.1f} %" for label in trio]
negative = {label: h for label, res in analyses.items()
            if len(h := res.hessian[res.hessian["top_eigenvalue"] < 0])}
correlations = pd.concat([S.rank_correlations(table, "test few"), S.rank_correlations(table, "test overall")], axis=1)
hessian_measures = [m for m in correlations.index if m.startswith(("λ", "tr"))]
random_measures = [m for m in correlations.index if m.startswith(("Δloss", "spread"))]
seconds = [res.seconds for res in analyses.values()]
F.show(
    f"**Your run:** {len(runs)} models, {caption(list(runs.values())[:1])}; σ = {sigma:g} in the tables.",
    F.bullets([
        *ranges,
        f"**Tail against head** (λ~ few > λ~ many): the tail's loss is the sharper one in "
        f"{F.count_text(len(tail_sharper), len(table), 'models')}"
        + (f"; the exceptions: {'; '.join(exceptions)}." if exceptions else "."),
        *(["**SGD and the SAM family** (same recipe): " + "; ".join(sam_rows) + "."] if trio else []),
        (f"**Negative top eigenvalues** in {', '.join(negative)}: power iteration returns the eigenvalue of largest "
         "magnitude, so a negative one means that along some direction the probe loss curves *downward* more "
         "strongly than it curves upward anywhere. The model does not sit in a minimum of that loss: it was trained "
         "on another one (LDAM's margins, Balanced Softmax's prior shift, a re-weighted or mixed loss), not on plain "
         "CE of its predicted logits." if negative else ""),
        f"**Sharpness and accuracy** over these {len(table)} models (Spearman): the curvature measures correlate "
        f"with few-shot accuracy between {correlations.loc[hessian_measures, correlations.columns[0]].min():.2f} and "
        f"{correlations.loc[hessian_measures, correlations.columns[0]].max():.2f}, the random-perturbation measures "
        f"between {correlations.loc[random_measures, correlations.columns[0]].min():.2f} and "
        f"{correlations.loc[random_measures, correlations.columns[0]].max():.2f}. One seed and a handful of recipes: "
        "a description of these models, not a law.",
        f"**Cost:** one model's analysis took {min(seconds):.0f} to {max(seconds):.0f} s when it ran (a cached one is "
        "loaded, not rerun).",
    ]),
)


# **LDAM-DRW against CE, measure by measure**, paired by seed (the second model of `contrast` against the
# first; `ltlib.report.findings`: with one seed, no verdict):

# In[ ]:


contrast_findings = [F.from_values(contrast[0], per_seed.loc[contrast[0], m].to_dict(), contrast[1],
                                   per_seed.loc[contrast[1], m].to_dict(), m, unit="")
                     for m in measures if m in per_seed]
display(F.findings_table(contrast_findings))
F.show(F.bullets([f.sentence(f"**{f.metric}**, {contrast[1]} minus {contrast[0]}") for f in contrast_findings
                  if f.metric in ("Δloss", "λ~", "Δloss (absolute noise)", "Δloss (training loss)")]),
       f"Verdict rule: {F.RULE}. A positive difference means {contrast[1]} measures sharper.")
for label, pairs in analysed.items():
    record.add_values("contrast", per_seed.loc[label, [m for m in measures if m in per_seed]].stack()
                      .rename_axis(["seed", "metric"]).reset_index(name="value").assign(label=label))
record.add_values("models", table.stack().rename_axis(["label", "metric"]).reset_index(name="value")
                  .assign(seed=seeds[0]))


# ## 9. What the long path measured
# 
# Every model with both Hessian scales, and the contrast pair on seeds 0–2, as `make tutorial FULL=1` ran them,
# from the committed results file.

# In[ ]:


committed = longpath.load("06", dataset, profile)
if committed is None:
    print(f"no long-path results are committed for {dataset} in the {profile!r} profile")
else:
    F.show(f"**Long path:** {longpath.provenance(committed)}.")
    models_table = committed[committed["table"] == "models"].pivot_table(index="label", columns="metric",
                                                                         values="value", sort=False)
    display(models_table.round(3))
    sharper = int((models_table["λ~ few"] > models_table["λ~ many"]).sum())
    pairs = committed[committed["table"] == "contrast"]
    long_contrast = [F.from_values(contrast[0], longpath.values(committed, "contrast", contrast[0], m), contrast[1],
                                   longpath.values(committed, "contrast", contrast[1], m), m, unit="")
                     for m in dict.fromkeys(pairs["metric"]) if m in measures]
    F.show(F.bullets([f"Tail against head (λ~ few > λ~ many): the tail's loss is the sharper one in "
                      f"{F.count_text(sharper, len(models_table), 'models')}."]
                     + [f.sentence(f"**{f.metric}**, {contrast[1]} minus {contrast[0]}") for f in long_contrast
                        if f.metric in ("Δloss", "λ~", "Δloss (absolute noise)", "Δloss (training loss)")]))
    display(F.findings_table(long_contrast))


# ## Summary and what comes next
# 
# - `ltlib.analysis.sharpness` measures a trained model three ways on a fixed probe: random filter-normalised perturbations
#   (`perturbation_spread`), Hessian curvature per group (`hessian_by_group`: power iteration and Hutchinson on
#   Hessian-vector products, raw or filter-scaled) and landscapes (`landscape_1d`, `landscape_2d`, along random or
#   SAM / ImbSAM ascent directions). `analyse_run` runs them all and caches the result beside the run.
# - Raw curvature and relative (filter-normalised) sharpness can rank models differently; compare raw eigenvalues
#   only between models with similar weight norms, and say which loss and which noise a sharpness claim uses.
# - Whether the recipe or the method sets the sharpness, whether the tail's loss is the sharper one, and whether
#   "LDAM-DRW is sharper than CE" holds, depend on the measure: sections 8 and 9 say what they gave here.
# 
# **Try this**
# - `-p report_sigma 0.1` (one of `sigmas`): a larger perturbation. Does the LDAM-DRW against CE verdict change?
# - `-y "contrast: ['05 CE', '05 BS']"`: ask the poster's question of Balanced Softmax instead.
# - `-p hessian_images 256`: more images per Hessian scope; how much do the eigenvalues move?
# 
# Notebook 07 gathers every result of the series into one table and figure. To run this notebook at paper scale
# on a GPU: `papermill notebooks/06_sharpness.ipynb out.ipynb -p dataset cifar100_lt -p profile paper` (CIFAR-100
# files in `~/.cache/ltlib/cifar-100-python` or `$LTLIB_CIFAR100_DIR`); the paper profile probes more images per
# class and uses more images per Hessian scope (`ltlib.analysis.sharpness.ANALYSIS_PROFILES`).

# In[ ]:


record.save()
finish()
