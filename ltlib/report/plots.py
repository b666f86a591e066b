"""The figures the notebooks show. Each takes runs grouped by label and names its data in the title."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.patches import Patch

from ..analysis.calibration import ece_from_bins
from ..analysis.features import FeatureView
from ..core.targets import MixedTargets
from ..data.datasets import LongTailData
from ..data.longtail import GROUP_NAMES
from ..runs.experiment import Run, default_exp_dir
from .results import caption, eps_ratios, per_class, runs_table


GROUP_COLORS = {"many": "#4c72b0", "medium": "#dd8452", "few": "#c44e52"}


def save_figure(fig: plt.Figure, name: str, folder: str | Path | None = None) -> Path:
    """Save ``fig`` as ``<exp>/figures/<name>.png`` and return the path."""
    folder = Path(folder) if folder else default_exp_dir() / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_class_counts(data: LongTailData, scheme: str = "strict") -> plt.Figure:
    """Training images per class (log scale), coloured by many / medium / few."""
    groups = data.groups(scheme)
    color = {c: GROUP_COLORS[g] for g, members in zip(GROUP_NAMES, groups.members) for c in members}
    fig, ax = plt.subplots(figsize=(8, 3.2))
    x = np.arange(data.num_classes)
    ax.bar(x, data.class_counts, color=[color[c] for c in x])
    handles = [Patch(color=GROUP_COLORS[g], label=f"{g} ({len(m)} classes)") for g, m in zip(GROUP_NAMES, groups.members)]
    ax.set_yscale("log")
    ax.set_xticks(x, _short_names(data.classes), rotation=45, ha="right")
    ax.set_ylabel("training images")
    ax.set_title(f"{data.name}, IF={data.info['imbalance_factor']:g}: {int(data.class_counts.sum())} images; "
                 f"{scheme} groups", fontsize=10)
    ax.legend(handles=handles, frameon=False)
    return fig


def plot_accuracy_vs_frequency(runs_by_label: Mapping[str, Sequence[Run]], selection: str = "last") -> plt.Figure:
    """Per-class test accuracy (mean ± std over seeds) against training images per class."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    first = next(iter(runs_by_label.values()))[0]
    counts = np.array(first.metrics["class_counts"])
    offsets = np.linspace(-0.04, 0.04, len(runs_by_label))
    for (label, runs), off in zip(runs_by_label.items(), offsets):
        acc = per_class(runs, selection=selection)
        ax.errorbar(counts * 10 ** off, acc.mean(0), yerr=acc.std(0, ddof=1) if len(acc) > 1 else None,
                    marker="o", linestyle="none", capsize=3, label=f"{label} (overall {acc.mean():.1f}%)")
    ax.set_xscale("log")
    ax.set_xticks(counts, [f"{_short(n)} ({c})" for n, c in zip(first.metrics["class_names"], counts)],
                  rotation=60, ha="right", fontsize=8)
    ax.minorticks_off()
    ax.set_ylim(-2, 102)
    ax.set_xlabel("class (training images, log scale)")
    ax.set_ylabel("test accuracy of the class (%)")
    ax.set_title(_wrap(caption([r for rs in runs_by_label.values() for r in rs])), fontsize=9)
    ax.legend(frameon=False, loc="lower right")
    return fig


def plot_classifier_norms(runs_by_label: Mapping[str, Sequence]) -> plt.Figure:
    """The L2 norm of each class's classifier weight row (mean ± std over seeds), head to tail."""
    fig, ax = plt.subplots(figsize=(8, 3.8))
    first = next(r for rs in runs_by_label.values() for r in rs if isinstance(r, Run))
    x = np.arange(len(first.metrics["class_counts"]))
    width = 0.8 / len(runs_by_label)
    for i, (label, runs) in enumerate(runs_by_label.items()):
        norms = per_class(runs, key="classifier_norms")
        ax.bar(x + (i - (len(runs_by_label) - 1) / 2) * width, norms.mean(0), width,
               yerr=norms.std(0, ddof=1) if len(norms) > 1 else None, capsize=2, label=label)
    names = [f"{_short(n)}\n{c}" for n, c in zip(first.metrics["class_names"], first.metrics["class_counts"])]
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel("‖w_c‖ (classifier row norm)")
    ax.set_title(_wrap(caption([r for rs in runs_by_label.values() for r in rs if isinstance(r, Run)])), fontsize=9)
    ax.legend(frameon=False)
    return fig


