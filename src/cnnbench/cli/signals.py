"""Ctrl-C in the `cnnbench` command: one line and exit 130 at any moment, never a traceback.

`sigint_deferred()` holds a Ctrl-C until a block of imports is over; `ignore_sigint()` ignores SIGINT
for good once the command is done (see `cnnbench.cli.main`).
"""

from __future__ import annotations

import importlib
import signal
import threading
from contextlib import contextmanager

INTERRUPTED = "cnnbench: interrupted; run the same command again to resume"


def _noop(signum, frame) -> None:
    """A SIGINT handler that does nothing (see `ignore_sigint`)."""


def _run_pending() -> None:
    """Calling a Python function lets the interpreter run the signal handlers it has pending."""


def ignore_sigint() -> None:
    """Ignore SIGINT (SIG_IGN, which survives the interpreter's shutdown), without Python's "Signal 2
    ignored due to race condition" for a Ctrl-C that arrived but whose handler has not run yet: a
    no-op handler first, SIGINT blocked, pending handlers run, then SIG_IGN (which discards a blocked
    SIGINT), then unblocked."""
    signal.signal(signal.SIGINT, _noop)
    blocked = hasattr(signal, "pthread_sigmask")
    if blocked:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        _run_pending()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextmanager
def sigint_deferred():
    """A Ctrl-C inside the block takes effect at its end (KeyboardInterrupt), not inside an import.
    Does nothing where SIGINT is ignored (a background job) or outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield
        return
    pressed = []
    signal.signal(signal.SIGINT, lambda *_: pressed.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if pressed:
        raise KeyboardInterrupt


# What each command imports before it starts (under `sigint_deferred`).


# What each command imports before it starts (under `sigint_deferred`).
STARTUP_IMPORTS = {
    "run": ("torch", "pandas", "cnnbench.api", "cnnbench.runs.study_run", "cnnbench.runs.executors.local",
            "cnnbench.engine.fit", "cnnbench.analysis", "cnnbench.report"),
    "report": ("pandas", "cnnbench.analysis", "cnnbench.report"),
    "evaluate": ("torch", "cnnbench.store.model_files", "cnnbench.engine.fit"),
    "summary": ("torch", "cnnbench.models"),
}


def import_for(command: str) -> None:
    """Import what `command` needs, with a Ctrl-C held until the imports are over."""
    with sigint_deferred():
        for module in STARTUP_IMPORTS.get(command, ()):
            importlib.import_module(module)


# Subcommands whose modules import torch: their arguments are declared only when that subcommand is
# the one asked for, so that `cnnbench --help` and the other commands start without loading torch.
