"""``mlspec``: a thin command line over the Python API.

Exit status: 0 verified and the gate passed; 1 verification ran and the gate
failed; 2 usage or input error (one line on stderr, never a traceback).
Heavy machinery (Sigstore, CEL, JSON Schema, HTML) is imported only by the
commands that use it, so ``mlspec --help`` and ``mlspec verify`` start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from mlspec_attest._version import __version__
from mlspec_attest.cli._errors import ErrorHandlingGroup
from mlspec_attest.errors import EXIT_FAILED, EXIT_OK, InputError


class MlspecGroup(ErrorHandlingGroup):
    """The top-level group: registers the heavier subcommands lazily."""

    LAZY: dict[str, tuple[str, str]] = {
        "evidence": ("mlspec_attest.cli.evidence", "evidence"),
        "log": ("mlspec_attest.cli.log", "log"),
        "replay": ("mlspec_attest.cli.audit", "replay"),
        "report": ("mlspec_attest.cli.audit", "report"),
        "monitor": ("mlspec_attest.cli.monitor", "monitor"),
        "hash": ("mlspec_attest.cli.hash", "hash"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | {n for n in self.LAZY if self._lazy_available(n)})

    def _lazy_available(self, name: str) -> bool:
        import importlib.util

        return importlib.util.find_spec(self.LAZY[name][0]) is not None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in self.LAZY and self._lazy_available(name):
            import importlib

            module, attr = self.LAZY[name]
            command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=MlspecGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mlspec")
def main() -> None:
    """Signed, hash-chained attestations for every stage of an ML pipeline.

    \b
    Pipeline authors:  mlspec attest stage train --bundle bundle --key keys/pipeline.key ...
    Release engineers: mlspec verify bundle            (exit 0 = deploy, 1 = refuse)
    Auditors:          mlspec replay bundle --artifacts DIR ; mlspec report bundle --html FILE

    Start with 'mlspec demo' (a full pipeline, signed and verified) or 'mlspec init'.
    """


# -- keys ---------------------------------------------------------------------------
@main.group()
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
    priv, pub, public = generate(name, directory, key_type, passphrase)
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
@main.group()
def attest() -> None:
    """Append signed attestations to a bundle."""


def _project_defaults() -> Any:
    from mlspec_attest.project import Project

    return Project.find()


@attest.command("stage")
@click.argument("stage")
@click.option("--bundle", "bundle_dir", type=click.Path(file_okay=False), help="Bundle directory (default: mlspec.yaml's).")
@click.option("--key", "key_paths", multiple=True, type=click.Path(dir_okay=False),
              help="Private key to sign with; repeat for several signatures (default: mlspec.yaml's).")
@click.option("--metadata", "metadata_files", multiple=True, type=click.Path(dir_okay=False),
              help="YAML/JSON file of the stage's metadata; repeat to merge several.")
@click.option("--material", "materials", multiple=True, metavar="[ROLE=]PATH",
              help="An input the stage consumed (file or directory), e.g. model=out/model.onnx.")
@click.option("--product", "products", multiple=True, metavar="[ROLE=]PATH",
              help="An output the stage produced; becomes a statement subject.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set one metadata field (dotted path).")
@click.option("--allow-secret", "allow_secrets", multiple=True, metavar="POINTER",
              help="Keep a secret-looking value at this JSON pointer (it is redacted otherwise).")
@click.option("--sigstore", "use_sigstore", is_flag=True, help="Sign keylessly with Sigstore instead of a key.")
@click.option("--identity-token", envvar="SIGSTORE_ID_TOKEN", help="OIDC token for --sigstore (else ambient).")
@click.option("--staging", is_flag=True, help="Use Sigstore's staging instance with --sigstore.")
@click.option("--evidence", "evidence_files", multiple=True, type=click.Path(dir_okay=False),
              help="Attach an external attestation (Sigstore bundle or DSSE envelope).")
def attest_stage(stage: str, bundle_dir: str | None, key_paths: tuple[str, ...], metadata_files: tuple[str, ...],
                 materials: tuple[str, ...], products: tuple[str, ...], sets: tuple[str, ...],
                 allow_secrets: tuple[str, ...], use_sigstore: bool, identity_token: str | None, staging: bool,
                 evidence_files: tuple[str, ...]) -> None:
    """Sign what STAGE did and append it to the bundle's chain.

    \b
    Stages, in lifecycle order: objectives ingest analyze transform validate split
    train evaluate test package serve monitor log (long names like 'training' work).

    \b
    Example:
      mlspec attest stage train --bundle bundle --key keys/pipeline.key \\
          --material train-data=data/train.csv --product model=out/model.pkl \\
          --metadata train.yaml --set hyperparameters.C=1.0
    """
    from mlspec_attest.attest.attestor import Attestor

    project = _project_defaults()
    if bundle_dir is None:
        if project is None or project.bundle is None:
            raise InputError("no --bundle given and no mlspec.yaml names one")
        bundle_dir = str(project.bundle)
    keyless, signers = None, []
    if use_sigstore:
        if key_paths:
            raise InputError("--sigstore signs keylessly; do not also pass --key")
        from mlspec_attest.evidence.sigstore import sign_statement_keyless

        def keyless(payload: bytes) -> bytes:
            return sign_statement_keyless(payload, identity_token=identity_token, staging=staging)
    else:
        from mlspec_attest.keys import load_signer

        if not key_paths:
            if project is None or project.key is None:
                raise InputError("no --key given and no mlspec.yaml names one")
            key_paths = (str(project.key),)
        signers = [load_signer(p) for p in key_paths]
    att = Attestor(bundle_dir, signers, keyless=keyless).attest(
        stage, metadata_files=metadata_files, sets=sets, materials=materials, products=products,
        allow_secrets=allow_secrets, evidence=evidence_files)
    for pointer in att.redactions:
        click.echo(f"warning: redacted a secret-looking value at {pointer} (keep it with --allow-secret {pointer})",
                   err=True)
    click.echo(f"appended sequence {att.sequence} ({att.stage}) -> {att.path}  payload sha256 {att.payload_sha256}")


@attest.command("cosign")
@click.argument("attestation", type=click.Path(dir_okay=False, exists=True))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False), help="Private key to add a signature with.")
def attest_cosign(attestation: str, key_path: str) -> None:
    """Add a signature to an existing attestation (for policy thresholds).

    The chain hashes the payload, not the envelope, so co-signing never breaks it.
    """
    from mlspec_attest.attest.cosign import cosign
    from mlspec_attest.keys import load_signer

    keyid = cosign(Path(attestation), load_signer(key_path))
    click.echo(f"added signature by {keyid[:16]}… to {attestation}")


@attest.command("head")
@click.option("--bundle", "bundle_dir", required=True, type=click.Path(file_okay=False), help="Bundle directory.")
@click.option("--key", "key_paths", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Key the policy names under head.signers; repeat for a threshold.")
@click.option("--expires", default="24h", show_default=True, help="How long the head stays valid (e.g. 24h, 7d).")
def attest_head(bundle_dir: str, key_paths: tuple[str, ...], expires: str) -> None:
    """Sign the chain head (newest attestation, expiry): refuses truncation and rollback.

    Re-sign after every append and on a schedule, before it expires (docs/security.md).
    """
    from mlspec_attest.attest.head import sign_head
    from mlspec_attest.keys import load_signer
    from mlspec_attest.policy import parse_duration

    path, head = sign_head(bundle_dir, [load_signer(k) for k in key_paths], parse_duration(expires, "--expires"))
    click.echo(f"signed head: sequence {head.sequence}, payload sha256 {head.payload_sha256}, "
               f"expires {head.expires.strftime('%Y-%m-%dT%H:%M:%SZ')} -> {path}")


# -- verify ---------------------------------------------------------------------------
def _resolve_policy(policy: str | None, bundle: str) -> str:
    if policy:
        return policy
    from mlspec_attest.project import Project

    project = Project.find() or Project.find(Path(bundle).resolve().parent)
    if project is None or project.policy is None:
        raise InputError("no --policy given and no mlspec.yaml found (run 'mlspec init' or pass --policy FILE)")
    return str(project.policy)


@main.command()
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--policy", type=click.Path(dir_okay=False), help="Trust policy (default: mlspec.yaml's).")
@click.option("--artifact", "artifacts", multiple=True, type=click.Path(),
              help="The file or directory being deployed; must be the packaged subject.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--vsa", "vsa_out", type=click.Path(dir_okay=False), help="Write a signed SLSA Verification Summary here.")
@click.option("--vsa-key", type=click.Path(dir_okay=False), help="Key that signs the --vsa summary.")
def verify(bundle: str, policy: str | None, artifacts: tuple[str, ...], fmt: str, vsa_out: str | None,
           vsa_key: str | None) -> None:
    """Check BUNDLE against the policy and the codified objectives: the deploy gate.

    Exit 0: every check passed, deploy. Exit 1: the gate failed (findings say why).
    Exit 2: unusable input (missing bundle or policy, bad flags).
    """
    from mlspec_attest.verify import verify_bundle

    if bool(vsa_out) != bool(vsa_key):
        raise InputError("--vsa and --vsa-key go together")
    report = verify_bundle(bundle, _resolve_policy(policy, bundle), artifacts)
    if vsa_out:
        from mlspec_attest.keys import load_signer
        from mlspec_attest.verify.vsa import write_vsa

        write_vsa(report, Path(vsa_out), load_signer(vsa_key))  # type: ignore[arg-type]
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        from mlspec_attest.render.text import render_text

        click.echo(render_text(report, color=sys.stdout.isatty()))
    sys.exit(EXIT_OK if report.passed else EXIT_FAILED)


# -- inspect ---------------------------------------------------------------------------
@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--key", "key_paths", multiple=True, type=click.Path(dir_okay=False),
              help="Public key(s) to check the signatures against.")
def inspect(file: str, key_paths: tuple[str, ...]) -> None:
    """Decode a DSSE envelope: print its statement, keyids and signature checks."""
    from mlspec_attest._internal.loaders import read_bounded
    from mlspec_attest.keys import PublicKey
    from mlspec_attest.model.canonical import parse_json
    from mlspec_attest.model.envelope import Envelope

    data = read_bounded(file, what="envelope")
    try:
        envelope = Envelope.from_dict(parse_json(data, source=file))
    except ValueError as exc:
        raise InputError(f"{file}: not a DSSE envelope: {exc}") from None
    try:
        statement = parse_json(envelope.payload, source=f"{file} payload")
        click.echo(json.dumps(statement, indent=2, ensure_ascii=False))
    except InputError:
        click.echo(f"(payload is not JSON: {len(envelope.payload)} bytes)")
    click.echo(f"payloadType: {envelope.payload_type}")
    from mlspec_attest.model.canonical import sha256_hex

    click.echo(f"payload sha256: {sha256_hex(envelope.payload)}")
    keys_ = [PublicKey.from_file(k) for k in key_paths]
    from mlspec_attest.model.envelope import pae

    message = pae(envelope.payload_type, envelope.payload)
    for i, sig in enumerate(envelope.signatures):
        click.echo(f"signature {i}: keyid {sig.keyid or '(none)'}")
        for key in keys_:
            verdict = "VALID" if key.verify(sig.sig, message) else "invalid"
            click.echo(f"  {verdict} for {key.source} (keyid {key.keyid})")
    if keys_ and not envelope.verified_keyids(keys_):
        sys.exit(EXIT_FAILED)


# -- objectives ---------------------------------------------------------------------------
@main.group()
def objectives() -> None:
    """Codified objectives: the chain's genesis."""


