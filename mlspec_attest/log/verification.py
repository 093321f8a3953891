"""Verifying an inference log, in phases over one scan state.

1. ``_read_inputs``      the header and seals (unreadable files are findings).
2. ``_check_seal_chain`` the seals on their own: links, growth, consistency proofs, checkpoints.
3. ``_check_signed``     the seals against the signed heads: every signed head is matched by its
                         seal, every seal's attestation reference resolves, same pipeline and origin.
4. ``_scan_records``     one streaming pass over records.jsonl: leaves, the root at every seal and
                         at every signed tree size, and alignment with leaves.bin to locate changes.
5. ``_conclude``         root mismatches, truncation, torn lines, a stale cache, the unsealed tail.

Inside the pass (4), every line a seal or signed head covers (every line with ``deep``) is also
checked on its own (``records.line_problem``: strict JSON, the writer's RFC 8785 form, the record
schema, this log's pipeline): a root over junk is still junk, so a signed root is not enough.

The signed heads (``SignedHead``, made only by the policy verifier) are the trust anchor: a
sealed prefix is verified when the records reproduce the root a trusted key signed for that
tree size, whatever seals.jsonl and leaves.bin (unsigned files) say. Without signed heads the
result is self-consistency only, and says so.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlspec_attest._internal import files as safe
from mlspec_attest.errors import InputError
from mlspec_attest.log.format import (
    LEAVES_FILE,
    RECORDS_FILE,
    Seal,
    SignedHead,
    checkpoint_body,
    open_log_file,
    read_header,
    read_seals,
)
from mlspec_attest.log.merkle import HASH_SIZE, LeafFile, MerkleAccumulator, verify_consistency
from mlspec_attest.log.records import GROUND_TRUTH_MARKER, check_line, is_ground_truth
from mlspec_attest.model.canonical import parse_json, sha256_hex
from mlspec_attest.model.report import ERROR, INFO, WARNING, Finding

_sha256 = hashlib.sha256
_SEAL_FIELDS = ("tree_size", "root_hash", "previous_tree_size", "previous_root_hash", "consistency_proof")


@dataclass
class LogReport:
    """Outcome of :func:`verify`, in the gate's findings vocabulary (model.report.Finding).

    ``ok`` means no error finding. ``sealed`` counts the records a seal (or, with signed
    heads, a signed tree head) covers; the rest are ``unsealed`` and not verified."""

    directory: str
    pipeline: str | None = None  # the header's pipeline (the serve attestation digest the log claims)
    records: int = 0
    sealed: int = 0
    unsealed: int = 0
    seals: int = 0
    seals_verified: int = 0
    attestations_checked: int = 0
    signed_heads: int | None = None  # None: no bundle was given, nothing was checked against a signature
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    @property
    def anchored(self) -> bool:
        """Checked against at least one signed tree head (not only against its own files)."""
        return bool(self.signed_heads)

    def add(self, code: str, severity: str, message: str, **where: Any) -> None:
        self.findings.append(Finding(code=code, severity=severity, message=message, **where))

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": "pass" if self.ok else "fail",  # the one verdict vocabulary (docs/ci.md)
            "directory": self.directory,
            "pipeline": self.pipeline,
            "records": self.records,
            "sealed": self.sealed,
            "unsealed": self.unsealed,
            "seals": self.seals,
            "seals_verified": self.seals_verified,
            "attestations_checked": self.attestations_checked,
            "signed_heads": self.signed_heads,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class _Rec:
    index: int
    line_no: int
    offset: int
    leaf: bytes
    raw: bytes


@dataclass
class _Scan:
    """What the phases share."""

    directory: Path
    report: LogReport
    heads: Sequence[SignedHead] | None
    max_findings: int
    header: dict[str, Any] | None = None
    seals: list[Seal] = field(default_factory=list)
    leaf_ok: dict[int, bool] = field(default_factory=dict)  # seal number -> leaves.bin reproduces its root
    n_leaves: int = 0
    has_leaves: bool = False
    mismatched: list[Seal] = field(default_factory=list)
    partial: list[tuple[int, int]] = field(default_factory=list)
    records_total: int = 0
    roots_checked: dict[int, bool] = field(default_factory=dict)  # tree size -> recomputed root matched
    pending_changes: list[tuple[str, str, int, int | None, str | None]] = field(default_factory=list)
    located: int = 0
    deep: bool = False
    invalid_lines: int = 0
    model_id: str | None = None  # the package's declared model: every checked record must name it
    model_mismatches: int = 0
    # Ground truth (a later record labelling an earlier request): the request ids some ground-truth line
    # names (None: the log has none, nothing is tracked), the inference lines seen so far per such id,
    # the ids labelled so far, and the labels met before any request of their id (decided at the end).
    gt_targets: set[str] | None = None
    gt_requests: dict[str, int] = field(default_factory=dict)
    gt_labelled: dict[str, int] = field(default_factory=dict)
    gt_early: list[tuple[_Rec, str]] = field(default_factory=list)
    gt_findings: int = 0

    @property
    def records_path(self) -> Path:
        return self.directory / RECORDS_FILE

    @property
    def leaves_path(self) -> Path:
        return self.directory / LEAVES_FILE

    @property
    def signed_size(self) -> int:
        return max((h.tree_size or 0 for h in self.heads or ()), default=0)

    @property
    def covered_size(self) -> int:
        """Records that a seal or a signed head claims: changes there are errors."""
        return max(self.seals[-1].tree_size if self.seals else 0, self.signed_size)

    def seal_for(self, index: int) -> Seal | None:
        return next((s for s in self.seals if index < s.tree_size), None)

    def trusted(self, index: int) -> bool:
        s = self.seal_for(index)
        return s is not None and self.leaf_ok.get(s.seal, False)


def verify(
    directory: str | os.PathLike[str],
    *,
    heads: Sequence[SignedHead] | None = None,
    deep: bool = False,
    max_findings: int = 100,
    model_id: str | None = None,
) -> LogReport:
    """Recompute every leaf and root from records.jsonl (streaming, flat memory), check the
    seals and their consistency proofs, check the records against every signed tree head in
    ``heads`` (None: no bundle given), and locate changes (modified / dropped / inserted /
    swapped records) by aligning against leaves.bin where it reproduces the sealed roots.
    ``model_id``: the model the chain packaged; a checked record naming another is LOG_MODEL_MISMATCH."""
    directory = Path(directory)
    scan = _Scan(directory, LogReport(str(directory)), heads, max_findings, deep=deep, model_id=model_id)
    scan.report.signed_heads = None if heads is None else len(heads)
    _read_inputs(scan)
    if not safe.exists(RECORDS_FILE, root=directory):
        scan.report.add("LOG_RECORDS_MISSING", ERROR, f"{scan.records_path} does not exist")
        return scan.report
    open_log_file(directory, RECORDS_FILE).close()  # refuses a FIFO, device or symlink before any work
    _check_seal_chain(scan)
    _check_signed(scan)
    _check_leaf_cache(scan)
    scan.gt_targets = _ground_truth_targets(scan)
    _scan_records(scan)
    _conclude(scan)
    _conclude_ground_truth(scan)
    if scan.model_mismatches > scan.max_findings:
        scan.report.add("LOG_MODEL_MISMATCH", ERROR, f"{scan.model_mismatches - scan.max_findings} more records"
                        " name another model (not listed)")
    if scan.invalid_lines > scan.max_findings:
        scan.report.add("LOG_FINDINGS_TRUNCATED", INFO, f"{scan.invalid_lines - scan.max_findings} more invalid"
                        " lines not listed")
    return scan.report


# -- 1. inputs -----------------------------------------------------------------------------------


def _read_inputs(scan: _Scan) -> None:
    report = scan.report
    try:
        scan.header = read_header(scan.directory)
        report.pipeline = scan.header["pipeline"]
    except InputError as exc:
        report.add("LOG_HEADER_INVALID", ERROR, str(exc))
    try:
        scan.seals = read_seals(scan.directory)
    except InputError as exc:
        report.add("LOG_SEALS_INVALID", ERROR, str(exc))
    report.seals = len(scan.seals)


# -- 2. the seals on their own ------------------------------------------------------------------


def _check_seal_chain(scan: _Scan) -> None:
    report, header = scan.report, scan.header
    prev_size, prev_root = 0, None
    for s in scan.seals:
        w = {"seal": s.seal}
        if s.previous_tree_size != prev_size or s.previous_root_hash != prev_root:
            report.add("LOG_SEAL_CHAIN_BROKEN", ERROR,
                       f"seal {s.seal} says the previous tree was {s.previous_tree_size}/{s.previous_root_hash},"
                       f" but the seal before it is {prev_size}/{prev_root}: a seal was removed, inserted or"
                       " rewritten", **w)
        if s.tree_size <= prev_size:
            report.add("LOG_SEAL_ORDER", ERROR, f"seal {s.seal} does not grow the tree ({prev_size} -> {s.tree_size})",
                       **w)
        elif prev_root is not None and not verify_consistency(
            prev_size, s.tree_size, bytes.fromhex(prev_root), bytes.fromhex(s.root_hash),
            [bytes.fromhex(p) for p in s.consistency_proof],
        ):
            report.add("LOG_CONSISTENCY_FAILED", ERROR,
                       f"seal {s.seal - 1} -> seal {s.seal}: consistency proof fails ({prev_size} -> {s.tree_size}"
                       f" records): records 0..{prev_size - 1} were rewritten after seal {s.seal} was made,"
                       " or one of the two seals was altered", **w)
        if header is not None:
            body = checkpoint_body(header["origin"], s.tree_size, bytes.fromhex(s.root_hash))
            if sha256_hex(body) != s.checkpoint_sha256:
                report.add("LOG_CHECKPOINT_MISMATCH", ERROR,
                           f"seal {s.seal}: checkpoint digest does not match its tree head", **w)
        prev_size, prev_root = s.tree_size, s.root_hash
    unsigned = [s.seal for s in scan.seals if s.attestation is None]
    if unsigned:
        report.add("LOG_SEAL_UNSIGNED", WARNING,
                   f"{len(unsigned)} of {len(scan.seals)} seals have no attestation (sealed without a key):"
                   f" first is seal {unsigned[0]}", seal=unsigned[0])


# -- 3. the seals against the signed heads -------------------------------------------------------


def _check_signed(scan: _Scan) -> None:
    report, heads = scan.report, scan.heads
    if heads is None:
        if any(s.attestation for s in scan.seals):
            report.add("LOG_ATTESTATIONS_UNCHECKED", INFO,
                       "seal attestations were not checked against a bundle (pass --bundle): the result is"
                       " the log's consistency with its own files, not with what was signed")
        return
    by_digest = {h.attestation: h for h in heads}
    for s in scan.seals:
        if s.attestation is None:
            continue
        head = by_digest.get(s.attestation)
        if head is None:
            report.add("LOG_ATTESTATION_MISSING", ERROR, f"seal {s.seal}: attestation {s.attestation[:16]}... is"
                       " not a signed log attestation of the bundle", seal=s.seal)
            continue
        report.attestations_checked += 1
        for key in _SEAL_FIELDS:
            if head.metadata.get(key) != getattr(s, key):
                report.add("LOG_ATTESTATION_MISMATCH", ERROR,
                           f"seal {s.seal}: {key} differs from the signed log attestation"
                           f" ({head.metadata.get(key)!r:.70} signed): seals.jsonl was rewritten", seal=s.seal)
                break
    sealed = {s.attestation for s in scan.seals}
    for head in heads:
        _check_head(scan, head, matched=head.attestation in sealed)


def _check_head(scan: _Scan, head: SignedHead, *, matched: bool) -> None:
    """One signed head: well-formed, same log, and present in seals.jsonl."""
    report, header = scan.report, scan.header
    w = {"seal": head.seal, "sequence": head.sequence}
    name = f"signed log attestation {head.attestation[:16]}..." + (f" (seal {head.seal})" if head.seal else "")
    if head.tree_size is None or head.root_hash is None:
        report.add("LOG_SIGNED_HEAD_INVALID", ERROR, f"{name} has no valid tree_size and root_hash", **w)
        return
    if header is not None:
        for key in ("pipeline", "origin"):
            if head.metadata.get(key) != header[key]:
                report.add("LOG_PIPELINE_MISMATCH", ERROR,
                           f"{name} was signed for {key} {head.metadata.get(key)!r:.80}, but this log's header"
                           f" says {header[key]!r:.80}: the log and the bundle belong to different pipelines",
                           **w)
                break
    if not matched:
        report.add("LOG_SIGNED_HEAD_UNSEALED", ERROR,
                   f"{name} signed {head.tree_size} records with root {head.root_hash[:16]}..., but seals.jsonl"
                   " has no seal for it: seals were deleted or rebuilt", **w)


# -- 4. one pass over the records ---------------------------------------------------------------


def _check_leaf_cache(scan: _Scan) -> None:
    """How many leaves leaves.bin holds. Its root at each seal is computed during the record pass
    (``_CacheRoots``), never beyond the records actually read: an unsigned seal's tree size and a
    sparse leaves.bin cannot make us hash leaves that no record backs."""
    scan.has_leaves = safe.exists(LEAVES_FILE, root=scan.directory)
    if scan.has_leaves:
        with open_log_file(scan.directory, LEAVES_FILE) as leaves_fh:
            scan.n_leaves = os.fstat(leaves_fh.fileno()).st_size // HASH_SIZE
    else:
        scan.n_leaves = 0


class _CacheRoots:
    """leaves.bin's own root at each seal size, fed one leaf per record read (sequential, chunked)."""

    def __init__(self, scan: _Scan, fh: Any) -> None:
        self.scan, self.fh, self.acc = scan, fh, MerkleAccumulator()
        self.blob, self.pos = b"", 0

    def advance(self, n: int) -> None:
        """Leaf ``n - 1`` of the cache joins its accumulator (n = records read so far)."""
        if n > self.scan.n_leaves:
            return
        if self.pos >= len(self.blob):
            self.blob, self.pos = self.fh.read(LeafFile.CHUNK * HASH_SIZE), 0
        leaf = self.blob[self.pos : self.pos + HASH_SIZE]
        self.pos += HASH_SIZE
        if len(leaf) == HASH_SIZE:
            self.acc.append(leaf)

    def at_seal(self, s: Seal, n: int) -> None:
        self.scan.leaf_ok[s.seal] = n <= self.scan.n_leaves and self.acc.root().hex() == s.root_hash


