"""The one place the command line turns an ``MlspecError`` into its exit status."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from mlspec_attest.errors import EXIT_INPUT, EXIT_OK, MlspecError


class ErrorHandlingGroup(click.Group):
    """``error: <message>`` on one line of stderr and the error's ``exit_code``; never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MlspecError as exc:
            click.echo(f"error: {exc}", err=True)
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
            # `mlspec verify ... | head`: the reader left; not an error of ours.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_OK)
