"""``mlspec attest``: append signed attestations (stages, co-signatures, the chain head)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mlspec_attest.cli._errors import ErrorHandlingGroup
from mlspec_attest.errors import InputError


@click.group('attest', cls=ErrorHandlingGroup)
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
@click.option("--fail-on-secret", is_flag=True,
              help="Refuse to sign (exit 2) when the metadata holds a secret-looking value, instead of redacting it.")
@click.option("--sigstore", "use_sigstore", is_flag=True, help="Sign keylessly with Sigstore instead of a key.")
@click.option("--identity-token", envvar="SIGSTORE_ID_TOKEN", help="OIDC token for --sigstore (else ambient).")
@click.option("--staging", is_flag=True, help="Use Sigstore's staging instance with --sigstore.")
@click.option("--evidence", "evidence_files", multiple=True, type=click.Path(dir_okay=False),
              help="Attach an external attestation (Sigstore bundle or DSSE envelope).")
@click.option("--fingerprints", "fingerprint_specs", multiple=True, metavar="SET=CSV",
              help="split: attest row fingerprints of a set (e.g. train=data/train.csv, holdback=...); "
                   "the gate's leakage proof.")
@click.option("--oms-signature", is_flag=True,
              help="package only: also write an OpenSSF model-signing signature of each product "
                   "(DIR/model.sig, FILE.sig) with the first --key, for 'model_signing verify key'.")
@click.option("--oms-method", type=click.Choice(["files", "shards"]), default="files", show_default=True,
              help="--oms-signature's model-signing serialisation: shards hashes fixed 1 GB ranges of each file "
                   "on every core (docs/format.md).")
@click.option("--oms-hash", type=click.Choice(["sha256", "blake3"]), default="sha256", show_default=True,
              help="--oms-signature's hash (blake3: model-signing's files method with BLAKE3 digests).")
@click.option("--no-head", "no_head", is_flag=True,
              help="Do not re-sign the chain head after this append (default: re-sign it when mlspec.yaml has head:).")
def attest_stage(stage: str, bundle_dir: str | None, key_paths: tuple[str, ...], metadata_files: tuple[str, ...],
                 materials: tuple[str, ...], products: tuple[str, ...], sets: tuple[str, ...],
                 allow_secrets: tuple[str, ...], fail_on_secret: bool, use_sigstore: bool, identity_token: str | None, staging: bool,
                 evidence_files: tuple[str, ...], fingerprint_specs: tuple[str, ...], oms_signature: bool,
                 oms_method: str, oms_hash: str, no_head: bool) -> None:
    """Sign what STAGE did and append it to the bundle's chain.

    \b
    Stages, in lifecycle order: objectives ingest analyze transform validate split
    train evaluate test package serve monitor log (long names like 'training' work).

    \b
    Example:
      mlspec attest stage train --bundle bundle --key keys/pipeline.key \\
          --material train-data=data/train.csv --product model=out/model.pkl \\
          --metadata train.yaml --set hyperparameters.C=1.0
      mlspec attest stage split --material data/clean.csv \\
          --product train-data=data/train.csv --product holdback-data=data/holdback.csv \\
          --fingerprints train=data/train.csv --fingerprints holdback=data/holdback.csv \\
          --metadata split.yaml
    """
    from mlspec_attest.attest.attestor import Attestor

    fingerprints = []
    for spec in fingerprint_specs:
        set_name, sep, csv_path = spec.partition("=")
        if not sep or not set_name or not csv_path:
            raise InputError(f"--fingerprints {spec!r}: expected SET=CSV, e.g. --fingerprints holdback=data/holdback.csv")
        fingerprints.append((set_name, csv_path))
    if fingerprints and stage.strip().lower() not in ("split", "splitting"):
        raise InputError("--fingerprints belongs to the split stage (it proves its sets share no rows)")
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
    oms: list[tuple[Path, bytes]] = []
    if (oms_method, oms_hash) != ("files", "sha256") and not oms_signature:
        raise InputError("--oms-method and --oms-hash choose how --oms-signature hashes; add --oms-signature")
    if oms_signature:
        oms = _oms_signatures(stage, products, signers, method=oms_method, hash_type=oms_hash)
    from mlspec_attest.cli._project import project_head_signing

    head = None if no_head else project_head_signing(project, dict(zip(key_paths, signers)))
    att = Attestor(bundle_dir, signers, keyless=keyless, head=head).attest(
        stage, metadata_files=metadata_files, sets=sets, materials=materials, products=products,
        allow_secrets=allow_secrets, fail_on_secret=fail_on_secret, evidence=evidence_files,
        fingerprints=fingerprints)
    for pointer in att.redactions:
        click.echo(f"warning: redacted a secret-looking value at {pointer} (keep it with --allow-secret {pointer})",
                   err=True)
    click.echo(f"appended sequence {att.sequence} ({att.stage}) -> {att.path}  payload sha256 {att.payload_sha256}")
    if head is not None:
        click.echo(f"re-signed the chain head (valid {head.valid_for}) -> {Path(bundle_dir) / 'head.dsse.json'}")
    if oms:
        from mlspec_attest.attest.oms import write_atomically

        for out, data in oms:  # after the append: a refused stage leaves no signature behind
            write_atomically(out, data)
            click.echo(f"wrote OpenSSF model signature {out}")


def _oms_signatures(stage: str, products: tuple[str, ...], signers: list[Any], *, method: str = "files",
                    hash_type: str = "sha256") -> list[tuple[Path, bytes]]:
    """Sign every product before the append (a bad key or product is exit 2 with nothing written)."""
    from mlspec_attest.attest.attestor import ArtifactRef
    from mlspec_attest.attest.oms import sign_oms, signature_path
    from mlspec_attest.model.stages import resolve

    if resolve(stage).name != "package":
        raise InputError("--oms-signature signs a model package; use it with the package stage")
    if not signers:
        raise InputError("--oms-signature needs --key, not --sigstore (model-signing verifies key-signed OMS signatures)")
    if not products:
        raise InputError("--oms-signature: the package stage names no --product to sign")
    out = []
    for text in products:
        ref = ArtifactRef.parse(text)
        path = ref.path if ref.path.is_absolute() else Path.cwd() / ref.path  # as the Attestor reads them
        out.append((signature_path(path), sign_oms(path, signers[0], method=method, hash_type=hash_type)))
    return out


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
@click.option("--bundle", "bundle_dir", type=click.Path(file_okay=False), help="Bundle directory (default: mlspec.yaml's).")
@click.option("--key", "key_paths", multiple=True, type=click.Path(dir_okay=False),
              help="Key the policy names under head.signers; repeat for a threshold (default: mlspec.yaml's head.key).")
@click.option("--expires", help="How long the head stays valid, e.g. 24h, 7d (default: mlspec.yaml's head.expires, "
              "else 24h).")
def attest_head(bundle_dir: str | None, key_paths: tuple[str, ...], expires: str | None) -> None:
    """Sign the chain head (newest attestation, expiry): refuses truncation and rollback.

    Appends inside a project with head: in mlspec.yaml re-sign it automatically; run this
    on a schedule (e.g. daily cron) for a chain that stays quiet longer than the head's
    validity (docs/security.md, "keeping the head fresh").
    """
    from mlspec_attest.attest.head import DEFAULT_HEAD_VALIDITY, sign_head
    from mlspec_attest.keys import load_signer
    from mlspec_attest.policy import parse_duration

    project = _project_defaults()
    if bundle_dir is None:
        if project is None or project.bundle is None:
            raise InputError("no --bundle given and no mlspec.yaml names one")
        bundle_dir = str(project.bundle)
    if not key_paths:
        if project is None or project.head_key is None:
            raise InputError("no --key given and no mlspec.yaml names a head key (head: {key: ...})")
        key_paths = (str(project.head_key),)
    if expires is not None:
        valid_for = parse_duration(expires, "--expires")
    else:
        valid_for = project.head_expires if project is not None and project.head_key else DEFAULT_HEAD_VALIDITY
    path, head = sign_head(bundle_dir, [load_signer(k) for k in key_paths], valid_for)
    click.echo(f"signed head: sequence {head.sequence}, payload sha256 {head.payload_sha256}, "
               f"expires {head.expires.strftime('%Y-%m-%dT%H:%M:%SZ')} -> {path}")


@attest.command("timestamp")
@click.argument("attestation", type=click.Path(dir_okay=False, exists=True))
@click.option("--tsa", "tsa_url", required=True, help="RFC 3161 time-stamping authority URL (HTTP POST).")
@click.option("--timeout", default=30.0, show_default=True, type=float, help="Seconds to wait for the TSA.")
def attest_timestamp(attestation: str, tsa_url: str, timeout: float) -> None:
    """Get an RFC 3161 token over each signature of ATTESTATION from a TSA; store it in the bundle.

    \b
    Tokens go to BUNDLE/timestamps/<sha256 of the signature>.tsr. With the TSA named
    under the policy's timestamp_authorities they prove the signature existed at the
    TSA's time, so a later revocation of the key does not void it (docs/security.md).
    The token is checked here only for its message imprint; the gate checks the rest.
    """
    from mlspec_attest.evidence.timestamp import fetch_token

    path = Path(attestation)
    if path.parent.name != "attestations":
        raise InputError(f"{attestation}: not inside a bundle's attestations/ folder")
    for written in fetch_token(path, tsa_url, timeout=timeout):
        click.echo(f"stored time-stamp token -> {written}")
