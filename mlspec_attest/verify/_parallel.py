"""Per-attestation verification work spread over cores, for long chains.

Verifying one attestation (strict JSON, DSSE decode, the RFC 8785 canonical-form
check, in-toto Statement validation, signature checks) is independent of every
other one; only the chain, stage, flow and objective checks need them all. A
10,000-attestation chain (monitor and log repeat for the life of a model) spends
almost all its time in that per-file part, most of it pure Python holding the GIL,
so threads would not help: chunks of files go to a forked process pool instead.

Results are identical to the serial loop, in the same order: each worker runs the
reader's ``EntryReader.read`` on a contiguous slice into a private Report, and the parent
appends the findings slice by slice. Children inherit the files through fork (no
pickling of inputs); entries come back without their file bytes and are re-joined
with the parent's BundleFile. Short chains, non-Linux hosts and processes that
already run other threads (forking those is unsafe) take the serial path, and so
does a machine whose load already exceeds its cores; ``MLSPEC_VERIFY_WORKERS=N``
overrides the worker count (benchmarks, debugging).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import mlspec_attest._internal.files as _safe
import mlspec_attest.bundle as _bundle
from mlspec_attest._internal.workers import fork_context, workers_for
from mlspec_attest.bundle import BundleFile
from mlspec_attest.model.statement import StageStatement
from mlspec_attest.verify._kept import kept_in, shed, shed_stages
from mlspec_attest.verify.context import Entry
from mlspec_attest.verify.signatures import EntryReader

PARALLEL_MIN = 200  # below this, starting processes costs more than it saves
CHUNKS_PER_WORKER = 4  # a few chunks each, so a slow core does not hold the rest up

_STATE: tuple[Any, Sequence[Any], Any] | None = None  # (reader, files, report) inherited by fork


def list_bundle(bundle: Any) -> list[tuple[Any, int | None, str]]:
    """(path, number, kind) of every file ``bundle.files()`` returns, in its order, unread."""

    bundle.require_exists()
    folder = bundle.attestations_dir
    out = []
    for name in sorted(os.listdir(folder)):  # == sorted(iterdir()): one parent, names compare as str
        if name.startswith(_bundle.TEMP_PREFIX) or name.startswith("."):
            continue
        match = _bundle._NAME.fullmatch(name)
        kind = match.group(3) if match else ("sigstore" if ".sigstore." in name else "dsse")
        out.append((folder / name, int(match.group(1)) if match else None, kind))
    _bundle.check_totals(bundle.root, [path.name for path, _, _ in out])  # before anything is read
    return out


def read_bundle_files(bundle: Any) -> list[Any]:
    """``bundle.files()``: the same list, the same errors."""
    return _read_listing(list_bundle(bundle))


def _read_listing(listing: Sequence[Any]) -> list[Any]:
    return [_bundle_file(path, number, kind) for path, number, kind in listing]


def _bundle_file(path: Any, number: int | None, kind: str) -> Any:
    """The BundleFile ``Bundle.files()`` makes for this entry (same reader, same refusals)."""

    data = _bundle.read_attestation_file(path)
    return _bundle.BundleFile(path=path, number=number, kind=kind, data=data)


def _parse_range(reader: EntryReader, listing: Sequence[Any], start: int, stop: int, report: Any, *,
                 in_worker: bool = False) -> list[Any]:
    """Read and parse listing[start:stop]; one slot per file: None (refused) or the Entry, as kept.

    The attestations directory is opened once (no-follow) and each file in it no-follow,
    bounded and fstat-checked, as ``read_attestation_file`` does, with its messages. Files
    are read one at a time and their bytes dropped once judged (``keep``), so a slice never
    holds more than one file's bytes.
    """
    out: list[Any] = []
    if start >= stop:
        return out
    stages = shed_stages(reader.policy)
    root = listing[start][0].parent.parent
    with _safe.open_dir(root, _bundle.ATTESTATIONS) as dir_fd:
        for path, number, kind in listing[start:stop]:
            where = os.path.join(os.fspath(root), f"{_bundle.ATTESTATIONS}/{path.name}")
            data = _safe.read_file_in(dir_fd, path.name, where, limit=_bundle.MAX_INPUT_BYTES, what="attestation")
            out.append(keep(reader.read(BundleFile(path=path, number=number, kind=kind, data=data), report),
                            stages, portable=in_worker))
    return out


def keep(entry: Entry | None, shed_from: frozenset[str] = frozenset(), *, portable: bool = False) -> Entry | None:
    """The entry as the chain checks keep it: its schema verdict taken here, its bytes dropped,
    and for a recurring stage in ``shed_from`` only the metadata fields every-entry checks read.

    Here means where the file was read, a worker process for long chains: the metadata schema
    re-check (lineage.check_metadata_schema, ~80 us each) runs on every core with the rest of
    the per-file work, and only its verdict travels. The file's bytes and the payload are not
    needed by any later check (the payload only to prove a pending revocation older, kept for
    those), so a long chain's memory follows its entry count, not its payload sizes (verify/_kept.py).
    """
    if entry is None:
        return None
    entry.metadata_problem = metadata_problem(entry)
    shed(entry, shed_from, portable=portable)
    entry.file = BundleFile(path=entry.file.path, number=entry.file.number, kind=entry.file.kind, data=b"")
    if not entry.pending_revocations:
        entry.payload = b""
    return entry


def metadata_problem(entry: Entry) -> str:
    """"" when the entry's signed metadata fits its stage's schema, else the one-line reason."""
    from mlspec_attest.model.metadata import metadata_refusal, refusal_message  # lazy: jsonschema-rs

    statement = entry.statement
    refusal = metadata_refusal(statement.stage.name, statement.metadata)
    if refusal is None:  # the common case: no message built
        return ""
    return refusal_message(f"sequence {entry.sequence} ({entry.stage})", statement.stage.name, refusal)


def _preload_validators() -> None:
    """Compile every stage's schema before forking, so no worker compiles one again."""
    from mlspec_attest.model import metadata, stages

    for stage in stages.STAGES:
        metadata._judge(stage.name)