def plot_tau_sweep(sweeps: Sequence, chosen: Sequence[float] = (), reference_tau: float | None = 1.9,
                   title: str = "") -> plt.Figure:
    """Test overall / many / medium / few against tau, mean over seeds (shaded: min..max), with the
    tau chosen on validation for each seed marked."""
    import pandas as pd
    data = pd.concat([s[s["split"] == "test"] for s in sweeps])
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for metric, color in (("overall", "black"), *GROUP_COLORS.items()):
        stats = data.groupby("tau")[metric].agg(["mean", "min", "max"])
        ax.plot(stats.index, stats["mean"], color=color, label=metric, lw=2 if metric == "overall" else 1.5)
        ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.12)
    for i, tau in enumerate(chosen):
        ax.axvline(tau, color="grey", ls=":", lw=1, label="tau chosen on validation" if i == 0 else None)
    if reference_tau is not None:
        ax.axvline(reference_tau, color="grey", ls="--", lw=1, label=f"tau = {reference_tau} (the demo's)")
    ax.set_xlabel("tau (rows divided by ‖w_c‖^tau; 0 = as trained, 1 = L2-normalised)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 101)
    ax.set_title(_wrap(title), fontsize=9)
    ax.legend(frameon=False, fontsize=8, ncol=2, loc="lower left")
    return fig


def plot_clip_fractions(runs_by_label: Mapping[str, Sequence[Run]]) -> plt.Figure:
    """The fraction of classifier rows MaxNorm clipped at each projection, per run."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for i, (label, runs) in enumerate(runs_by_label.items()):
        for j, r in enumerate(runs):
            fractions = r.metrics.get("clip_fractions", [])
            steps = np.linspace(0, r.config.epochs, len(fractions) + 1)[1:]  # projection time in epochs
            ax.plot(steps, fractions, color=f"C{i}", marker="o" if len(fractions) <= 30 else None, ms=3, alpha=0.8,
                    label=label if j == 0 else None)
    ax.set_xlabel("epoch of stage 2")
    ax.set_ylabel("fraction of rows clipped")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(frameon=False)
    return fig


def plot_group_accuracy(runs_by_label: Mapping[str, Sequence[Run]], selection: str = "last") -> plt.Figure:
    """Many / medium / few test accuracy per method: bars at the mean over seeds, a dot per seed."""
    labels = list(runs_by_label)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.6 * len(labels)), 3.8))
    x = np.arange(len(labels))
    width = 0.8 / len(GROUP_COLORS)
    for i, (group, color) in enumerate(GROUP_COLORS.items()):
        offset = (i - 1) * width
        for j, label in enumerate(labels):
            values = runs_table(runs_by_label[label], selection)[group].to_numpy(dtype=float)
            ax.bar(x[j] + offset, np.nanmean(values), width, color=color, alpha=0.75,
                   label=group if j == 0 else None)
            ax.scatter(np.full(len(values), x[j] + offset), values, color="black", s=10, zorder=3)
    ax.set_xticks(x, [_wrap(label, 18) for label in labels], fontsize=9 if len(labels) <= 4 else 8)
    ax.set_ylabel("test accuracy of the group (%)")
    ax.set_ylim(0, 101)
    ax.set_title(_wrap(caption([r for rs in runs_by_label.values() for r in rs]) + "; dots: seeds"), fontsize=9)
    ax.legend(frameon=False, ncol=3, loc="upper right", fontsize=8)
    return fig


def plot_sweep(runs_by_value: Mapping[float, Sequence[Run]], parameter: str = "rho",
               baseline: Sequence[Run] | None = None, baseline_label: str = "SGD",
               selection: str = "last") -> plt.Figure:
    """Overall and group accuracy against a swept hyper-parameter (log x), mean over seeds with each
    seed as a dot; ``baseline`` runs are drawn as horizontal lines."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    values = sorted(runs_by_value)
    for metric, color in (("overall", "black"), *GROUP_COLORS.items()):
        tables = [runs_table(runs_by_value[v], selection)[metric].to_numpy(dtype=float) for v in values]
        ax.plot(values, [t.mean() for t in tables], color=color, marker="o", label=metric,
                lw=2 if metric == "overall" else 1.5)
        for v, t in zip(values, tables):
            ax.scatter(np.full(len(t), v), t, color=color, s=8, alpha=0.5)
        if baseline:
            ax.axhline(runs_table(baseline, selection)[metric].mean(), color=color, ls=":", lw=1)
    if baseline:
        ax.plot([], [], color="grey", ls=":", label=f"{baseline_label} (dotted)")
    ax.set_xscale("log")
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.minorticks_off()
    ax.set_xlabel(parameter)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 101)
    ax.set_title(_wrap(caption([r for rs in runs_by_value.values() for r in rs])), fontsize=9)
    ax.legend(frameon=False, fontsize=8, ncol=3, loc="lower left")
    return fig


