# Generated from notebooks/08_add_your_own_method.ipynb by `make scripts` (nbconvert). Edit the notebook, not this file.
# Run: python scripts/08_add_your_own_method.py  (LTLIB_PROFILE=smoke for a quick check)

# # 08 · Add your own method: logit adjustment joins the series
# 
# **The question.** How does a new method join this series, and does it help here? The guest is *logit adjustment*
# (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021,
# [the paper on arXiv](https://arxiv.org/abs/2007.07314); code:
# [google-research/logit_adjustment](https://github.com/google-research/google-research/tree/master/logit_adjustment)).
# It shifts every logit by the log of its class's training frequency $\pi_c$, in one of two places:
# - **in the loss**: train with $\mathrm{CE}(z + \log(\pi^\tau + 10^{-12}), y)$, predict with the raw logits $z$;
# - **post hoc**: train with plain CE, predict with $\arg\max_c\, z_c - \log(\pi_c^\tau + 10^{-12})$, with $\tau$ chosen
#   on the validation split.
# 
# Both push the decision towards the rare classes by the margin the prior implies. At $\tau = 1$ the loss is
# Balanced Softmax (notebook 05) up to the $10^{-12}$.
# 
# **What you will learn**
# - what a method is in ltlib: one file under `ltlib/methods/` holding its code, its settings block (its config
#   fields, their checks, when they count toward a run's hash) and its registry line;
# - how to write a method in a notebook cell, check it against the library's, and register it;
# - whether logit adjustment helps on our data: the loss and the post-hoc form against the *same* CE runs as
#   notebook 05, paired by seed, with the series' table, figure and rule for verdicts.
# 
# `make tutorial` runs this notebook last, on seed 0: the CE and Balanced Softmax runs are notebook 05's, loaded from
# `exp/`, so only the logit-adjusted loss trains (one run). Every result in the text is rendered from the runs above
# it.

# In[ ]:


# Parameters (papermill: -p name value). LTLIB_PROFILE overrides `profile` for the exported script.
dataset = "fashion_mnist_lt"
imbalance_factor = 100
profile = "quick"               # "smoke" (tests), "quick" (CPU, minutes), "paper" (GPU)
seeds = [0, 1, 2]
la_tau = 1.0                    # tau of the logit-adjusted loss (the paper's default)
taus = [round(0.1 * i, 1) for i in range(31)]   # the post-hoc sweep, 0 to 3
device = "auto"


# In[ ]:


import inspect

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as Fn
from IPython.display import Markdown, display

import ltlib.methods.logit_adjustment as LA
import ltlib.report.plots as lp
from ltlib.analysis.posthoc import best_tau, logit_adjustment_sweep, sweep_result
from ltlib.methods.losses import LOSSES, build_loss
from ltlib.report import findings as F
from ltlib.report import longpath
from ltlib.report.notebook import describe, finish, resolve_profile, setup
from ltlib.report.results import caption, display_table, epoch_cost, summarize
from ltlib.runs.config import make_config
from ltlib.runs.experiment import load_data
from ltlib.runs.jobs import run_grid

profile = resolve_profile(profile)
dev = setup(device)
base = make_config(profile, "cmo", dataset, imbalance_factor=imbalance_factor)   # notebook 05's recipe
data = load_data(base)
results = longpath.NotebookResults("08", dataset, profile)
print(describe(base.replace(loss="la", la_tau=la_tau)))


# ## 1. A method is one file
# 
# Logit adjustment lives in `ltlib/methods/logit_adjustment.py`. Its working lines: the offset
# $\log(\pi^\tau + 10^{-12})$, the post-hoc adjustment, and the loss.

# In[ ]:


for part in (LA.log_prior, LA.adjust_logits, LA.LogitAdjustedLoss):
    print(inspect.getsource(part))


# Beside the code, the same file holds what the rest of the library needs to know:
# - its **settings block**, `LASettings`: the config field `la_tau`, its check, and the rule that it counts toward a
#   run's hash only when `loss="la"` (so every run cached before the method existed keeps its folder);
# - its **registry line**, `LOSSES.add("la", ...)`, which names the block. The run setup reads the block's options
#   from there; no other module keeps a table of methods.
# 
# `RunConfig` lists the block among its bases, and that is the only other line the method needed.

