"""Export the notebooks to ``scripts/`` with nbconvert: ``python -m ltlib.tools.export`` (``make scripts``).

Each script opens by naming the notebook it comes from; edit the notebook, never the script.
A test re-exports every notebook and fails when ``scripts/`` has drifted.
"""
from __future__ import annotations

import sys
from pathlib import Path


HEADER = ("# Generated from notebooks/{name} by `make scripts` (nbconvert). Edit the notebook, not this file.\n"
          "# Run: python scripts/{stem}.py  (LTLIB_PROFILE=smoke for a quick check)\n")


def export_script(notebook: Path) -> str:
    """The script text nbconvert makes from ``notebook``, with ltlib's header."""
    from nbconvert import PythonExporter

    body, _ = PythonExporter().from_filename(str(notebook))
    lines = body.splitlines(keepends=True)
    if lines and lines[0].startswith("#!"):
        lines = lines[1:]
    if lines and lines[0].startswith("# coding"):
        lines = lines[1:]
    return HEADER.format(name=notebook.name, stem=notebook.stem) + "".join(lines).rstrip() + "\n"


def main(root: Path = Path(".")) -> None:
    for notebook in sorted((root / "notebooks").glob("[0-9]*.ipynb")):
        target = root / "scripts" / f"{notebook.stem}.py"
        target.write_text(export_script(notebook))
        print(f"{notebook} -> {target}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("."))
