"""``mlspec run branch``: start a new chain from a verified prefix of an existing one.

A re-run after a fix (say to packaging) cannot append a second ``package`` to the
old chain (STAGE_ORDER, STAGE_REPEATED), and re-signing the objectives for every
run would give up the genesis that pins them. A branch copies attestations 0..N of
a chain byte for byte into a new bundle: same genesis, same links, same signatures,
so the objectives signed before training still start the new run, and the next
``mlspec attest stage`` appends sequence N+1.

Who could abuse it, and why they gain nothing:

* someone holding a forged or tampered chain: the prefix is verified under the
  policy first (signatures, thresholds, revocations, links, the source's signed
  head) and any error at or before N refuses the branch (exit 1, nothing written);
* someone branching a prefix and presenting it as the full run: the gate judges
  the new chain on its own merits, so missing required stages fail as in any
  chain (STAGE_MISSING), and the signed head (when written) names sequence N;
* someone editing the branch note: it is provenance for people (replay and report
  show it), never trusted by the gate, which checks only the signed chain.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mlspec_attest._internal import files as safe
from mlspec_attest.bundle import (
    ATTESTATIONS,
    BLOBS,
    EVIDENCE,
    MAX_INPUT_BYTES,
    Bundle,
    attestation_file_name,
    extract_payload,
)
from mlspec_attest.errors import InputError, VerificationError
from mlspec_attest.model.canonical import canonicalize, parse_json, sha256_hex
from mlspec_attest.model.envelope import Envelope
from mlspec_attest.model.report import ERROR, Finding, Report
from mlspec_attest.policy import Policy

BRANCH_FILE = "branch.json"
BRANCH_TYPE = "https://mlspec.org/branch/v1"
TIMESTAMPS = "timestamps"  # evidence/timestamp.py's folder: tokens named by the signature's sha256
MAX_BRANCH_NOTE_BYTES = 64 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
# Findings about what comes after the prefix, or about freshness of the source's head: they do not
# make attestations 0..N less authentic, and the new chain is judged again by the gate.
_BEYOND_PREFIX = frozenset({
    "STAGE_MISSING", "HEAD_MISSING", "HEAD_EXPIRED", "HEAD_BEHIND", "CHAIN_STALE",
    "LOG_MISSING", "LOG_NOT_CHECKED", "LOG_UNSEALED_RECORDS", "LOG_VERIFICATION_FAILED",
    "OBJECTIVE_FAILED", "OBJECTIVE_WARNING", "ARTIFACT_MISMATCH", "ARTIFACT_NOT_PACKAGED",
    "PREDECESSOR_UNKNOWN", "PREDECESSOR_UNVERIFIED", "PREDECESSOR_MISMATCH", "PREDECESSOR_CYCLE",
    "PREDECESSOR_UNDECLARED",
})
# Findings about inputs the branch is not given (the release history, the inference log, artifacts):
# whatever sequence they name, the new chain is judged with them by the gate.
_EXTERNAL = frozenset({
    "PREDECESSOR_UNKNOWN", "PREDECESSOR_UNVERIFIED", "PREDECESSOR_MISMATCH", "PREDECESSOR_CYCLE",
    "PREDECESSOR_UNDECLARED", "ROLLBACK_TARGET_UNKNOWN", "LOG_MISSING",
})
# Whether the model meets its objectives is not a property of the prefix's integrity: the gate
# judges the criteria again on the new chain (a failed criterion names the attestation it read).
_JUDGED_ON_THE_NEW_CHAIN = frozenset({"OBJECTIVE_FAILED", "OBJECTIVE_WARNING"})
# Head findings that say the source was truncated, forked or its head forged: never branch from it,
# whatever sequence they name.
_HEAD_REFUSALS = frozenset({"HEAD_INVALID", "HEAD_SIGNATURE_INVALID", "HEAD_MISMATCH", "CHAIN_ROLLBACK"})


@dataclass(frozen=True)
class BranchNote:
    """Where a branched chain came from (``BUNDLE/branch.json``); provenance for people, not trusted."""

    source: str
    from_sequence: int
    genesis: str
    prefix_payload_sha256: str  # the payload digest of attestation N, the new chain's newest
    source_sequence: int  # the source chain's newest sequence when it was branched
    source_payload_sha256: str
    branched_at: str

    def to_dict(self) -> dict[str, Any]:
        return {"_type": BRANCH_TYPE, "source": self.source, "fromSequence": self.from_sequence,
                "genesis": self.genesis, "prefixPayloadSha256": self.prefix_payload_sha256,
                "sourceSequence": self.source_sequence, "sourcePayloadSha256": self.source_payload_sha256,
                "branchedAt": self.branched_at}

    @classmethod
    def from_dict(cls, data: Any, source: str = BRANCH_FILE) -> BranchNote:
        if not isinstance(data, dict) or data.get("_type") != BRANCH_TYPE:
            raise InputError(f"{source}: not a branch note ({BRANCH_TYPE})")
        try:
            note = cls(source=str(data["source"]), from_sequence=data["fromSequence"], genesis=data["genesis"],
                       prefix_payload_sha256=data["prefixPayloadSha256"], source_sequence=data["sourceSequence"],
                       source_payload_sha256=data["sourcePayloadSha256"], branched_at=str(data["branchedAt"]))
        except KeyError as exc:
            raise InputError(f"{source}: branch note lacks {exc.args[0]}") from None
        for label, value in (("fromSequence", note.from_sequence), ("sourceSequence", note.source_sequence)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InputError(f"{source}: {label} must be a non-negative integer")
        for label, digest in (("genesis", note.genesis), ("prefixPayloadSha256", note.prefix_payload_sha256),
                              ("sourcePayloadSha256", note.source_payload_sha256)):
            if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
                raise InputError(f"{source}: {label} must be 64 lowercase hex digits")
        return note


def read_branch_note(bundle_dir: str | os.PathLike[str]) -> BranchNote | None:
    """The bundle's branch note, None when it has none; InputError when it is unreadable."""
    root = Path(bundle_dir)
    if not safe.exists(BRANCH_FILE, root=root):
        return None
    data = safe.read_file(BRANCH_FILE, root=root, limit=MAX_BRANCH_NOTE_BYTES, what="branch note")
    return BranchNote.from_dict(parse_json(data, source=str(root / BRANCH_FILE)), source=str(root / BRANCH_FILE))


