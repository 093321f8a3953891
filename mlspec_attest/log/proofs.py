"""Inclusion proofs: made from a log directory, accepted only against a signed tree head."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlspec_attest._internal import files as safe
from mlspec_attest.errors import InputError
from mlspec_attest.log.format import (
    _HEX64,
    HASH_ALGORITHM,
    LEAVES_FILE,
    PROOF_FORMAT,
    RECORDS_FILE,
    SignedHead,
    checkpoint_body,
    count_records,
    open_log_file,
    read_header,
    read_seals,
)
from mlspec_attest.log.merkle import LeafFile, inclusion_proof, verify_inclusion
from mlspec_attest.log.records import is_ground_truth
from mlspec_attest.model.canonical import canonicalize, parse_json
from mlspec_attest.model.report import ERROR, Finding

_sha256 = hashlib.sha256

def _find(directory: Path, request_id: str) -> list[tuple[int, bytes]]:
    needle = b'"requestId":' + json.dumps(request_id, ensure_ascii=False).encode()
    hits = []
    with open_log_file(directory, RECORDS_FILE) as fh:
        for i, line in enumerate(safe.read_lines(fh, str(directory / RECORDS_FILE))):
            if needle in line and line.endswith(b"\n"):
                try:
                    obj = parse_json(line, source="line")  # depth-bounded
                except InputError:
                    continue
                if isinstance(obj, dict) and obj.get("requestId") == request_id and not is_ground_truth(obj):
                    hits.append((i, line[:-1]))
    return hits


def _line_at(directory: Path, index: int) -> bytes:
    with open_log_file(directory, RECORDS_FILE) as fh:
        for i, line in enumerate(safe.read_lines(fh, str(directory / RECORDS_FILE))):
            if i == index:
                if not line.endswith(b"\n"):
                    break
                return line[:-1]
    raise InputError(f"no complete record at index {index}")


def prove(directory: str | os.PathLike[str], request_id: str | None = None, *, index: int | None = None) -> dict[str, Any]:
    """Inclusion proof (JSON-ready) for the record with ``request_id`` (or at
    leaf ``index``) against the latest seal's signed root."""
    directory = Path(directory)
    header = read_header(directory)
    seals = read_seals(directory)
    if (request_id is None) == (index is None):
        raise InputError("give a request id or an index")
    if request_id is not None:
        hits = _find(directory, request_id)
        if not hits:
            raise InputError(f"no record with requestId {request_id!r} in {directory / RECORDS_FILE}")
        if len(hits) > 1:
            where = ", ".join(str(i) for i, _ in hits[:10])
            raise InputError(f"requestId {request_id!r} occurs at indexes {where}: prove one with --index")
        index, line = hits[0]
    else:
        assert index is not None  # one of the two, checked above
        if index < 0:
            raise InputError("index must be >= 0")
        line = _line_at(directory, index)
    if not seals or seals[-1].tree_size <= index:
        raise InputError(f"record {index} is not sealed yet: seal the log first (`mlspec log seal`)")
    seal = seals[-1]
    records = count_records(directory)
    if seal.tree_size > records:  # an unsigned seal's size is a claim: never hash leaves no record backs
        raise InputError(f"seal {seal.seal} covers {seal.tree_size} records but {directory / RECORDS_FILE} has"
                         f" {records}: run `mlspec log verify`")
    leaf = _sha256(b"\x00" + line).digest()
    src = LeafFile(directory / LEAVES_FILE)  # opened no-follow, fstat-checked (log/merkle.py)
    if len(src) < seal.tree_size:
        raise InputError(f"{LEAVES_FILE} is shorter than seal {seal.seal}: run `mlspec log verify`")
    path = inclusion_proof(index, seal.tree_size, src)
    if not verify_inclusion(index, seal.tree_size, leaf, path, bytes.fromhex(seal.root_hash)):
        raise InputError(f"record {index} does not prove against seal {seal.seal}: the log was altered; run `mlspec log verify`")
    return {
        "format": PROOF_FORMAT,
        "hash_algorithm": HASH_ALGORITHM,
        "origin": header["origin"],
        "pipeline": header["pipeline"],
        "record": parse_json(line),
        "leaf_index": index,
        "leaf_hash": leaf.hex(),
        "tree_size": seal.tree_size,
        "root_hash": seal.root_hash,
        "inclusion_proof": [p.hex() for p in path],
        "seal": seal.seal,
        "checkpoint": checkpoint_body(header["origin"], seal.tree_size, bytes.fromhex(seal.root_hash)).decode(),
        "attestation": seal.attestation,
    }


