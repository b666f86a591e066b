"""Runs: the loop and evaluation, a run's config and setup, stage 2, the cache of finished runs under ``exp/``,
data-parallel jobs and worker processes. Above the methods; below analysis and reporting."""