@dataclass(frozen=True)
class BranchResult:
    target: Path
    note: BranchNote
    copied: list[str]  # bundle-relative paths written
    head_signed: bool


class BranchRefused(VerificationError):
    """The source chain does not verify up to the requested sequence (exit 1): nothing was written."""

    def __init__(self, message: str, findings: list[Finding]) -> None:
        super().__init__(message)
        self.findings = findings


def prefix_findings(report: Report, sequence: int) -> list[Finding]:
    """The error findings that make attestations 0..``sequence`` of the verified chain untrustworthy.

    Fail closed: every error at or before ``sequence``, every error that names no sequence
    unless it is about what comes later (``_BEYOND_PREFIX``), and any head refusal. Findings
    about inputs a branch is not given (``_EXTERNAL``: the release history) are left to the gate.
    """
    found = []
    for f in report.findings:
        if f.severity != ERROR:
            continue
        if f.code in _HEAD_REFUSALS:
            found.append(f)
        elif f.code in _EXTERNAL or f.code in _JUDGED_ON_THE_NEW_CHAIN:
            continue
        elif f.sequence is not None and f.sequence <= sequence:
            found.append(f)
        elif f.sequence is None and f.code not in _BEYOND_PREFIX:
            found.append(f)
    return found


def branch_bundle(source: str | os.PathLike[str], sequence: int, target: str | os.PathLike[str], policy: Policy,
                  *, head_signers: tuple[Any, ...] = (), head_valid_for: timedelta | None = None,
                  now: datetime | None = None) -> BranchResult:
    """Copy the verified prefix 0..``sequence`` of ``source`` into the new bundle ``target``.

    Raises InputError (exit 2) for unusable input and BranchRefused (exit 1) when the prefix
    does not verify; in both cases ``target`` is left as it was.
    """
    from mlspec_attest.verify.verifier import Verifier

    src, dest = Path(source), Path(target)
    if isinstance(sequence, bool) or sequence < 0:
        raise InputError(f"--from {sequence}: expected a sequence number 0 or more")
    Bundle(src).require_exists()
    _check_target(src, dest)
    moment = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    ctx = Verifier(policy, now=moment).verify_context(src)
    report, chain = ctx.report, ctx.chain
    by_seq = {e.sequence: e for e in chain}
    if sequence not in by_seq:
        last = chain[-1].sequence if chain else None
        raise InputError(f"{src}: --from {sequence}: the chain has no attestation with that sequence"
                         + (f" (it ends at {last})" if last is not None else " (it is empty)"))
    problems = prefix_findings(report, sequence)
    missing = [s for s in range(sequence + 1) if s not in by_seq]
    if problems or missing:
        first = problems[0] if problems else None
        why = f"{first.code}: {first.message}" if first else f"sequence {missing[0]} is missing"
        raise BranchRefused(f"{src}: refusing to branch: the chain does not verify up to sequence {sequence} "
                            f"({why}; run 'mlspec verify {src}')", problems)
    prefix = [by_seq[s] for s in range(sequence + 1)]
    if not all(e.authentic for e in prefix):
        bad = next(e for e in prefix if not e.authentic)
        raise BranchRefused(f"{src}: refusing to branch: sequence {bad.sequence} ({bad.stage}) is not authentic "
                            "under the policy", problems)
    newest = chain[-1]
    note = BranchNote(source=str(src.resolve()), from_sequence=sequence, genesis=prefix[0].payload_sha256,
                      prefix_payload_sha256=prefix[-1].payload_sha256, source_sequence=newest.sequence,
                      source_payload_sha256=newest.payload_sha256,
                      branched_at=moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
    raw = _prefix_files(src, prefix)
    files: dict[str, bytes] = {f"{ATTESTATIONS}/{attestation_file_name(e.sequence, e.stage, e.file.kind)}": raw[e.sequence][0]
                               for e in prefix}
    files.update(_referenced_files(src, prefix, raw))
    files[BRANCH_FILE] = canonicalize(note.to_dict())
    head_signed = _write_new_bundle(dest, files, head_signers, head_valid_for, moment)
    return BranchResult(target=dest, note=note, copied=sorted(files), head_signed=head_signed)


def _check_target(src: Path, dest: Path) -> None:
    if os.path.lexists(dest):
        if dest.is_symlink() or not dest.is_dir():
            raise InputError(f"{dest}: exists and is not a directory; name a new bundle directory")
        if any(dest.iterdir()):
            raise InputError(f"{dest}: exists and is not empty; a branch starts a new bundle (name a new or "
                             "empty directory)")
    real_src, real_dest = src.resolve(), dest.resolve()
    if real_dest == real_src or real_dest.is_relative_to(real_src) or real_src.is_relative_to(real_dest):
        raise InputError(f"{dest}: lies inside (or contains) the source bundle {src}; name a directory outside it")
    if not dest.parent.resolve().is_dir():
        raise InputError(f"{dest.parent}: directory not found; create it first")


def _prefix_files(src: Path, prefix: list[Any]) -> dict[int, tuple[bytes, bytes]]:
    """The prefix's files as they are on disk now (the gate keeps no file bytes), each with its payload.

    Read again after verifying, so each payload is checked against the digest the gate verified:
    a file swapped in between is refused, never copied.
    """
    out: dict[int, tuple[bytes, bytes]] = {}
    for e in prefix:
        data = safe.read_file(f"{ATTESTATIONS}/{e.file.path.name}", root=src, limit=MAX_INPUT_BYTES, what="attestation")
        try:
            payload = extract_payload(e.file.kind, data)
        except (ValueError, TypeError) as exc:
            raise BranchRefused(f"{src}: sequence {e.sequence} changed while branching ({exc}); run the branch again",
                                []) from None
        if sha256_hex(payload) != e.payload_sha256:
            raise BranchRefused(f"{src}: sequence {e.sequence} changed while branching (its payload is not the one "
                                "verified); run the branch again", [])
        out[e.sequence] = (data, payload)
    return out


def _referenced_files(src: Path, prefix: list[Any], raw: dict[int, tuple[bytes, bytes]]) -> dict[str, bytes]:
    """blobs/ and evidence/ files whose content digest the prefix's signed statements name, and the
    time-stamp tokens over the prefix's signatures: what the gate may read for those attestations."""
    text = b"\n".join(raw[e.sequence][1] for e in prefix)
    named = set(re.findall(rb"[0-9a-f]{64}", text))
    signatures: set[str] = set()
    for e in prefix:
        try:
            doc = parse_json(raw[e.sequence][0], source=e.file.path.name)
            envelope = Envelope.from_dict(doc.get("dsseEnvelope", doc) if isinstance(doc, dict) else doc)
        except (InputError, ValueError, TypeError):
            continue  # a Sigstore bundle without a DSSE envelope has no tokens of ours
        signatures.update(sha256_hex(sig.sig) for sig in envelope.signatures)
    out: dict[str, bytes] = {}
    for folder, wanted in ((BLOBS, named), (EVIDENCE, named), (TIMESTAMPS, {s.encode() for s in signatures})):
        if not safe.exists(folder, root=src):
            continue
        for name in safe.list_names(src, folder):
            digest = name[:64].encode()
            if digest in wanted and _HEX64.fullmatch(name[:64]):
                out[f"{folder}/{name}"] = safe.read_file(f"{folder}/{name}", root=src, what=f"{folder} file")
    return out


def _write_new_bundle(dest: Path, files: dict[str, bytes], head_signers: tuple[Any, ...],
                      head_valid_for: timedelta | None, now: datetime) -> bool:
    """Build the bundle in a private temp directory beside ``dest``, then rename it into place."""
    parent = dest.parent.resolve()
    tmp = Path(tempfile.mkdtemp(prefix=safe.TEMP_PREFIX + "branch-", dir=parent))
    try:
        safe.make_dirs(tmp, ATTESTATIONS)
        for rel, data in files.items():
            safe.write_file(tmp, rel, data, replace=False, what="branch file")
        if head_signers:
            from mlspec_attest.attest.head import DEFAULT_HEAD_VALIDITY, HeadSigning, sign_head_locked

            signing = HeadSigning(tuple(head_signers), head_valid_for or DEFAULT_HEAD_VALIDITY)
            sign_head_locked(Bundle(tmp), signing, now=now)
        os.chmod(tmp, 0o755)
        if os.path.lexists(dest):
            os.rmdir(dest)  # checked empty above; rmdir refuses if something appeared since
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fd = os.open(parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return bool(head_signers)
