"""The gate's chain-head check: refuses truncation, rollback and forks (see model/head.py)."""

from __future__ import annotations

from pathlib import Path

from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import parse_json
from mlspec_attest.model.envelope import IN_TOTO_PAYLOAD_TYPE, Envelope
from mlspec_attest.model.head import HEAD_FILE, MAX_HEAD_BYTES, _fmt, parse_head_payload
from mlspec_attest.model.report import WARNING
from mlspec_attest.verify.context import VerifyContext


def check_policy_outside_bundle(ctx: VerifyContext) -> None:
    """Trust roots stay outside the bundle: whoever controls the bundle must not choose the rules.

    The policy file, every key file it names and every other trust file (Sigstore
    trust_config, timestamp authority certificates) must lie outside the bundle.
    """
    if ctx.bundle.is_remote:
        return  # trust files are local paths: none can lie inside a bucket
    root = ctx.bundle.root.resolve()
    if ctx.policy.source.resolve().is_relative_to(root):
        ctx.report.add("POLICY_IN_BUNDLE", f"the policy {ctx.policy.source} lies inside the bundle it is to judge; "
                       "whoever controls the bundle would choose the rules", hint="keep the policy in the deploy "
                       "system's repository and pass it with --policy")
    for what, path in _trust_files(ctx):
        if path.resolve().is_relative_to(root):
            ctx.report.add("TRUST_FILE_IN_BUNDLE", f"{what} {path} lies inside the bundle it is to judge; whoever "
                           "controls the bundle would choose whom the gate trusts", file=str(path),
                           hint="keep keys and certificates beside the policy, outside the bundle")


def _trust_files(ctx: VerifyContext) -> list[tuple[str, Path]]:
    policy = ctx.policy
    found = [(f"key {name}", Path(key.source)) for name, key in policy.keys.items() if key.source]
    if policy.trust_config is not None:
        found.append(("trust_config", policy.trust_config))
    for tsa in getattr(policy, "timestamp_authorities", ()):
        found.extend((f"timestamp authority {tsa.name} certificate", p) for p in tsa.files)
    for stage in policy.stages.values():  # an evidence signer's key is a trust root too
        found.extend((f"stages.{stage.name}.evidence {ev.name} key", ev.key) for ev in stage.evidence if ev.key)
    return found


def check_head(ctx: VerifyContext) -> None:
    """Findings for a missing, forged, expired, stale or mismatching chain head (no-op without ``head:``)."""
    policy, bundle, chain, report, now = ctx.policy, ctx.bundle, ctx.chain, ctx.report, ctx.now
    rule = policy.head
    if rule is None:
        return
    if not bundle.exists(HEAD_FILE):
        if rule.required:
            report.add("HEAD_MISSING", f"the policy requires a signed chain head and the bundle has no {HEAD_FILE}",
                       hint="sign one with 'mlspec attest head --bundle B --key K' after the last append")
        return
    try:
        data = bundle.read(HEAD_FILE, limit=MAX_HEAD_BYTES, what="chain head")
        doc = parse_json(data, source=HEAD_FILE)
        envelope = Envelope.from_dict(doc)
        if len(doc["signatures"]) != len(envelope.signatures):
            raise ValueError("the same signature appears twice")
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise ValueError(f"payloadType is not {IN_TOTO_PAYLOAD_TYPE}")
    except (InputError, ValueError) as exc:
        report.add("HEAD_INVALID", f"{HEAD_FILE}: unreadable chain head: {exc}", file=HEAD_FILE)
        return
    if data != envelope.to_json():  # layout only: the strict parse refused anything two readers could read apart
        report.add("ENVELOPE_NOT_CANONICAL", f"{HEAD_FILE}: valid envelope in another layout than mlspec writes; "
                   "its signed content is what was checked", severity=WARNING, file=HEAD_FILE)
    # A revoked key's head signature never counts: the head's 'issued' is the signer's own word.
    revoked = {r.keyid for r in policy.revoked}
    verified, lies = envelope.check_signatures([policy.keys[n] for n in rule.signers])
    by_revoked = verified & revoked
    verified -= revoked
    if lies or len(verified) < rule.threshold:
        report.add("HEAD_SIGNATURE_INVALID", f"{HEAD_FILE}: {len(verified)} valid signature(s) by the head signers "
                   f"({', '.join(rule.signers)}), policy needs {rule.threshold}"
                   + (f" ({lies[0]})" if lies else "")
                   + (f"; signatures by revoked keys ({', '.join(policy.key_name(k) for k in sorted(by_revoked))}) "
                      "do not count" if by_revoked else ""), file=HEAD_FILE)
        return
    try:
        head = parse_head_payload(envelope.payload)
    except (InputError, ValueError) as exc:
        report.add("HEAD_INVALID", f"{HEAD_FILE}: {exc}", file=HEAD_FILE)
        return
    if head.issued > now + policy.clock_skew:
        report.add("TIME_IN_FUTURE", f"the signed chain head claims to be issued at {_fmt(head.issued)}, later than "
                   f"now plus the policy's clock_skew ({policy.clock_skew})", file=HEAD_FILE)
    if now >= head.expires:
        report.add("HEAD_EXPIRED", f"the signed chain head expired at {_fmt(head.expires)}; an expired head cannot "
                   "prove the chain is current (an older chain may be replayed)", file=HEAD_FILE,
                   hint="re-sign it with 'mlspec attest head' (do so on a schedule, before it expires)")
    if rule.max_validity is not None and head.expires - head.issued > rule.max_validity:
        report.add("HEAD_INVALID", f"the chain head is valid for {head.expires - head.issued}, longer than the "
                   f"policy's max_validity {rule.max_validity}", file=HEAD_FILE)
    if not chain:
        return
    genesis = chain[0].payload_sha256 if chain[0].sequence == 0 else None
    if genesis is not None and head.genesis != genesis:
        report.add("HEAD_MISMATCH", "the signed chain head belongs to another chain (its genesis differs)",
                   file=HEAD_FILE, sequence=head.sequence)
        return
    last = chain[-1]
    if head.sequence > last.sequence:
        report.add("CHAIN_ROLLBACK", f"the signed chain head names sequence {head.sequence} but the bundle ends at "
                   f"sequence {last.sequence}: newer attestations were removed, or an older chain is presented",
                   sequence=head.sequence, file=HEAD_FILE)
        return
    if head.sequence < last.sequence:
        report.add("HEAD_BEHIND", f"attestations after sequence {head.sequence} are not covered by the signed chain "
                   f"head (the bundle ends at {last.sequence})", sequence=last.sequence, file=HEAD_FILE,
                   hint="re-sign the head with 'mlspec attest head' after every append")
    at = next((e for e in chain if e.sequence == head.sequence), None)
    if at is None or at.payload_sha256 != head.payload_sha256:
        report.add("HEAD_MISMATCH", f"sequence {head.sequence} in the bundle is not the attestation the signed chain "
                   "head names (the chain was forked or replaced)", sequence=head.sequence, file=HEAD_FILE)
