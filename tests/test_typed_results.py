"""No typed results: the notebooks' markdown and the README state no measured number; code renders them.

A measured result looks like a mean ± std, a percentage, a signed difference in points, a count over seeds or
models ("9 of 16"), a time, a decimal number, or a table row of numbers. Hyperparameters and formulas stay typed,
inside math (``$...$``) or code (`` `lr=0.1` ``), where this check does not look, as do arXiv identifiers; integers (epochs, image counts,
years, IF = 100) are settings and stay too. The README's generated blocks (``ltlib.report.readme``) are exempt here and
checked against their source files by ``tests/test_readme.py``.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))

# what a typed result looks like, once math and code are removed
PATTERNS = {
    "mean ± std": re.compile(r"\d\s*(±|\+-|\\pm)\s*\d"),
    "percentage": re.compile(r"\d\s*%(?!\s*t-interval)"),     # the interval's 95 % is its coverage, a setting
    "signed difference": re.compile(r"(?<![\w-])[+−]\d"),
    "count over seeds or models": re.compile(r"\b\d+\s+of\s+(the\s+)?\d+\s+(seeds|models|runs|classes)\b"),
    "time": re.compile(r"\b\d+(\.\d+)?\s*(min|minutes|seconds|hours|h|s)\b(?!-)"),
    "decimal number": re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])"),
    "multiplier": re.compile(r"\d\.\d+\s*×"),
}
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S)
_CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
_LINK = re.compile(r"\]\([^)]*\)|<https?://[^>]*>")
_ARXIV = re.compile(r"\barXiv:\d{4}\.\d{4,5}\b")       # a paper's identifier, not a result


def strip(text: str) -> str:
    """Markdown without math, code, link targets and arXiv identifiers: what a reader reads as prose."""
    return _ARXIV.sub("arXiv", _LINK.sub("]", _CODE.sub(" ", _MATH.sub(" ", text))))


def typed_results(text: str) -> list[tuple[str, str]]:
    """(kind, line) for every line of ``text`` that holds a typed result."""
    hits = []
    for line in strip(text).splitlines():
        for kind, pattern in PATTERNS.items():
            if pattern.search(line):
                hits.append((kind, line.strip()))
                break
        else:
            cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.strip().startswith("|") else []
            if sum(bool(re.fullmatch(r"[\d.,\s]+", c)) and any(ch.isdigit() for ch in c) for c in cells) >= 2:
                hits.append(("table row of numbers", line.strip()))
    return hits


def markdown_cells(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_markdown_types_no_result(notebook):
    hits = typed_results(markdown_cells(notebook))
    assert not hits, "typed results in markdown (render them from the runs in a code cell):\n" + "\n".join(
        f"  [{kind}] {line}" for kind, line in hits)


def test_readme_types_no_result_outside_its_generated_blocks():
    text = re.sub(r"<!-- generated: (\w+) -->.*?<!-- end: \1 -->", "", (ROOT / "README.md").read_text(), flags=re.S)
    hits = typed_results(text)
    assert not hits, "typed results in README.md (generate them with `make readme`):\n" + "\n".join(
        f"  [{kind}] {line}" for kind, line in hits)


@pytest.mark.parametrize("typed", [
    "SAM loses 2.5 points here.", "| SGD | 63.9 ± 1.0 | 80.8 |", "ImbSAM lifts few-shot accuracy by +28 points.",
    "The tail is sharper in 13 of 16 models.", "The notebook took 11 min.", "Few-shot accuracy reaches 92 %.",
    "| CE | 71 | 87 | 61 |", "SAM costs 2.05× an SGD step.", "arXiv:2010.01412 reports 0.95 here.",
])
def test_the_check_catches_a_typed_result(typed):
    """The planted slip: a measured number typed into prose. Each kind is caught."""
    assert typed_results(f"Some text.\n{typed}\n")


@pytest.mark.parametrize("allowed", [
    "SGD with `lr=0.1` and $\\rho = 0.05$.", "30 epochs on 2,478 images at IF = 100, seed 0.",
    "Weight balancing (CVPR 2022), the ×2 factor added on 2023-09-15.", "$$m_c = 0.5\\,(n_{min}/n_c)^{1/4}$$",
    "| step | passes |\n|---|---|\n| `sgd` | 1 forward, 1 backward |",
    "SAM: Foret et al. ([arXiv:2010.01412](https://arxiv.org/abs/2010.01412)).",
])
def test_hyperparameters_formulas_and_settings_pass(allowed):
    assert not typed_results(allowed)
