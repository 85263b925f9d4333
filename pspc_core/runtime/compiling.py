"""The first call of a compiled kernel: said on stderr when it takes a while, and interruptible.

On a machine's first use numba compiles a kernel for 20-30 s. `first_call` prints one note after 2 s, and holds
Ctrl-C and SIGTERM until the compiler returns: numba's compiler runs Python callbacks from C, which print a
KeyboardInterrupt raised inside them and go on ("Exception ignored ..."), so without this an interrupt during
compilation was lost and the run went on to the end. The held signal is raised as soon as compilation is done.
"""

from __future__ import annotations

import signal
import sys
import threading


def first_call(kernel, args: tuple, what: str, ready: set):
    """kernel(*args), noted on stderr after 2 s (`what` is compiling) unless `kernel` is in `ready`; then added."""
    if kernel in ready:
        return kernel(*args)
    note = threading.Timer(2.0, _say, (what,))
    note.start()
    held: list[int] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: held.append(signum))
    try:
        out = kernel(*args)
        ready.add(kernel)
        return out
    finally:
        note.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held:  # delivered again, now to the run's own handlers
            signal.raise_signal(held[0])


_said: set = set()


def _say(what: str) -> None:
    if what not in _said:
        _said.add(what)
        print(f"pspc: compiling {what} (first use on this machine; numba caches it)", file=sys.stderr, flush=True)
