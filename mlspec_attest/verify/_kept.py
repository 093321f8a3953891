"""Recurring stages keep only the metadata fields later checks read: memory follows entries, not payloads.

A model in production attests ``monitor`` and ``log`` for years: a 100,000-attestation
chain is almost all of them, and their metadata (signals, thresholds, notes) is the
part of a statement whose size the pipeline chooses. The gate judges each entry's
metadata where the file is read (its schema verdict travels as ``Entry.metadata_problem``);
after that, the chain checks read a handful of fields of *every* monitor and log
(``rollback_target``, ``serve_attestation``, the sealed tree head) and the whole
metadata of only the latest one of each stage (criteria, metrics binding, ``previous``).

So an entry of a recurring stage keeps just those fields, as :class:`KeptMetadata`.
It is sound, not an optimisation that can change a verdict:

* reading any other field (or iterating, or comparing) re-reads the attestation file,
  proves it is the one whose signatures were checked (the payload's sha256 must equal
  ``Entry.payload_sha256``, else the bundle changed during verification: InputError,
  exit 2) and answers from its full metadata. A field missing from ``KEPT_FIELDS``
  costs time, never a wrong answer;
* the latest entry of each stage (and the latest authentic one) gets its whole
  metadata back (``restore_latest``, right after the revocation check decides which
  entries are authentic), as a plain dict;
* a stage the policy has CEL ``checks`` for keeps everything (the checks read all of
  every entry), and so does an entry binding ``metadataSources`` (every bound key is
  compared with its file) and every entry of a remote (object-store) bundle, which
  is not re-read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mlspec_attest.errors import InputError
from mlspec_attest.policy import Policy
from mlspec_attest.verify.context import Entry, VerifyContext

# Per recurring stage, the metadata fields some check reads on every entry (not only the latest):
# monitor: lineage.check_rollback_target, check_deployment_links; log: the serve link, the served model
# (lineage.check_served_model) and the signed tree head the inference log is checked against
# (log/format.py SignedHead, log/verification.py _SEAL_FIELDS, log/proofs.py).
KEPT_FIELDS: Mapping[str, frozenset[str]] = {
    "monitor": frozenset({"rollback_target", "serve_attestation"}),
    "log": frozenset({"log_format", "pipeline", "origin", "model", "seal", "tree_size", "root_hash",
                      "previous_tree_size", "previous_root_hash", "consistency_proof"}),
}


class KeptMetadata(Mapping[str, Any]):
    """One entry's signed metadata, holding only ``KEPT_FIELDS``; any other read loads the rest (proven)."""

    __slots__ = ("_kept", "_names", "_path", "_kind", "_payload_sha256", "_whole")

    def __init__(self, kept: dict[str, Any], names: frozenset[str], path: Path, kind: str,
                 payload_sha256: str) -> None:
        self._kept = kept
        self._names = names
        self._path = path
        self._kind = kind
        self._payload_sha256 = payload_sha256
        self._whole: dict[str, Any] | None = None

    def __getitem__(self, key: str) -> Any:
        if key in self._names and self._whole is None:
            return self._kept[key]  # KeyError when the signed metadata has no such field
        return self.whole()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.whole())

    def __len__(self) -> int:
        return len(self.whole())

    def __repr__(self) -> str:
        return f"KeptMetadata({self._kept!r}, of {self._path.name})"

    def whole(self) -> dict[str, Any]:
        """The full signed metadata: the file again, proven to be the payload whose signatures were checked."""
        if self._whole is None:
            self._whole = reread_metadata(self._path, self._kind, self._payload_sha256)
        return self._whole


def reread_metadata(path: Path, kind: str, payload_sha256: str) -> dict[str, Any]:
    """``predicate.metadata`` of the attestation at ``path``, if its payload still hashes to ``payload_sha256``."""
    from mlspec_attest.bundle import read_attestation_file
    from mlspec_attest.model.canonical import sha256_hex
    from mlspec_attest.model.statement import StageStatement

    where = f"{path.parent.name}/{path.name}"
    changed = InputError(f"{where}: the file changed while it was being verified; "
                         "verify the bundle again once nothing writes to it")
    try:
        payload = _payload_of(kind, read_attestation_file(path))
    except (InputError, OSError, ValueError, KeyError, TypeError):
        raise changed from None
    if sha256_hex(payload) != payload_sha256:
        raise changed
    try:
        metadata = StageStatement.from_payload(payload).metadata
    except (InputError, ValueError):  # cannot happen for the same bytes; kept fail-closed
        raise changed from None
    return metadata