def _parse_slice(bounds: tuple[int, int]) -> tuple[str, Any, list[Any]]:
    """Worker: read and check listing[start:stop] with the reader's ``EntryReader.read``.

    Entries go back as plain values through ``marshal`` (the file bytes, the entry's scalar
    fields and the statement's parsed JSON value): about 4x cheaper to send and to rebuild
    than pickled dataclasses. Anything marshal cannot carry falls back to pickle. A file
    that cannot be read returns its InputError, which the parent raises in file order.
    """
    import marshal

    from mlspec_attest.errors import InputError

    assert _STATE is not None
    reader, listing, report = _STATE
    local = dataclasses.replace(report, findings=[], stages=[], objectives=[], artifacts=[])
    try:
        entries = _parse_range(reader, listing, bounds[0], bounds[1], local, in_worker=True)
    except InputError as exc:
        return "error", exc, []
    try:
        packed = [None if e is None else ({f.name: getattr(e, f.name) for f in _ENTRY_FIELDS}, e.statement.raw)
                  for e in entries]
        return "marshal", marshal.dumps(packed), local.findings
    except ValueError:  # not a plain value (cannot happen for JSON statements; kept honest)
        return "pickle", [None if e is None else dataclasses.replace(e, file=None) for e in entries], local.findings


_ENTRY_FIELDS: tuple[Any, ...] = ()  # Entry's fields other than file and statement (set at first use)


def _unpack(kind: str, blob: Any, listing: Sequence[Any], start: int) -> list[Any]:
    import marshal

    out = []
    if kind == "pickle":
        for offset, entry in enumerate(blob):
            if entry is not None:
                path, number, file_kind = listing[start + offset]
                statement = entry.statement
                if entry.metadata_kept:  # plain kept fields: never handed on as if they were all of it
                    raw = {**statement.raw, "predicate": dict(statement.raw["predicate"])}
                    kept_in(raw, path, file_kind, entry.payload_sha256)
                    statement = StageStatement.from_trusted_value(raw)
                out.append(dataclasses.replace(entry, statement=statement,
                                               file=BundleFile(path=path, number=number, kind=file_kind, data=b"")))
        return out
    for offset, item in enumerate(marshal.loads(blob)):
        if item is not None:
            fields, raw = item
            path, number, file_kind = listing[start + offset]
            if fields["metadata_kept"]:
                kept_in(raw, path, file_kind, fields["payload_sha256"])
            out.append(Entry(file=BundleFile(path=path, number=number, kind=file_kind, data=b""),
                             statement=StageStatement.from_trusted_value(raw), **fields))
    return out


