"""Atomic file writes and safe checkpoint loading.

Every file ltlib writes goes to a temporary name in the same folder and is then renamed, so an
interrupted process never leaves a half-written file under the real name. It gets the permissions the umask gives a
new file (0644 under the usual 022), not the temporary file's 0600, so a group can share ``exp/``.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError


def _umask() -> int:
    """The process's umask (read by setting it and putting it back: Python has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())     # mkstemp makes 0600; a new file gets what the umask allows (0644 at 022)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file, then rename)."""
    _atomic_write(Path(path), lambda f: f.write(text.encode()))


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)


def save_checkpoint(obj: dict, path: str | Path) -> None:
    """``torch.save`` atomically. ``obj`` holds tensors and plain containers only."""
    _atomic_write(Path(path), lambda f: torch.save(obj, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; a damaged file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a damaged zip/pickle
        # torch's own message may advise weights_only=False: never for a file one did not write, so it is not relayed
        raise CheckpointError(
            f"{path} cannot be read as an ltlib checkpoint ({type(err).__name__}): it is truncated, corrupt or was "
            "not written by ltlib"
        ) from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not an ltlib checkpoint")
    return obj