def _stream(scan: _Scan, acc: MerkleAccumulator) -> Iterator[_Rec]:
    """Complete lines as leaves; at every sealed or signed size, the recomputed root is compared."""
    seal_of_size = {s.tree_size: s for s in scan.seals}
    heads_of_size: dict[int, list[SignedHead]] = {}
    for head in scan.heads or ():
        if head.tree_size is not None and head.root_hash is not None:
            heads_of_size.setdefault(head.tree_size, []).append(head)
    for head in heads_of_size.get(0, ()):
        _compare_head(scan, head, acc.root())
    pipeline = scan.header["pipeline"] if scan.header else None
    check_below = 1 << 62 if scan.deep else scan.covered_size  # every line a seal or signed head claims
    offset = 0
    with open_log_file(scan.directory, RECORDS_FILE) as fh, \
            (open_log_file(scan.directory, LEAVES_FILE) if scan.n_leaves else open(os.devnull, "rb")) as cache_fh:
        cache = _CacheRoots(scan, cache_fh)
        for i, line in enumerate(safe.read_lines(fh, str(scan.records_path))):
            if not line.endswith(b"\n"):
                scan.partial.append((i + 1, offset))
                return
            body = line[:-1]
            h = _sha256(b"\x00" + body).digest()
            acc.append(h)
            n = i + 1
            cache.advance(n)
            s = seal_of_size.get(n)
            if s is not None:
                cache.at_seal(s, n)
                if acc.root().hex() == s.root_hash:
                    scan.report.seals_verified += 1
                else:
                    scan.mismatched.append(s)
                _root_checked(scan, n, acc.root().hex() == s.root_hash)
            for head in heads_of_size.get(n, ()):
                _root_checked(scan, n, _compare_head(scan, head, acc.root()))
            rec = _Rec(i, n, offset, h, body)
            if i < check_below:
                _check_line(scan, rec, pipeline)
            yield rec
            offset += len(line)


