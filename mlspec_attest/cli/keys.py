"""``mlspec keys``: generate and list signing keys."""

from __future__ import annotations

from pathlib import Path

import click

from mlspec_attest.cli._errors import ErrorHandlingGroup
from mlspec_attest.errors import InputError


@click.group('keys', cls=ErrorHandlingGroup)
def keys() -> None:
    """Generate and list signing keys (Ed25519 or ECDSA P-256)."""


@keys.command("generate")
@click.argument("name")
@click.option("--type", "key_type", type=click.Choice(["ed25519", "ecdsa-p256"]), default="ed25519",
              show_default=True, help="Signature algorithm.")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default="keys", show_default=True,
              help="Where NAME.key and NAME.pub are written.")
@click.option("--no-passphrase", is_flag=True,
              help="Write the private key unencrypted (only for throwaway keys).")
def keys_generate(name: str, key_type: str, directory: str, no_passphrase: bool) -> None:
    """Write NAME.key (mode 0600, passphrase-encrypted) and NAME.pub.

    The passphrase comes from MLSPEC_KEY_PASSPHRASE, or is asked for on a terminal.
    """
    from mlspec_attest.keys import PASSPHRASE_ENV, generate, passphrase_from_env_or_tty

    passphrase = None
    if not no_passphrase:
        passphrase = passphrase_from_env_or_tty(f"Passphrase for {name}.key", confirm=True)
        if not passphrase:
            raise InputError(f"no passphrase: set {PASSPHRASE_ENV}, run on a terminal, or pass --no-passphrase")
    from mlspec_attest.project import ensure_keys_ignored

    ignored = ensure_keys_ignored(Path(directory) / ".gitignore")  # before the key exists
    priv, pub, public = generate(name, directory, key_type, passphrase)
    if ignored:
        click.echo(ignored)
    click.echo(f"wrote {priv} (private, mode 0600{', encrypted' if passphrase else ', NOT encrypted'})")
    click.echo(f"wrote {pub} (public)")
    click.echo(f"keyid {public.keyid}")


@keys.command("list")
@click.argument("directory", type=click.Path(file_okay=False), default="keys")
def keys_list(directory: str) -> None:
    """Show the keyid and type of every public key in DIRECTORY."""
    from mlspec_attest.keys import PublicKey

    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"{d}: directory not found")
    pubs = sorted(d.glob("*.pub"))
    if not pubs:
        click.echo(f"no *.pub files in {d}")
    for p in pubs:
        key = PublicKey.from_file(p)
        private = p.with_suffix(".key")
        click.echo(f"{p.stem:<20} {key.key_type:<11} {key.keyid}{'  (private key present)' if private.exists() else ''}")


# -- attest -------------------------------------------------------------------------
