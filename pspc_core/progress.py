"""A small progress display on stderr (rich when on a terminal, nothing when disabled or piped)."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator


def progress_bar(items: Iterable, total: int, desc: str, enable: bool = True) -> Iterator:
    """Yield from `items`, printing `desc i/total, elapsed` on stderr as it goes."""
    if not enable:
        yield from items
        return
    start = time.monotonic()
    tty = sys.stderr.isatty()
    for i, item in enumerate(items):
        yield item
        elapsed = time.monotonic() - start
        line = f"{desc}: {i + 1}/{total} [{elapsed:.1f}s]"
        if tty:
            print("\r" + line, end="" if i + 1 < total else "\n", file=sys.stderr, flush=True)
        elif i + 1 == total or (i + 1) % max(total // 10, 1) == 0:
            print(line, file=sys.stderr, flush=True)
