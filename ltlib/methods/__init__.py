"""The methods a run combines: losses and class re-weighting (``losses``), step strategies (plain SGD, the SAM
family, CC-SAM) and learning-rate schedules. They see tensors and a loss, never a data set, a run or a report."""
from .ccsam import CCSAMFeatureStep, CCSAMOptions, CCSAMStep  # registers the CC-SAM step
from .sam import SAMOptions, bn_stats_frozen, tail_classes_from_counts  # registers the SAM-family steps
from .schedules import SCHEDULES, Cosine, CosineEpochStart, WarmupMultiStep, build_schedule
from .step import STEPS, SGDStep, StepResult, StepStrategy, autocast_for, build_sgd, build_step, forward_loss


__all__ = ["SCHEDULES", "STEPS", "CCSAMFeatureStep", "CCSAMOptions", "CCSAMStep", "Cosine", "CosineEpochStart",
           "SAMOptions", "SGDStep", "StepResult", "StepStrategy", "WarmupMultiStep", "autocast_for",
           "bn_stats_frozen", "build_schedule", "build_sgd", "build_step", "forward_loss", "tail_classes_from_counts"]
