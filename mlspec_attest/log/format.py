"""The on-disk format of an inference log: file names, the header, seals, checkpoints.

Readers here parse; they never decide whether the log is sound (verification.py
does). ``SignedHead`` is the one input verification trusts: the metadata of a
``log`` attestation whose signature the policy verifier accepted.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mlspec_attest._internal import files as safe
from mlspec_attest.errors import InputError
from mlspec_attest.log.merkle import HASH_SIZE
from mlspec_attest.model.canonical import parse_json
from mlspec_attest.model.formats import parse_rfc3339

LOG_FORMAT = "mlspec-inference-log/v1"
PROOF_FORMAT = "mlspec-inference-proof/v1"
HASH_ALGORITHM = "RFC9162_SHA256"
HEADER_FILE = "log.json"
RECORDS_FILE = "records.jsonl"
LEAVES_FILE = "leaves.bin"
SEALS_FILE = "seals.jsonl"
CHECKPOINT_DIR = "checkpoints"
_HEX64 = re.compile(r"[0-9a-f]{64}\Z").match


def checkpoint_body(origin: str, size: int, root: bytes) -> bytes:
    """C2SP tlog-checkpoint body (origin, size, base64 root): what other
    transparency-log tooling expects a signed tree head to look like."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n".encode()


@dataclass(frozen=True)
class Seal:
    """One sealed tree head as stored in seals.jsonl."""

    seal: int
    tree_size: int
    root_hash: str
    previous_tree_size: int
    previous_root_hash: str | None
    consistency_proof: list[str]
    records_start: int
    records_end: int
    checkpoint_sha256: str
    attestation: str | None
    time: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seal": self.seal,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "previous_tree_size": self.previous_tree_size,
            "previous_root_hash": self.previous_root_hash,
            "consistency_proof": list(self.consistency_proof),
            "records_start": self.records_start,
            "records_end": self.records_end,
            "checkpoint_sha256": self.checkpoint_sha256,
            "attestation": self.attestation,
            "time": self.time,
        }

    @classmethod
    def from_dict(cls, d: Any) -> Seal:
        """Every field type-checked (a hostile seals.jsonl is input, never a crash)."""
        if not isinstance(d, Mapping):
            raise InputError("seal entry is not a JSON object")
        names = cls.__dataclass_fields__
        missing = sorted(k for k in names if k not in d)
        if missing:
            raise InputError(f"seal entry is missing field(s) {', '.join(missing)}")
        unknown = sorted(str(k) for k in d if k not in names)
        if unknown:
            raise InputError(f"seal entry has unknown field(s) {', '.join(unknown)[:120]}")
        ints = ("seal", "tree_size", "previous_tree_size", "records_start", "records_end")
        bad = next((k for k in ints if type(d[k]) is not int or d[k] < 0), None)
        if bad:
            raise InputError(f"seal entry field {bad!r} must be a non-negative integer")
        proof = d["consistency_proof"]
        if not isinstance(proof, list) or not all(isinstance(x, str) and _HEX64(x) for x in proof):
            raise InputError("seal entry field 'consistency_proof' must be a list of 64-hex hashes")
        for key, nullable in (("root_hash", False), ("checkpoint_sha256", False), ("previous_root_hash", True),
                              ("attestation", True)):
            v = d[key]
            if not (v is None and nullable) and not (isinstance(v, str) and _HEX64(v)):
                raise InputError(f"seal entry field {key!r} must be 64 lowercase hex digits"
                                 + (" or null" if nullable else ""))
        if parse_rfc3339(d["time"]) is None:
            raise InputError("seal entry field 'time' must be an RFC 3339 timestamp")
        return cls(**{k: d[k] for k in names})


def open_log_file(directory: Path, name: str) -> BinaryIO:
    """A reader on a log file: no-follow, non-blocking, fstat-checked regular file."""
    return safe.open_stream(name, root=directory, what="log file")


def read_header(directory: Path) -> dict[str, Any]:
    path = directory / HEADER_FILE
    try:
        header = parse_json(safe.read_file(HEADER_FILE, root=directory, what="log header"), source=str(path))
    except OSError as exc:
        raise InputError(f"{path}: cannot read log header: {exc.strerror}") from exc
    if not isinstance(header, dict) or header.get("format") != LOG_FORMAT:
        raise InputError(f"{path}: not an {LOG_FORMAT} header")
    if not isinstance(header.get("pipeline"), str) or not _HEX64(header["pipeline"]):
        raise InputError(f"{path}: header has no valid pipeline digest")
    if not isinstance(header.get("origin"), str):
        raise InputError(f"{path}: header has no origin")
    return header


def read_seals(directory: Path) -> list[Seal]:
    path = directory / SEALS_FILE
    if not safe.exists(SEALS_FILE, root=directory):
        return []
    seals = []
    data = safe.read_file(SEALS_FILE, root=directory, what="log seals")  # bounded: 64 MiB
    for no, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            seals.append(Seal.from_dict(parse_json(line, source=f"{path}:{no}")))
        except InputError as exc:
            raise InputError(f"{path}:{no}: {exc}") from None
    return seals


def read_leaf_range(path: Path, start: int, stop: int) -> list[bytes]:
    with open_log_file(path.parent, path.name) as fh:
        fh.seek(start * HASH_SIZE)
        blob = fh.read((stop - start) * HASH_SIZE)
    return [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]


def count_records(directory: Path) -> int:
    """Complete lines of records.jsonl (a newline count: no parsing, flat memory)."""
    lines = 0
    with open_log_file(directory, RECORDS_FILE) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            lines += chunk.count(b"\n")
    return lines


def iter_records(directory: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each complete line of records.jsonl."""
    path = Path(directory) / RECORDS_FILE
    fh = open_log_file(Path(directory), RECORDS_FILE)
    with fh:
        for no, line in enumerate(safe.read_lines(fh, str(path)), 1):
            if not line.endswith(b"\n"):
                raise InputError(f"{path}:{no}: incomplete last record (crash during append)")
            obj = parse_json(line, source=f"{path}:{no}")
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{no}: record is not a JSON object")
            yield no, obj




@dataclass(frozen=True)
class SignedHead:
    """A tree head a trusted key signed: the metadata of one authentic ``log`` attestation.

    Only the verifier (signatures checked under the policy) makes these; the log's own
    files (seals.jsonl, checkpoints, leaves.bin) are evidence to be checked against them.
    """

    attestation: str  # sha256 of the attestation payload
    metadata: Mapping[str, Any]
    sequence: int | None = None  # its place in the chain, for findings
    # Whether the head's pipeline is an authentic serve attestation of the same chain (set by the
    # verifier from the chain; None only for heads a library caller builds and vouches for itself).
    # A head with served=False anchors nothing: a key holder sealed a log of a deployment the chain never made.
    served: bool | None = None

    @property
    def pipeline(self) -> str | None:
        value = self.metadata.get("pipeline")
        return value if isinstance(value, str) else None

    @property
    def tree_size(self) -> int | None:
        value = self.metadata.get("tree_size")
        return value if type(value) is int and value >= 0 else None

    @property
    def root_hash(self) -> str | None:
        value = self.metadata.get("root_hash")
        return value if isinstance(value, str) and _HEX64(value) else None

    @property
    def seal(self) -> int | None:
        value = self.metadata.get("seal")
        return value if type(value) is int else None


def is_sealed_log_metadata(metadata: Mapping[str, Any]) -> bool:
    """True for the metadata the log writer signs when it seals (as opposed to a free-form log claim)."""
    return metadata.get("log_format") == LOG_FORMAT
