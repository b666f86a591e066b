"""How sharp is a trained model's minimum, overall and for the head and the tail?

- random perturbation (the CC-SAM poster's protocol): :func:`perturbation_spread`, :func:`spread_summary`;
- curvature: :func:`hessian_by_group` (top eigenvalue by power iteration, trace by Hutchinson), built on
  the generic :func:`top_eigenvalue` and :func:`hutchinson_trace`;
- loss landscapes along filter-normalised random or SAM / ImbSAM ascent directions: :func:`landscape_1d`,
  :func:`landscape_2d`.

Everything runs on a fixed :class:`Probe` (:func:`make_probe`), in eval mode, deterministic given a seed.
:func:`analyse_run` runs them all on a trained run at a profile's :func:`analysis_settings` and caches
the result in the run's folder; :func:`sharpness_table` puts the models side by side.
"""
from .analysis import (GROUP_SCOPES, ascent_direction, hessian_by_group, landscape_1d, landscape_2d,
                       perturbation_spread, random_directions, spread_summary)
from .directions import NORMS, PARAM_SETS, Param, displaced, normalize_direction, random_direction, select_params
from .hessian import Eigen, Trace, closure_hvp, hutchinson_trace, top_eigenvalue
from .probe import (Probe, ProbeWeighted, ScaledCrossEntropy, analysis_loss, make_probe, model_hvp, probe_outputs,
                    scope_means, training_loss)
from .report import (ANALYSIS_VERSION, RunSharpness, analyse_run, analyse_runs, ascent_landscapes, probe_for,
                     rank_correlations, seed_table, sharper_count, sharpness_table, spread_at)
from .settings import ANALYSIS_PROFILES, AnalysisSettings, analysis_settings


__all__ = [
    "GROUP_SCOPES", "ascent_direction", "hessian_by_group", "landscape_1d", "landscape_2d", "perturbation_spread",
    "random_directions", "spread_summary", "NORMS", "PARAM_SETS", "Param", "displaced", "normalize_direction",
    "random_direction", "select_params", "Eigen", "Trace", "closure_hvp", "hutchinson_trace", "top_eigenvalue",
    "ANALYSIS_VERSION", "RunSharpness", "analyse_run", "analyse_runs", "ascent_landscapes", "probe_for", "rank_correlations", "seed_table", "sharper_count",
    "sharpness_table", "spread_at",
    "ANALYSIS_PROFILES", "AnalysisSettings", "analysis_settings", "Probe", "ProbeWeighted", "ScaledCrossEntropy", "analysis_loss", "make_probe", "model_hvp", "probe_outputs",
    "scope_means", "training_loss",
]
