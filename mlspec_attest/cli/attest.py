"""``mlspec attest``: append signed attestations (stages, co-signatures, the chain head)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mlspec_attest.cli._errors import ErrorHandlingGroup, echo_json, json_format_option
from mlspec_attest.cli._passphrase import passphrase_file_option
from mlspec_attest.cli._project import ProjectPath, project_append_gate
from mlspec_attest.errors import InputError


@click.group('attest', cls=ErrorHandlingGroup)
def attest() -> None:
    """Append signed attestations to a bundle."""


def _project_defaults() -> Any:
    from mlspec_attest.project import Project

    return Project.find()


@attest.command("stage")
@click.argument("stage")
@click.option("--bundle", "bundle_dir", type=ProjectPath(file_okay=False), help="Bundle directory or s3://BUCKET/PREFIX (default: mlspec.yaml's).")
@click.option("--key", "key_paths", multiple=True, type=ProjectPath(dir_okay=False),
              help="Private key to sign with; repeat for several signatures (default: mlspec.yaml's).")
@click.option("--metadata", "metadata_files", multiple=True, type=ProjectPath(dir_okay=False),
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
@click.option("--evidence", "evidence_files", multiple=True, type=ProjectPath(dir_okay=False),
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
@click.option("--succeeds", "succeeds", type=ProjectPath(file_okay=False), metavar="BUNDLE",
              help="package only: the release this one succeeds (its bundle); signs its package digest and "
                   "chain head as metadata.succeeds, which the gate verifies with --releases DIR.")
@passphrase_file_option
@click.option("--no-head", "no_head", is_flag=True,
              help="Do not re-sign the chain head after this append (default: re-sign it when mlspec.yaml has head:).")
@json_format_option
@click.option("--policy", "policy_path", type=ProjectPath(dir_okay=False),
              help="Trust policy whose gate rules the append must meet (default: mlspec.yaml's policy:).")
@click.option("--force", is_flag=True,
              help="Append even when the gate's rules refuse it (stage order, signer, revocation, clock); "
                   "says so on stderr, and the gate will still refuse the chain.")
def attest_stage(stage: str, bundle_dir: str | None, key_paths: tuple[str, ...], metadata_files: tuple[str, ...],
                 materials: tuple[str, ...], products: tuple[str, ...], sets: tuple[str, ...],
                 allow_secrets: tuple[str, ...], fail_on_secret: bool, use_sigstore: bool, identity_token: str | None, staging: bool,
                 evidence_files: tuple[str, ...], fingerprint_specs: tuple[str, ...], oms_signature: bool,
                 oms_method: str, oms_hash: str, no_head: bool, fmt: str, policy_path: str | None, force: bool,
                 succeeds: str | None = None) -> None:
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
    from mlspec_attest.cli._project import in_project, in_project_spec

    fingerprints = []
    for spec in fingerprint_specs:
        set_name, sep, csv_path = spec.partition("=")
        if not sep or not set_name or not csv_path:
            raise InputError(f"--fingerprints {spec!r}: expected SET=CSV, e.g. --fingerprints holdback=data/holdback.csv")
        fingerprints.append((set_name, in_project(csv_path)))
    materials = tuple(in_project_spec(m) for m in materials)
    products = tuple(in_project_spec(p) for p in products)
    if fingerprints and stage.strip().lower() not in ("split", "splitting"):
        raise InputError("--fingerprints belongs to the split stage (it proves its sets share no rows)")
    parts = _succeeds_part(stage, succeeds)
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
    # Names are recorded relative to the project root from any subdirectory (the working directory without one).
    base_dir = project.root if project is not None else None
    gate = project_append_gate(policy_path)
    attestor = Attestor(bundle_dir, signers, keyless=keyless, head=head, base_dir=base_dir, policy=gate, force=force)
    att = attestor.attest(
        stage, metadata_files=metadata_files, sets=sets, materials=materials, products=products,
        allow_secrets=allow_secrets, fail_on_secret=fail_on_secret, evidence=evidence_files,
        fingerprints=fingerprints, metadata_parts=parts)
    if gate is None:  # said after the append, so an error stays one line
        click.echo("warning: no policy (no --policy, and no mlspec.yaml policy: found from the working directory): "
                   "this append was not checked against the gate's rules", err=True)
    for finding in att.forced:
        click.echo(f"WARNING: --force: appended sequence {att.sequence} ({att.stage}) although the gate will refuse "
                   f"it: [{finding.code}] {finding.message}", err=True)
    for pointer in att.redactions:
        click.echo(f"warning: redacted a secret-looking value at {pointer} (keep it with --allow-secret {pointer})",
                   err=True)
    for pointer in att.run_redactions:
        click.echo(f"warning: redacted a secret-looking value in the recorded command line or CI variables at "
                   f"run{pointer}; pass secrets through the environment or a file, not argv", err=True)
    from mlspec_attest.store import is_remote

    lost = getattr(attestor.bundle, "retries", 0)  # object stores only: claims other writers won first
    if lost:
        click.echo(f"lost {lost} claim(s) to concurrent writers; re-read the chain tip, re-linked and retried", err=True)
    head_at = f"{bundle_dir.rstrip('/')}/head.dsse.json" if is_remote(bundle_dir) else str(Path(bundle_dir) / "head.dsse.json")
    if oms:
        from mlspec_attest.attest.oms import write_atomically

        for out, data in oms:  # after the append: a refused stage leaves no signature behind
            write_atomically(out, data)
    if fmt == "json":
        echo_json({"sequence": att.sequence, "stage": att.stage, "file": str(att.path),
                   "payload_sha256": att.payload_sha256, "redactions": att.redactions,
                   "run_redactions": att.run_redactions,
                   "head": head_at if head is not None else None, "lost_claims": lost,
                   "oms_signatures": [str(out) for out, _ in oms]})
        return
    click.echo(f"appended sequence {att.sequence} ({att.stage}) -> {att.path}  payload sha256 {att.payload_sha256}")
    if head is not None:
        from mlspec_attest.policy import format_duration

        click.echo(f"re-signed the chain head (valid {format_duration(head.valid_for)}) -> {head_at}")
    for out, _ in oms:
        click.echo(f"wrote OpenSSF model signature {out}")


def _succeeds_part(stage: str, succeeds: str | None) -> list[tuple[str, dict[str, Any]]]:
    """``--succeeds BUNDLE`` as a metadata part: the predecessor's package digest and chain head."""
    if succeeds is None:
        return []
    from mlspec_attest.model.stages import resolve
    from mlspec_attest.releases import SUCCEEDS, describe_release

    if resolve(stage).name != "package":
        raise InputError("--succeeds names the release a package succeeds; use it with the package stage")
    return [("--succeeds", {SUCCEEDS: describe_release(succeeds).to_dict()})]


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
@click.argument("attestation", type=ProjectPath(dir_okay=False, exists=True))
@passphrase_file_option
@click.option("--key", "key_path", required=True, type=ProjectPath(dir_okay=False), help="Private key to add a signature with.")
@click.option("--policy", "policy_path", type=ProjectPath(dir_okay=False),
              help="Trust policy the signature must meet (default: mlspec.yaml's policy:).")
