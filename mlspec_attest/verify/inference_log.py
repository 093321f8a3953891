"""The inference log inside the gate: sealed log attestations are checked against the log itself.

A ``log`` attestation written by the log writer signs a tree head (size, root) of the
inference log. Its signature says nothing about the records unless someone recomputes
that root from them, so when the chain holds such attestations the gate does: with the
log at hand (``--log DIR`` or mlspec.yaml's ``log:``) it runs the log verification with
the authentic attestations as the only trust anchor; without it, that is a finding
(LOG_MISSING), unless the policy says ``log: {required: false}`` (then LOG_NOT_CHECKED).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mlspec_attest.log.format import SignedHead, is_sealed_log_metadata
from mlspec_attest.model.report import ERROR, INFO, WARNING, Report
from mlspec_attest.policy import Policy
from mlspec_attest.store import open_bundle
from mlspec_attest.verify.chain import build_chain
from mlspec_attest.verify.context import Entry, VerifyContext
from mlspec_attest.verify.lineage import package_model_identifier
from mlspec_attest.verify.signatures import EntryReader

if TYPE_CHECKING:  # the log verifier is loaded only when there is a log to check
    from mlspec_attest.log.verification import LogReport


def served_pipelines(chain: list[Entry]) -> set[str]:
    """Payload digests of the chain's authentic serve attestations: the only pipelines a log may seal."""
    return {e.payload_sha256 for e in chain if e.stage == "serve" and e.authentic}


def signed_heads(chain: list[Entry]) -> list[SignedHead]:
    """The tree heads the chain's authentic log attestations sign (unauthentic ones are gate findings),
    each marked with whether its pipeline is one of the chain's authentic serve attestations."""
    served = served_pipelines(chain)
    return [SignedHead(attestation=e.payload_sha256, metadata=e.statement.metadata, sequence=e.sequence,
                       served=e.statement.metadata.get("pipeline") in served)
            for e in chain if e.stage == "log" and e.authentic and is_sealed_log_metadata(e.statement.metadata)]


def report_unserved(heads: list[SignedHead], report: Report) -> None:
    """LOG_PIPELINE_NOT_SERVED for every signed head of a pipeline the chain never served."""
    for h in heads:
        if h.served is False:
            report.add("LOG_PIPELINE_NOT_SERVED", f"sequence {h.sequence}: the log attestation seals a log of"
                       f" pipeline {str(h.metadata.get('pipeline'))[:64]}, which is no authentic serve"
                       " attestation of this chain: it logs another deployment", stage="log", sequence=h.sequence)


def unauthentic_log_attestations(chain: list[Entry]) -> list[Entry]:
    return [e for e in chain if e.stage == "log" and not e.authentic and is_sealed_log_metadata(e.statement.metadata)]


def read_signed_heads(bundle: str | Path, policy: Policy) -> tuple[list[SignedHead], Report]:
    """Signed heads of a bundle read with the gate's own reader (signatures, revocation, chain).

    Returns the heads and the reader's findings (for ``mlspec log verify --bundle``)."""
    report = Report(bundle=str(bundle), policy=str(policy.source), policy_sha256=policy.digest)
    reader = EntryReader(policy)
    entries = [e for bf in open_bundle(bundle).files() if (e := reader.read(bf, report)) is not None]
    chain = build_chain(entries, report, skew=policy.clock_skew)
    for e in unauthentic_log_attestations(chain):
        report.add("LOG_ATTESTATION_UNTRUSTED", f"sequence {e.sequence}: log attestation {e.file.path.name} is not"
                   " signed as the policy requires: its tree head is not a trust anchor", stage="log",
                   sequence=e.sequence, file=e.file.path.name)
    heads = signed_heads(chain)
    report_unserved(heads, report)
    return heads, report


