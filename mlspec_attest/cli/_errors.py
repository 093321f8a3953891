"""The one place the command line turns an ``MlspecError`` into its exit status.

Output failures (docs/cli.md "Exit status when stdout fails"): a verdict command
(verify, replay, report, log verify, evidence verify, objectives check, policy check)
records its verdict with :func:`record_verdict` *before* printing, and exits with that
verdict whatever happens to stdout (``mlspec verify B | true`` on a failing bundle is
exit 1, never 0). A command without a verdict whose output cannot be written fails
closed: exit 1 for a reader that left (broken pipe), exit 2 for an unwritable stdout
(``/dev/full``, closed), always with one line on stderr and no traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

import click

from mlspec_attest.errors import EXIT_FAILED, EXIT_INPUT, MlspecError

_verdict: int | None = None
# errno values that mean "the output could not be written", not a bug of ours
_OUTPUT_ERRNOS = frozenset({errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EBADF, errno.EFBIG,
                            getattr(errno, "EDQUOT", errno.ENOSPC)})


def record_verdict(exit_code: int) -> int:
    """Remember a verdict command's exit status before it prints anything; returns it."""
    global _verdict
    _verdict = exit_code
    return exit_code


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null so the interpreter's final flush cannot fail or print a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:  # pragma: no cover - nothing more we can do
        pass


def _flush_stdout() -> None:
    if sys.stdout is not None:
        sys.stdout.flush()


class ErrorHandlingGroup(click.Group):
    """``error: <message>`` on one line of stderr and the error's ``exit_code``; never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        global _verdict
        _verdict = None
        if sys.stdout is None:  # started with stdout closed (`>&-`): nowhere to put a result
            click.echo("error: standard output is closed; give the command somewhere to write "
                       "(e.g. >/dev/null)", err=True)
            sys.exit(EXIT_INPUT)
        try:
            try:
                return super().invoke(ctx)
            finally:
                _flush_stdout()  # a write error surfaces here, inside the handlers below
        except MlspecError as exc:
            from mlspec_attest.render.terminal import terminal_safe

            click.echo(f"error: {terminal_safe(exc)}", err=True)  # messages quote file names from bundles
            sys.exit(exc.exit_code)
        except RecursionError:
            # Last line of defence: every parser we call is depth-bounded (model/canonical.py,
            # _internal/loaders.py); should one not be, the user still gets one line, exit 2.
            click.echo("error: input nested too deeply to process; refusing it", err=True)
            sys.exit(EXIT_INPUT)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # `mlspec verify ... | head`: the reader left. The verdict stands; without one, fail closed.
            _silence_stdout()
            sys.exit(_verdict if _verdict is not None else EXIT_FAILED)
        except OSError as exc:
            if exc.errno not in _OUTPUT_ERRNOS:
                raise
            _silence_stdout()
            click.echo(f"error: cannot write the output: {exc.strerror or exc}", err=True)
            sys.exit(_verdict if _verdict is not None else EXIT_INPUT)
