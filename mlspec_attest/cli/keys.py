"""``mlspec keys``: generate and list signing keys."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlspec_attest.cli._errors import ErrorHandlingGroup, echo_json, json_format_option
from mlspec_attest.cli._project import ProjectPath
from mlspec_attest.errors import InputError


@click.group('keys', cls=ErrorHandlingGroup)
def keys() -> None:
    """Generate and list signing keys (Ed25519 or ECDSA P-256)."""


@keys.command("generate")
@click.argument("name")
@click.option("--type", "key_type", type=click.Choice(["ed25519", "ecdsa-p256"]), default="ed25519",
              show_default=True, help="Signature algorithm.")
@click.option("--dir", "directory", type=ProjectPath(file_okay=False), default="keys", show_default=True,
              help="Where NAME.key and NAME.pub are written.")
@click.option("--no-passphrase", is_flag=True,
              help="Write the private key unencrypted (only for throwaway keys).")
@click.option("--pkcs11", "token_uri", metavar="URI",
              help="Create the key pair ON this PKCS#11 token (RFC 7512 URI); only NAME.pub is written.")
def keys_generate(name: str, key_type: str, directory: str, no_passphrase: bool, token_uri: str | None) -> None:
    """Write NAME.key (mode 0600, passphrase-encrypted) and NAME.pub.

    The passphrase comes from MLSPEC_KEY_PASSPHRASE, or is asked for on a terminal.
    With --pkcs11 the private key is created on the token and never leaves it.
    """
    from mlspec_attest.keys import PASSPHRASE_ENV, generate, open_key_directory, passphrase_from_env_or_tty

    open_key_directory(directory)  # a symlinked keys/ is refused before anything (.gitignore, key) is written
    if token_uri:
        _generate_on_token(name, key_type, directory, token_uri)
        return
    passphrase = None
    if not no_passphrase:
        passphrase = passphrase_from_env_or_tty(f"Passphrase for {name}.key", confirm=True)
        if not passphrase:
            raise InputError(f"no passphrase: set {PASSPHRASE_ENV}, run on a terminal, or pass --no-passphrase")
    from mlspec_attest.project import ensure_keys_ignored

    ignored = ensure_keys_ignored(Path(directory) / ".gitignore", [f"{name}.key"])  # before the key exists
    priv, pub, public = generate(name, directory, key_type, passphrase)
    if ignored:
        click.echo(ignored)
    click.echo(f"wrote {priv} (private, mode 0600{', encrypted' if passphrase else ', NOT encrypted'})")
    click.echo(f"wrote {pub} (public)")
    click.echo(f"keyid {public.keyid}")


@keys.command("list")
@click.argument("directory", type=ProjectPath(file_okay=False), default="keys")
@json_format_option
def keys_list(directory: str, fmt: str) -> None:
    """Show the keyid and type of every public key in DIRECTORY (default: the project's keys/)."""
    from mlspec_attest.keys import PublicKey

    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"{d}: directory not found; pass the directory holding the *.pub files")
    listed = []
    for p in sorted(d.glob("*.pub")):
        key = PublicKey.from_file(p)
        listed.append((p, key, p.with_suffix(".key").exists()))
    if fmt == "json":
        echo_json({"directory": str(d), "keys": [
            {"name": p.stem, "file": str(p), "type": key.key_type, "keyid": key.keyid, "private_key_present": private}
            for p, key, private in listed]})
        return
    if not listed:
        click.echo(f"no *.pub files in {d}")
    for p, key, private in listed:
        click.echo(f"{p.stem:<20} {key.key_type:<11} {key.keyid}{'  (private key present)' if private else ''}")



def _generate_on_token(name: str, key_type: str, directory: str, uri: str) -> None:
    from mlspec_attest.keys import PublicKey, ask_secret, check_key_name, keyid_of
    from mlspec_attest.signers import generate_on_token, redact_uri

    check_key_name(name)
    pub_path = Path(directory) / f"{name}.pub"
    if pub_path.exists():
        raise InputError(f"{pub_path}: already exists; refusing to overwrite a key (remove it first)")
    public = PublicKey.from_crypto(generate_on_token(uri, key_type, ask_secret), str(pub_path))
    _write_public(pub_path, public)
    click.echo(f"created an {key_type} key on the token {redact_uri(uri)} (private part never leaves it)")
    click.echo(f"wrote {pub_path} (public)")
    click.echo(f"keyid {keyid_of(public.key)}")


def _write_public(path: Path, public: object) -> None:
    from mlspec_attest.bundle import write_atomically
    from mlspec_attest.keys import PublicKey

    assert isinstance(public, PublicKey)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, public.to_pem(), replace=False)


@keys.command("export-public")
@click.argument("uri")
@click.option("--out", "out", type=ProjectPath(dir_okay=False), help="Write the PEM here (default: stdout).")
def keys_export_public(uri: str, out: str | None) -> None:
    """Write the public key of a token key (pkcs11:...) or a private key file, for the policy.

    The PEM goes into the policy's keys: (a .pub path or inline pem); its keyid is
    sha256 of the DER SubjectPublicKeyInfo, as for every mlspec key.
    """
    from mlspec_attest.keys import PublicKey, load_signer
    from mlspec_attest.signers import SCHEME, redact_uri, token_public_key

    if uri.startswith(f"{SCHEME}:"):
        from mlspec_attest.keys import ask_secret

        public = PublicKey.from_crypto(token_public_key(uri, ask_secret), redact_uri(uri))
    else:
        public = load_signer(uri).public
    if out:
        path = Path(out)
        if path.exists():
            raise InputError(f"{path}: already exists; refusing to overwrite a key (remove it first)")
        _write_public(path, public)
        click.echo(f"wrote {path} (public, {public.key_type}, keyid {public.keyid})", err=True)
    else:
        click.echo(public.to_pem().decode("ascii"), nl=False)
        click.echo(f"keyid {public.keyid}", err=True)


