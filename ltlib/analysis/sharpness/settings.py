"""How much analysis each profile runs: a quick CPU look, a paper-scale study, or a smoke test."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ...core.errors import ConfigError
from ...core.registry import Registry
from .analysis import HESSIAN_SCALES


@dataclass(frozen=True)
class AnalysisSettings:
    """The probe, the perturbation grid and the curvature budget of notebook 06."""

    probe_per_class: int | None = 100        # training images per class in the probe (None: all)
    sigmas: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2)   # relative, filter-normalised perturbation sizes
    report_sigma: float = 0.05               # the sigma the tables report (one of sigmas)
    draws: int = 5                           # random perturbations per sigma (the CC-SAM poster: 5)
    hessian_images: int | None = 64          # images per scope for the Hessian (a stratified choice)
    hessian_iters: int = 20                  # power-iteration cap (stops at 1e-3 relative change)
    hessian_samples: int = 10                # Hutchinson probe vectors
    hessian_scales: tuple[str, ...] = ("none", "filter")   # raw H, and D H D in filter-normalised coordinates
    alpha_range: float = 0.6                 # 1-D landscapes: alpha in [-range, range]
    alpha_points: int = 13
    # the SAM / ImbSAM ascent landscapes: along the (filter-normalised) gradient the loss explodes within a
    # fraction of alpha_range, so they span +-ascent_steps steps of norm ascent_rho (the length of SAM's step)
    ascent_rho: float = 0.05
    ascent_steps: float = 10.0
    grid_range: float = 0.5                  # 2-D landscapes: a square grid of grid_points^2 models
    grid_points: int = 11

    def __post_init__(self) -> None:
        if self.draws < 1 or self.hessian_iters < 1 or self.hessian_samples < 1:
            raise ConfigError("draws, hessian_iters and hessian_samples must be >= 1")
        if not self.sigmas or any(not s > 0 for s in self.sigmas):
            raise ConfigError(f"sigmas must be a non-empty list of sizes > 0, got {self.sigmas}")
        if not self.hessian_scales or any(s not in HESSIAN_SCALES for s in self.hessian_scales):
            raise ConfigError(f"hessian_scales must name one or more of {HESSIAN_SCALES}, got {self.hessian_scales}")
        if not any(abs(s - self.report_sigma) < 1e-12 for s in self.sigmas):
            raise ConfigError(f"report_sigma {self.report_sigma} must be one of sigmas {self.sigmas}")
        if not self.ascent_rho > 0 or not self.ascent_steps > 0:
            raise ConfigError(f"ascent_rho and ascent_steps must be > 0, got {self.ascent_rho} and {self.ascent_steps}")
        if self.alpha_points < 3 or self.grid_points < 3:
            raise ConfigError("alpha_points and grid_points must be >= 3, so the grid holds the trained model")

    def replace(self, **changes) -> "AnalysisSettings":
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown analysis setting(s) {unknown}. Valid: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **{k: tuple(v) if k in ("sigmas", "hessian_scales") else v for k, v in changes.items()})


ANALYSIS_PROFILES: Registry[AnalysisSettings] = Registry("analysis profile")
ANALYSIS_PROFILES.add("quick", AnalysisSettings(), "CPU: 100 images per class, 64 per Hessian scope, 11 x 11 grid")
ANALYSIS_PROFILES.add("paper", AnalysisSettings(probe_per_class=500, hessian_images=1000, hessian_samples=50,
                                                alpha_points=25, grid_points=21),
                      "GPU: 500 images per class, 1,000 per Hessian scope, 50 Hutchinson vectors, 21 x 21 grid")
ANALYSIS_PROFILES.add("smoke", AnalysisSettings(probe_per_class=20, sigmas=(0.1,), report_sigma=0.1, draws=2, hessian_images=16,
                                                hessian_iters=2, hessian_samples=2, alpha_points=3, grid_points=3),
                      "tests: every code path, minimal work")


def analysis_settings(profile: str, **overrides) -> AnalysisSettings:
    """The profile's settings, with ``overrides`` (None values are ignored, so notebook parameters can
    default to None)."""
    return ANALYSIS_PROFILES.get(profile).replace(**{k: v for k, v in overrides.items() if v is not None})
