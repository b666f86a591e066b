"""One process trains a run folder at a time.

Before training, a process claims the folder: it takes ``<run>/.claim.lock`` (``filelock``: an OS lock, released
when its process ends, however it ends) and writes ``<run>/claimed-by.json`` (pid, host, start). A second process
that asks for the same run (a notebook open while ``make tutorial`` runs, two ``run_grid`` calls) finds the lock
taken, says who holds it, waits, and then loads the finished run instead of training it again. A claim file left
behind by a process that died is taken over with a warning; the run resumes from its checkpoint, if it left one.
Under DDP rank 0 alone claims the folder and tells the other ranks what it found (:func:`ltlib.runs.experiment.run`).
"""
from __future__ import annotations

import os
import socket
import sys
import warnings
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from ..core import io


LOCK_NAME = ".claim.lock"
OWNER_NAME = "claimed-by.json"


def _owner(path: Path) -> dict | None:
    try:
        return io.read_json(path / OWNER_NAME)
    except (OSError, ValueError):
        return None


def describe_owner(owner: dict | None) -> str:
    """``"pid 123 on host-a since 2026-12-06 12:00:00"``, or ``"another process"`` when unknown."""
    if not owner:
        return "another process"
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')} since {owner.get('started', '?')}"


def say(message: str) -> None:
    """A one-line notice on stderr (it reaches a notebook's output and a terminal alike)."""
    print(f"ltlib: {message}", file=sys.stderr, flush=True)


@contextmanager
def claimed(path: Path, active: bool = True) -> Iterator[dict | None]:
    """Hold the claim on the run folder ``path`` for the duration; waits while another process holds it.

    Yields the owner that held the folder before (after waiting for it), or None when nobody did; with
    ``active=False`` (the non-zero DDP ranks) it does nothing."""
    if not active:
        yield None
        return
    created = [p for p in (path, *path.parents) if not p.exists()]     # the folders this claim makes
    path.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path / LOCK_NAME))
    waited_for = None
    try:
        lock.acquire(timeout=0)
    except Timeout:
        waited_for = _owner(path)
        say(f"{path.name} is being trained by {describe_owner(waited_for)}; waiting for it to finish, then loading it")
        lock.acquire()
    try:
        left = _owner(path)       # with the lock held, a claim file can only be a dead process's
        if left is not None:
            warnings.warn(f"{path.name}: taking over the run claimed by {describe_owner(left)}, which is gone "
                          "(it stopped without finishing); resuming from its checkpoint if it left one.",
                          stacklevel=3)
        io.write_json(path / OWNER_NAME, {"pid": os.getpid(), "host": socket.gethostname(),
                                          "started": datetime.now().strftime("%Y-%m-%d %H:%M:%S")})
        try:
            yield waited_for
        finally:
            (path / OWNER_NAME).unlink(missing_ok=True)
    finally:
        lock.release()
        if created and [p.name for p in path.iterdir()] == [LOCK_NAME]:   # nothing was written (the data was
            (path / LOCK_NAME).unlink(missing_ok=True)                    # missing, say): leave nothing behind
            for folder in created:
                if any(folder.iterdir()):
                    break
                folder.rmdir()
