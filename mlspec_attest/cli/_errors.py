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
_json_output = False  # set by --format json (json_format_option) while the command's options are parsed
VERDICTS = {0: "pass", 1: "fail", 2: "error"}  # the one vocabulary of every --format json output
# errno values that mean "the output could not be written", not a bug of ours
_OUTPUT_ERRNOS = frozenset({errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EBADF, errno.EFBIG,
                            getattr(errno, "EDQUOT", errno.ENOSPC)})


def record_verdict(exit_code: int) -> int:
    """Remember a verdict command's exit status before it prints anything; returns it."""
    global _verdict
    _verdict = exit_code
    return exit_code


def remember_format(ctx: click.Context, param: click.Parameter, value: str) -> str:
    global _json_output
    _json_output = value == "json"
    return value


def json_format_option(f: Any) -> Any:
    """``--format [text|json]`` (text default); under json an error is also a JSON object on stdout."""
    return click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
                        is_eager=True, callback=remember_format,
                        help="json: one JSON object on stdout with a 'verdict' (pass, fail, error); "
                             "errors too (docs/ci.md).")(f)


def echo_json(data: dict[str, Any], exit_code: int = 0) -> None:
    """Print one JSON result whose ``verdict`` mirrors ``exit_code`` (pass 0, fail 1)."""
    import json

    click.echo(json.dumps({**data, "verdict": VERDICTS[exit_code]}, indent=2, sort_keys=True))


def _error_code(exc: BaseException) -> str:
    """``InputError`` -> ``INPUT_ERROR``: the error's class, UPPER_SNAKE (or its own ``code``)."""
    import re

    code = getattr(exc, "code", None)
    if isinstance(code, str) and re.fullmatch(r"[A-Z][A-Z0-9_]*", code):
        return code
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", type(exc).__name__).upper()


def error_object(exc: BaseException, message: str, exit_code: int) -> dict[str, Any]:
    """``{"error": {code, message, file, hint}, "verdict": "error"}``; file and hint are null when unknown.

    ``file`` is the error's own attribute, else the path the message starts with
    (``PATH: what``); ``hint`` the error's own, else the message's last ``; `` clause
    (our messages end with what to do).
    """
    import re

    file = getattr(exc, "file", None)
    hint = getattr(exc, "hint", None)
    if file is None:
        head, sep, _ = message.partition(": ")
        if sep and head and not any(c.isspace() for c in head) and not head.startswith("-") and (
                "/" in head or "." in head or os.path.exists(head)):
            file = re.sub(r"(?::[0-9]+){1,2}$", "", head)  # data.yaml:3:5 -> data.yaml (the line is in the message)
    if hint is None and "; " in message:
        hint = message.rsplit("; ", 1)[1]
    return {"error": {"code": _error_code(exc), "message": public_message(message),
                      "file": None if file is None else public_message(str(file)),
                      "hint": None if hint is None else public_message(str(hint))},
            "verdict": VERDICTS.get(exit_code, "error")}


def public_message(text: str) -> str:
    """An error text fit for stderr and JSON: URI userinfo redacted, undecodable bytes escaped.

    A --key URI's ``user:password@`` is a credential (docs/ci.md: messages are secret-free);
    a surrogate (a non-UTF-8 byte from argv or a file name) is shown as ``\\udcff``, never a crash.
    """
    from mlspec_attest.attest.redaction import redact_uri_userinfo

    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return redact_uri_userinfo(safe)


def _json_error(exc: BaseException, message: str, exit_code: int) -> None:
    """Under --format json, the error as one JSON object on stdout (best effort: stdout may be what failed)."""
    if not _json_output or getattr(exc, "_mlspec_json_shown", False):
        return  # a nested group re-raises what the innermost one already printed
    import json

    try:
        exc._mlspec_json_shown = True  # type: ignore[attr-defined]
    except AttributeError:
        pass

    try:
        click.echo(json.dumps(error_object(exc, message, exit_code), indent=2, sort_keys=True))
        _flush_stdout()
    except (OSError, ValueError):
        pass


def _args_ask_for_json(args: list[str]) -> bool:
    """``--format json`` among the arguments not yet parsed (an option error comes before its callback)."""
    return any(a == "--format=json" or (a == "--format" and b == "json") for a, b in zip(args, [*args[1:], ""]))


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
        global _verdict, _json_output
        _verdict = None
        if ctx.parent is None:
            _json_output = False
        unparsed = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
        pending = [*unparsed, *ctx.args]  # click clears them before the subcommand parses its options
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

            _json_error(exc, str(exc), exc.exit_code)
            click.echo(f"error: {terminal_safe(public_message(str(exc)))}", err=True)  # quotes bundle file names
            sys.exit(exc.exit_code)
        except UnicodeError as exc:
            # A non-UTF-8 byte from the user (argv, a file name) that a parser could not encode: an input
            # error, one line, exit 2 (the parsers raise InputError themselves; this is the last line).
            message = f"input is not valid UTF-8 ({public_message(str(exc))}); give the value as UTF-8 text"
            _json_error(exc, message, EXIT_INPUT)
            click.echo(f"error: {message}", err=True)
            sys.exit(EXIT_INPUT)
        except click.ClickException as exc:  # a bad option or argument: click prints the usage, exits 2
            _json_output = _json_output or _args_ask_for_json(pending)
            exc.message = public_message(exc.message)  # type: ignore[misc]  # click echoes it (a bad --key URI)
            _json_error(exc, exc.format_message(), exc.exit_code)
            raise
        except RecursionError as exc:
            # Last line of defence: every parser we call is depth-bounded (model/canonical.py,
            # _internal/loaders.py); should one not be, the user still gets one line, exit 2.
            _json_error(exc, "input nested too deeply to process; refusing it", EXIT_INPUT)
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
