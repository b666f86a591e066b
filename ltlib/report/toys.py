"""Pictures of a mechanism on toy or one-batch inputs, in seconds and without training (notebooks 02, 03, 05).

Each picture runs ltlib's own code on its toy: the SAM step on a two-parameter "model" over a hand-made loss
surface, the MaxNorm projection on a classifier's rows, LDAM's margins on the training counts, CMO's box at
several lambda, ImbSAM's tail on the count bars. The functions return their figure and, where a notebook states
something about the picture, the numbers drawn (a small dict or list), so the sentence is rendered from them and a
test checks what the picture claims.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
from matplotlib.patches import Circle, Patch, Rectangle

from ..data.datasets import LongTailData
from ..data.mixing import cmo_box, cmo_label_weight
from ..methods.losses import ldam_margins
from ..methods.sam import SAMOptions, SAMStep
from ..methods.step import SGDStep
from ..runs.stage2 import MaxNorm
from .plots import GROUP_COLORS, _short_names


# --------------------------------------------------------------------------- SAM on a 2-D loss surface

@dataclass(frozen=True)
class Basin:
    """A Gaussian dip in the toy surface: its centre, width (standard deviation) and depth."""

    center: tuple[float, float]
    width: float
    depth: float


SHARP = Basin((-0.8, 0.5), 0.15, 1.0)     # deeper, and narrow: curvature depth / width^2 = 44
FLAT = Basin((0.6, -0.3), 0.9, 0.9)       # shallower, and wide: curvature 1.1


def two_basins(w: torch.Tensor, basins: Sequence[Basin] = (SHARP, FLAT)) -> torch.Tensor:
    """The toy loss at points ``w`` (..., 2): 1 minus a sharp and a flat Gaussian dip, plus a weak bowl."""
    out = 1.0 + 0.02 * (w ** 2).sum(-1)
    for b in basins:
        center = torch.tensor(b.center, dtype=w.dtype)
        out = out - b.depth * torch.exp(-((w - center) ** 2).sum(-1) / (2 * b.width ** 2))
    return out


class _Point(nn.Module):
    """A "model" whose two parameters are its output, so a step strategy walks the toy surface."""

    def __init__(self, start: Sequence[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(list(start), dtype=torch.float64))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.w.expand(len(images), 2)


def toy_step(step: str, start: Sequence[float], lr: float, rho: float) -> dict:
    """One step of ltlib's SGDStep or SAMStep on the toy surface: the points the loss was evaluated at (w, and for
    SAM w + epsilon) and the new weights."""
    model = _Point(start)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    strategy = SAMStep(optimizer, options=SAMOptions(rho=rho)) if step == "sam" else SGDStep(optimizer)
    seen: list[np.ndarray] = []

    def loss_fn(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        seen.append(out[0].detach().numpy().copy())
        return two_basins(out)

    strategy(model, torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), loss_fn)
    return {"evaluated": seen, "new": model.w.detach().numpy().copy()}


def worst_case_loss(points: torch.Tensor, rho: float, directions: int = 72) -> torch.Tensor:
    """max over ||e|| <= rho of the toy loss at w + e, by brute force over the circle of radius rho (and e = 0):
    the loss SAM minimises, drawn on a grid."""
    angles = torch.linspace(0, 2 * np.pi, directions + 1, dtype=points.dtype)[:-1]
    ring = torch.cat([torch.zeros(1, 2, dtype=points.dtype), rho * torch.stack([angles.cos(), angles.sin()], 1)])
    return two_basins(points[..., None, :] + ring).amax(-1)


def plot_sam_toy(rho: float = 0.4, lr: float = 0.02, start: Sequence[float] = (-0.62, 0.28),
                 extent: float = 1.8, grid: int = 121) -> tuple[plt.Figure, dict]:
    """Left: the toy surface, one SGD step and one SAM step from ``start`` (ltlib's steps, arrows magnified to be
    seen). Right: the loss SAM minimises, the worst loss within rho. Returns the figure and where each surface's
    minimum lies ("sharp" or "flat" basin), with the steps' points."""
    axis = torch.linspace(-extent, extent, grid, dtype=torch.float64)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    points = torch.stack([xx, yy], -1)
    surfaces = {"loss": two_basins(points), f"worst loss within ρ = {rho:g}": worst_case_loss(points, rho)}
    sgd, sam = toy_step("sgd", start, lr, rho), toy_step("sam", start, lr, rho)
    minima = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharey=True)
    for ax, (name, z) in zip(axes, surfaces.items()):
        ax.contourf(xx, yy, z, levels=20, cmap="viridis")
        ax.contour(xx, yy, z, levels=20, colors="white", linewidths=0.3)
        at = divmod(int(z.argmin()), grid)
        best = np.array([float(axis[at[1]]), float(axis[at[0]])])
        minima[name] = min((SHARP, FLAT), key=lambda b: np.linalg.norm(best - b.center))
        ax.plot(*best, marker="*", color="red", markersize=14, label="minimum of this surface")
        for b, tag in ((SHARP, "sharp"), (FLAT, "flat")):
            ax.annotate(tag, b.center, xytext=(6, 6), textcoords="offset points", color="white", fontsize=9)
        ax.set_title(name, fontsize=10)
        ax.set_aspect("equal")
    ax = axes[0]
    w, w_eps = sam["evaluated"]
    longest = max(np.linalg.norm(res["new"] - w) for res in (sgd, sam))
    scale = float(np.ceil(0.35 / max(longest, 1e-12)))   # the steps are lr-sized: drawn longer, in their true directions
    ax.add_patch(Circle(tuple(w), rho, fill=False, ls=":", color="white"))
    ax.annotate("", w_eps, w, arrowprops=dict(arrowstyle="->", color="orange", lw=1.8))
    for res, color, label in ((sgd, "white", "SGD step"), (sam, "red", "SAM step")):
        ax.annotate("", w + scale * (res["new"] - w), w, arrowprops=dict(arrowstyle="->", color=color, lw=2))
        ax.plot([], [], color=color, lw=2, label=f"{label} (×{scale:g})")
    ax.plot([], [], color="orange", lw=1.8, label="ascent ε to w + ε")
    ax.plot(*w, "o", color="white")
    ax.legend(loc="lower left", fontsize=7, framealpha=0.8)
    fig.suptitle("SAM on a toy surface: ltlib's SAMStep and SGDStep on two parameters", fontsize=10)
    fig.tight_layout()
    where = {name: "sharp" if b is SHARP else "flat" for name, b in minima.items()}
    return fig, {"minima": where, "sgd": sgd, "sam": sam, "rho": rho}