# In[ ]:


print(inspect.getsource(LA.LASettings))
entry = LOSSES.entry("la")
print(f'LOSSES["la"]: {entry.value.__name__}, settings {entry.info["settings"].__name__}: {entry.description}')


# ## 2. Your own method, in one cell
# 
# The cell below writes the logit-adjusted loss from scratch in plain torch (per-sample values, as every ltlib loss
# returns, so that a step strategy can group them), checks it against the library's on a batch, and registers it.
# A loss registered here can train in this process (`run(base.replace(loss="my_la"))`). `run_grid`'s worker
# processes only know the methods that ltlib's own files register, so a method you keep goes into a file under
# `ltlib/methods/`, like the one above.

# In[ ]:


class MyLogitAdjusted(torch.nn.Module):
    """CE on logits + log(pi^tau + 1e-12), one value per sample."""

    def __init__(self, class_counts, tau=1.0):
        super().__init__()
        prior = torch.tensor(list(class_counts), dtype=torch.float64) / sum(class_counts)
        self.register_buffer("offset", torch.log(prior ** tau + 1e-12).float())

    def forward(self, logits, labels):
        return Fn.cross_entropy(logits.float() + self.offset, labels, reduction="none")


counts = data.class_counts.tolist()
gen = torch.Generator().manual_seed(0)
logits, labels = torch.randn(256, len(counts), generator=gen) * 3, torch.randint(0, len(counts), (256,), generator=gen)
for tau in (0.5, la_tau, 2.0):
    torch.testing.assert_close(MyLogitAdjusted(counts, tau)(logits, labels), build_loss("la", counts, tau=tau)(logits, labels))
if "my_la" not in LOSSES:
    LOSSES.add("my_la", MyLogitAdjusted, "logit adjustment, written in notebook 08")
print("the cell's loss equals ltlib's 'la' loss on a batch at tau = 0.5, la_tau and 2; registered as 'my_la'")


# ## 3. The runs
# 
# Notebook 05's CE and Balanced Softmax runs (same recipe, same names, so `exp/` already holds them after notebook
# 05) and the logit-adjusted loss, on the same seeds and initialisations.

# In[ ]:


la = f"LA loss (τ = {la_tau:g})"
configs = {"CE": base.replace(name="05-ce"), "BS": base.replace(name="05-bs", loss="bs"),
           la: base.replace(name="08-la", loss="la", la_tau=la_tau)}
runs = run_grid(configs, seeds, device=dev)
results.add_runs("runs", runs)
print(caption(runs["CE"]))


# ## 4. Post-hoc adjustment of the CE models
# 
# The CE models' logits are computed once per split; each $\tau$ of the sweep subtracts $\log(\pi^\tau + 10^{-12})$
# and re-counts the accuracy. $\tau$ is chosen per seed on the validation split (the best overall accuracy, the
# smallest $\tau$ on a tie), never on the test split.

# In[ ]:


sweeps = [logit_adjustment_sweep(r, data, taus=taus, device=dev) for r in runs["CE"]]
chosen = [best_tau(s) for s in sweeps]
posthoc, posthoc_one = "CE + post-hoc LA (τ on validation)", "CE + post-hoc LA (τ = 1)"
rows = {posthoc: [sweep_result(r, s, t) for r, s, t in zip(runs["CE"], sweeps, chosen)],
        posthoc_one: [sweep_result(r, s, 1.0) for r, s in zip(runs["CE"], sweeps)]}
results.add_runs("posthoc", rows)
fig = lp.plot_tau_sweep(sweeps, chosen, reference_tau=1.0, title="post-hoc logit adjustment of the CE models, "
                        + caption(runs["CE"]))
lp.save_figure(fig, f"08_posthoc_sweep_{profile}")
plt.show()


# ## 5. Results
# 
# Last-epoch test accuracy in %, mean ± std over seeds, strict groups (many > 100, few < 20 training images), and
# the series' figure: few-shot against many-shot accuracy, up and to the right is better.

