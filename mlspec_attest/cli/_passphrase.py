"""``--passphrase-file KEY=FILE``: one passphrase per key, for every command that signs.

The option's callback tells ``keys`` which file unlocks which key before the command
runs: mlspec.yaml's ``passphrase_files:`` first, then the command line's (which win).
Passphrases themselves never go on argv (every local user can read it): only file names do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from mlspec_attest.errors import InputError

F = TypeVar("F", bound=Callable[..., Any])


def _register(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    from mlspec_attest.cli._project import in_project, project_from_cwd
    from mlspec_attest.keys import set_passphrase_files

    files: dict[Path, tuple[Path, str]] = {}
    project = project_from_cwd()
    if project is not None:
        for key, file in project.passphrase_files:
            files[key] = (file, f"passphrase_files in {project.root / 'mlspec.yaml'}")
    for spec in value:
        key, sep, file = spec.partition("=")
        if not sep or not key or not file:
            raise InputError(f"--passphrase-file {spec!r}: expected KEYFILE=PASSPHRASE_FILE, e.g. "
                             "--passphrase-file keys/b.key=~/.config/mlspec/b.pass")
        # both halves resolve like every path option (docs/ci.md "Paths"): KEY must name the file --key loads
        files[Path(in_project(key))] = (Path(in_project(str(Path(file).expanduser()))), "--passphrase-file")
    set_passphrase_files(files)


def passphrase_file_option(command: F) -> F:
    """Add ``--passphrase-file KEYFILE=FILE`` (repeatable) to a command that loads private keys."""
    return click.option(
        "--passphrase-file", "passphrase_files", multiple=True, metavar="KEYFILE=FILE", expose_value=False,
        callback=_register,
        help="Read KEYFILE's passphrase from FILE (mode 0600, yours); repeat per key. Else "
             "MLSPEC_KEY_PASSPHRASE_<NAME> (NAME: the key file's stem), then MLSPEC_KEY_PASSPHRASE, then a terminal.",
    )(command)