# --------------------------------------------------------------------------- ImbSAM's tail

def plot_tail_split(data: LongTailData, tail: Sequence[int], eta: int) -> plt.Figure:
    """The training counts with ImbSAM's tail {c : n_c < eta} in red and the threshold as a line."""
    x = np.arange(data.num_classes)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    color = [GROUP_COLORS["few"] if c in tail else "#999999" for c in x]
    ax.bar(x, data.class_counts, color=color)
    ax.axhline(eta, color="black", ls="--", lw=1)
    ax.annotate(f"η = {eta}", (x[-1] + 0.4, eta), xytext=(0, 3), textcoords="offset points", ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(x, _short_names(data.classes), rotation=45, ha="right")
    ax.set_ylabel("training images")
    share = data.class_counts[list(tail)].sum() / data.class_counts.sum() if len(tail) else 0.0
    ax.legend(handles=[Patch(color=GROUP_COLORS["few"], label=f"tail: perturbed ({len(tail)} classes, {share:.1%} "
                             "of the images)"), Patch(color="#999999", label="head: loss taken at w")], frameon=False)
    ax.set_title(f"ImbSAM's split on {data.name}, IF={data.info['imbalance_factor']:g}", fontsize=10)
    return fig


# --------------------------------------------------------------------------- MaxNorm's ball

def plot_maxnorm_rows(weight: torch.Tensor, thresh: float, class_names: Sequence[str]) -> tuple[plt.Figure, dict]:
    """A classifier's row norms before and after one MaxNorm projection (ltlib's), against the ball's radius delta.

    Each class is a spoke at its own angle (a layout: the projection keeps each row's direction and only shortens
    it, so the norm is all it changes). Returns the figure and the norms."""
    before = weight.detach().float().clone()
    maxnorm = MaxNorm(before, thresh)
    after = before.clone()
    maxnorm.project(after)
    r0, r1 = before.norm(dim=1).numpy(), after.norm(dim=1).numpy()
    angles = np.linspace(0, 2 * np.pi, len(r0), endpoint=False)
    fig, ax = plt.subplots(figsize=(5.2, 5.2), subplot_kw={"projection": "polar"})
    ax.fill_between(np.linspace(0, 2 * np.pi, 200), 0, maxnorm.delta, color="#4c72b0", alpha=0.15,
                    label=f"the ball: ||w_c|| <= δ = {maxnorm.delta:.3g}")
    for a, b0, b1 in zip(angles, r0, r1):
        ax.plot([a, a], [0, b0], color="#bbbbbb", lw=1)
        if b0 > b1:
            ax.annotate("", (a, b1), (a, b0), arrowprops=dict(arrowstyle="->", color="#c44e52", lw=1.5))
    ax.plot(angles, r0, "o", mfc="none", color="black", label="row norm as trained")
    ax.plot(angles, r1, "o", color="#c44e52", ms=4, label="after the projection")
    ax.set_xticks(angles, _short_names(class_names), fontsize=7)
    ax.set_rlim(0, max(r0.max(), maxnorm.delta) * 1.1)
    ax.set_rlabel_position(float(np.degrees(np.pi / len(r0))))      # the radius labels between two spokes
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=7, frameon=False)
    ax.set_title(f"MaxNorm at thresh = {thresh:g}: rows longer than δ are shortened to δ", fontsize=10)
    fig.tight_layout()
    return fig, {"before": r0, "after": r1, "delta": maxnorm.delta}


