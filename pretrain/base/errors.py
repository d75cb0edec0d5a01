"""The suite's one error type for bad user input (:class:`UserError`; each package's own error is a subclass)
and the one way every CLI reports it: ``error: <one line>`` on stderr, exit code 2 (:func:`report`)."""
from __future__ import annotations

import functools
import sys
from typing import Callable


class UserError(Exception):
    """A problem with the user's input (path, config key, value range, data, checkpoint)."""


class Diverged(Exception):
    """Training produced a non-finite loss (the paper's "fail", e.g. m = 0)."""


EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3          # status diverged (a result: the paper's "fail")
EXIT_NOT_CONVERGED = 3     # status not_converged (a declared criterion fired; a result too)


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line.

    A UserError raised inside a DataLoader worker is re-raised in the main process with the
    worker's traceback in its message; keep only the original message.
    """
    msg = str(exc)
    if "Original Traceback" in msg:
        lines = [ln for ln in msg.strip().splitlines() if ln.strip()]
        last = lines[-1]
        for prefix in ("pretrain.base.errors.UserError: ", "UserError: "):
            if last.startswith(prefix):
                last = last[len(prefix):]
        msg = last
    return " ".join(msg.split())


def report(exc: BaseException) -> int:
    """Print ``exc`` as the CLIs' one error line and return the exit code (2). An OSError names its file."""
    if isinstance(exc, OSError) and not isinstance(exc, UserError) and exc.strerror:
        msg = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    else:
        msg = one_line(exc)
    print(f"error: {msg}", file=sys.stderr)
    return EXIT_USER_ERROR


def die(exc: BaseException) -> "None":
    """:func:`report` and exit."""
    sys.exit(report(exc))


EXIT_INTERRUPTED = 130     # Ctrl-C (128 + SIGINT), as a shell reports it


def cli(main: Callable[..., int]) -> Callable[..., int]:
    """The one guard at every CLI's entry (``@cli`` on ``main``): bad input (:class:`UserError`) and a failing
    file system (``OSError``: a full disk, a permission, a missing file) are one ``error:`` line and exit code 2;
    Ctrl-C is one ``interrupted`` line and exit code 130. Anything else is a bug and keeps its traceback."""
    @functools.wraps(main)
    def guarded(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except (UserError, OSError) as e:
            return report(e)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
    return guarded
