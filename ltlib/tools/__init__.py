"""Command-line tools: ``python -m ltlib.tools.cli`` (train one run), ``.tutorial`` (run the notebooks), ``.bench``
and ``.bench_jobs`` (side-by-side benchmarks), ``.export`` (notebooks to scripts)."""