def _compare_head(scan: _Scan, head: SignedHead, root: bytes) -> bool:
    if root.hex() == head.root_hash:
        return True
    size = head.tree_size or 0
    scan.report.add("LOG_SIGNED_ROOT_MISMATCH", ERROR,
                    f"records 0..{size - 1} do not reproduce the root signed in log attestation"
                    f" {head.attestation[:16]}... ({size} records): the sealed records were changed",
                    seal=head.seal, sequence=head.sequence)
    return False


def _locate(scan: _Scan, code: str, msg: str, rec: _Rec | None, index: int) -> None:
    """A difference from leaves.bin at leaf ``index``: a change only where a recomputed root fails.

    Where the records reproduce the sealed or signed root, leaves.bin is merely stale
    (LOG_LEAVES_STALE); where no root covers the record yet, it is a warning. Decided as
    soon as the root covering it is checked, so memory stays bounded by one batch."""
    change = (code, msg, index, rec.line_no if rec else None, _request_id(rec.raw) if rec else None)
    verdict = next((ok for size, ok in scan.roots_checked.items() if index < size), None)
    if verdict is None:
        scan.pending_changes.append(change)
    else:
        _report_change(scan, change, verdict)


def _root_checked(scan: _Scan, size: int, ok: bool) -> None:
    scan.roots_checked[size] = scan.roots_checked.get(size, True) and ok
    still = []
    for change in scan.pending_changes:
        if change[2] < size:
            _report_change(scan, change, ok)
        else:
            still.append(change)
    scan.pending_changes = still