@objectives.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def objectives_check(file: str) -> None:
    """Compile every criterion of FILE; report syntax errors with their position."""
    from mlspec_attest.objectives.criteria import check_file

    obj = check_file(file)
    for c in obj.criteria:
        click.echo(f"ok  {c.name:<24} {c.stage}: {c.expression}  [{c.severity}]")
    click.echo(f"{len(obj.criteria)} criteria compiled")


# -- init and demo ----------------------------------------------------------------------------
@main.command()
@click.argument("directory", type=click.Path(file_okay=False), default=".")
@click.option("--no-passphrase", is_flag=True, help="Write unencrypted keys (throwaway projects only).")
def init(directory: str, no_passphrase: bool) -> None:
    """Create a working project: mlspec.yaml, policy, keys, objectives template, empty bundle."""
    from mlspec_attest.project import init_project

    for line in init_project(Path(directory), encrypt=not no_passphrase):
        click.echo(line)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False), default="demo-project")
@click.option("--fail-objective", is_flag=True, help="Train a deliberately weak model; the gate must refuse it.")
def demo(directory: str, fail_objective: bool) -> None:
    """Run a real 13-stage ML pipeline, attest every stage, then verify it."""
    from mlspec_attest.demo.runner import run_demo

    sys.exit(run_demo(Path(directory), fail_objective=fail_objective, echo=click.echo))


if __name__ == "__main__":  # pragma: no cover
    main()