@click.option("--force", is_flag=True, help="Add the signature even when the gate's rules refuse it (a revoked key).")
def attest_cosign(attestation: str, key_path: str, policy_path: str | None, force: bool) -> None:
    """Add a signature to an existing attestation (for policy thresholds).

    The chain hashes the payload, not the envelope, so co-signing never breaks it.
    """
    from mlspec_attest.attest.cosign import cosign
    from mlspec_attest.keys import load_signer

    gate = project_append_gate(policy_path)
    overridden: list[Any] = []
    keyid = cosign(Path(attestation), load_signer(key_path), policy=gate, force=force, overridden=overridden)
    click.echo(f"added signature by {keyid[:16]}… to {attestation}")
    if gate is None:
        click.echo("warning: no policy (no --policy, and no mlspec.yaml policy: found from the working directory): "
                   "this signature was not checked against the gate's rules", err=True)
    for finding in overridden:
        click.echo(f"WARNING: --force: added the signature although the gate will refuse it: [{finding.code}] "
                   f"{finding.message}", err=True)


@attest.command("head")
@click.option("--bundle", "bundle_dir", type=ProjectPath(file_okay=False), help="Bundle directory or s3://BUCKET/PREFIX (default: mlspec.yaml's).")
@click.option("--key", "key_paths", multiple=True, type=ProjectPath(dir_okay=False),
              help="Key the policy names under head.signers; repeat for a threshold (default: mlspec.yaml's head.key).")