def _report_change(scan: _Scan, change: tuple[str, str, int, int | None, str | None], verdict: bool | None) -> None:
    if verdict is True:
        return
    code, msg, index, line, request_id = change
    scan.located += 1
    if scan.located > scan.max_findings:
        return
    sev = ERROR if index < scan.covered_size else WARNING
    s = scan.seal_for(index)
    note = "" if scan.trusted(index) or sev == WARNING else \
        " (located via leaves.bin, which does not match the signed root either)"
    scan.report.add(code, sev, msg + note, line=line, index=index, request_id=request_id, seal=s.seal if s else None)


def _report_located(scan: _Scan) -> None:
    for change in scan.pending_changes:  # past every checked root: truncated or unsealed
        _report_change(scan, change, None)
    scan.pending_changes = []
    if scan.located > scan.max_findings:
        scan.report.add("LOG_FINDINGS_TRUNCATED", INFO, f"{scan.located - scan.max_findings} more located changes"
                        " not listed")


def _scan_records(scan: _Scan) -> None:
    """Recompute leaves and roots, aligning with leaves.bin to name what changed."""
    acc = MerkleAccumulator()
    n_leaves = scan.n_leaves
    with open_log_file(scan.directory, LEAVES_FILE) if scan.has_leaves else open(os.devnull, "rb") as lf:
        window: list[Any] = [0, b""]  # [first leaf index, bytes]: a sliding 2 MiB window keeps memory flat
        span = 1 << 16

        def cached(j: int) -> bytes | None:
            if j >= n_leaves:
                return None
            base, blob = window
            k = (j - base) * HASH_SIZE
            if not 0 <= k < len(blob):
                lf.seek(j * HASH_SIZE)
                window[0], window[1] = j, lf.read(span * HASH_SIZE)
                blob, k = window[1], 0
            return blob[k : k + HASH_SIZE]

        it = _stream(scan, acc)
        buf: deque[_Rec] = deque()

        def peek(k: int) -> _Rec | None:
            while len(buf) <= k:
                nxt = next(it, None)
                if nxt is None:
                    return None
                buf.append(nxt)
            return buf[k]

        j = 0
        while (r0 := peek(0)) is not None:
            lj = cached(j)
            if lj is None or r0.leaf == lj:  # equal, or beyond leaves.bin (a crash): nothing to compare
                buf.popleft()
                j += 1
                continue
            j = _align(scan, r0, peek(1), j, cached, buf)
    scan.records_total = acc.size