def _payload_of(kind: str, data: bytes) -> bytes:
    """The payload bytes, decoded as the first read accepted them (either base64 alphabet).

    Soundness does not rest on this decoder: the caller compares the result's sha256 with
    the payload whose signatures were checked. It only must not refuse what the first read took.
    """
    from mlspec_attest.model.canonical import parse_json
    from mlspec_attest.model.envelope import Envelope, b64decode_strict

    if kind != "sigstore":
        envelope = Envelope.from_file_fast(data) or Envelope.from_dict(parse_json(data, source="attestation"))
        return envelope.payload
    text = parse_json(data, source="attestation")["dsseEnvelope"]["payload"]
    try:
        return b64decode_strict(text, "payload")
    except ValueError:  # protobuf's JSON reader (sigstore-python) also takes unpadded and stray-bit forms
        import base64

        alphabet = b"-_" if ("-" in text or "_" in text) else None
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=alphabet)


def shed_stages(policy: Policy | None) -> frozenset[str]:
    """The recurring stages whose entries may keep only ``KEPT_FIELDS`` under this policy."""
    if policy is None:  # no signatures checked (an auditor's replay): nothing to gain, keep all
        return frozenset()
    return frozenset(stage for stage in KEPT_FIELDS
                     if not (policy.stages.get(stage) and policy.stages[stage].checks))


def shed(entry: Entry, stages: frozenset[str], *, portable: bool = False) -> None:
    """Drop the metadata fields no check reads on every entry.

    ``portable``: in a worker process, keep plain values (marshal sends them back; ``kept_in`` makes
    them :class:`KeptMetadata` in the parent); else the entry gets its :class:`KeptMetadata` now.
    """
    statement = entry.statement
    names = KEPT_FIELDS.get(statement.stage.name)
    if names is None or statement.stage.name not in stages:
        return
    predicate = statement.raw.get("predicate")
    if not isinstance(predicate, dict) or "metadataSources" in predicate:
        return
    kept: Any = {k: v for k, v in statement.metadata.items() if k in names}
    if len(kept) == len(statement.metadata):
        return  # nothing to drop: keep the plain dict
    if not portable:
        kept = KeptMetadata(kept, names, entry.file.path, entry.file.kind, entry.payload_sha256)
    raw = {**statement.raw, "predicate": {**predicate, "metadata": kept}}
    entry.statement = dataclasses.replace(statement, metadata=kept, raw=raw)
    entry.metadata_kept = True


def kept_in(raw: dict[str, Any], path: Path, kind: str, payload_sha256: str) -> None:
    """In the parent: a worker's shed statement value (``raw``, fresh from marshal) gets its KeptMetadata."""
    from mlspec_attest.model.stages import from_predicate_type

    stage = from_predicate_type(raw["predicateType"])
    assert stage is not None  # a value from_payload accepted
    predicate = raw["predicate"]
    predicate["metadata"] = KeptMetadata(predicate["metadata"], KEPT_FIELDS[stage.name], path, kind, payload_sha256)


def restore_latest(ctx: VerifyContext) -> None:
    """The latest entry of each stage, and the latest authentic one, get their whole metadata back.

    Those are what criteria, the metrics binding, ``previous`` and the report's stage state read
    in full. The gate runs this right after the revocation check (the last to decide which entries
    are authentic) and before every check that reads metadata, so each such read sees a plain dict.
    """
    chain = ctx.chain
    latest: set[str] = set()
    latest_authentic: set[str] = set()
    for e in reversed(chain):
        first = e.stage not in latest
        first_authentic = e.authentic and e.stage not in latest_authentic
        if (first or first_authentic) and isinstance(e.statement.metadata, KeptMetadata):
            whole = e.statement.metadata.whole()
            raw = {**e.statement.raw, "predicate": {**e.statement.raw["predicate"], "metadata": whole}}
            e.statement = dataclasses.replace(e.statement, metadata=whole, raw=raw)
            e.metadata_kept = False
        latest.add(e.stage)
        if e.authentic:
            latest_authentic.add(e.stage)
