"""Progress on stderr: a rich bar (count, rate, elapsed, ETA) on a terminal, a plain line every 10% when piped.

Progress displays nest: one started while another runs (a sampler's steps inside a batch job) becomes a
transient extra row of the same live display on a terminal, and prints nothing when piped, so a log gets one
line per 10% of the outer work, never one per step.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator

_live = None  # the rich Progress display shown on the terminal, while any bar runs
_depth = 0  # how many bars are open (terminal or not): only the outermost one prints lines when piped


class Progress:
    """Counts finished units of work (`advance`) out of `total`, starting from `done`; `close()` when finished."""

    def __init__(self, total: int, desc: str, enable: bool = True, done: int = 0):
        global _depth
        self.total, self.desc, self.done = total, desc, done
        self.enable = enable
        self.nested = _depth > 0
        self.start = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.task = None
        self.closed = False
        _depth += 1
        if self.enable and self.tty:
            self.task = _bar().add_task(desc, total=total, completed=done)
        self._last_tenth = done * 10 // max(total, 1)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enable:
            return
        if self.task is not None:
            _live.update(self.task, completed=self.done)
        elif not self.nested and not self.tty:
            tenth = self.done * 10 // max(self.total, 1)
            if tenth > self._last_tenth or self.done >= self.total:
                self._last_tenth = tenth
                print(f"{self.desc}: {self.done}/{self.total} [{time.monotonic() - self.start:.1f}s]",
                      file=sys.stderr, flush=True)

    def close(self) -> None:
        global _live, _depth
        if self.closed:
            return
        self.closed = True
        _depth -= 1
        if self.task is not None:
            if self.nested:
                _live.remove_task(self.task)
            if _depth == 0:
                _live.stop()
                _live = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _bar():
    """The live display, started on first use."""
    global _live
    if _live is None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Live, ProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        from rich.text import Text

        class Rate(ProgressColumn):
            def render(self, task):
                return Text(f"{task.speed:.3g}/s" if task.speed else "-/s")

        _live = Live(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(),
                     TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True))
        _live.start()
    return _live


def progress_bar(items: Iterable, total: int, desc: str, enable: bool = True) -> Iterator:
    """Yield from `items`, reporting each one as finished when the loop asks for the next."""
    with Progress(total, desc, enable) as bar:
        for item in items:
            yield item
            bar.advance()