def check_inference_log(ctx: VerifyContext) -> None:
    """Every sealed log attestation in the chain must be matched by the log's records."""
    heads = signed_heads(ctx.chain)
    report = ctx.report
    if not heads:
        if ctx.log_dir is not None and Path(ctx.log_dir).is_dir():
            result = _add_log_findings(ctx, Path(ctx.log_dir), heads)  # seals naming attestations the chain lacks
            _check_unanchored_records(ctx, Path(ctx.log_dir), result)
        return
    _check_served_pipeline(ctx, heads)
    if ctx.log_dir is None:
        what = f"{len(heads)} sealed log attestation(s) sign inference-log tree heads, but no log was given"
        if ctx.policy.log_required:
            report.add("LOG_MISSING", f"{what}: the signed roots were not checked against any record", stage="log",
                       sequence=heads[-1].sequence,
                       hint="pass --log DIR or name it in mlspec.yaml (log: DIR); the policy can say"
                            " log: {required: false}")
        else:
            report.add("LOG_NOT_CHECKED", f"{what} (the policy does not require it)", severity=WARNING, stage="log",
                       sequence=heads[-1].sequence)
        return
    log_dir = Path(ctx.log_dir)
    if not log_dir.is_dir():
        report.add("LOG_MISSING", f"{log_dir}: the inference log directory does not exist", stage="log",
                   sequence=heads[-1].sequence, hint="point --log (or mlspec.yaml's log:) at the log directory")
        return
    _add_log_findings(ctx, log_dir, heads)


def _check_unanchored_records(ctx: VerifyContext, log_dir: Path, result: LogReport) -> None:
    """A log at hand holds records, yet no authentic log attestation of the chain seals any of them.

    Either the log was never sealed, or its log attestations (and seals.jsonl) were removed so that
    the records can be rewritten at will: from the bundle and the log alone the two look alike, so
    when the policy requires the log this fails closed. Deliberately independent of the log's own
    header (a rewritten header must not turn the check off); the message only says whether it
    names one of the chain's serve attestations."""
    if not result.records:
        return
    served = served_pipelines(ctx.chain)
    whose = ("this chain's serve attestation" if result.pipeline in served
             else f"pipeline {str(result.pipeline)[:64]}, no authentic serve attestation of this chain")
    what = (f"{log_dir}: the log holds {result.records} record(s) of {whose}, but the chain has no authentic log"
            " attestation sealing any of them: none of them is verified (log attestations removed, or never sealed)")
    if ctx.policy.log_required:
        ctx.report.add("LOG_UNSEALED_RECORDS", what, stage="log",
                       hint="seal the log (mlspec log seal --bundle B --key K) and verify again; a log that is not"
                            " this chain's: point --log elsewhere; or the policy can say log: {required: false}")
    else:
        ctx.report.add("LOG_UNSEALED_RECORDS", what + " (the policy does not require the log)", severity=WARNING,
                       stage="log")


def _add_log_findings(ctx: VerifyContext, log_dir: Path, heads: list[SignedHead]) -> LogReport:
    """Run the log verification against the signed heads; its errors and warnings become gate findings."""
    from mlspec_attest.log.verification import verify as verify_log

    result = verify_log(log_dir, heads=heads, model_id=package_model_identifier(ctx.chain))
    last = heads[-1].sequence if heads else None
    sequence_of_seal = {h.seal: h.sequence for h in heads if h.seal is not None}
    for f in result.findings:
        if f.severity == INFO:
            continue
        by_seal = sequence_of_seal.get(f.seal) if f.seal is not None else None
        sequence = f.sequence if f.sequence is not None else (by_seal if by_seal is not None else last)
        ctx.report.findings.append(replace(f, stage="log", sequence=sequence, file=f.file or str(log_dir)))
    if result.ok:
        return result
    errors = sum(1 for f in result.findings if f.severity == ERROR)
    ctx.report.add("LOG_VERIFICATION_FAILED", f"{log_dir}: {errors} error(s) in the inference log against its"
                   " signed log attestations (see the LOG_ findings)", stage="log", sequence=last,
                   hint=f"mlspec log verify --log {log_dir} --bundle BUNDLE shows and locates them")
    return result


def _check_served_pipeline(ctx: VerifyContext, heads: list[SignedHead]) -> None:
    """A log seals the inferences of one serve attestation of this chain (its ``pipeline`` digest)."""
    report_unserved(heads, ctx.report)