def _align(scan: _Scan, r0: _Rec, r1: _Rec | None, j: int, cached: Callable[[int], bytes | None],
           buf: deque[_Rec]) -> int:
    """Name the change at leaf ``j`` (record r0 differs from the cache); returns the next leaf index."""
    lj = cached(j)
    if r1 is not None and r0.leaf == cached(j + 1) and r1.leaf == lj:
        _locate(scan, "LOG_RECORDS_SWAPPED", f"records at lines {r0.line_no} and {r1.line_no} were swapped", r0, j)
        buf.popleft()
        buf.popleft()
        return j + 2
    skip = next((k for k in range(1, 9) if r0.leaf == cached(j + k)), None)
    if skip is not None:
        _locate(scan, "LOG_RECORD_DROPPED", f"{skip} record(s) (index {j}{'..' + str(j + skip - 1) if skip > 1 else ''})"
                f" removed between lines {r0.line_no - 1} and {r0.line_no}", r0, j)
        return j + skip
    if r1 is not None and r1.leaf == lj:
        _locate(scan, "LOG_RECORD_INSERTED", f"line {r0.line_no} was inserted", r0, j)
        buf.popleft()
        return j
    _locate(scan, "LOG_RECORD_MODIFIED", f"record at line {r0.line_no} was changed", r0, j)
    buf.popleft()
    return j + 1


