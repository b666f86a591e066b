"""Progress that informs without flooding the saved notebook.

- In a Jupyter kernel with ipywidgets (JupyterLab, or papermill): a live bar, shown through a display handle.
  When the work ends the bar is *replaced* by one short text summary (``update_display_data``), so the saved
  notebook and its HTML export hold a line per job, not hundreds of refreshes;
- in a kernel without ipywidgets: no live bar, only that summary (never tqdm's "IProgress not found" warning);
- in a terminal: tqdm's text bar on stderr, then the summary;
- with stderr sent to a file or a pipe (a log, CI, a script run by another program): no live bar, whose redraws
  would fill the log, only the summary.

ipywidgets draws the bar (the notebooks extra installs it) and tqdm the terminal one; this module only chooses
between them and writes the summary, which neither does.
"""
from __future__ import annotations

import sys
import time
from typing import Iterator, Sequence


def in_kernel() -> bool:
    """Whether this process is a Jupyter kernel (a notebook in JupyterLab, or executed by papermill)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _widgets():
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets


def duration(seconds: float) -> str:
    """``"42 s"``, ``"3.5 min"`` or ``"1 h 05 min"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class Progress:
    """A bar over ``total`` items of work, closed with a one-paragraph summary.

    ``update(n, status)`` advances it (``status``: a short note, e.g. the runs in progress); ``close(summary)``
    replaces the bar by ``summary`` (default: what was done and how long it took). ``enabled=False`` shows
    nothing at all. Use it as a context manager to close it on errors too.
    """

    def __init__(self, total: int, desc: str, unit: str = "it", *, initial: int = 0, enabled: bool = True,
                 min_interval: float = 0.25) -> None:
        self.total, self.desc, self.unit, self.enabled = int(total), desc, unit, enabled
        self.count = int(initial)
        self.start = time.perf_counter()
        self._last = 0.0
        self._min_interval = min_interval
        self._handle = self._box = self._bar = self._label = self._tqdm = None
        self._closed = False
        if not enabled:
            return
        if in_kernel():
            widgets = _widgets()
            if widgets is not None:
                from IPython.display import display
                self._bar = widgets.IntProgress(value=self.count, min=0, max=max(self.total, 1), description=desc[:30],
                                                layout=widgets.Layout(width="45%"))
                self._label = widgets.HTML(value=self._text(""))
                self._box = widgets.HBox([self._bar, self._label])
                self._handle = display(self._box, display_id=True)
        elif sys.stderr.isatty():
            from tqdm import tqdm
            self._tqdm = tqdm(total=self.total, initial=self.count, desc=desc, unit=unit, dynamic_ncols=True, leave=False,
                              file=sys.stderr)

    def _text(self, status: str) -> str:
        elapsed = duration(time.perf_counter() - self.start)
        return f"{self.count}/{self.total} {self.unit}, {elapsed}" + (f" · {status}" if status else "")

    def update(self, n: int = 1, status: str = "", force: bool = False) -> None:
        """Advance by ``n`` (0 to change the status only); redraws at most every ``min_interval`` seconds."""
        self.count += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and n == 0 and now - self._last < self._min_interval:
            return
        self._last = now
        if self._tqdm is not None:
            self._tqdm.update(n)
            if status:
                self._tqdm.set_postfix_str(status, refresh=True)
        elif self._bar is not None:
            self._bar.value = min(self.count, self._bar.max)
            self._label.value = self._text(status)

    def summary(self) -> str:
        return f"{self.desc}: {self.count} {self.unit} in {duration(time.perf_counter() - self.start)}"

    def close(self, summary: str | None = None) -> None:
        """Replace the bar by ``summary`` (a line, or a few): what stays in the saved notebook."""
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        text = summary or self.summary()
        if self._tqdm is not None:
            self._tqdm.close()
            print(text, file=sys.stderr)
        elif self._handle is not None:
            from IPython.display import Pretty
            self._handle.update(Pretty(text))
            for widget in (self._box, self._bar, self._label):     # with their style and layout models, so
                for part in (getattr(widget, "style", None), getattr(widget, "layout", None), widget):
                    if part is not None:                           # no widget state is left in the notebook
                        part.close()
        elif in_kernel():
            print(text)                  # a kernel without ipywidgets: the summary in the cell's output
        else:
            print(text, file=sys.stderr)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind, error, tb) -> None:
        stopped = kind is not None and not issubclass(kind, GeneratorExit)
        self.close(f"{self.summary()} (stopped: {kind.__name__})" if stopped else None)


def track(items: Sequence, desc: str, *, enabled: bool = True, unit: str = "it") -> Iterator:
    """Iterate over ``items`` behind a :class:`Progress` bar that ends as one summary line."""
    with Progress(len(items), desc, unit, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.update()
