"""The writer: an append-only, Merkle-sealed log with O(log n) state.

Signing is a callable (``seal_fn``) so this module does not depend on how
attestations are made.
"""

from __future__ import annotations

import hashlib
import os
import time as _time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlspec_attest._internal import files as safe
from mlspec_attest.errors import InputError
from mlspec_attest.log.format import (
    _HEX64,
    CHECKPOINT_DIR,
    HASH_ALGORITHM,
    HEADER_FILE,
    LEAVES_FILE,
    LOG_FORMAT,
    RECORDS_FILE,
    SEALS_FILE,
    Seal,
    checkpoint_body,
    open_log_file,
    read_header,
    read_leaf_range,
    read_seals,
)
from mlspec_attest.log.merkle import (
    HASH_SIZE,
    FrontierAndBatch,
    LeafFile,
    MerkleAccumulator,
    consistency_proof,
    verify_consistency,
)
from mlspec_attest.log.proofs import prove
from mlspec_attest.log.records import (
    _ENCODE_ERRORS,
    InferenceRecord,
    _fast_encode,
    encode_json,
    line_problem,
    normalize_record,
)
from mlspec_attest.model.canonical import canonicalize, sha256_hex

_sha256 = hashlib.sha256

SealFn = Callable[[dict[str, Any], list[Path]], "str | None"]
"""seal_fn(metadata, products) -> attestation payload sha256 (hex), or None if unsigned."""
# --------------------------------------------------------------------------- writer


def _fsync(fh: Any) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _atomic_write(directory: Path, rel: str, data: bytes | Iterable[bytes]) -> None:
    """The one safe-write routine: random exclusive temp, no-follow below the log directory."""
    safe.write_file(directory, rel, data, replace=True, what="log file")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

