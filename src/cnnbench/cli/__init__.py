"""The `cnnbench` command. A user's mistake prints one line and exits with status 2.

The package: `main` here (exit statuses, Ctrl-C); the arguments in parser.py; the commands in
commands.py (run, report, evaluate, summary) and listing.py (list); the terminal tables in tables.py;
Ctrl-C handling in signals.py.
"""

from __future__ import annotations

import signal
import sys
import threading

from ..errors import UserError
from .parser import build_parser, version_line
from .signals import INTERRUPTED, STARTUP_IMPORTS, ignore_sigint, import_for, sigint_deferred
from .tables import print_table

__all__ = ["INTERRUPTED", "STARTUP_IMPORTS", "build_parser", "ignore_sigint", "import_for", "main", "print_table",
           "sigint_deferred", "version_line"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status. `argv` None: the `cnnbench` program itself (the
    process ends after this); a list: a call from Python (a test, a notebook), whose SIGINT handler is
    put back as it was.

    Ctrl-C at any moment prints one line and exits 130: while modules import it takes effect once they
    have (an import of torch or numpy interrupted halfway fails on its next use with a traceback); once
    the command is over, the program ignores SIGINT (SIG_IGN, which Python's shutdown keeps, unlike a
    handler of its own), so a late Ctrl-C cannot turn the exit status into −2 or print a traceback."""
    program = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if in_main_thread else None
    said = []
    try:
        try:
            return _main(argv, said)
        finally:
            if in_main_thread:
                if program:
                    ignore_sigint()
                elif previous is not None:
                    signal.signal(signal.SIGINT, previous)
    except KeyboardInterrupt:  # in the instant between the command's end and the lines above
        if in_main_thread and program:
            ignore_sigint()
        if not said:
            print(INTERRUPTED, file=sys.stderr)
        return 130



def _main(argv: list[str], said: list) -> int:
    try:
        with sigint_deferred():  # `cnnbench paths` imports torch to declare its arguments
            args = build_parser(argv).parse_args(argv)
        if args.command != "run":  # `run` starts its forkserver first
            import_for(args.command)
        return args.func(args) or 0
    except UserError as e:
        print(f"cnnbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        said.append(True)
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except OSError as e:  # a path we cannot write, a full disk: one line, not a traceback
        from .errors import environment_fault

        fault = environment_fault(e, e.filename or "")
        print(f"cnnbench: error: {fault or e}", file=sys.stderr)
        return 2 if fault else 1
