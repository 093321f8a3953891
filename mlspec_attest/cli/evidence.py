"""``mlspec evidence``: verify external Sigstore evidence offline.

Kept apart from the main CLI so sigstore-python is imported only when an
evidence command actually runs (``mlspec --help`` stays fast): nothing from
sigstore is imported at module import time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from mlspec_attest.cli._errors import ErrorHandlingGroup, record_verdict, remember_format
from mlspec_attest.cli._project import ProjectPath
from mlspec_attest.errors import InputError


@click.group("evidence", cls=ErrorHandlingGroup)
def evidence() -> None:
    """Verify Sigstore bundles (keyless or key-signed) as evidence, offline."""


@evidence.command("verify")
@click.argument("bundle", type=ProjectPath(dir_okay=False, path_type=Path))
@click.option("--artifact", type=ProjectPath(path_type=Path),
              help="File or model directory the bundle must cover (signed message, a Statement subject, "
                   "or an OpenSSF model signature's files, names included).")
@click.option("--digest", metavar="sha256:HEX", help="Digest the bundle must cover, instead of --artifact.")
@click.option("--identity", metavar="SAN", help="Exact certificate identity (SAN: email or workflow URI).")
@click.option("--identity-regex", metavar="REGEX", help="Certificate identity as a regex that must match the whole SAN.")
@click.option("--issuer", metavar="URL", help="OIDC issuer that must have vouched for the identity.")
@click.option("--workflow-repository", metavar="OWNER/REPO", help="Also require this GitHub workflow repository claim.")
@click.option("--workflow-ref", metavar="REF", help="Also require this GitHub workflow ref claim (e.g. refs/heads/main).")
@click.option("--key", type=ProjectPath(dir_okay=False, path_type=Path), help="Public key (PEM/DER) for key-signed bundles.")
@click.option("--trust-config", type=ProjectPath(dir_okay=False, path_type=Path),
              help="Sigstore trusted_root.json or ClientTrustConfig JSON (required for keyless bundles).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              is_eager=True, callback=remember_format)
def verify_cmd(
    bundle: Path,
    artifact: Path | None,
    digest: str | None,
    identity: str | None,
    identity_regex: str | None,
    issuer: str | None,
    workflow_repository: str | None,
    workflow_ref: str | None,
    key: Path | None,
    trust_config: Path | None,
    fmt: str,
) -> None:
    """Verify BUNDLE and print who signed what.

    Exit 0: valid. Exit 1: verification ran and failed. Exit 2: unusable input.
    """
    from mlspec_attest.evidence import sigstore as ss

    try:
        if (artifact is None) == (digest is None):
            raise InputError("give exactly one of --artifact PATH or --digest sha256:HEX")
        keyless = any(v is not None for v in (identity, identity_regex, issuer, workflow_repository, workflow_ref))
        if key is not None and keyless:
            raise InputError("--key cannot be combined with --identity/--identity-regex/--issuer")
        identities = None
        if key is None:
            if identity is None and identity_regex is None:
                raise InputError("pin the signer: --identity SAN (or --identity-regex) with --issuer, or --key PUBKEY")
            if identity is not None and identity_regex is not None:
                raise InputError("give either --identity or --identity-regex, not both")
            if not issuer:
                raise InputError("--issuer is required with --identity/--identity-regex")
            if trust_config is None:
                raise InputError("--trust-config FILE is required to verify a keyless bundle offline")
            identities = [ss.IdentityRule(
                san=identity, san_pattern=identity_regex, issuer=issuer,
                workflow_repository=workflow_repository, workflow_ref=workflow_ref,
            )]
        result = ss.verify_evidence(
            bundle, trust_config=trust_config, artifact=artifact, digest=digest,
            identities=identities, key=key,
        )
    except ss.EvidenceVerificationError as exc:
        record_verdict(1)  # stands even if stdout fails
        if fmt == "json":
            click.echo(json.dumps({"verdict": "fail", "bundle": str(bundle), "error": str(exc)}, indent=2))
        else:
            from mlspec_attest.render.terminal import terminal_safe

            click.echo(f"FAIL: {terminal_safe(exc)}")
        sys.exit(1)

    record_verdict(0)
    if fmt == "json":
        out: dict[str, Any] = {"verdict": "pass", "bundle": str(bundle), **result.to_dict()}
        click.echo(json.dumps(out, indent=2))
    else:
        from mlspec_attest.render.terminal import terminal_safe

        # certificate claims and subject names are someone else's text
        click.echo("\n".join(terminal_safe(line) for line in _render_text(bundle, result).split("\n")))
    sys.exit(0)


def _render_text(bundle: Path, r: Any) -> str:
    lines = [f"OK: {bundle}"]
    lines.append(f"  signed by:   {r.signer.describe()}")
    for name, value in r.signer.claims.items():
        if name in ("workflow_repository", "workflow_ref", "workflow_sha", "workflow_trigger"):
            lines.append(f"    {name}: {value}")
    lines.append(f"  kind:        {r.kind}")
    if r.predicate_type:
        lines.append(f"  predicate:   {r.predicate_type}")
    if r.matched_subject is not None:
        lines.append(f"  subject:     {r.matched_subject.get('name')} ({r.artifact_digest})")
    elif r.artifact_digest:
        lines.append(f"  artifact:    {r.artifact_digest}")
    for t in r.timestamps:
        lines.append(f"  signed at:   {t.isoformat()}")
    lines.append(f"  tlog:        {r.tlog}")
    return "\n".join(lines)


__all__ = ["evidence"]