def plot_perturbation_radius(runs_by_label: Mapping[str, Sequence[Run]]) -> plt.Figure:
    """CC-SAM's ||eps_c|| / ||theta|| against each class's training count (log-log), averaged over epochs and
    seeds, one line per label; the right panel follows the rarest and the largest class over the epochs."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (label, runs) in enumerate(runs_by_label.items()):
        ratios = eps_ratios(runs)                                   # runs x epochs x classes
        counts = np.asarray(runs[0].metrics["class_counts"])
        per_class = np.nanmean(ratios, axis=(0, 1))
        ax.plot(counts, per_class, marker="o", color=f"C{i}", label=label)
        epochs = np.arange(1, ratios.shape[1] + 1)
        for c, ls in ((int(np.argmin(counts)), "-"), (int(np.argmax(counts)), "--")):
            ax2.plot(epochs, np.nanmean(ratios[:, :, c], axis=0), color=f"C{i}", ls=ls)
    names = runs[0].metrics["class_names"]
    ax2.plot([], [], color="grey", ls="-", label=f"rarest class ({names[int(np.argmin(counts))]})")
    ax2.plot([], [], color="grey", ls="--", label=f"largest class ({names[int(np.argmax(counts))]})")
    for a in (ax, ax2):
        a.set_yscale("log")
        a.set_ylabel(r"$\|\varepsilon_c\| / \|\theta\|$")
        a.legend(frameon=False, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("training images of the class")
    ax2.set_xlabel("epoch")
    fig.suptitle(_wrap(caption([r for rs in runs_by_label.values() for r in rs])), fontsize=9)
    fig.tight_layout()
    return fig


def plot_radius_and_loss(runs_by_label: Mapping[str, Sequence[Run]]) -> plt.Figure:
    """Per CC-SAM run: the largest ||eps_c|| / ||theta|| over the classes in each epoch (log), and the training
    loss. A radius that runs away (it grows as ||g_c||^(-1/2)) shows up as a spike in both."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    for i, (label, runs) in enumerate(runs_by_label.items()):
        for j, (r, ratios) in enumerate(zip(runs, eps_ratios(runs))):
            epochs = np.arange(1, ratios.shape[0] + 1)
            name = f"{label}, seed {r.config.seed}"
            ax.plot(epochs, np.nanmax(ratios, axis=1), color=f"C{i}", ls=("-", "--", ":", "-.")[j % 4], label=name)
            ax2.plot(r.history["epoch"], r.history["loss"], color=f"C{i}", ls=("-", "--", ":", "-.")[j % 4])
    ax.set_yscale("log")
    ax2.set_yscale("log")
    ax.set_ylabel(r"largest $\|\varepsilon_c\| / \|\theta\|$ in the epoch")
    ax2.set_ylabel("training loss")
    for a in (ax, ax2):
        a.set_xlabel("epoch")
    ax.legend(frameon=False, fontsize=7)
    fig.suptitle(_wrap(caption([r for rs in runs_by_label.values() for r in rs])), fontsize=9)
    fig.tight_layout()
    return fig


