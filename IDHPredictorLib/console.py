"""The ``idh-predictor`` console script.

Ctrl-C while torch and SimpleITK load (the first seconds) must end like Ctrl-C later: "cancelled"
and exit 130, not a Python traceback or a C++ abort inside an extension module's initialisation.
So SIGINT is held pending while the command line module imports, and delivered afterwards.
Once the command has returned, a late Ctrl-C is ignored: Python restores the default handler while it
shuts down, and a signal then would kill the finished process (exit -2) after it said what it did.
"""

from __future__ import annotations

import signal
import sys

CANCELLED = "idh-predictor: cancelled; outputs are written all-or-nothing, so none was left half-written"


def main() -> int:
    """Import the command line with Ctrl-C held, then run it."""
    can_hold = hasattr(signal, "pthread_sigmask")  # POSIX; elsewhere Ctrl-C during imports stays a traceback
    try:
        if can_hold:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        from .cli import main as run_command_line

        if can_hold:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a Ctrl-C pressed meanwhile arrives now
        status = run_command_line()
    except KeyboardInterrupt:
        print(CANCELLED, file=sys.stderr)
        status = 130
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is over; see the module docstring
    return status


if __name__ == "__main__":
    sys.exit(main())
