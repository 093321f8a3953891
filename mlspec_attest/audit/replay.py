"""Auditor replay: re-derive a bundle's story from the files alone.

An auditor holds a bundle, whatever artifacts still exist, the policy and the
inference log. Replay trusts none of the tool's earlier output: it re-reads every
envelope and statement with the gate's own reader (``verify.signatures.EntryReader``:
strict DSSE, RFC 8785 payloads, signatures, thresholds and revocation under the
policy), orders them with the gate's ``build_chain``, and re-hashes the artifacts it
can find. Its findings are the gate's ``Finding``s with the gate's codes, so the
report can never say "verified" for a signature the gate refuses (KEY_REVOKED).

When a policy is given, the full gate also runs (with the inference log, when at
hand) and its verdict is included; a replay passes only when both agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlspec_attest.bundle import Bundle, BundleFile
from mlspec_attest.digests import MANIFEST_ANNOTATION, ArtifactDigest, digest_path, sha256_file
from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import sha256_hex
from mlspec_attest.model.report import ERROR, Finding, Report
from mlspec_attest.render.terminal import terminal_safe
from mlspec_attest.store import open_bundle
from mlspec_attest.verify.chain import build_chain
from mlspec_attest.verify.context import Entry
from mlspec_attest.verify.signatures import EntryReader

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
ROLE_ANNOTATION = "role"
METADATA_SUBJECT_PREFIX = "mlspec:"  # stages without products attest their metadata, not a file

# Artifact statuses.
MATCH, DIFFERS, ABSENT, NOT_CHECKED = "match", "differs", "absent", "not-checked"
# Per-attestation signature statuses.
SIG_VERIFIED = "verified"
SIG_UNCHECKED_NO_POLICY = "unchecked: no policy"


@dataclass
class ReplayEntry:
    """One attestation file as re-derived from its bytes."""

    file: str
    file_sha256: str
    kind: str
    sequence: int | None = None
    stage: str | None = None
    payload_sha256: str | None = None
    canonical: bool | None = None
    genesis: str | None = None
    previous: str | None = None
    time: str | None = None
    signers: list[str] = field(default_factory=list)
    signature_status: str = SIG_UNCHECKED_NO_POLICY
    subjects: list[dict[str, Any]] = field(default_factory=list)
    materials: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # the gate reader's findings for this file

    @property
    def readable(self) -> bool:
        return self.sequence is not None and self.stage is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "file_sha256": self.file_sha256, "kind": self.kind, "sequence": self.sequence,
            "stage": self.stage, "payload_sha256": self.payload_sha256, "canonical": self.canonical,
            "genesis": self.genesis, "previous": self.previous, "time": self.time, "signers": self.signers,
            "signature_status": self.signature_status,
            "subjects": [_brief(rd) for rd in self.subjects], "materials": [_brief(rd) for rd in self.materials],
            "findings": [f.to_dict() for f in self.findings],
        }

    @property
    def problems(self) -> list[str]:
        """The errors among this file's findings, as one line each (for the text and HTML views)."""
        return [f"[{f.code}] {f.message}" for f in self.findings if f.severity == ERROR]


@dataclass
class ArtifactCheck:
    """One distinct artifact (name + digest) the chain mentions, and what was found on disk."""

    name: str
    sha256: str
    manifest_sha256: str | None
    roles: list[str]
    uses: list[dict[str, Any]]  # {"sequence", "stage", "as": "subject"|"material"}
    status: str = NOT_CHECKED
    found: str | None = None  # path relative to --artifacts
    found_by: str | None = None  # "name" or "digest"
    found_sha256: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "sha256": self.sha256, "manifest_sha256": self.manifest_sha256,
             "roles": self.roles, "uses": self.uses, "status": self.status, "found": self.found,
             "found_by": self.found_by, "found_sha256": self.found_sha256, "note": self.note}
        return {k: v for k, v in d.items() if v is not None}