class InferenceLog:
    """Append-only, Merkle-sealed inference log in ``directory``.

    ``append`` is cheap (encode, buffer); every ``flush_every`` records the
    buffered lines are hashed and written in one go. Every ``batch_size`` records
    (or ``max_interval`` seconds) the log is sealed: the tree head is handed to
    ``seal_fn`` to be attested. Use as a context manager or call ``close()``
    (which seals the tail unless ``seal_on_close=False``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        pipeline_digest: str | None = None,
        *,
        batch_size: int = 10_000,
        max_interval: float | None = None,
        seal_fn: SealFn | None = None,
        flush_every: int = 1024,
        origin: str | None = None,
        seal_on_close: bool = True,
    ) -> None:
        if batch_size < 1 or flush_every < 1:
            raise InputError("batch_size and flush_every must be positive")
        self.directory = Path(directory)
        self.batch_size = batch_size
        self.max_interval = max_interval
        self.seal_fn = seal_fn
        self.flush_every = min(flush_every, batch_size)
        self.seal_on_close = seal_on_close
        self._pending: list[bytes] = []
        self._closed = False
        if safe.exists(HEADER_FILE, root=self.directory):
            header = read_header(self.directory)
            if pipeline_digest is not None and pipeline_digest != header["pipeline"]:
                raise InputError(
                    f"{self.directory} logs pipeline {header['pipeline']}, not {pipeline_digest}:"
                    " use a new log directory for each serve attestation"
                )
            self.pipeline = header["pipeline"]
            self.origin = header["origin"]
        else:
            if pipeline_digest is None or not _HEX64(pipeline_digest):
                raise InputError("a new log needs the serve attestation's payload sha256 (64 lowercase hex)")
            self.pipeline = pipeline_digest
            self.origin = origin or f"mlspec-attest/inference-log/{pipeline_digest}"
            safe.make_dirs(self.directory, "")
            header = {"format": LOG_FORMAT, "hash_algorithm": HASH_ALGORITHM, "origin": self.origin,
                      "pipeline": self.pipeline, "created": _now()}
            _atomic_write(self.directory, HEADER_FILE, canonicalize(header) + b"\n")
        safe.make_dirs(self.directory, CHECKPOINT_DIR)
        self._seals = read_seals(self.directory)
        self._recover()
        self._records = safe.open_append(self.directory, RECORDS_FILE, what="log records", buffering=1 << 20)
        self._leaves = safe.open_append(self.directory, LEAVES_FILE, what="log leaves", buffering=1 << 16)
        self._last_seal_clock = _time.monotonic()

    # -- state -----------------------------------------------------------------------

    def _recover(self) -> None:
        """Rebuild the frontier from disk; repair leaves.bin if a crash left it
        behind records.jsonl (it is a cache); refuse a torn last record."""
        records = self.directory / RECORDS_FILE
        leaves = self.directory / LEAVES_FILE
        for name in (RECORDS_FILE, LEAVES_FILE):  # create if absent, refusing planted symlinks
            safe.open_append(self.directory, name, what="log file").close()
        with open_log_file(self.directory, RECORDS_FILE) as fh:
            size = os.fstat(fh.fileno()).st_size
        with open_log_file(self.directory, LEAVES_FILE) as fh:
            leaves_size = os.fstat(fh.fileno()).st_size
        if size:
            with open_log_file(self.directory, RECORDS_FILE) as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    raise InputError(
                        f"{records}: the last record is incomplete (a crash during append);"
                        " `mlspec log verify` shows it; truncate the file after its last newline to continue"
                    )
        last = self._seals[-1] if self._seals else None
        boundary = last.tree_size if last else 0
        lines, tail_offset = 0, 0
        with open_log_file(self.directory, RECORDS_FILE) as fh:
            pos = 0
            # The readers' bound (one record <= MAX_LINE_BYTES): a sparse 200 GiB file of zeros is refused
            # after 16 MiB instead of being counted to its end.
            since_newline = 0
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                count = chunk.count(b"\n")
                last_nl = chunk.rfind(b"\n")
                since_newline = since_newline + len(chunk) if last_nl < 0 else len(chunk) - last_nl - 1
                if since_newline > safe.MAX_LINE_BYTES:
                    raise InputError(f"{records}: line {lines + count + 1} is longer than {safe.MAX_LINE_BYTES} "
                                     "bytes (not a record the writer made); run `mlspec log verify`")
                if lines < boundary <= lines + count:  # the byte after the last sealed record
                    k = -1
                    for _ in range(boundary - lines):
                        k = chunk.index(b"\n", k + 1)
                    tail_offset = pos + k + 1
                lines += count
                pos += len(chunk)
        if last is not None and last.tree_size > lines:
            raise InputError(f"{records} has {lines} records but seal {last.seal} covers {last.tree_size}: run `mlspec log verify`")
        n_leaves = leaves_size // HASH_SIZE
        if n_leaves < boundary or leaves_size % HASH_SIZE:
            self._rebuild_leaves(lines)
            n_leaves = lines
        acc = MerkleAccumulator()

        def feed(a: int, b: int) -> None:
            for start in range(a, b, LeafFile.CHUNK):
                acc.extend(read_leaf_range(leaves, start, min(b, start + LeafFile.CHUNK)))

        feed(0, boundary)
        prev = acc.copy()
        if last is not None and prev.root().hex() != last.root_hash:
            raise InputError(f"{self.directory}: records do not match seal {last.seal}: run `mlspec log verify`")
        if self._check_tail(acc, boundary, tail_offset, lines) or n_leaves != lines:
            self._rebuild_leaves(lines)  # leaves.bin is a cache: the tail's leaves come from the records
        self._acc = acc
        self._prev = prev
        self._bytes = size
        self._unsealed = lines - boundary

    def _check_tail(self, acc: MerkleAccumulator, boundary: int, offset: int, lines: int) -> bool:
        """Validate every unsealed line already on disk before anything can sign it, and hash it
        into ``acc`` from the record itself (not from leaves.bin). Those lines were not written
        by this process: whoever can write the directory could have appended junk, duplicate
        keys or another pipeline's records. Returns True when leaves.bin's tail disagrees."""
        if lines == boundary:
            return False
        records = self.directory / RECORDS_FILE
        stale = False
        with open_log_file(self.directory, RECORDS_FILE) as fh, open_log_file(self.directory, LEAVES_FILE) as lf:
            fh.seek(offset)
            lf.seek(boundary * HASH_SIZE)
            for no, line in enumerate(safe.read_lines(fh, str(records)), boundary + 1):
                body = line[:-1]
                problem = line_problem(body, self.pipeline)
                if problem is not None:
                    raise InputError(
                        f"{records}:{no}: unsealed line {problem}; the log writer did not write it, so it is"
                        " not sealed: move it out of the file (and every line after it you do not vouch for)")
                h = _sha256(b"\x00" + body).digest()
                acc.append(h)
                stale = stale or lf.read(HASH_SIZE) != h
        return stale

    def _rebuild_leaves(self, lines: int) -> None:
        with open_log_file(self.directory, RECORDS_FILE) as src:
            source = str(self.directory / RECORDS_FILE)
            _atomic_write(self.directory, LEAVES_FILE,
                          (_sha256(b"\x00" + line[:-1]).digest() for line in safe.read_lines(src, source)))

    @property
    def size(self) -> int:
        """Records appended so far (including buffered ones)."""
        return self._acc.size + len(self._pending)

    @property
    def sealed_size(self) -> int:
        return self._prev.size

    @property
    def seals(self) -> list[Seal]:
        return list(self._seals)

    # -- writing ---------------------------------------------------------------------

    def append(self, record: InferenceRecord | Mapping[str, Any]) -> int:
        """Validate, canonicalise and buffer one record; returns its leaf index."""
        if self._closed:
            raise InputError("the log is closed")
        if isinstance(record, InferenceRecord):
            record = record.to_dict()
        obj, fast = normalize_record(record, self.pipeline)
        pending = self._pending
        try:
            pending.append(_fast_encode(obj) if fast else canonicalize(obj))
        except _ENCODE_ERRORS:  # e.g. a str-subclass key orjson refuses, a lone surrogate
            pending.append(encode_json(obj, False))  # the reference decides: bytes or InputError
        index = self._acc.size + len(pending) - 1
        self._unsealed += 1
        if self._unsealed >= self.batch_size:
            self.seal()
        elif (index + 1) % self.flush_every == 0:  # aligned flushes: whole subtrees per flush
            self.flush()
            if self.max_interval is not None and _time.monotonic() - self._last_seal_clock >= self.max_interval:
                self.seal()
        return index

    def extend(self, records: Iterable[InferenceRecord | Mapping[str, Any]]) -> int:
        """Append many records; returns how many."""
        n = 0
        for r in records:
            self.append(r)
            n += 1
        return n

    def flush(self) -> None:
        """Hash buffered lines as leaves and hand them to the OS (no fsync)."""
        lines = self._pending
        if not lines:
            return
        self._pending = []
        sha = _sha256
        hashes = [sha(b"\x00" + line).digest() for line in lines]
        lines.append(b"")
        data = b"\n".join(lines)
        self._records.write(data)
        self._leaves.write(b"".join(hashes))
        self._acc.extend(hashes)
        self._bytes += len(data)

    def seal(self) -> Seal | None:
        """Durably write everything, then sign the new tree head (via seal_fn) and
        record it; None when nothing was appended since the last seal."""
        self.flush()
        _fsync(self._records)
        _fsync(self._leaves)
        n, m = self._acc.size, self._prev.size
        self._last_seal_clock = _time.monotonic()
        if n == m:
            return None
        root = self._acc.root()
        prev_root = self._prev.root()
        batch = read_leaf_range(self.directory / LEAVES_FILE, m, n)
        proof = consistency_proof(m, n, FrontierAndBatch(self._prev, batch))
        if m and not verify_consistency(m, n, prev_root, root, proof):  # never expected: fail loudly
            raise RuntimeError("internal error: consistency proof does not verify")
        last = self._seals[-1] if self._seals else None
        number = (last.seal if last else 0) + 1
        body = checkpoint_body(self.origin, n, root)
        cp_path = self.directory / CHECKPOINT_DIR / f"{number:08d}.checkpoint"
        _atomic_write(self.directory, f"{CHECKPOINT_DIR}/{number:08d}.checkpoint", body)
        records_start = last.records_end if last else 0
        metadata = {
            "log_format": LOG_FORMAT,
            "hash_algorithm": HASH_ALGORITHM,
            "origin": self.origin,
            "pipeline": self.pipeline,
            "seal": number,
            "tree_size": n,
            "root_hash": root.hex(),
            "previous_tree_size": m,
            "previous_root_hash": prev_root.hex() if m else None,
            "consistency_proof": [p.hex() for p in proof],
            "records_file": RECORDS_FILE,
            "records_start": records_start,
            "records_end": self._bytes,
            "checkpoint_sha256": sha256_hex(body),
        }
        digest = self.seal_fn(metadata, [cp_path]) if self.seal_fn is not None else None
        if digest is not None and (not isinstance(digest, str) or not _HEX64(digest)):
            raise InputError(f"seal_fn returned {digest!r:.80}, not a sha256 hex payload digest")
        entry = Seal(
            seal=number, tree_size=n, root_hash=root.hex(), previous_tree_size=m,
            previous_root_hash=metadata["previous_root_hash"], consistency_proof=metadata["consistency_proof"],
            records_start=records_start, records_end=self._bytes, checkpoint_sha256=metadata["checkpoint_sha256"],
            attestation=digest, time=_now(),
        )
        with safe.open_append(self.directory, SEALS_FILE, what="log seals") as fh:
            fh.write(canonicalize(entry.to_dict()) + b"\n")
            _fsync(fh)
        self._seals.append(entry)
        self._prev = self._acc.copy()
        self._unsealed = 0
        return entry

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self.seal_on_close:
                self.seal()
            else:
                self.flush()
        finally:
            self._records.close()
            self._leaves.close()
            self._closed = True

    def __enter__(self) -> InferenceLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prove(self, request_id: str | None = None, *, index: int | None = None) -> dict[str, Any]:
        """Inclusion proof for one record against the latest seal (flushes first)."""
        if not self._closed:
            self.flush()
            self._records.flush()
            self._leaves.flush()
        return prove(self.directory, request_id, index=index)


