"""Stopping a run cleanly: Ctrl-C and SIGTERM (`kill`, a job scheduler, torchrun)
raise KeyboardInterrupt in the training loop, and are held while checkpoints
are written so that a file is never cut mid-write. Main thread only: Python
runs signal handlers there and refuses to set them elsewhere."""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def signal_handler(handler, *signals: signal.Signals):
    """`handler` for `signals` within the block (main thread only: Python runs
    signal handlers there and refuses to set them elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def held_stop_signals():
    """Ctrl-C or SIGTERM during an epoch's checkpoint writes waits for them to end,
    then stops the run as usual: raised inside torch.save's writer, it would cut
    the file's zip stream and end in a serialization error instead."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: held.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if held:
        raise KeyboardInterrupt