@dataclass
class ReplayResult:
    bundle: str
    artifacts_dir: str | None
    policy: str | None
    policy_sha256: str | None
    entries: list[ReplayEntry]
    findings: list[Finding]  # the chain rules' findings (build_chain), in the gate's vocabulary
    artifacts: list[ArtifactCheck]
    lineage: dict[str, Any]
    verify_report: Any = None  # report_model.Report when a policy was given
    # Where a branched chain came from (BUNDLE/branch.json, unsigned provenance) and whether it fits this chain.
    branch: dict[str, Any] | None = None

    @property
    def chain_ok(self) -> bool:
        """The structure re-derived here holds (signatures counted only when a policy was given)."""
        chain_errors = any(f.severity == ERROR for f in self.findings)
        return not chain_errors and all(not e.problems for e in self.entries) and bool(self.entries)

    @property
    def signatures_checked(self) -> bool:
        return self.policy is not None

    @property
    def artifacts_ok(self) -> bool:
        return not any(a.status == DIFFERS for a in self.artifacts)

    @property
    def verdict(self) -> str:
        """pass / fail / incomplete (structure sound, but no policy to check signatures against)."""
        if not self.chain_ok or not self.artifacts_ok:
            return "fail"
        if self.verify_report is not None and not self.verify_report.passed:
            return "fail"
        return "pass" if self.signatures_checked else "incomplete"

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict == "pass" else 1

    def counts(self) -> dict[str, int]:
        out = {MATCH: 0, DIFFERS: 0, ABSENT: 0, NOT_CHECKED: 0}
        for a in self.artifacts:
            out[a.status] += 1
        return out

    def timeline(self) -> list[ReplayEntry]:
        return sorted((e for e in self.entries if e.readable), key=lambda e: (e.sequence, e.file))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "https://mlspec.dev/replay-output/v1",
            "verdict": self.verdict,
            "chain_ok": self.chain_ok,
            "signatures_checked": self.signatures_checked,
            "artifacts_ok": self.artifacts_ok,
            "bundle": self.bundle,
            "artifacts_dir": self.artifacts_dir,
            "policy": self.policy,
            "policy_sha256": self.policy_sha256,
            "timeline": [e.to_dict() for e in self.timeline()],
            "unreadable": [e.to_dict() for e in self.entries if not e.readable],
            "findings": [f.to_dict() for f in self.findings],
            "artifacts": [a.to_dict() for a in self.artifacts],
            "artifact_counts": self.counts(),
            "lineage": self.lineage,
            "verify": self.verify_report.to_dict() if self.verify_report is not None else None,
            "branch": self.branch,
        }


def _brief(rd: dict[str, Any]) -> dict[str, Any]:
    out = {"name": rd.get("name"), "sha256": rd["digest"]["sha256"]}
    role = _role(rd)
    if role:
        out["role"] = role
    return out


def _role(rd: dict[str, Any]) -> str | None:
    ann = rd.get("annotations")
    role = ann.get(ROLE_ANNOTATION) if isinstance(ann, dict) else None
    return role if isinstance(role, str) else None


def _manifest(rd: dict[str, Any]) -> str | None:
    ann = rd.get("annotations")
    value = ann.get(MANIFEST_ANNOTATION) if isinstance(ann, dict) else None
    return value if isinstance(value, str) else None


def _is_rd(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("name", ""), str)
            and isinstance(value.get("digest"), dict) and isinstance(value["digest"].get("sha256"), str)
            and len(value["digest"]["sha256"]) == 64)


# -- reading attestations (the gate's reader and chain builder) -------------------------------
def _replay_entry(bf: BundleFile, entry: Entry | None, findings: list[Finding], checked: bool,
                  bundle: Bundle | None = None) -> ReplayEntry:
    """The auditor's view of one file: what the gate's reader made of it, and its findings."""
    out = ReplayEntry(file=bf.path.name, file_sha256=sha256_hex(bf.data), kind=bf.kind, findings=findings)
    if entry is None:
        return out
    st = entry.statement
    out.sequence, out.stage, out.payload_sha256 = entry.sequence, entry.stage, entry.payload_sha256
    out.canonical = not any(f.code == "ENVELOPE_NOT_CANONICAL" for f in findings)
    out.genesis, out.previous, out.time = st.chain.genesis, st.chain.previous, entry.time
    out.subjects, out.materials, out.signers = list(st.subjects), list(st.materials), list(entry.signers)
    findings.extend(_metadata_source_findings(bf, entry, bundle))
    if not checked:
        out.signature_status = SIG_UNCHECKED_NO_POLICY
    elif entry.authentic:
        out.signature_status = SIG_VERIFIED
    else:
        codes = [f.code for f in findings if f.code in SIGNATURE_CODES]
        out.signature_status = ", ".join(dict.fromkeys(codes)) or "not authentic"
    return out


