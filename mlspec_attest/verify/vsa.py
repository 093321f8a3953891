"""SLSA Verification Summary Attestation (https://slsa.dev/spec/v1.0/verification_summary).

A deploy system that trusts this verifier's key can check one small signed
statement ("this package passed policy P at time T, given these attestations")
instead of the whole chain. The predicate follows the SLSA VSA v1 field list;
levels are our own (SLSA allows non-SLSA levels that do not start with
``SLSA_``), documented in docs/audit.md:

* ``MLSPEC_CHAIN_COMPLETE``: every attestation authentic, the chain intact, every
  required stage present in an allowed order (i.e. the policy gate passed);
* ``MLSPEC_OBJECTIVES_MET``: additionally, objectives were evaluated and every
  blocking criterion passed;
* ``MLSPEC_ARTIFACT_BOUND``: additionally, the ``--artifact`` being deployed was
  hashed and is the packaged subject.

A failed verification has ``verifiedLevels: ["FAILED"]``, as the spec asks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlspec_attest._internal import files as safe
from mlspec_attest._version import __version__
from mlspec_attest.bundle import ATTESTATIONS, Bundle
from mlspec_attest.errors import InputError
from mlspec_attest.keys import Signer
from mlspec_attest.model.canonical import canonicalize, sha256_hex
from mlspec_attest.model.envelope import IN_TOTO_PAYLOAD_TYPE, Envelope
from mlspec_attest.model.head import MAX_HEAD_BYTES
from mlspec_attest.model.report import Report

VSA_PREDICATE_TYPE = "https://slsa.dev/verification_summary/v1"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
VERIFIER_ID = "https://mlspec.dev/mlspec-attest"
LEVEL_CHAIN = "MLSPEC_CHAIN_COMPLETE"
LEVEL_OBJECTIVES = "MLSPEC_OBJECTIVES_MET"
LEVEL_ARTIFACT = "MLSPEC_ARTIFACT_BOUND"


def verified_levels(report: Report) -> list[str]:
    """Our levels for a report; ["FAILED"] when the gate failed."""
    if not report.passed:
        return ["FAILED"]
    levels = [LEVEL_CHAIN]
    if report.objectives and all(o.passed for o in report.objectives if o.severity == "block"):
        levels.append(LEVEL_OBJECTIVES)
    if report.artifacts and all(a.get("matched") for a in report.artifacts):
        levels.append(LEVEL_ARTIFACT)
    return levels


def _subjects(report: Report) -> list[dict[str, Any]]:
    """The deployed artifacts (--artifact), else the newest package stage's subjects."""
    if report.artifacts:
        return [{"name": (a.get("matched") or {}).get("name") or Path(a["path"]).name,
                 "digest": {"sha256": a["sha256"]}} for a in report.artifacts]
    packages = [s for s in report.stages if s.stage == "package"]
    if packages:
        out = []
        for s in packages[-1].subjects:
            rd: dict[str, Any] = {"name": s.get("name", ""), "digest": {"sha256": s["digest"]["sha256"]}}
            if s.get("annotations"):
                rd["annotations"] = s["annotations"]
            out.append(rd)
        return out
    if report.stages:  # no package: the summary is about the chain head itself
        head = report.stages[-1]
        return [{"name": f"mlspec:chain-head/{head.file}", "digest": {"sha256": head.payload_sha256}}]
    raise InputError(f"{report.bundle}: no readable attestation; nothing to summarise in a VSA")


def _resource_uri(report: Report, subjects: list[dict[str, Any]]) -> str:
    if report.artifacts:
        return Path(report.artifacts[0]["path"]).resolve().as_uri()
    packages = [s for s in report.stages if s.stage == "package"]
    for s in packages[-1].subjects if packages else ():
        if isinstance(s.get("uri"), str) and s["uri"]:
            return s["uri"]
    return Path(report.bundle).resolve().as_uri()


def _input_attestations(report: Report) -> list[dict[str, Any]]:
    """Every attestation file the verifier read, with the sha256 of its bytes as stored."""
    bundle = Bundle(report.bundle)
    out = []
    for bf in bundle.files():
        out.append({"uri": f"{ATTESTATIONS}/{bf.path.name}", "digest": {"sha256": sha256_hex(bf.data)}})
    head = "head.dsse.json"  # the signed chain head, when the bundle has one
    if safe.exists(head, root=bundle.root):
        # bounded, no-follow, non-blocking even when the policy has no head rule
        data = safe.read_file(head, root=bundle.root, limit=MAX_HEAD_BYTES, what="chain head")
        out.append({"uri": head, "digest": {"sha256": sha256_hex(data)}})
    return out


def build_vsa_statement(report: Report, *, resource_uri: str | None = None,
                        policy_uri: str | None = None) -> dict[str, Any]:
    """The in-toto Statement v1 carrying a SLSA VSA v1 predicate for this report."""
    subjects = _subjects(report)
    policy_path = report.policy or ""
    predicate: dict[str, Any] = {
        "verifier": {"id": VERIFIER_ID, "version": {"mlspec-attest": __version__}},
        "timeVerified": report.verified_at,
        "resourceUri": resource_uri or _resource_uri(report, subjects),
        "policy": {"uri": policy_uri or (Path(policy_path).resolve().as_uri() if policy_path else ""),
                   "digest": {"sha256": report.policy_sha256 or ""}},
        "inputAttestations": _input_attestations(report),
        "verificationResult": "PASSED" if report.passed else "FAILED",
        "verifiedLevels": verified_levels(report),
        "slsaVersion": "1.0",
    }
    statement = {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": VSA_PREDICATE_TYPE,
                 "predicate": predicate}
    from mlspec_attest.model.statement import validate_with_in_toto

    try:
        validate_with_in_toto(statement)
    except ValueError as exc:
        raise InputError(f"VSA statement: {exc}") from None
    return statement


def sign_vsa(statement: dict[str, Any], signer: Signer) -> Envelope:
    """RFC 8785 payload in a DSSE envelope, exactly like every stage attestation."""
    envelope = Envelope(payload_type=IN_TOTO_PAYLOAD_TYPE, payload=canonicalize(statement))
    envelope.sign(signer)
    return envelope


def write_vsa(report: Report, out: Path, signer: Signer, **kwargs: Any) -> Path:
    """Build, sign and atomically write the VSA envelope; returns the path written."""
    envelope = sign_vsa(build_vsa_statement(report, **kwargs), signer)
    out = Path(out)
    return safe.write_file(out.parent, out.name, envelope.to_json(), replace=True, what="VSA")
