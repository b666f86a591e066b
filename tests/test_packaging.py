"""The repository's promises: environment.yml matches pyproject.toml, scripts/ matches notebooks/,
and every notebook has what papermill and nbconvert need."""
import json
import re
import tomllib
from pathlib import Path

import pytest

from ltlib.tools.export import export_script

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def _normalise(spec: str) -> str:
    return re.sub(r"\s+", "", spec).lower()


def _environment_yml_specs() -> set[str]:
    specs, in_deps = set(), False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            in_deps = True
            continue
        if in_deps and re.match(r"^\s+- ", line) and not line.strip().endswith(":"):
            specs.add(_normalise(line.strip()[2:]))
    return specs - {"pip"} - {s for s in specs if s.startswith("python")}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_normalise(s) for s in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_normalise(s) for s in extra}
    assert _environment_yml_specs() == wanted


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_structure(notebook):
    nb = json.loads(notebook.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    assert "parameters" in cells[1].get("metadata", {}).get("tags", []), "the 2nd cell must be tagged 'parameters'"
    for cell in cells:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            assert not re.search(r"^\s*[%!]", source, re.M), f"magic in {notebook.name}: breaks the exported script"
            assert not cell.get("outputs"), f"{notebook.name} is committed with outputs: clear them"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_scripts_are_in_sync_with_notebooks(notebook):
    script = ROOT / "scripts" / f"{notebook.stem}.py"
    assert script.is_file(), f"{script} is missing: run `make scripts`"
    assert script.read_text() == export_script(notebook), f"{script.name} has drifted: run `make scripts`"