def _metadata_source_findings(bf: BundleFile, entry: Entry, bundle: Bundle | None = None) -> list[Finding]:
    """Metadata read from a product file must still say what the file (kept in blobs/) says, as the gate checks."""
    from mlspec_attest.model.metadata import bound_source_problems
    from mlspec_attest.verify.context import read_blob

    sources = entry.statement.raw.get("predicate", {}).get("metadataSources")
    if sources is None:
        return []
    source = bundle or Bundle(bf.path.parent.parent)
    invalid, differ = bound_source_problems(entry.statement.metadata, entry.statement.subjects, sources,
                                            lambda digest: read_blob(source, digest, "metadata source"))
    where = f"sequence {entry.sequence} ({entry.stage})"
    return ([Finding("METADATA_SOURCE_INVALID", ERROR, f"{where}: {reason}", stage=entry.stage,
                     sequence=entry.sequence, file=bf.path.name) for reason in invalid]
            + [Finding("METADATA_CONTRADICTS_PRODUCT", ERROR, f"{where}: signed metadata at {text}, the attested "
                       "product it was read from", stage=entry.stage, sequence=entry.sequence, file=bf.path.name)
               for text in differ])


SIGNATURE_CODES = frozenset({"SIGNATURE_INVALID", "SIGNATURE_TAMPERED", "KEY_REVOKED", "SIGNER_NOT_ALLOWED",
                             "THRESHOLD_NOT_MET", "STAGE_NOT_ALLOWED", "SIGSTORE_UNTRUSTED", "STAGE_MISMATCH"})
"""The reader's codes that mean "this file's signatures do not satisfy the policy"."""


def _read_bundle(files: list[BundleFile], policy: Any, bundle: Bundle | None = None
                 ) -> tuple[list[ReplayEntry], list[Finding]]:
    """Every file through the gate's reader (one findings list per file), then the gate's chain rules."""
    reader = EntryReader(policy)
    entries: list[Entry] = []
    read: list[tuple[BundleFile, Entry | None, Report]] = []
    for bf in files:
        scratch = Report(bundle="", policy=None, policy_sha256=None)
        entry = reader.read(bf, scratch)
        if entry is not None:
            entries.append(entry)
        read.append((bf, entry, scratch))
    if policy is not None and files and any(e.pending_revocations for e in entries):
        # The gate's revocation rule (trusted time only) decides here too, so replay never says
        # "verified" for a revoked key's signature the gate refuses.
        from datetime import datetime, timezone

        from mlspec_attest.verify.context import VerifyContext
        from mlspec_attest.verify.revocation import check_revocations

        revoked = Report(bundle="", policy=None, policy_sha256=None)
        check_revocations(VerifyContext(policy=policy, now=datetime.now(timezone.utc),
                                        bundle=bundle or Bundle(files[0].path.parent.parent), report=revoked, chain=entries))
        by_file = {bf.path.name: scratch for bf, _e, scratch in read}
        for finding in revoked.findings:
            if finding.file in by_file:
                by_file[finding.file].findings.append(finding)
    replayed = [_replay_entry(bf, entry, scratch.findings, policy is not None, bundle)
                for bf, entry, scratch in read]
    chain_report = Report(bundle="", policy=None, policy_sha256=None)
    build_chain(entries, chain_report, **({"skew": policy.clock_skew} if policy is not None else {}))
    return replayed, chain_report.findings


# -- artifacts ----------------------------------------------------------------------------
def _collect_artifacts(timeline: list[ReplayEntry]) -> list[ArtifactCheck]:
    found: dict[tuple[str, str], ArtifactCheck] = {}
    for e in timeline:
        for relation, rds in (("material", e.materials), ("subject", e.subjects)):
            for rd in rds:
                name = rd.get("name", "")
                if name.startswith(METADATA_SUBJECT_PREFIX):
                    continue
                key = (name, rd["digest"]["sha256"])
                check = found.get(key)
                if check is None:
                    check = found[key] = ArtifactCheck(name=name, sha256=key[1], manifest_sha256=_manifest(rd),
                                                       roles=[], uses=[])
                role = _role(rd)
                if role and role not in check.roles:
                    check.roles.append(role)
                check.uses.append({"sequence": e.sequence, "stage": e.stage, "as": relation})
    return list(found.values())


def _resolves_inside(p: Path, real_root: Path) -> bool:
    """Whether ``p`` resolves below ``real_root``; a symlink loop or unreadable link is not inside."""
    try:
        return p.resolve().is_relative_to(real_root)
    except (RuntimeError, OSError):  # RuntimeError: "Symlink loop" (Python < 3.13)
        return False


