"""The README's numbers, generated from committed files: ``python -m ltlib.report.readme`` (``make readme``).

The README types no result. Its headline table and figure come from the long path's committed results of
notebook 07 (``exp/summaries/longpath/results-07-fashion_mnist_lt-quick.csv``, written by
``make tutorial FULL=1``), and its timings from the committed ``exp/summaries/tutorial_timings_short.json`` (a
fresh-clone ``make tutorial``). Each block sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``;
this module rewrites them (``--check`` only compares, as the test suite does).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

from ..core import io
from ..core.env import SOURCE_ROOT
from . import longpath
from .papers import reported
from .plots import plot_few_vs_many, save_figure
from .results import format_mean_std
from .series import REPORTED_KEYS


ROOT = SOURCE_ROOT
SUMMARIES = ROOT / "exp" / "summaries"
DATASET, PROFILE = "fashion_mnist_lt", "quick"
TIMINGS = SUMMARIES / "tutorial_timings_short.json"
FIGURE = SUMMARIES / "headline_few_vs_many.png"
_BLOCK = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end: \2 -->)", re.S)


def headline_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Per model of notebook 07's long-path results: mean and std over seeds of each metric, and the seeds."""
    part = table[table["table"] == "headline"]
    stats = part.groupby(["label", "metric"], sort=False)["value"].agg(["mean", "std"]).unstack("metric")
    out = pd.DataFrame(index=pd.Index(part["label"].unique()))
    for metric in ("overall", "many", "medium", "few", "ece", "train_time_s"):
        out[f"{metric}_mean"] = stats[("mean", metric)]
        out[f"{metric}_std"] = stats[("std", metric)]
    out["seeds"] = part.groupby("label", sort=False)["seed"].apply(lambda s: ",".join(map(str, sorted(set(s)))))
    return out


def headline_block(table: pd.DataFrame) -> str:
    """The Markdown headline table, with the line that says where its numbers come from."""
    head = headline_frame(table)
    lines = ["| model | seeds | overall | many | medium | few | ECE | train s / run | reported C100-LT IF100 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, row in head.iterrows():
        cells = [format_mean_std(row[f"{m}_mean"], row[f"{m}_std"]) for m in ("overall", "many", "medium", "few", "ece")]
        key = REPORTED_KEYS.get(label)
        paper = f"{reported(key).value:g} ({reported(key).source.split(',')[0]})" if key else ""
        lines.append(f"| {label} | {row['seeds']} | " + " | ".join(cells)
                     + f" | {row['train_time_s_mean']:.0f} | {paper} |")
    return (f"The long path: {longpath.provenance(table)}. Fashion-MNIST-LT at IF = 100, the quick profile (ResNet-32 width "
            "0.5, 30 epochs, fp32, each notebook's recipe); last-epoch test accuracy in %, mean ± std over seeds; "
            "strict groups; ECE on the test set, 15 bins, in %; training seconds per run (a stage-2 row: its stage 2 "
            "alone). The last column is what the papers report for CIFAR-100-LT with their own networks and "
            "200-epoch recipes (`ltlib.report.papers`): which way each method moved there, not a number to match.\n\n"
            + "\n".join(lines) + "\n")


def timings_block(timings: dict) -> str:
    """The short path's wall time per notebook, from a ``make tutorial`` timings file."""
    rows = ["| notebook | minutes | stream outputs |", "|---|---|---|"]
    for name, entry in timings["notebooks"].items():
        rows.append(f"| {name.removesuffix('.ipynb')} | {entry['seconds'] / 60:.1f} | {entry.get('stream_outputs', '')} |")
    total = sum(entry["seconds"] for entry in timings["notebooks"].values()) / 60
    return (f"`make tutorial` on a fresh clone, {timings['hardware']}, commit {timings['commit']}, started "
            f"{timings['started']}: **{total:.1f} min** of notebooks (`exp/summaries/{TIMINGS.name}`).\n\n"
            + "\n".join(rows) + "\n")


def figure(table: pd.DataFrame, path: Path = FIGURE) -> Path:
    """The few-shot against many-shot figure of the headline models, from the same results."""
    fig = plot_few_vs_many(headline_frame(table), title=f"Fashion-MNIST-LT IF 100, the long path: "
                                                        f"{longpath.provenance(table)}")
    return save_figure(fig, path.stem, path.parent)


def blocks() -> dict[str, str]:
    """Every generated block of the README, by name, from the committed files."""
    table = longpath.load("07", DATASET, PROFILE)
    if table is None:
        raise FileNotFoundError(f"no committed long-path results for notebook 07 in {longpath.longpath_dir()}: "
                                "run `make tutorial FULL=1` first")
    out = {"headline": headline_block(table)}
    if TIMINGS.is_file():
        out["timings"] = timings_block(json.loads(TIMINGS.read_text()))
    return out


def render(text: str, generated: dict[str, str]) -> str:
    """``text`` with each generated block replaced; an unknown or missing block is an error."""
    found = {m.group(2) for m in _BLOCK.finditer(text)}
    missing = sorted(set(generated) - found)
    if missing:
        raise ValueError(f"the README has no block(s) {missing}: add '<!-- generated: NAME -->' ... '<!-- end: NAME -->'")
    return _BLOCK.sub(lambda m: m.group(1) + generated[m.group(2)] + m.group(4), text)


def stale(text: str, generated: dict[str, str]) -> list[str]:
    """The names of the blocks whose text differs from what the committed files generate."""
    current = {m.group(2): m.group(3) for m in _BLOCK.finditer(text)}
    return sorted(name for name, body in generated.items() if current.get(name) != body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether the README is up to date")
    args = parser.parse_args(argv)
    readme = ROOT / "README.md"
    text = readme.read_text()
    generated = blocks()
    if args.check:
        names = stale(text, generated)
        print("README is up to date" if not names else f"README blocks out of date: {names}; run `make readme`")
        return 1 if names else 0
    io.write_text(readme, render(text, generated))
    print(f"wrote {readme} and {figure(longpath.load('07', DATASET, PROFILE))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