def verify_proof(proof: Mapping[str, Any], heads: Sequence[SignedHead] | None = None) -> list[Finding]:
    """Check a proof document against the signed tree heads; returns findings (empty = accepted).

    The proof's own tree size, root, checkpoint and ``attestation`` are claims: a proof is
    accepted only when its record leads, by the inclusion path, to a root that one of
    ``heads`` (authentic log attestations) signed for exactly that tree size and pipeline.
    Without heads nothing can be accepted (LOG_PROOF_UNANCHORED)."""
    try:
        doc = _ProofDoc.from_dict(proof)
    except (KeyError, TypeError, ValueError, AttributeError, InputError) as exc:
        return [_finding("LOG_PROOF_MALFORMED", f"malformed proof: {exc}")]
    found: list[Finding] = []
    leaf = _sha256(b"\x00" + doc.line).digest()
    if leaf.hex() != doc.leaf_hash:
        found.append(_finding("LOG_PROOF_INVALID", "record does not hash to leaf_hash (record altered)"))
    if doc.record.get("pipeline") != doc.pipeline:
        found.append(_finding("LOG_PROOF_INVALID", "record's pipeline differs from the proof's pipeline"))
    root = bytes.fromhex(doc.root_hash)
    if not verify_inclusion(doc.leaf_index, doc.tree_size, leaf, doc.path, root):
        found.append(_finding("LOG_PROOF_INVALID", f"inclusion proof does not lead to root {doc.root_hash}"
                              f" at size {doc.tree_size}"))
    if doc.checkpoint != checkpoint_body(doc.origin, doc.tree_size, root).decode():
        found.append(_finding("LOG_PROOF_INVALID", "checkpoint does not match origin, tree size and root"))
    found += _anchor(doc, heads)
    return found


def _anchor(doc: _ProofDoc, heads: Sequence[SignedHead] | None) -> list[Finding]:
    """The proof's tree head must be one a trusted key signed, for the same pipeline and origin."""
    if heads is None:
        return [_finding("LOG_PROOF_UNANCHORED", "the proof was not checked against a signed log attestation:"
                         " pass --bundle (a proof's own root proves nothing)")]
    head = next((h for h in heads if h.tree_size == doc.tree_size and h.root_hash == doc.root_hash), None)
    if head is None:
        return [_finding("LOG_PROOF_NOT_SIGNED", f"no signed log attestation in the bundle has tree size"
                         f" {doc.tree_size} and root {doc.root_hash[:16]}...: the proof's tree was not signed")]
    for key in ("pipeline", "origin"):
        if head.metadata.get(key) != getattr(doc, key):
            return [_finding("LOG_PROOF_NOT_SIGNED", f"the signed log attestation for this root names {key}"
                             f" {head.metadata.get(key)!r:.80}, the proof {getattr(doc, key)!r:.80}")]
    if head.served is False:
        where = f" (sequence {head.sequence})" if head.sequence is not None else ""
        return [_finding("LOG_PIPELINE_NOT_SERVED", f"the signed log attestation for this root{where} seals a log of"
                         f" pipeline {doc.pipeline}, which is no authentic serve attestation of this chain: the"
                         " record is from a deployment the chain never made")]
    return []


def _finding(code: str, message: str) -> Finding:
    return Finding(code=code, severity=ERROR, message=message)


def _int(value: Any, name: str) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be a non-negative integer")
    return value


def _hex(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _HEX64(value):
        raise ValueError(f"{name} must be 64 lowercase hex digits")
    return value


@dataclass(frozen=True)
class _ProofDoc:
    """A proof document with every field type-checked (validation at construction)."""

    record: dict[str, Any]
    line: bytes
    leaf_index: int
    leaf_hash: str
    tree_size: int
    root_hash: str
    path: list[bytes]
    pipeline: str
    origin: str
    checkpoint: Any

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> _ProofDoc:
        if not isinstance(d, Mapping) or d.get("format") != PROOF_FORMAT:
            raise ValueError(f"not an {PROOF_FORMAT} document")
        record = d["record"]
        if not isinstance(record, dict):
            raise ValueError("record must be a JSON object")
        path = d["inclusion_proof"]
        if not isinstance(path, list):
            raise ValueError("inclusion_proof must be a list")
        pipeline, origin = d["pipeline"], d["origin"]
        if not isinstance(pipeline, str) or not isinstance(origin, str):
            raise ValueError("pipeline and origin must be strings")
        return cls(record=record, line=canonicalize(record), leaf_index=_int(d["leaf_index"], "leaf_index"),
                   leaf_hash=_hex(d["leaf_hash"], "leaf_hash"), tree_size=_int(d["tree_size"], "tree_size"),
                   root_hash=_hex(d["root_hash"], "root_hash"),
                   path=[bytes.fromhex(_hex(p, "inclusion_proof[]")) for p in path],
                   pipeline=pipeline, origin=origin, checkpoint=d.get("checkpoint"))