class _DigestIndex:
    """sha256 -> relative path of every regular file under the artifacts directory (built lazily)."""

    def __init__(self, root: Path):
        self.root = root
        self._index: dict[str, str] | None = None

    def lookup(self, sha256: str) -> str | None:
        if self._index is None:
            self._index = {}
            real = self.root.resolve()
            for dirpath, _dirs, files in os.walk(self.root, followlinks=False):
                for fname in sorted(files):
                    p = Path(dirpath) / fname
                    if p.is_symlink() and not _resolves_inside(p, real):
                        continue
                    if not p.is_file():
                        continue
                    try:
                        digest, _ = sha256_file(p)
                    except InputError:
                        continue
                    self._index.setdefault(digest, p.relative_to(self.root).as_posix())
        return self._index.get(sha256)


def _check_artifact(check: ArtifactCheck, root: Path, index: _DigestIndex) -> None:
    real_root = root.resolve()
    candidate = root / check.name
    inside = _resolves_inside(candidate, real_root) and not Path(check.name).is_absolute()
    if not inside:
        check.note = "name points outside the artifacts directory; looked up by digest only"
    elif candidate.exists():
        try:
            digest: ArtifactDigest | None = digest_path(candidate)
        except InputError as exc:
            digest, check.note = None, str(exc)
        check.found, check.found_by = check.name, "name"
        if digest is not None:
            check.found_sha256 = digest.sha256
            same = digest.sha256 == check.sha256 and (
                check.manifest_sha256 is None or digest.manifest_sha256 == check.manifest_sha256)
            check.status = MATCH if same else DIFFERS
            if digest.sha256 == check.sha256 and not same:
                check.note = "same file contents, but the file names differ from the signed manifest"
        else:
            check.status = DIFFERS
        if check.status == DIFFERS:
            elsewhere = index.lookup(check.sha256)
            if elsewhere:
                check.note = f"the attested bytes exist at {elsewhere}, but {check.name} was changed"
        return
    other = index.lookup(check.sha256)
    if other is not None:
        check.status, check.found, check.found_by, check.found_sha256 = MATCH, other, "digest", check.sha256
    else:
        check.status = ABSENT


# -- lineage -------------------------------------------------------------------------------
def build_lineage(timeline: list[ReplayEntry], artifacts: list[ArtifactCheck]) -> dict[str, Any]:
    """Nodes (stages, artifacts by digest) and edges: artifact -> stage (material), stage -> artifact (subject).

    Artifacts are keyed by digest, as the verifier's flow checks are, so a file
    renamed between stages stays one node. ``served`` names the artifact nodes
    that reach production (serve's materials, else the newest package's subjects);
    ``path`` traces them back to the data they came from.
    """
    status = {a.sha256: a.status for a in artifacts}
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, str]] = []
    producers: dict[str, list[str]] = {}
    for e in timeline:
        sid = f"stage:{e.sequence}"
        nodes[sid] = {"id": sid, "kind": "stage", "stage": e.stage, "sequence": e.sequence,
                      "signers": e.signers, "time": e.time}
        for relation, rds in (("material", e.materials), ("subject", e.subjects)):
            for rd in rds:
                name = rd.get("name", "")
                if name.startswith(METADATA_SUBJECT_PREFIX):
                    continue
                digest = rd["digest"]["sha256"]
                aid = f"artifact:{digest}"
                node = nodes.setdefault(aid, {"id": aid, "kind": "artifact", "name": name, "names": [],
                                              "sha256": digest, "roles": [], "status": status.get(digest, NOT_CHECKED)})
                if name not in node["names"]:
                    node["names"].append(name)
                role = _role(rd)
                if role and role not in node["roles"]:
                    node["roles"].append(role)
                edge = {"from": aid, "to": sid, "as": "material"} if relation == "material" else \
                    {"from": sid, "to": aid, "as": "subject"}
                if edge not in edges:
                    edges.append(edge)
                if relation == "subject":
                    producers.setdefault(aid, []).append(sid)
    for aid, node in nodes.items():
        if node["kind"] == "artifact":
            node["external"] = aid not in producers
    served: list[str] = []
    serve = [e for e in timeline if e.stage == "serve"]
    package = [e for e in timeline if e.stage == "package"]
    if serve:
        served = [f"artifact:{m['digest']['sha256']}" for m in serve[-1].materials]
    if not served and package:
        served = [f"artifact:{s['digest']['sha256']}" for s in package[-1].subjects]
    served = [s for s in served if s in nodes]
    return {"nodes": list(nodes.values()), "edges": edges, "served": served,
            "path": _trace(served, nodes, edges)}