# In[ ]:


everything = {**runs, **rows}
summary = summarize(everything)
display(display_table(summary))
print("Each method against CE, and the loss against Balanced Softmax, paired by seed (percentage points):")
found = F.compare_all(everything, "CE", ("overall", "many", "few")) + [
    F.compare("BS", runs["BS"], la, runs[la], "overall"), F.compare(posthoc, rows[posthoc], la, runs[la], "overall")]
display(F.findings_table(found))
frame = summary.rename(columns={m: f"{m}_mean" for m in ("overall", "many", "medium", "few")})
fig = lp.plot_few_vs_many(frame, title=caption(runs["CE"]))
lp.save_figure(fig, f"08_few_vs_many_{profile}")
plt.show()
cost = epoch_cost({k: runs[k] for k in ("CE", la)}, "CE")
display(cost)


# ## 6. What this run shows
# 
# Rendered from the tables above, by the paired-seed rule.

# In[ ]:


def f(a, b, metric):
    return F.compare(a, everything[a], b, everything[b], metric)


F.show(
    f"**Your run:** {caption(runs['CE'])}.",
    F.bullets([
        f("CE", la, "overall").sentence(), f("CE", la, "few").sentence(), f("CE", la, "many").sentence(),
        f"**τ chosen on validation:** {', '.join(f'{t:g}' for t in chosen)} (seed{'s' * (len(chosen) > 1)} "
        f"{', '.join(map(str, seeds))}). " + f("CE", posthoc, "overall").sentence(),
        f("CE", posthoc, "few").sentence(),
        f("CE", posthoc_one, "overall").sentence(),
        f(posthoc, la, "overall").sentence(),
        f("BS", la, "overall").sentence()
        + (" At τ = 1 the two losses differ only by the 10⁻¹² inside the log." if la_tau == 1 else ""),
        f"**Cost:** an epoch of the logit-adjusted loss took {cost.loc[la, 'vs CE']:.2f}× a CE epoch in these runs; "
        "the post-hoc form costs one prediction pass per split and no training.",
    ]),
    f"Verdict rule: {F.RULE}.",
)


# ## 7. What the long path measured
# 
# The same comparison on seeds 0–2, as `make tutorial FULL=1` runs it, from the committed results file.

# In[ ]:


committed = longpath.load("08", dataset, profile)
if committed is None:
    print(f"no long-path results are committed for notebook 08 on {dataset} in the {profile!r} profile yet: "
          "`make tutorial FULL=1` writes them to exp/summaries/longpath/")
else:
    long = {**longpath.results(committed, "runs"), **longpath.results(committed, "posthoc")}
    F.show(f"**Long path:** {longpath.provenance(committed)}.")
    display(display_table(summarize(long)))
    F.show(F.bullets([F.compare("CE", long["CE"], k, long[k], m).sentence()
                      for k in long if k != "CE" for m in ("overall", "few")]))


# ## Summary and what comes next
# 
# - A method is one file: its code, its settings block and its registry line. Logit adjustment needed that file
#   and one base class in `RunConfig`; the notebooks, jobs, benchmark and captions read the registry.
# - A loss written in a cell can be checked against the library's and registered for this process; the workers
#   that train side by side see only the library's files.
# - Whether the loss or the post-hoc form helps, and whether the loss equals Balanced Softmax, is in sections 5–7:
#   read the paired findings, not only the means.
# 
# **Try this**
# - `-p la_tau 2.0`: a stronger prior in the loss. Does the few-shot group gain more, and what does the many-shot
#   group pay?
# - Look at the sweep in section 4: how far is the τ chosen on validation from the one that is best on test, and
#   does the validation split (100 balanced images per class) have the resolution to tell them apart?
# - Write another guest in section 2's cell: a focal loss, or the loss with the prior *subtracted*. Check it against
#   a hand computation before you train it.
# 
# To run this notebook at paper scale on a GPU: `papermill notebooks/08_add_your_own_method.ipynb out.ipynb -p
# dataset cifar100_lt -p profile paper`.

# In[ ]:


results.save()
finish()