@passphrase_file_option
@click.option("--expires", help="How long the head stays valid, e.g. 24h, 7d (default: mlspec.yaml's head.expires, "
              "else 24h).")
@click.option("--initial", is_flag=True,
              help="Sign the first head of a chain that has none (or whose head is unreadable, expired, or signed "
                   "by no key given nor the policy's head signers), after 'mlspec verify'; a head naming a later "
                   "attestation is refused even so (remove the file to start over).")
@click.option("--policy", type=ProjectPath(dir_okay=False),
              help="Policy whose head signers' heads are believed, and whose revoked keys' are not "
                   "(default: mlspec.yaml's policy:).")
def attest_head(bundle_dir: str | None, key_paths: tuple[str, ...], expires: str | None, initial: bool,
                policy: str | None = None) -> None:
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
    gate = project_append_gate(policy)  # its head signers' heads are believed too, none by a key it revokes
    path, head = sign_head(bundle_dir, [load_signer(k) for k in key_paths], valid_for, initial=initial,
                           also_trust=gate.head_keys() if gate is not None else (),
                           distrust=gate.distrusted_keyids() if gate is not None else ())
    from mlspec_attest.store import HeadKept

    if isinstance(path, HeadKept):  # an object store: another writer signed a later head meanwhile
        click.echo(f"kept the later head (sequence {path.kept_sequence}) another writer signed -> {path}")
        return
    click.echo(f"signed head: sequence {head.sequence}, payload sha256 {head.payload_sha256}, "
               f"expires {head.expires.strftime('%Y-%m-%dT%H:%M:%SZ')} -> {path}")


@attest.command("timestamp")
@click.argument("attestation", type=ProjectPath(dir_okay=False, exists=True))
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


@attest.command("merge")
@click.argument("bundle_dir", metavar="BUNDLE", type=ProjectPath(file_okay=False))
@click.argument("other_dir", metavar="OTHER_COPY", type=ProjectPath(file_okay=False))
@click.option("--policy", "policy_path", type=ProjectPath(dir_okay=False),
              help="Policy whose keys may co-sign (default: mlspec.yaml's); other signatures are refused.")
def attest_merge(bundle_dir: str, other_dir: str, policy_path: str | None) -> None:
    """Add the co-signatures of OTHER_COPY (another copy of BUNDLE) to BUNDLE.

    \b
    Only signatures are added, each verified against a key of the policy; any other
    difference (another payload or payloadType, a statement only OTHER_COPY has, a
    signature by an unknown or revoked key) refuses the whole merge and writes nothing.
    Nothing is ever removed. The chain head stays valid: it binds payloads, not signatures.
    """
    from mlspec_attest.attest.merge import merge_cosignatures
    from mlspec_attest.cli._project import load_policy

    policy, _ = load_policy(policy_path, bundle_dir)
    merged = merge_cosignatures(bundle_dir, other_dir, policy.keys.values(), (r.keyid for r in policy.revoked))
    added = 0
    for entry in merged:
        for keyid in entry.added:
            click.echo(f"added signature by {policy.key_name(keyid)} ({keyid[:16]}…) to {entry.name}")
        added += len(entry.added)
        for keyid in entry.already:
            click.echo(f"skipped {entry.name}: {policy.key_name(keyid)} has signed it already here", err=True)
    click.echo(f"merged {added} signature(s) from {other_dir} into {bundle_dir}")