def _trace(targets: list[str], nodes: dict[str, dict[str, Any]], edges: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Walk back from the served artifacts to source data: artifact <- producing stage <- its materials."""
    produced_by: dict[str, list[str]] = {}
    consumes: dict[str, list[str]] = {}
    for edge in edges:
        if edge["as"] == "subject":
            produced_by.setdefault(edge["to"], []).append(edge["from"])
        else:
            consumes.setdefault(edge["to"], []).append(edge["from"])

    def seq(node_id: str) -> int:
        return int(nodes[node_id]["sequence"])

    def walk(aid: str, before: int | None, seen: frozenset[str]) -> dict[str, Any]:
        node = nodes[aid]
        out: dict[str, Any] = {"artifact": aid, "name": node["name"], "sha256": node["sha256"],
                               "status": node["status"]}
        stages = [s for s in produced_by.get(aid, []) if before is None or seq(s) < before]
        if not stages or aid in seen:
            return out
        stage_id = max(stages, key=seq)
        out["produced_by"] = {"stage": nodes[stage_id]["stage"], "sequence": seq(stage_id),
                              "from": [walk(m, seq(stage_id), seen | {aid})
                                       for m in consumes.get(stage_id, []) if m != aid]}
        return out

    return [walk(t, None, frozenset()) for t in targets]


# -- entry point -----------------------------------------------------------------------------
def replay(bundle: str | os.PathLike[str], artifacts_dir: str | os.PathLike[str] | None = None,
           policy: Any = None, *, log_dir: str | os.PathLike[str] | None = None,
           releases: str | os.PathLike[str] | None = None) -> ReplayResult:
    """Re-derive the chain, signatures, artifact matches and lineage of a bundle from files.

    ``policy`` is a Policy or a path to one; without it signatures are reported
    as unchecked and the verdict is "incomplete", never "pass". ``log_dir`` is the
    inference log the bundle's log attestations seal; the gate checks it. ``releases``
    is the release history the package's declared predecessor is verified in.
    """
    from mlspec_attest.policy import Policy

    policy_obj = None
    if policy is not None:
        policy_obj = policy if isinstance(policy, Policy) else Policy.from_file(policy)
    b = open_bundle(bundle)
    files = b.files()  # InputError when the bundle does not exist
    entries, chain_findings = _read_bundle(files, policy_obj, b)
    timeline = sorted((e for e in entries if e.readable), key=lambda e: (e.sequence, e.file))
    artifacts = _collect_artifacts(timeline)
    root = None
    if artifacts_dir is not None:
        root = Path(artifacts_dir)
        if not root.is_dir():
            raise InputError(f"{root}: artifacts directory not found")
        index = _DigestIndex(root)
        for check in artifacts:
            _check_artifact(check, root, index)
    lineage = build_lineage(timeline, artifacts)
    report = None
    if policy_obj is not None:
        from mlspec_attest.verify import Verifier

        report = Verifier(policy_obj, releases=releases).verify(bundle, log_dir=log_dir)
    return ReplayResult(bundle=os.fspath(bundle), artifacts_dir=os.fspath(root) if root else None,
                        policy=str(policy_obj.source) if policy_obj else None,
                        policy_sha256=policy_obj.digest if policy_obj else None, entries=entries,
                        findings=chain_findings, artifacts=artifacts, lineage=lineage,
                        verify_report=report, branch=_branch_provenance(bundle, timeline))


def _branch_provenance(bundle: str | os.PathLike[str], timeline: list[ReplayEntry]) -> dict[str, Any] | None:
    """The bundle's branch note (``mlspec run branch``), checked against the chain it sits beside.

    The note is unsigned: it tells an auditor where to look (the source chain), and
    ``matches`` says whether its genesis and branch point are this chain's. The gate
    never reads it; the signed chain is what was judged.
    """
    from mlspec_attest.branch import read_branch_note

    try:
        note = read_branch_note(bundle)
    except InputError as exc:
        return {"error": str(exc), "matches": False}
    if note is None:
        return None
    by_seq = {e.sequence: e.payload_sha256 for e in timeline}
    matches = by_seq.get(0) == note.genesis and by_seq.get(note.from_sequence) == note.prefix_payload_sha256
    return {**note.to_dict(), "matches": matches}


# -- text ----------------------------------------------------------------------------------------
def render_replay_text(result: ReplayResult) -> str:
    """The auditor's view: timeline, artifact matches, lineage, verdict."""
    lines = [f"mlspec replay {result.bundle}",
             f"policy {result.policy or '(none: signatures unchecked; the verdict needs a policy)'}"
             + (f" (sha256 {result.policy_sha256[:16]})" if result.policy_sha256 else ""),
             f"artifacts {result.artifacts_dir or '(not given: artifacts not checked)'}", "", "Timeline"]
    for e in result.timeline():
        mark = "✓" if not e.problems else "✗"
        subjects = ", ".join(f"{s.get('name')} ({s['digest']['sha256'][:12]})" for s in e.subjects) or "-"
        materials = ", ".join(f"{m.get('name')} ({m['digest']['sha256'][:12]})" for m in e.materials) or "-"
        lines.append(f"  {mark} {e.sequence:>4} {e.stage:<10} {', '.join(e.signers) or e.signature_status:<16} "
                     f"{e.time or '':<20}")
        lines.append(f"         in:  {materials}")
        lines.append(f"         out: {subjects}")
        for p in e.problems:
            lines.append(f"         ✗ {p}")
    for e in result.entries:
        if not e.readable:
            lines.append(f"  ✗ {e.file}: {'; '.join(e.problems)}")
    if result.branch is not None:
        lines += ["", "Branch (BUNDLE/branch.json: unsigned provenance, not judged by the gate)"]
        b = result.branch
        if "error" in b:
            lines.append(f"  ✗ {b['error']}")
        else:
            lines.append(f"  {'✓' if b['matches'] else '✗'} branched at sequence {b['fromSequence']} from "
                         f"{b['source']} (which then ended at sequence {b['sourceSequence']}, payload sha256 "
                         f"{b['sourcePayloadSha256'][:16]}) on {b['branchedAt']}"
                         + ("" if b["matches"] else "; the note does not match this chain's genesis and "
                            "branch point"))
    if result.findings:
        lines += ["", "Chain"]
        lines += [f"  {'✗' if f.severity == ERROR else '!'} [{f.code}] {f.message}" for f in result.findings]
    if result.artifacts:
        lines += ["", "Artifacts"]
        marks = {MATCH: "✓", DIFFERS: "✗", ABSENT: "·", NOT_CHECKED: " "}
        for a in result.artifacts:
            where = f" at {a.found} (by {a.found_by})" if a.found and a.status != ABSENT else ""
            lines.append(f"  {marks[a.status]} {a.status:<11} {a.name} sha256 {a.sha256[:16]}{where}")
            if a.status == DIFFERS and a.found_sha256:
                lines.append(f"      signed sha256 {a.sha256}")
                lines.append(f"      found  sha256 {a.found_sha256}")
            if a.note:
                lines.append(f"      note: {a.note}")
    if result.lineage.get("path"):
        lines += ["", "Lineage (served model back to its source data)"]
        for root in result.lineage["path"]:
            _lineage_lines(root, 1, lines)
    if result.verify_report is not None:
        r = result.verify_report
        lines += ["", f"Policy verifier: {r.verdict.upper()} ({sum(1 for f in r.findings if f.severity == 'error')} "
                  "errors)"]
        lines += [f"  [{f.code}] {f.message}" for f in r.findings]
    c = result.counts()
    lines += ["", f"Artifacts: {c[MATCH]} match, {c[DIFFERS]} differ, {c[ABSENT]} absent, "
              f"{c[NOT_CHECKED]} not checked",
              f"Verdict: {result.verdict.upper()}"
              + (" (chain structure sound; pass --policy to check signatures)" if result.verdict == "incomplete" else "")]
    # Each element is one line of our layout; anything inside it came from files: a newline or ESC there is shown.
    return "\n".join(terminal_safe(line) for line in lines)


def _lineage_lines(node: dict[str, Any], depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    lines.append(f"{pad}{node['name']} (sha256 {node['sha256'][:12]}, {node['status']})")
    prod = node.get("produced_by")
    if prod:
        lines.append(f"{pad}  <- {prod['stage']} (sequence {prod['sequence']})")
        for child in prod["from"]:
            _lineage_lines(child, depth + 2, lines)