@keys.command("rotate")
@click.argument("name")
@click.option("--policy", "policy_path", required=True, type=ProjectPath(dir_okay=False, exists=False),
              help="The policy whose key NAME is replaced.")
@click.option("--dir", "directory", type=ProjectPath(file_okay=False),
              help="Where the new key is written (default: beside the old .pub, or keys/).")
@click.option("--type", "key_type", type=click.Choice(["ed25519", "ecdsa-p256"]), default="ed25519",
              show_default=True, help="Algorithm of the new key.")
@click.option("--pkcs11", "token_uri", metavar="URI", help="Create the new key on this PKCS#11 token instead.")
@click.option("--inline", is_flag=True,
              help="Put the new public key in the policy as inline PEM (the default when the old one is inline).")
@click.option("--no-passphrase", is_flag=True, help="Write the new private key unencrypted.")
@click.option("--yes", is_flag=True, help="Write without asking (the diff is still printed).")
def keys_rotate(name: str, policy_path: str, directory: str | None, key_type: str, token_uri: str | None,
                inline: bool, no_passphrase: bool, yes: bool) -> None:
    """Replace key NAME: a new key, trusted from now; the old one revoked from now.

    Prints the policy change as a diff and asks before writing (on a terminal;
    elsewhere pass --yes). The policy is replaced atomically; nothing is written
    if you say no. See docs/keys.md for what the change trusts.
    """
    from datetime import datetime, timezone

    from mlspec_attest.keys import PASSPHRASE_ENV, PublicKey, check_key_name, new_key, passphrase_from_env_or_tty
    from mlspec_attest.policy import Policy
    from mlspec_attest.rotation import key_entry, plan_rotation

    path = Path(policy_path)
    policy = Policy.from_file(path)
    if name not in policy.keys:
        raise InputError(f"{path}: no key named {name!r} under keys (have: {', '.join(sorted(policy.keys))})")
    check_key_name(name)  # NAME becomes a file name: '../x' must not write outside the keys directory
    inline = inline or policy.keys[name].source.endswith("(inline)")  # a self-contained policy stays so
    now = datetime.now(timezone.utc).replace(microsecond=0)
    old_source = Path(policy.keys[name].source)
    target_dir = Path(directory) if directory else (old_source.parent if old_source.suffix == ".pub" else Path("keys"))
    stamp = now.strftime('%Y%m%dT%H%M%SZ')
    new_name = next(n for n in (f"{name}-{stamp}", *(f"{name}-{stamp}-{i}" for i in range(2, 100)))
                    if not any((target_dir / f"{n}{ext}").exists() for ext in (".key", ".pub")))
    pending = None
    if token_uri:
        from mlspec_attest.keys import ask_secret
        from mlspec_attest.signers import generate_on_token, redact_uri

        if not yes and not sys.stdin.isatty():
            raise InputError("no terminal to confirm the rotation on: pass --yes to write it")
        public = PublicKey.from_crypto(generate_on_token(token_uri, key_type, ask_secret), redact_uri(token_uri))
        pub_path: Path | None = None if inline else target_dir / f"{new_name}.pub"
    else:
        passphrase = None
        if not no_passphrase:
            passphrase = passphrase_from_env_or_tty(f"Passphrase for {new_name}.key", confirm=True)
            if not passphrase:
                raise InputError(f"no passphrase: set {PASSPHRASE_ENV}, run on a terminal, or pass --no-passphrase")
        pending = new_key(new_name, target_dir, key_type, passphrase)
        public = pending.public
        pub_path = pending.paths[1]
        for p in pending.paths:
            if p.exists():
                raise InputError(f"{p}: already exists; refusing to overwrite a key")
    plan = plan_rotation(path, name, public, key_entry(public, path, pub_path, inline), now)
    click.echo(plan.diff(), nl=False)
    for where in plan.not_added:
        click.echo(f"note: {where} needs more than one signature: the old key is not kept there "
                   "(one holder's two keys must not count twice)")
    if not yes:
        if not sys.stdin.isatty():
            raise InputError("no terminal to confirm the rotation on: pass --yes to write it")
        click.confirm(f"Write the new key and this change to {path}?", abort=True, err=True)
    if pending is not None:
        from mlspec_attest.project import ensure_keys_ignored

        # As keys generate: git must ignore the new private key before it exists (any --dir).
        ignored = ensure_keys_ignored(target_dir / ".gitignore", [f"{new_name}.key"])
        if ignored:
            click.echo(ignored)
        priv, pub = pending.write()
        click.echo(f"wrote {priv} (private, mode 0600{', encrypted' if pending.encrypted else ', NOT encrypted'})")
        click.echo(f"wrote {pub} (public)")
    elif pub_path is not None:
        _write_public(pub_path, public)
        click.echo(f"wrote {pub_path} (public; the private key is on the token)")
    plan.write_policy()
    click.echo(f"wrote {path}: {name} is now keyid {public.keyid}; {plan.retired_name} "
               f"(keyid {plan.old.keyid[:16]}…) revoked from {now.strftime('%Y-%m-%dT%H:%M:%SZ')}")