# -- 5. conclusions -----------------------------------------------------------------------------


def _conclude(scan: _Scan) -> None:
    report, seals, total = scan.report, scan.seals, scan.records_total
    _report_located(scan)
    for s in scan.mismatched:
        report.add("LOG_ROOT_MISMATCH", ERROR,
                   f"seal {s.seal}: records 0..{s.tree_size - 1} (seal batch lines {s.previous_tree_size + 1}.."
                   f"{s.tree_size}) do not reproduce the sealed root", seal=s.seal)
    truncated = next((s.tree_size for s in seals if s.tree_size > total), None)
    if scan.signed_size > total:
        truncated = max(truncated or 0, scan.signed_size)
    if truncated is not None:
        report.add("LOG_RECORDS_TRUNCATED", ERROR,
                   f"the log was sealed or signed at {truncated} records but records.jsonl has {total}"
                   f" complete records: records {total}..{truncated - 1} are missing")
    covered = scan.covered_size
    for line_no, offset in scan.partial:
        sev = ERROR if line_no <= covered else WARNING
        report.add("LOG_PARTIAL_RECORD", sev,
                   f"line {line_no} (byte {offset}) is an incomplete record: an append was interrupted"
                   + (" inside the sealed range" if sev == ERROR else "; it was never sealed"), line=line_no)
    if seals and truncated is None:
        stale = next((s for s in seals if scan.leaf_ok.get(s.seal) is False and s not in scan.mismatched
                      and s.tree_size <= scan.n_leaves), None)
        if stale is not None:
            report.add("LOG_LEAVES_STALE", WARNING, f"{LEAVES_FILE} does not match seal {stale.seal} (records do):"
                       " proofs need it rebuilt", seal=stale.seal)
    # With signed heads, only what a trusted key signed counts as sealed; unsigned seals do not.
    sealed_size = scan.signed_size if scan.heads is not None else (seals[-1].tree_size if seals else 0)
    report.records = total
    report.sealed = min(sealed_size, total)
    report.unsealed = max(0, total - sealed_size)
    if report.unsealed:
        report.add("LOG_UNSEALED", INFO, f"{report.unsealed} record(s) (lines {sealed_size + 1}..{total}) are not"
                   + (" covered by a signed log attestation" if scan.heads is not None else " sealed yet")
                   + ": not verified")
    if not seals and not scan.signed_size and total:
        report.add("LOG_NO_SEALS", WARNING, "the log has never been sealed: nothing is verified")


# -- per-line checks and helpers ----------------------------------------------------------------


def _check_line(scan: _Scan, rec: _Rec, pipeline: str | None) -> None:
    """One line on its own: strict JSON, the writer's canonical form, schema, this log's pipeline."""
    problem, obj = check_line(rec.raw, pipeline)
    if problem is None and obj is not None:
        if scan.gt_targets is not None:
            _track_ground_truth(scan, rec, obj)
        if scan.model_id is not None and not is_ground_truth(obj):
            _check_model(scan, rec, obj)
        return
    scan.invalid_lines += 1
    if scan.invalid_lines <= scan.max_findings:
        s = scan.seal_for(rec.index)
        scan.report.add("LOG_RECORD_INVALID", ERROR, f"line {rec.line_no}: {problem}", line=rec.line_no,
                        index=rec.index, request_id=_request_id(rec.raw), seal=s.seal if s else None)


