"""``mlspec policy check``: validate a trust policy and say, in plain rows, what it trusts."""

from __future__ import annotations

import os

import click

from mlspec_attest.cli._errors import ErrorHandlingGroup, record_verdict
from mlspec_attest.cli._project import ProjectPath


@click.group("policy", cls=ErrorHandlingGroup)
def policy() -> None:
    """Check trust policies."""


@policy.command("check")
@click.argument("file", type=ProjectPath(dir_okay=False))
def policy_check(file: str) -> None:
    """Validate FILE; print who may sign which stage, the thresholds and what is required.

    Exit 0: the policy is valid (the summary follows). Exit 2: it is not (one line says where).
    """
    from mlspec_attest.policy import Policy, format_duration

    p = Policy.from_file(file)
    record_verdict(0)  # valid: the verdict stands even if stdout fails
    click.echo(f"policy {p.name} ({p.source}) is valid; sha256 {p.digest}")
    click.echo(f"expires: {p.expires.isoformat() if p.expires else 'never'}; "
               f"max_age: {format_duration(p.max_age) if p.max_age else 'none'}; "
               f"freshness: {format_duration(p.freshness) if p.freshness else 'none'}")
    # The same lookup as the gate: every entry for a key counts, the earliest 'after' wins.
    revoked = {r.keyid: p.revocation_of(r.keyid) for r in p.revoked if r.keyid}
    click.echo("")
    click.echo("keys:")
    for name, key in p.keys.items():
        note = ""
        if key.keyid in revoked:
            r = revoked[key.keyid]
            assert r is not None
            note = f"  REVOKED for signatures from {r.after.isoformat()}" + (f" ({r.reason})" if r.reason else "")
        where = "inline pem" if key.source.endswith("(inline)") else os.path.normpath(key.source)
        click.echo(f"  {name:<28} {key.key_type:<11} {key.keyid}  {where}{note}")
    named = {key.keyid for key in p.keys.values()}
    unnamed = [r for kid, r in revoked.items() if kid not in named]
    for r in unnamed:
        assert r is not None
        click.echo(f"  {'(not named here)':<28} {'':<11} {r.keyid}  REVOKED from {r.after.isoformat()}")
    click.echo("")
    click.echo(f"  {'stage':<11} {'required':<9} {'threshold':<10} {'repeat':<7} signers")
    for stage in p.all_stage_names():
        rule = p.stages[stage]
        who = ", ".join(rule.signers)
        if rule.identities:
            who = (who + "; " if who else "") + f"{len(rule.identities)} Sigstore identit{'y' if len(rule.identities) == 1 else 'ies'}"
        extra = []
        if rule.checks:
            extra.append(f"{len(rule.checks)} CEL check(s)")
        if rule.evidence:
            extra.append(f"{len(rule.evidence)} evidence rule(s)")
        suffix = f"  [{', '.join(extra)}]" if extra else ""
        click.echo(f"  {stage:<11} {'yes' if rule.required else 'no':<9} {rule.threshold:<10} "
                   f"{'yes' if rule.repeat else 'no':<7} {who}{suffix}")
    click.echo("")
    if p.head is not None:
        click.echo(f"chain head: {'required' if p.head.required else 'optional'}, {p.head.threshold} of "
                   f"{', '.join(p.head.signers)}" + (f", valid at most {p.head.max_validity}" if p.head.max_validity else ""))
    else:
        click.echo("chain head: not configured (truncation of the newest stages is not detected; see docs/security.md)")
    click.echo(f"objectives: {'required before training' if p.objectives_required else 'not required'}; "
               f"artifact flow checks: {'on' if p.artifact_flow else 'OFF'}")
