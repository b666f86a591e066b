"""The README's generated blocks equal what the committed files generate (`make readme` rewrites them)."""
import re
from pathlib import Path

import pytest

from ltlib.report import readme

ROOT = Path(__file__).resolve().parents[1]


def test_readme_blocks_equal_the_committed_results():
    text = (ROOT / "README.md").read_text()
    generated = readme.blocks()
    assert {"headline", "timings"} <= set(generated)
    assert not readme.stale(text, generated), "README is out of date with exp/summaries/: run `make readme`"


def test_a_number_typed_into_the_table_is_caught():
    """The planted slip: one cell of the headline table edited by hand."""
    text = (ROOT / "README.md").read_text()
    generated = readme.blocks()
    row = next(line for line in generated["headline"].splitlines() if line.startswith("| 05 CE |"))
    edited = text.replace(row, re.sub(r"\| (\d+)\.(\d) ", lambda m: f"| {int(m.group(1)) + 1}.{m.group(2)} ", row, 1))
    assert edited != text and readme.stale(edited, generated) == ["headline"]


def test_render_fills_the_blocks_and_refuses_a_readme_without_them():
    text = "intro\n<!-- generated: headline -->\nold\n<!-- end: headline -->\nrest\n"
    assert readme.render(text, {"headline": "new\n"}) == "intro\n<!-- generated: headline -->\nnew\n<!-- end: headline -->\nrest\n"
    with pytest.raises(ValueError, match="no block"):
        readme.render("no blocks here", {"headline": "x"})