# --------------------------------------------------------------------------- LDAM's margins

def plot_ldam_margins(class_counts: Sequence[int], class_names: Sequence[str], max_m: float = 0.5
                      ) -> tuple[plt.Figure, dict]:
    """LDAM's margin per class (ltlib's ``ldam_margins``) against the class count, log-log, with the n^(-1/4) law.
    Returns the figure and the fitted log-log slope."""
    counts = np.asarray(list(class_counts), dtype=float)
    margins = ldam_margins(class_counts, max_m).numpy()
    slope = float(np.polyfit(np.log(counts), np.log(margins), 1)[0]) if len(set(counts)) > 1 else float("nan")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    grid = np.geomspace(counts.min(), counts.max(), 50)
    ax.plot(grid, max_m * (grid / counts.min()) ** -0.25, color="#999999", ls="--",
            label=f"{max_m:g} (n / n_min)^(-1/4)")
    ax.plot(counts, margins, "o", color="#c44e52", label="ltlib's margin per class")
    for n, m, name in zip(counts, margins, _short_names(class_names)):
        ax.annotate(name, (n, m), xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training images n_c")
    ax.set_ylabel("margin m_c")
    ax.set_title(f"LDAM's margins: slope {slope:.3f} on log-log axes", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig, {"margins": margins, "slope": slope}


# --------------------------------------------------------------------------- CMO at several lambda

def plot_cmo_lambdas(data: LongTailData, lams: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9), seed: int = 1,
                     background: int | None = None, patch: int | None = None) -> tuple[plt.Figure, list[dict]]:
    """One background image of the largest class with a patch of the smallest class's image pasted in CMO's box
    (ltlib's ``cmo_box``, the same centre for every lambda), titled with lambda and the label weight lambda'.
    Returns the figure and, per lambda, the box and lambda'."""
    labels = data.train.labels
    head, tail = int(np.argmax(data.class_counts)), int(np.argmin(data.class_counts))
    bg = background if background is not None else int((labels == head).nonzero()[0])
    fg = patch if patch is not None else int((labels == tail).nonzero()[0])
    images = data.train.images
    back, front = images[bg].float() / 255, images[fg].float() / 255
    height, width = back.shape[-2:]
    rows = []
    fig, axes = plt.subplots(1, len(lams) + 2, figsize=(1.7 * (len(lams) + 2), 2.3))
    for ax, img, title in ((axes[0], back, f"background\n{data.classes[int(labels[bg])]}"),
                           (axes[1], front, f"patch source\n{data.classes[int(labels[fg])]}")):
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=7)
    for ax, lam in zip(axes[2:], lams):
        box = r0, r1, c0, c1 = cmo_box(height, width, lam, np.random.default_rng(seed))
        mixed = back.clone()
        mixed[:, r0:r1, c0:c1] = front[:, r0:r1, c0:c1]
        lam_prime = cmo_label_weight(box, height, width)
        rows.append({"lam": lam, "box": box, "lam_prime": lam_prime})
        ax.imshow(mixed.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, color="#c44e52", lw=1))
        ax.set_title(f"λ = {lam:g}\nλ' = {lam_prime:.2f}", fontsize=7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("CMO's paste at several λ (box in red; λ' is the background label's weight)", fontsize=9)
    fig.tight_layout()
    return fig, rows