def _ground_truth_targets(scan: _Scan) -> set[str] | None:
    """The request ids that ground-truth lines name, or None when records.jsonl holds none.

    A cheap pre-pass (a byte search per 1 MiB, lines parsed only where the marker is), so that the
    record pass remembers only the requests that get a label: memory follows the labels, not the log."""
    marker, tail, found, since_newline = GROUND_TRUTH_MARKER, b"", False, 0
    with open_log_file(scan.directory, RECORDS_FILE) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            if marker in tail + chunk[: len(marker)] or marker in chunk:
                found = True
                break
            tail = chunk[-len(marker):]
            last_nl = chunk.rfind(b"\n")
            since_newline = since_newline + len(chunk) if last_nl < 0 else len(chunk) - last_nl - 1
            if since_newline > safe.MAX_LINE_BYTES:
                return None  # the readers' bound (a sparse 8 GiB file): the record pass refuses this line
    if not found:
        return None
    targets: set[str] = set()
    with open_log_file(scan.directory, RECORDS_FILE) as fh:
        for line in safe.read_lines(fh, str(scan.records_path)):
            if marker in line:
                try:
                    obj = parse_json(line, source="line")
                except InputError:
                    continue  # the record pass reports it
                rid = obj.get("requestId") if isinstance(obj, dict) else None
                if isinstance(rid, str):
                    targets.add(rid)
    return targets


def _gt_finding(scan: _Scan, code: str, rec: _Rec, rid: str, message: str) -> None:
    scan.gt_findings += 1
    if scan.gt_findings <= scan.max_findings:
        s = scan.seal_for(rec.index)
        scan.report.add(code, ERROR, f"line {rec.line_no}: {message}", line=rec.line_no, index=rec.index,
                        request_id=rid, seal=s.seal if s else None)


def _track_ground_truth(scan: _Scan, rec: _Rec, obj: dict[str, Any]) -> None:
    """A label must follow its one request and be the only label for it: a label for a request never
    served, a second (different or equal) label, or one written before the request are refused."""
    rid = obj.get("requestId")
    assert scan.gt_targets is not None and isinstance(rid, str)  # a sound record has one
    if not is_ground_truth(obj):
        if rid in scan.gt_targets:
            scan.gt_requests[rid] = scan.gt_requests.get(rid, 0) + 1
            if scan.gt_requests[rid] == 2:
                _gt_finding(scan, "LOG_GROUND_TRUTH_AMBIGUOUS", rec, rid, f"request {rid!r:.80} is logged more than"
                            " once and a ground-truth record labels it: which prediction the label judges is"
                            " ambiguous")
        return
    first = scan.gt_labelled.get(rid)
    if first is not None:
        _gt_finding(scan, "LOG_GROUND_TRUTH_DUPLICATE", rec, rid, f"a second ground-truth record for request"
                    f" {rid!r:.80} (the first is line {first}): a label is given once, never replaced")
        return
    scan.gt_labelled[rid] = rec.line_no
    if rid not in scan.gt_requests:
        scan.gt_early.append((rec, rid))


def _conclude_ground_truth(scan: _Scan) -> None:
    for rec, rid in scan.gt_early:
        if rid in scan.gt_requests:
            _gt_finding(scan, "LOG_GROUND_TRUTH_BEFORE_REQUEST", rec, rid, f"the ground truth for request"
                        f" {rid!r:.80} comes before the request in the log: a label must follow its prediction")
        else:
            _gt_finding(scan, "LOG_GROUND_TRUTH_UNKNOWN_REQUEST", rec, rid, f"ground truth for request"
                        f" {rid!r:.80}, which no checked record of this log served")
    if scan.gt_findings > scan.max_findings:
        scan.report.add("LOG_FINDINGS_TRUNCATED", INFO, f"{scan.gt_findings - scan.max_findings} more ground-truth"
                        " findings not listed")


def _check_model(scan: _Scan, rec: _Rec, obj: dict[str, Any]) -> None:
    """A sound record must name the packaged model: a log of another model's answers is not this chain's."""
    named = obj.get("modelId")
    if named == scan.model_id:
        return
    scan.model_mismatches += 1
    if scan.model_mismatches <= scan.max_findings:
        s = scan.seal_for(rec.index)
        scan.report.add("LOG_MODEL_MISMATCH", ERROR, f"line {rec.line_no}: modelId {str(named)[:80]!r} is not the"
                        f" packaged model {scan.model_id!r}: the log records another model's answers",
                        line=rec.line_no, index=rec.index, request_id=_request_id(rec.raw), seal=s.seal if s else None)


def _request_id(raw: bytes) -> str | None:
    try:
        obj = parse_json(raw, source="line")  # depth-bounded: a hostile line never reaches recursion
    except InputError:
        return None
    rid = obj.get("requestId") if isinstance(obj, dict) else None
    return rid if isinstance(rid, str) else None