def parse_bundle(reader: EntryReader, bundle: Any, report: Any, *, workers: int | None = None) -> list[Any]:
    """``parse_entries(reader, bundle.files(), report)``, with the reading spread over the cores too.

    Parallel layout for W workers: W-1 forked processes take the first (W-1)/W of the files
    in CHUNKS_PER_WORKER slices each; this process takes the last 1/W itself (no fork, no
    transfer for that share) while the children run, then collects their slices in order.
    Findings are appended slice by slice in file order, the parent's own slice last, so the
    report is identical to the serial loop's; a file that cannot be read raises the same
    InputError (the first in file order) as ``bundle.files()`` would.
    """
    global _STATE, _ENTRY_FIELDS
    if getattr(bundle, "is_remote", False):  # an object store: read through the bundle, one object at a time
        return [e for e in (reader.read(bf, report) for bf in bundle.files()) if e is not None]
    listing = list_bundle(bundle)
    workers = workers_for("MLSPEC_VERIFY_WORKERS", workers)
    ctx = fork_context() if len(listing) >= PARALLEL_MIN and workers > 1 else None
    if ctx is None:
        # One file at a time: a file's bytes are dropped once it is judged, not held with all the others.
        return [e for e in _parse_range(reader, listing, 0, len(listing), report) if e is not None]
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool


    _ENTRY_FIELDS = tuple(f for f in dataclasses.fields(Entry) if f.name not in ("file", "statement"))
    _preload_validators()
    n = len(listing)
    own_start = n - n // workers
    parts = min(own_start, (workers - 1) * CHUNKS_PER_WORKER)
    bounds = [(i * own_start // parts, (i + 1) * own_start // parts) for i in range(parts)]
    own_report = dataclasses.replace(report, findings=[], stages=[], objectives=[], artifacts=[])
    _STATE = (reader, listing, report)
    try:
        with ProcessPoolExecutor(max_workers=workers - 1, mp_context=ctx) as pool:
            futures = [pool.submit(_parse_slice, b) for b in bounds]
            own_error = None
            try:
                own = _parse_range(reader, listing, own_start, n, own_report)
            except Exception as exc:  # raised below, after the earlier slices' errors
                own_error, own = exc, []
            results = [f.result() for f in futures]
    except (BrokenProcessPool, OSError):  # a worker died (OOM killer, fork refused): do it here
        return [e for e in _parse_range(reader, listing, 0, n, report) if e is not None]
    finally:
        _STATE = None
    for kind, blob, _ in results:
        if kind == "error":
            raise blob
    if own_error is not None:
        raise own_error
    out = []
    for (start, _), (kind, blob, findings) in zip(bounds, results):
        report.findings.extend(findings)
        out.extend(_unpack(kind, blob, listing, start))
    report.findings.extend(own_report.findings)
    out.extend(e for e in own if e is not None)
    return out


def _parse_files_slice(bounds: tuple[int, int]) -> tuple[list[Any], list[Any]]:
    """Worker for ``parse_entries``: run the reader's per-file checks on files[start:stop]."""
    assert _STATE is not None
    reader, files, report = _STATE
    local = dataclasses.replace(report, findings=[], stages=[], objectives=[], artifacts=[])
    entries = []
    for bf in files[bounds[0]:bounds[1]]:
        entry = reader.read(bf, local)
        if entry is not None:
            entry = dataclasses.replace(entry, file=None)  # the parent has the bytes already
        entries.append(entry)
    return entries, local.findings


def parse_entries(reader: EntryReader, files: Sequence[Any], report: Any, *, workers: int | None = None) -> list[Any]:
    """``[reader.read(bf, report) for bf in files]`` minus the Nones, on every core when it pays."""
    global _STATE
    workers = workers_for("MLSPEC_VERIFY_WORKERS", workers)
    ctx = fork_context() if len(files) >= PARALLEL_MIN and workers > 1 else None
    if ctx is None:
        return [e for e in (reader.read(bf, report) for bf in files) if e is not None]
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    n = len(files)
    parts = min(n, workers * CHUNKS_PER_WORKER)
    bounds = [(i * n // parts, (i + 1) * n // parts) for i in range(parts)]
    _STATE = (reader, files, report)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = list(pool.map(_parse_files_slice, bounds))
    except (BrokenProcessPool, OSError):  # a worker died (OOM killer, fork refused): do it here
        return [e for e in (reader.read(bf, report) for bf in files) if e is not None]
    finally:
        _STATE = None
    out = []
    for (start, _), (entries, findings) in zip(bounds, results):
        report.findings.extend(findings)
        for offset, entry in enumerate(entries):
            if entry is not None:
                out.append(dataclasses.replace(entry, file=files[start + offset]))
    return out
