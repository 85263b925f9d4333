"""A small progress display on stderr: a live line on a terminal, a line every 10% when piped."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator


class Progress:
    """Counts finished units of work and reports `desc: done/total [elapsed]`."""

    def __init__(self, total: int, desc: str, enable: bool = True, done: int = 0):
        self.total, self.desc, self.enable, self.done = total, desc, enable, done
        self.start = time.monotonic()
        self.tty = sys.stderr.isatty()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enable:
            return
        line = f"{self.desc}: {self.done}/{self.total} [{time.monotonic() - self.start:.1f}s]"
        last = self.done >= self.total
        if self.tty:
            print("\r" + line, end="\n" if last else "", file=sys.stderr, flush=True)
        elif last or self.done % max(self.total // 10, 1) == 0:
            print(line, file=sys.stderr, flush=True)


def progress_bar(items: Iterable, total: int, desc: str, enable: bool = True) -> Iterator:
    """Yield from `items`, reporting each one as finished when the loop asks for the next."""
    bar = Progress(total, desc, enable)
    for item in items:
        yield item
        bar.advance()
