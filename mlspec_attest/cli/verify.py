"""``mlspec verify`` (the deploy gate) and ``mlspec inspect`` (one envelope, decoded)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from mlspec_attest.cli._errors import echo_json, json_format_option, record_verdict
from mlspec_attest.cli._project import ProjectPath, announce_trust, load_policy, resolve_log, resolve_releases
from mlspec_attest.errors import EXIT_FAILED, EXIT_OK, InputError


@click.command()
@click.argument("bundle", type=ProjectPath(file_okay=False))
@click.option("--policy", type=ProjectPath(dir_okay=False), help="Trust policy (default: mlspec.yaml's).")
@click.option("--artifact", "artifacts", multiple=True, type=ProjectPath(),
              help="The file or directory being deployed; must be the packaged subject.")
@click.option("--log", "log_dir", type=ProjectPath(file_okay=False),
              help="The inference log the bundle's log attestations seal (default: mlspec.yaml's log:).")
@json_format_option
@click.option("--phase", type=click.Choice(["deploy", "full"]), default="full", show_default=True,
              help="deploy: before serving, require the stages up to package (later ones are judged only if "
                   "present); full: everything the policy requires (docs/objectives.md).")
@click.option("--releases", "releases_dir", type=ProjectPath(file_okay=False),
              help="Release history (one bundle per release): where the package's declared predecessor "
                   "(succeeds) is found and verified; rollback targets and previous.* criteria read it "
                   "(default: mlspec.yaml's releases:).")
@click.option("--vsa", "vsa_out", type=ProjectPath(dir_okay=False), help="Write a signed SLSA Verification Summary here.")
@click.option("--vsa-key", type=ProjectPath(dir_okay=False), help="Key that signs the --vsa summary.")
@click.option("--resource-uri", metavar="URI",
              help="The VSA's resourceUri (what slsa-verifier's --resource-uri must repeat), e.g. an OCI "
                   "reference; default: mlspec:package/<package name>, the same on every host.")
@click.option("--plain-http", is_flag=True, help="For BUNDLE=oci://...: plain HTTP, loopback registries only.")
def verify(bundle: str, policy: str | None, artifacts: tuple[str, ...], log_dir: str | None, fmt: str, phase: str,
           vsa_out: str | None, vsa_key: str | None, resource_uri: str | None, releases_dir: str | None = None,
           plain_http: bool = False) -> None:
    """Check BUNDLE against the policy and the codified objectives: the deploy gate.

    Exit 0: every check passed, deploy. Exit 1: the gate failed (findings say why).
    Exit 2: unusable input (missing bundle or policy, bad flags).
    BUNDLE may be oci://HOST[:PORT]/REPO@sha256:... (or :TAG): the chain attached to that model
    in a registry, whose layers must be exactly the packaged files (docs/storage.md#oci-registries).
    """
    from mlspec_attest.verify import verify_bundle

    if bool(vsa_out) != bool(vsa_key):
        raise InputError("--vsa and --vsa-key go together")
    if resource_uri is not None:
        if not vsa_out:
            raise InputError("--resource-uri names the resource in the --vsa summary; give --vsa OUT --vsa-key KEY")
        from mlspec_attest.verify.vsa import check_resource_uri

        check_resource_uri(resource_uri)  # before verifying: a typo is exit 2, not a written VSA
    policy_obj, origin = load_policy(policy, bundle)
    if bundle.startswith("oci://"):
        from mlspec_attest.cli.oci import verify_registry

        if artifacts:
            raise InputError("--artifact is for a bundle on disk; for oci:// the artifact's layers are checked")
        report = verify_registry(bundle, policy_obj, plain_http=plain_http, log_dir=resolve_log(log_dir, None),
                                 phase=phase, releases=resolve_releases(releases_dir))
    else:
        if plain_http:
            raise InputError("--plain-http applies to an oci:// BUNDLE only")
        report = verify_bundle(bundle, policy_obj, artifacts, log_dir=resolve_log(log_dir, bundle),
                               releases=resolve_releases(releases_dir), phase=phase)
    if vsa_out:
        from mlspec_attest.keys import load_signer
        from mlspec_attest.verify.vsa import write_vsa

        write_vsa(report, Path(vsa_out), load_signer(vsa_key), resource_uri=resource_uri)  # type: ignore[arg-type]
    verdict = record_verdict(EXIT_OK if report.passed else EXIT_FAILED)  # stands even if stdout fails
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        from mlspec_attest.render.text import render_text

        click.echo(render_text(report, color=sys.stdout is not None and sys.stdout.isatty()))
    announce_trust(policy_obj, origin)
    sys.exit(verdict)


# -- inspect ---------------------------------------------------------------------------
@click.command()
@click.argument("file", type=ProjectPath(dir_okay=False))
@click.option("--key", "key_paths", multiple=True, type=ProjectPath(dir_okay=False),
              help="Public key(s) to check the signatures against.")
@json_format_option
def inspect(file: str, key_paths: tuple[str, ...], fmt: str) -> None:
    """Decode a DSSE envelope: print its statement, keyids and signature checks.

    Exit 1 when --key is given and no signature verifies with any of them.
    """
    from mlspec_attest._internal.loaders import read_bounded
    from mlspec_attest.keys import PublicKey
    from mlspec_attest.model.canonical import parse_json
    from mlspec_attest.model.envelope import Envelope
    from mlspec_attest.render.terminal import terminal_safe

    data = read_bounded(file, what="envelope")
    try:
        envelope = Envelope.from_dict(parse_json(data, source=file))
    except ValueError as exc:
        raise InputError(f"{file}: not a DSSE envelope: {exc}") from None
    try:
        statement = parse_json(envelope.payload, source=f"{file} payload")
    except InputError:
        statement = None
    if fmt == "json":
        _inspect_json(file, envelope, statement, key_paths)
        return
    if statement is not None:
        click.echo(terminal_safe(json.dumps(statement, indent=2, ensure_ascii=False), keep_newlines=True))
    else:
        click.echo(f"(payload is not JSON: {len(envelope.payload)} bytes)")
    click.echo(f"payloadType: {terminal_safe(envelope.payload_type)}")
    from mlspec_attest.model.canonical import sha256_hex

    click.echo(f"payload sha256: {sha256_hex(envelope.payload)}")
    keys_ = [PublicKey.from_file(k) for k in key_paths]
    from mlspec_attest.model.envelope import pae

    message = pae(envelope.payload_type, envelope.payload)
    for i, sig in enumerate(envelope.signatures):
        click.echo(f"signature {i}: keyid {terminal_safe(sig.keyid or '(none)')}")
        for key in keys_:
            verdict = "VALID" if key.verify(sig.sig, message) else "invalid"
            click.echo(f"  {verdict} for {key.source} (keyid {key.keyid})")
    if keys_ and not envelope.verified_keyids(keys_):
        sys.exit(EXIT_FAILED)


def _inspect_json(file: str, envelope: Any, statement: Any, key_paths: tuple[str, ...]) -> None:
    """``inspect --format json``: the decoded envelope and, per signature, which given key verifies it."""
    from mlspec_attest.keys import PublicKey
    from mlspec_attest.model.canonical import sha256_hex
    from mlspec_attest.model.envelope import pae

    keys_ = [PublicKey.from_file(k) for k in key_paths]
    message = pae(envelope.payload_type, envelope.payload)
    signatures = [{"keyid": sig.keyid or None,
                   "checks": [{"key": str(key.source), "keyid": key.keyid, "valid": key.verify(sig.sig, message)}
                              for key in keys_]}
                  for sig in envelope.signatures]
    ok = not keys_ or bool(envelope.verified_keyids(keys_))
    exit_code = record_verdict(EXIT_OK if ok else EXIT_FAILED)
    echo_json({"file": file, "payloadType": envelope.payload_type, "payload_sha256": sha256_hex(envelope.payload),
               "statement": statement, "signatures_checked": bool(keys_), "signatures": signatures}, exit_code)
    sys.exit(exit_code)


# -- objectives ---------------------------------------------------------------------------