def plot_history(runs_by_label: Mapping[str, Sequence[Run]], column: str = "loss") -> plt.Figure:
    """A history column (training loss by default) per epoch, one line per run."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for i, (label, runs) in enumerate(runs_by_label.items()):
        for j, r in enumerate(runs):
            h = r.history.dropna(subset=[column])
            ax.plot(h["epoch"], h[column], color=f"C{i}", alpha=0.8, label=label if j == 0 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel(column)
    ax.legend(frameon=False)
    return fig


def _short(name: str) -> str:
    return name.split("/")[0]


def _short_names(names: Sequence[str]) -> list[str]:
    return [_short(n) for n in names]


def _wrap(text: str, width: int = 100) -> str:
    return "\n".join(textwrap.wrap(text, width))


def plot_mixed_batch(images, targets, class_names: Sequence[str], mean: Sequence[float], std: Sequence[float],
                     count: int = 8) -> plt.Figure:
    """The first ``count`` images of a mixed batch, titled with both labels and their weights."""
    n = min(count, len(images))
    fig, axes = plt.subplots(1, n, figsize=(1.6 * n, 2.2))
    axes = np.atleast_1d(axes)
    x = images[:n].detach().float().cpu()
    x = x * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    for i, ax in enumerate(axes):
        img = x[i].clamp(0, 1).permute(1, 2, 0).numpy()
        ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        if isinstance(targets, MixedTargets):
            w = float(targets.weight) if targets.weight.ndim == 0 else float(targets.weight[i])
            ax.set_title(f"{class_names[int(targets.labels[i])]} {w:.2f}\n"
                         f"{class_names[int(targets.other[i])]} {1 - w:.2f}", fontsize=7)
        else:
            ax.set_title(class_names[int(targets[i])], fontsize=7)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- sharpness (notebook 06)

def _colors(labels: Sequence[str]) -> dict:
    """A distinct colour per label: the default cycle up to 10 labels, tab20 beyond, without its two greys (the
    light one vanishes on white: notebook 07's 16th model was drawn in it)."""
    if len(labels) <= 10:
        return {label: f"C{i}" for i, label in enumerate(labels)}
    cmap = plt.get_cmap("tab20")
    palette = [cmap(i) for i in range(20) if i not in (14, 15)]
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def plot_perturbation_spread(spreads: Mapping[str, pd.DataFrame], scopes: Sequence[str] = ("overall", "many", "few"),
                             title: str = "") -> plt.Figure:
    """Loss increase against the perturbation size sigma, one line per model and a panel per scope; the bars
    are the standard deviation over the random draws (the spread the CC-SAM poster compares)."""
    fig, axes = plt.subplots(1, len(scopes), figsize=(4.2 * len(scopes), 3.6), sharey=False)
    axes = np.atleast_1d(axes)
    colors = _colors(list(spreads))
    for ax, scope in zip(axes, scopes):
        for label, table in spreads.items():
            part = table[table["scope"] == scope].groupby("sigma")["loss_increase"]
            mean, std = part.mean(), part.std().fillna(0)
            ax.errorbar(mean.index, mean.to_numpy(), yerr=std.to_numpy(), color=colors[label], marker="o", ms=3,
                        capsize=2, lw=1.2, label=label)
        ax.set_yscale("symlog", linthresh=1e-2)
        sigmas = sorted({float(v) for t in spreads.values() for v in t["sigma"]})
        if len(sigmas) > 1 and sigmas[0] > 0:
            ax.set_xscale("log")
            ax.set_xticks(sigmas, [f"{v:g}" for v in sigmas])
            ax.minorticks_off()
        ax.set_xlabel(r"$\sigma$ (relative, per filter)")
        ax.set_title(scope, fontsize=10)
    axes[0].set_ylabel("loss increase over the unperturbed model")
    axes[-1].legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        fig.suptitle(_wrap(title, 140), fontsize=9)
    fig.tight_layout()
    return fig


def plot_loss_draws(spreads: Mapping[str, pd.DataFrame], sigma: float, scope: str = "overall") -> plt.Figure:
    """The CC-SAM poster's picture: each model's loss after each random perturbation of size ``sigma``
    (dots) against its unperturbed loss (a bar)."""
    labels = list(spreads)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.75 * len(labels)), 3.8))
    colors = _colors(labels)
    for j, label in enumerate(labels):
        t = spreads[label]
        part = t[(t["scope"] == scope) & np.isclose(t["sigma"], sigma)]
        clean = float((part["loss"] - part["loss_increase"]).iloc[0])
        ax.hlines(clean, j - 0.3, j + 0.3, color="black", lw=2, label="unperturbed" if j == 0 else None)
        ax.scatter(np.full(len(part), j), part["loss"], color=colors[label], s=18, zorder=3)
    ax.set_xticks(np.arange(len(labels)), labels, fontsize=8, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel(f"{scope} loss")
    ax.set_title(f"loss after each random perturbation, sigma = {sigma:g} (dots) and without one (bar)", fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_group_curvature(hessians: Mapping[str, pd.DataFrame],
                         scopes: Sequence[str] = ("overall", "many", "medium", "few")) -> plt.Figure:
    """Top Hessian eigenvalue (top) and trace (bottom, with Hutchinson's standard error) per model and scope.
    The axis is logarithmic above 1 and linear around 0, so a negative value (a saddle) still shows."""
    labels = list(hessians)
    fig, axes = plt.subplots(2, 1, figsize=(max(8.0, 0.75 * len(labels) + 2), 6.4), sharex=True)
    x = np.arange(len(labels))
    width = 0.8 / len(scopes)
    colors = {"overall": "#777777", **GROUP_COLORS}
    for ax, column in zip(axes, ("top_eigenvalue", "trace")):
        for i, scope in enumerate(scopes):
            vals, errs = [], []
            for label in labels:
                row = hessians[label].set_index("scope").reindex([scope]).iloc[0]
                vals.append(row.get(column, np.nan))
                errs.append(row.get("trace_se", 0.0) if column == "trace" else 0.0)
            ax.bar(x + (i - (len(scopes) - 1) / 2) * width, vals, width, yerr=errs, color=colors.get(scope, f"C{i}"),
                   label=scope, capsize=1.5, error_kw={"lw": 0.8})
        ax.set_yscale("symlog", linthresh=1.0)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_ylabel({"top_eigenvalue": "top eigenvalue", "trace": "trace (Hutchinson)"}[column])
    axes[1].set_xticks(x, labels, fontsize=8, rotation=30, ha="right")
    axes[0].legend(frameon=False, fontsize=8, ncol=len(scopes))
    fig.tight_layout()
    return fig


def plot_landscapes_1d(landscapes: Mapping[str, pd.DataFrame], scopes: Sequence[str] = ("overall", "few"),
                       direction: str | None = None) -> plt.Figure:
    """Loss along one direction (``alpha`` = 0 is the trained model), one line per model, a panel per scope."""
    fig, axes = plt.subplots(1, len(scopes), figsize=(4.6 * len(scopes), 3.6))
    axes = np.atleast_1d(axes)
    colors = _colors(list(landscapes))
    in_steps = False
    for ax, scope in zip(axes, scopes):
        for label, table in landscapes.items():
            part = table[table["scope"] == scope]
            if direction is not None:
                part = part[part["direction"] == direction]
            for k, (name, line) in enumerate(part.groupby("direction", sort=False)):
                # an ascent landscape is drawn in SAM steps (ltlib.analysis.sharpness.ascent_landscapes), a random one in alpha
                in_steps = "steps" in line and bool(line["steps"].notna().all())
                ax.plot(line["steps"] if in_steps else line["alpha"], line["loss"], color=colors[label],
                        ls=("-", "--", ":")[k % 3],
                        label=label if direction is not None or part["direction"].nunique() == 1 else f"{label}: {name}")
        ax.set_yscale("log")
        ax.set_xlabel("steps of SAM's length ρ along the ascent direction" if in_steps
                      else r"$\alpha$ (filter-normalised step)")
        ax.set_ylabel(f"{scope} loss")
        ax.set_title(scope + (f", {direction} direction" if direction else ""), fontsize=10)
    axes[-1].legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def plot_landscape_2d(grids: Mapping[str, Mapping[str, np.ndarray]], levels: int = 12) -> plt.Figure:
    """Contours of log10 loss on a plane of two filter-normalised random directions, one panel per model,
    on shared levels so the basins compare."""
    labels = list(grids)
    fig, axes = plt.subplots(1, len(labels), figsize=(4.4 * len(labels), 3.9), layout="constrained")
    axes = np.atleast_1d(axes)
    logs = {label: np.log10(np.maximum(grids[label]["loss"], 1e-6)) for label in labels}
    lo, hi = min(v.min() for v in logs.values()), max(v.max() for v in logs.values())
    bounds = np.linspace(lo, hi, levels)
    for ax, label in zip(axes, labels):
        g = grids[label]
        cs = ax.contourf(g["alphas"], g["betas"], logs[label], levels=bounds, cmap="viridis")
        ax.contour(g["alphas"], g["betas"], logs[label], levels=bounds, colors="white", linewidths=0.4)
        ax.plot(0, 0, marker="*", color="red", ms=9)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel(r"$\alpha$")
        ax.set_ylabel(r"$\beta$")
    fig.colorbar(cs, ax=list(axes), label="log10 loss")
    return fig


def plot_sharpness_vs_accuracy(table: pd.DataFrame, x: str, y: str, xlog: bool = True) -> plt.Figure:
    """One point per model (the table's index as labels): a sharpness measure against an accuracy."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (label, row) in enumerate(table.iterrows()):
        ax.scatter(row[x], row[y], color=f"C{i % 10}", s=30)
        ax.annotate(label, (row[x], row[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if xlog:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the series (notebook 07)

def plot_few_vs_many(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Few-shot against many-shot test accuracy per model (a :func:`ltlib.report.gather.headline_table`), with the
    standard deviation over seeds as error bars; up and to the right is better."""
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    colors = _colors(list(table.index))
    for label, row in table.iterrows():
        ax.errorbar(row["many_mean"], row["few_mean"], xerr=np.nan_to_num(row["many_std"]),
                    yerr=np.nan_to_num(row["few_std"]), color=colors[label], marker="o", ms=5, capsize=2, lw=1)
    ax.set_xlabel("many-shot test accuracy (%)")
    ax.set_ylabel("few-shot test accuracy (%)")
    if title:
        ax.set_title(_wrap(title, 90), fontsize=9)
    fig.tight_layout()
    place_labels(ax, table["many_mean"].to_numpy(float), table["few_mean"].to_numpy(float), list(table.index),
                 [colors[label] for label in table.index])
    return fig


def place_labels(ax: plt.Axes, xs: np.ndarray, ys: np.ndarray, labels: Sequence[str], colors: Sequence,
                 fontsize: float = 7) -> list:
    """Label each point without overlap: try offsets on growing rings around the point and keep the first whose
    text box clears the other labels, the points and the axes' edges (a line joins a label set far off)."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    points = ax.transData.transform(np.column_stack([xs, ys]))
    frame = ax.get_window_extent(renderer)
    taken: list = []
    placed = []
    angles = np.deg2rad([30, 150, 210, 330, 90, 270, 0, 180, 60, 120, 240, 300])
    for i in np.argsort(-ys):                                      # top first
        text = ax.annotate(labels[i], (xs[i], ys[i]), fontsize=fontsize, color="black", xytext=(4, 3),
                           textcoords="offset points", zorder=5)
        best = None
        for radius in (6, 12, 20, 30, 42, 56, 72):
            for angle in angles:
                dx, dy = radius * np.cos(angle), radius * np.sin(angle)
                text.set_position((dx, dy))
                text.set_horizontalalignment("left" if dx >= 0 else "right")
                text.set_verticalalignment("bottom" if dy >= 0 else "top")
                box = text.get_window_extent(renderer).expanded(1.04, 1.1)
                near = np.abs(points - box.get_points().mean(0)) < np.array([box.width, box.height]) / 2 + 4
                clear = (not any(box.overlaps(other) for other in taken) and not near.all(1).any()
                         and frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1))
                if clear:
                    best = (dx, dy)
                    break
            if best is not None:
                break
        if best is None:                                           # crowded: keep the plain offset
            text.set_position((4, 3))
            text.set_horizontalalignment("left")
            text.set_verticalalignment("bottom")
        elif np.hypot(*best) > 20:
            ax.annotate("", (xs[i], ys[i]), xytext=best, textcoords="offset points",
                        arrowprops=dict(arrowstyle="-", color=colors[i], lw=0.6, shrinkA=0, shrinkB=3))
        taken.append(text.get_window_extent(renderer).expanded(1.04, 1.1))
        placed.append(text)
    return placed


def plot_reliability(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Reliability diagrams (accuracy against confidence per bin, from :func:`ltlib.analysis.calibration.reliability_bins`),
    one panel per model, with the ECE in the title and the diagonal of perfect calibration."""
    labels = list(tables)
    fig, axes = plt.subplots(1, len(labels), figsize=(3.2 * len(labels), 3.4), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, label in zip(axes, labels):
        t = tables[label]
        centers = 100 * (t["low"] + t["high"]) / 2
        ax.bar(centers, t["accuracy"].fillna(0), width=100 * (t["high"] - t["low"]).iloc[0], color="#4c72b0",
               edgecolor="white", label="accuracy")
        ax.plot([0, 100], [0, 100], color="black", ls="--", lw=1)
        ax.scatter(centers, t["confidence"], color="#c44e52", s=10, zorder=3, label="confidence")
        ax.set_title(f"{label}\nECE {ece_from_bins(t):.1f}", fontsize=9)
        ax.set_xlabel("confidence (%)")
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("accuracy in the bin (%)")
    axes[0].legend(frameon=False, fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- diagnostics (notebooks 01 and 07)

def plot_training_curves(runs_by_label: Mapping[str, Sequence[Run]],
                         columns: Sequence[tuple[str, str]] = (("loss", "training loss"),
                                                               ("train_acc", "training accuracy (%)"),
                                                               ("val_overall", "validation accuracy (%)"))
                         ) -> plt.Figure:
    """One panel per history column, one line per run (a colour per label). Columns the runs never logged are
    skipped; sparse ones (evaluated every few epochs) are drawn with markers."""
    frames = [r.history for runs in runs_by_label.values() for r in runs]
    shown = [(c, name) for c, name in columns if any(c in h and h[c].notna().any() for h in frames)]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.2), squeeze=False)
    for ax, (column, name) in zip(axes[0], shown):
        for i, (label, runs) in enumerate(runs_by_label.items()):
            for j, r in enumerate(runs):
                h = r.history.dropna(subset=[column]) if column in r.history else r.history.iloc[:0]
                sparse = len(h) < len(r.history)
                ax.plot(h["epoch"], h[column], color=f"C{i}", alpha=0.8, marker="o" if sparse else None, ms=3,
                        label=label if j == 0 else None)
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
    axes[0][0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_per_class_bars(runs_by_label: Mapping[str, Sequence[Run]], class_names: Sequence[str],
                        class_counts: Sequence[int]) -> plt.Figure:
    """Test accuracy per class, a bar per label (mean over seeds, dots for single seeds), the classes in the order
    of the first label's training counts, with the count under each name."""
    fig, ax = plt.subplots(figsize=(9, 3.4))
    x = np.arange(len(class_names))
    width = 0.8 / max(len(runs_by_label), 1)
    for i, (label, runs) in enumerate(runs_by_label.items()):
        values = per_class(runs)
        offset = (i - (len(runs_by_label) - 1) / 2) * width
        ax.bar(x + offset, values.mean(0), width, color=f"C{i}", alpha=0.85, label=label)
        if len(runs) > 1:
            for row in values:
                ax.plot(x + offset, row, ".", color="black", ms=3)
    ax.set_xticks(x, [f"{n}\n({c})" for n, c in zip(_short_names(class_names), class_counts)], fontsize=7)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(frameon=False, fontsize=8, ncol=len(runs_by_label))
    ax.set_title("per-class test accuracy (training images of the long-tailed set in brackets)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_confusions(matrices: Mapping[str, np.ndarray], class_names: Sequence[str]) -> plt.Figure:
    """Confusion matrices side by side, each row normalised to % of the true class (the diagonal is per-class
    accuracy), with the values written in the cells."""
    names = _short_names(class_names)
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.6 * len(matrices), 4.4), squeeze=False)
    for ax, (label, counts) in zip(axes[0], matrices.items()):
        rows = counts / np.maximum(counts.sum(1, keepdims=True), 1) * 100
        ax.imshow(rows, cmap="Blues", vmin=0, vmax=100)
        for (i, j), v in np.ndenumerate(rows):
            if v >= 0.5:
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if v > 60 else "black")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true class")
        ax.set_title(_wrap(label, 50), fontsize=9)
    fig.tight_layout()
    return fig


def plot_feature_views(views: Mapping[str, FeatureView], class_names: Sequence[str], few: Sequence[int] = (),
                       per_class: int = 150, seed: int = 0) -> plt.Figure:
    """Each model's test features on its own first two principal components, a colour per class (at most
    ``per_class`` points each, a seeded choice); the ``few`` classes drawn larger, with a black edge."""
    fig, axes = plt.subplots(1, len(views), figsize=(4.6 * len(views), 4.2), squeeze=False)
    rng = np.random.default_rng(seed)
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for ax, (label, view) in zip(axes[0], views.items()):
        for c, name in enumerate(class_names):
            idx = np.flatnonzero(view.labels == c)
            idx = rng.choice(idx, min(per_class, len(idx)), replace=False) if len(idx) else idx
            tail = c in few
            ax.scatter(view.points[idx, 0], view.points[idx, 1], s=14 if tail else 4, color=cmap(c % cmap.N),
                       edgecolors="black" if tail else "none", linewidths=0.4, alpha=0.9 if tail else 0.5,
                       label=f"{_short(name)}{' (few)' if tail else ''}")
        ax.set_title(f"{_wrap(label, 45)}\nPC1 {view.explained[0]:.0%}, PC2 {view.explained[1]:.0%} of the variance",
                     fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False, markerscale=2)
    fig.tight_layout()
    return fig


def plot_if_sweep(table: pd.DataFrame, tail_name: str = "tail") -> plt.Figure:
    """Tail accuracy and the head - tail gap against the imbalance factor (log axis), a line per method through the
    means over seeds, dots for single seeds (``table``: :func:`ltlib.report.results.sweep_table`)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, column, name in ((axes[0], "tail", f"{tail_name} accuracy (%)"),
                             (axes[1], "gap", f"head − {tail_name} gap (points)")):
        for i, (method, part) in enumerate(table.groupby("method", sort=False)):
            means = part.groupby("value")[column].mean()
            ax.plot(means.index, means.values, "-o", color=f"C{i}", label=method)
            ax.plot(part["value"], part[column], ".", color=f"C{i}", alpha=0.5)
        ax.set_xscale("log")
        values = sorted(table["value"].unique())
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.minorticks_off()
        ax.set_xlabel("imbalance factor")
        ax.set_title(name, fontsize=10)
    axes[0].legend(frameon=False)
    fig.tight_layout()
    return fig
