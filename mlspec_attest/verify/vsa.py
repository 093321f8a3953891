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

A ``--phase deploy`` verification (stages up to package; model/stages.py) never
claims those levels: it gets ``MLSPEC_DEPLOY_CHAIN_COMPLETE``,
``MLSPEC_DEPLOY_OBJECTIVES_MET`` and ``MLSPEC_DEPLOY_ARTIFACT_BOUND`` instead, so a
pre-serve VSA cannot be passed off as a full one to a consumer that asks for the full
levels (``slsa-verifier verify-vsa --verified-level MLSPEC_CHAIN_COMPLETE``). The phase
is in the levels, not the policy descriptor: VSA v1's policy has only uri and digest
(the in-toto protobuf binding refuses anything else).

What a consumer matches on does not depend on the verdict or the verifying host:
the subject is named as the package stage named it, pass or fail, and the default
``resourceUri`` is a stable name for the package (``mlspec:package/<name>``), not
a ``file://`` path of the machine that ran the gate, so slsa-verifier's
``verify-vsa --resource-uri`` can be written once in a deploy pipeline
(docs/audit.md gives the exact command line; tests/unit/audit/test_vsa_slsa_verifier.py
encodes the checks slsa-verifier makes).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mlspec_attest._internal import files as safe
from mlspec_attest._version import __version__
from mlspec_attest.bundle import ATTESTATIONS
from mlspec_attest.errors import InputError
from mlspec_attest.keys import Signer
from mlspec_attest.model.canonical import canonicalize, sha256_hex
from mlspec_attest.model.envelope import IN_TOTO_PAYLOAD_TYPE, Envelope
from mlspec_attest.model.head import MAX_HEAD_BYTES
from mlspec_attest.model.report import Report
from mlspec_attest.store import open_bundle

VSA_PREDICATE_TYPE = "https://slsa.dev/verification_summary/v1"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
VERIFIER_ID = "https://mlspec.dev/mlspec-attest"
LEVEL_CHAIN = "MLSPEC_CHAIN_COMPLETE"
LEVEL_OBJECTIVES = "MLSPEC_OBJECTIVES_MET"
LEVEL_ARTIFACT = "MLSPEC_ARTIFACT_BOUND"
# The same three, for a deploy-phase verification (later stages not yet required): distinct names on purpose.
DEPLOY_LEVELS = {LEVEL_CHAIN: "MLSPEC_DEPLOY_CHAIN_COMPLETE", LEVEL_OBJECTIVES: "MLSPEC_DEPLOY_OBJECTIVES_MET",
                 LEVEL_ARTIFACT: "MLSPEC_DEPLOY_ARTIFACT_BOUND"}
RESOURCE_PACKAGE = "mlspec:package/"
RESOURCE_CHAIN = "mlspec:chain/"
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")


def verified_levels(report: Report) -> list[str]:
    """Our levels for a report; ["FAILED"] when the gate failed."""
    if not report.passed:
        return ["FAILED"]
    levels = [LEVEL_CHAIN]
    if report.objectives and all(o.passed for o in report.objectives if o.severity == "block"):
        levels.append(LEVEL_OBJECTIVES)
    if report.artifacts and all(a.get("matched") for a in report.artifacts):
        levels.append(LEVEL_ARTIFACT)
    if report.phase != "full":
        levels = [DEPLOY_LEVELS[level] for level in levels]
    return levels


def _package_subjects(report: Report) -> list[dict[str, Any]]:
    packages = [s for s in report.stages if s.stage == "package"]
    return list(packages[-1].subjects) if packages else []


def _artifact_name(artifact: dict[str, Any], packaged: list[dict[str, Any]]) -> str:
    """The package stage's name for a deployed artifact, the same whether it matched or not.

    A matched artifact takes its subject's name; an unmatched one (the failing VSA) takes
    the name of the one packaged subject, or of the subject with the same base name, so the
    subject a consumer looks up does not change with the verdict.
    """
    matched = (artifact.get("matched") or {}).get("name")
    if matched:
        return str(matched)
    base = Path(artifact["path"]).name
    names = [str(s.get("name", "")) for s in packaged if s.get("name")]
    if len(names) == 1:
        return names[0]
    return next((n for n in names if Path(n).name == base), base)


def _subjects(report: Report) -> list[dict[str, Any]]:
    """The deployed artifacts (--artifact), else the newest package stage's subjects."""
    packaged = _package_subjects(report)
    if report.artifacts:
        return [{"name": _artifact_name(a, packaged), "digest": {"sha256": a["sha256"]}} for a in report.artifacts]
    if packaged:
        out = []
        for s in packaged:
            rd: dict[str, Any] = {"name": s.get("name", ""), "digest": {"sha256": s["digest"]["sha256"]}}
            if s.get("annotations"):
                rd["annotations"] = s["annotations"]
            out.append(rd)
        return out
    if report.stages:  # no package: the summary is about the chain head itself
        head = report.stages[-1]
        return [{"name": f"mlspec:chain-head/{head.file}", "digest": {"sha256": head.payload_sha256}}]
    raise InputError(f"{report.bundle}: no readable attestation; nothing to summarise in a VSA")


def default_resource_uri(report: Report) -> str:
    """A name for what was verified that is the same on every host and for either verdict.

    The package subject's own ``uri`` when the package stage recorded one; else
    ``mlspec:package/<package name>`` (the package metadata's ``name``, else its subject's
    name); without a package stage ``mlspec:chain/<sha256 of the genesis payload>``.
    """
    packages = [s for s in report.stages if s.stage == "package"]
    if packages:
        pkg = packages[-1]
        for s in pkg.subjects:
            if isinstance(s.get("uri"), str) and s["uri"]:
                return str(s["uri"])
        name = pkg.metadata.get("name") if isinstance(pkg.metadata, dict) else None
        if not isinstance(name, str) or not name:
            name = next((str(s.get("name")) for s in pkg.subjects if s.get("name")), "package")
        return RESOURCE_PACKAGE + quote(name, safe="/-._~@+")
    genesis = next((s for s in report.stages if s.sequence == 0), report.stages[0] if report.stages else None)
    if genesis is None:
        raise InputError(f"{report.bundle}: no readable attestation; nothing to summarise in a VSA")
    return RESOURCE_CHAIN + genesis.payload_sha256


def check_resource_uri(value: str) -> str:
    """A --resource-uri must be a URI (scheme:rest, no whitespace): consumers compare it byte for byte."""
    if not _URI.fullmatch(value):
        raise InputError(f"--resource-uri {value!r}: not a URI (give scheme:rest, e.g. "
                         "oci://registry/repo@sha256:..., pkg:..., mlspec:package/NAME)")
    return value


def _input_attestations(report: Report) -> list[dict[str, Any]]:
    """Every attestation file the verifier read, with the sha256 of its bytes as stored."""
    bundle = open_bundle(report.bundle)
    out = []
    for bf in bundle.files():
        out.append({"uri": f"{ATTESTATIONS}/{bf.path.name}", "digest": {"sha256": sha256_hex(bf.data)}})
    head = "head.dsse.json"  # the signed chain head, when the bundle has one
    if bundle.exists(head):
        # bounded, no-follow, non-blocking even when the policy has no head rule
        data = bundle.read(head, limit=MAX_HEAD_BYTES, what="chain head")
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
        "resourceUri": check_resource_uri(resource_uri) if resource_uri else default_resource_uri(report),
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
