"""Optimisation: step strategies (the SAM family slots in here) and learning-rate schedules."""
from .schedules import SCHEDULES, Cosine, CosineEpochStart, WarmupMultiStep, build_schedule
from .step import STEPS, SGDStep, StepResult, StepStrategy, autocast_for, build_sgd, forward_loss

__all__ = ["SCHEDULES", "STEPS", "Cosine", "CosineEpochStart", "SGDStep", "StepResult", "StepStrategy",
           "WarmupMultiStep", "autocast_for", "build_schedule", "build_sgd", "forward_loss"]
