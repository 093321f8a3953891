"""Per-inference log: JSON Lines records as leaves of an RFC 9162 Merkle tree,
sealed batch by batch by signed ``log``-stage attestations.

Files in a log directory (see docs/logging.md):

- ``log.json``      header: format, pipeline digest, origin, hash algorithm.
- ``records.jsonl`` one RFC 8785 canonical JSON record per line; the exact line
                    bytes (without the newline) are the Merkle leaf.
- ``leaves.bin``    the 32-byte leaf hashes in order: an unsigned cache used to
                    generate proofs and to locate tampering; always re-derivable.
- ``seals.jsonl``   one line per seal: tree size, root, consistency proof from the
                    previous seal, byte range, attestation payload digest.
- ``checkpoints/``  one C2SP tlog-checkpoint body per seal (the attested product).

The writer keeps O(log n) state (the Merkle frontier), so memory does not grow
with the number of records; signing is a callable (``seal_fn``) so this module
does not depend on how attestations are made.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import time as _time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlspec_attest._internal import files as safe
from mlspec_attest.errors import InputError
from mlspec_attest.log.merkle import (
    HASH_SIZE,
    FrontierAndBatch,
    LeafFile,
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from mlspec_attest.model.canonical import (
    FAST_ENCODE_ERRORS,
    FAST_ENCODER,
    FAST_FLOAT_MIN,
    FAST_PROBE,
    MAX_SAFE_INTEGER,
    canonicalize,
    fast_encode,
    float_is_fast,
    parse_json,
    select_fast_encoder,
    sha256_hex,
    stdlib_fast_encode,
)

LOG_FORMAT = "mlspec-inference-log/v1"
PROOF_FORMAT = "mlspec-inference-proof/v1"
HASH_ALGORITHM = "RFC9162_SHA256"
HEADER_FILE = "log.json"
RECORDS_FILE = "records.jsonl"
LEAVES_FILE = "leaves.bin"
SEALS_FILE = "seals.jsonl"
CHECKPOINT_DIR = "checkpoints"

SealFn = Callable[[dict[str, Any], list[Path]], "str | None"]
"""seal_fn(metadata, products) -> attestation payload sha256 (hex), or None if unsigned."""

_sha256 = hashlib.sha256
_HEX64 = re.compile(r"[0-9a-f]{64}\Z").match
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2})\Z"
).match
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MAX_DEPTH = 32

# JSON key <-> InferenceRecord attribute. The CLF names are kept verbatim; the
# rest follow the seed's monitoring/logging protos.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("host", "host"),
    ("ident", "ident"),
    ("user", "user"),
    ("time", "time"),
    ("request", "request"),
    ("status", "status"),
    ("bytes", "bytes_sent"),
    ("applicationId", "application_id"),
    ("requestId", "request_id"),
    ("requestTimestamp", "request_timestamp"),
    ("latency", "latency"),
    ("modelId", "model_id"),
    ("inputFeatures", "input_features"),
    ("inputFeaturesDigest", "input_features_digest"),
    ("prediction", "prediction"),
    ("predictionDigest", "prediction_digest"),
    ("explanation", "explanation"),
    ("feedback", "feedback"),
    ("pipeline", "pipeline"),
)
_ALLOWED_KEYS = frozenset(k for k, _ in _FIELDS)
_REQUIRED_STR = ("host", "request", "applicationId", "requestId", "modelId")


# --------------------------------------------------------------------------- records


def _where(src: Mapping[str, Any]) -> str:
    rid = src.get("requestId")
    return f"record {rid!r}" if isinstance(rid, str) else "record"


def _bad(src: Mapping[str, Any], key: str, want: str) -> InputError:
    return InputError(f"{_where(src)}: field {key!r} must be {want}, got {src.get(key)!r:.80}")


def _number(v: Any, src: Mapping[str, Any], key: str) -> tuple[Any, bool]:
    """Validate a JSON number; returns (value, fast) where fast means
    ``json.dumps`` prints it exactly as RFC 8785 (ECMAScript) does."""
    t = type(v)
    if t is int:
        if -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER:
            return v, True
        raise _bad(src, key, f"an integer within +/-{MAX_SAFE_INTEGER} (I-JSON)")
    if t is float or (isinstance(v, float)):
        v = float(v)
        if v != v or v in (math.inf, -math.inf):
            raise _bad(src, key, "a finite number")
        if v.is_integer():
            if -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER:
                return int(v), True  # ES6 prints 100.0 as "100" and -0.0 as "0"
            return v, False
        # Non-integral floats: repr() and ES6 agree (shortest round-trip digits,
        # fixed notation) for 1e-4 <= |v| < 1e16; outside, repr uses exponents.
        return v, float_is_fast(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return _number(int(v), src, key)
    raise _bad(src, key, "a number")


_FLAT_TYPES = frozenset((str, float, int, bool, type(None)))
_NULLABLE = ("ident", "user", "bytes", "requestTimestamp", "latency", "explanation", "feedback")
_NULL_DEFAULTS = dict.fromkeys(_NULLABLE)


def _flat(v: Any, src: Mapping[str, Any], key: str, numbers_only: bool) -> tuple[dict[str, Any], bool]:
    """A flat object of scalars (inputFeatures) or of numbers (explanation).
    Common shapes are checked with C-level map/set calls; numbers one by one."""
    if type(v) is not dict:
        if not isinstance(v, Mapping):
            raise _bad(src, key, "an object")
        v = dict(v)
    try:  # join raises on a non-string key: one C call checks types and ASCII
        fast = "".join(v).isascii()  # non-ASCII keys: UTF-16 vs code point order could differ
    except TypeError:
        raise _bad(src, key, "an object with string keys") from None
    if not numbers_only:
        try:
            "".join(v.values())  # all strings (the seed's string:string): nothing else to check
            return v, fast
        except TypeError:
            pass
    out = v
    for k, x in v.items():
        t = type(x)
        if t is float:
            if not x.is_integer() and FAST_FLOAT_MIN <= abs(x) < math.inf:
                continue  # the overwhelmingly common case
        elif t is str or t is bool or x is None:
            if numbers_only:
                raise _bad(src, f"{key}.{k}", "a number")
            continue
        y, ok = _number(x, src, f"{key}.{k}")
        if y is not x:
            if out is v:
                out = dict(v)
            out[k] = y
        fast = fast and ok
    return out, fast


def _flat_scalars(v: dict[str, Any], src: Mapping[str, Any], key: str) -> tuple[dict[str, Any], bool] | None:
    """(object, fast) for a flat object of scalars, or None if it nests."""
    try:
        fast = "".join(v).isascii()
    except TypeError:
        raise _bad(src, key, "an object with string keys") from None
    out = v
    for k, x in v.items():
        t = type(x)
        if t is str or x is None or t is bool:
            continue
        if t is float and not x.is_integer() and FAST_FLOAT_MIN <= abs(x) < math.inf:
            continue
        if t is float or t is int:
            y, ok = _number(x, src, f"{key}.{k}")
            if y is not x:
                if out is v:
                    out = dict(v)
                out[k] = y
            fast = fast and ok
            continue
        return None
    return out, fast


def _any(v: Any, src: Mapping[str, Any], key: str, depth: int = 0) -> tuple[Any, bool]:
    """Any JSON value (prediction): validated and normalised recursively."""
    t = type(v)
    if t is str or t is bool or v is None:
        return v, True
    if t is float:
        if not v.is_integer() and FAST_FLOAT_MIN <= abs(v) < math.inf:
            return v, True
        return _number(v, src, key)
    if t is int:
        return _number(v, src, key)
    if depth > _MAX_DEPTH:
        raise _bad(src, key, f"nested at most {_MAX_DEPTH} levels")
    if t is dict or isinstance(v, Mapping):
        if t is dict and depth == 0:  # the usual prediction: a flat object of scalars
            flat = _flat_scalars(v, src, key)
            if flat is not None:
                return flat
        out: dict[str, Any] = {}
        fast = True
        for k, x in v.items():
            if not isinstance(k, str):
                raise _bad(src, key, "an object with string keys")
            fast = fast and k.isascii()
            out[k], ok = _any(x, src, f"{key}.{k}", depth + 1)
            fast = fast and ok
        return out, fast
    if isinstance(v, (list, tuple)):
        items = []
        fast = True
        for x in v:
            y, ok = _any(x, src, key, depth + 1)
            items.append(y)
            fast = fast and ok
        return items, fast
    if isinstance(v, str):
        return str(v), True
    return _number(v, src, key)


def _timestamp(v: Any, src: Mapping[str, Any], key: str) -> str:
    if type(v) is not str or not _RFC3339(v):
        raise _bad(src, key, "an RFC 3339 timestamp with offset, e.g. 2024-05-01T13:55:36.120Z")
    try:
        _fromiso(v)
    except ValueError:
        raise _bad(src, key, "a valid RFC 3339 date and time") from None
    return v


_fromiso = datetime.fromisoformat


def normalize_record(src: Mapping[str, Any], pipeline: str | None = None) -> tuple[dict[str, Any], bool]:
    """Check one record against the schema; returns (json object, fast) where
    ``fast`` says json.dumps(sort_keys, compact, ensure_ascii=False) of the object
    is byte-identical to RFC 8785 (tests prove it). Integral floats become ints
    (as JCS prints them); absent nullable fields become null, so every record
    has the same keys. Straight-line code: this runs once per inference."""
    if type(src) is not dict:
        if not isinstance(src, Mapping):
            raise InputError(f"a record must be a JSON object, got {type(src).__name__}")
    if not _ALLOWED_KEYS.issuperset(src):
        unknown = sorted(str(k) for k in src if k not in _ALLOWED_KEYS)
        raise InputError(f"{_where(src)}: unknown field(s) {', '.join(unknown)}")
    out = {**_NULL_DEFAULTS, **src}
    get = out.get
    fast = True
    try:  # the five required strings, in one C call each way
        if not all(map(len, map(out.__getitem__, _REQUIRED_STR))) or "".join(map(out.__getitem__, _REQUIRED_STR)) is None:
            raise TypeError
    except (KeyError, TypeError):
        for key in _REQUIRED_STR:
            v = get(key)
            if type(v) is not str or not v:
                raise _bad(out, key, "a non-empty string") from None
    v = out["ident"]
    if v is not None and type(v) is not str:
        raise _bad(out, "ident", "a string or null")
    v = out["user"]
    if v is not None and type(v) is not str:
        raise _bad(out, "user", "a string or null")
    v = get("time")
    if type(v) is not str or not _RFC3339(v):
        _timestamp(v, out, "time")
    v = out["requestTimestamp"]
    if v is not None and (type(v) is not str or not _RFC3339(v)):
        _timestamp(v, out, "requestTimestamp")
    try:  # the regex checks the form; this checks the calendar (Feb 30, hour 25)
        _fromiso(out["time"])
        if v is not None:
            _fromiso(v)
    except ValueError:
        raise _bad(out, "time", "valid RFC 3339 dates and times (time, requestTimestamp)") from None
    v = get("status")
    if type(v) is not int or not 100 <= v <= 999:
        raise _bad(out, "status", "an HTTP status code (100-999)")
    v = out["bytes"]
    if v is not None and (type(v) is not int or not 0 <= v <= MAX_SAFE_INTEGER):
        raise _bad(out, "bytes", "a non-negative integer or null")
    v = out["latency"]
    if v is not None:
        if type(v) is not float or v.is_integer() or not FAST_FLOAT_MIN <= v < math.inf:
            v, ok = _number(v, out, "latency")
            if v < 0:
                raise _bad(out, "latency", "a non-negative number of milliseconds")
            out["latency"] = v
            fast = fast and ok
    v = out["feedback"]
    if v is not None:
        v, ok = _number(v, out, "feedback")
        if not 0 <= v <= 1:
            raise _bad(out, "feedback", "a number from 0 to 1 (how useful the prediction was)")
        out["feedback"] = v
        fast = fast and ok
    # inputs and prediction: the values or their digest, exactly one of each
    if "inputFeatures" in out:
        if "inputFeaturesDigest" in out:
            raise InputError(f"{_where(out)}: give inputFeatures or inputFeaturesDigest, not both")
        out["inputFeatures"], ok = _flat(out["inputFeatures"], out, "inputFeatures", False)
        fast = fast and ok
    elif "inputFeaturesDigest" in out:
        v = out["inputFeaturesDigest"]
        if type(v) is not str or not _HEX64(v):
            raise _bad(out, "inputFeaturesDigest", "a lowercase hex SHA-256")
    else:
        raise InputError(f"{_where(out)}: missing inputFeatures (or inputFeaturesDigest)")
    if "prediction" in out:
        if "predictionDigest" in out:
            raise InputError(f"{_where(out)}: give prediction or predictionDigest, not both")
        out["prediction"], ok = _any(out["prediction"], out, "prediction")
        fast = fast and ok
    elif "predictionDigest" in out:
        v = out["predictionDigest"]
        if type(v) is not str or not _HEX64(v):
            raise _bad(out, "predictionDigest", "a lowercase hex SHA-256")
    else:
        raise InputError(f"{_where(out)}: missing prediction (or predictionDigest)")
    v = out["explanation"]
    if v is not None:
        out["explanation"], ok = _flat(v, out, "explanation", True)
        fast = fast and ok
    v = get("pipeline")
    if v is None:
        if pipeline is None:
            out.pop("pipeline", None)  # a free-standing record, not yet in a log
            return out, fast
        out["pipeline"] = pipeline
        return out, fast
    elif pipeline is not None:
        if v == pipeline:
            return out, fast  # the log's own digest, checked once when the log was opened
        raise InputError(f"{_where(out)}: pipeline {v!r:.80} is not this log's pipeline {pipeline}")
    if type(v) is not str or not _HEX64(v):
        raise _bad(out, "pipeline", "the lowercase hex SHA-256 of the serve attestation payload")
    return out, fast


# The fast encoder and the rule for when it is byte-equal to RFC 8785 live in canonical.py
# (shared with the verifier's canonical-form check); the names stay here for callers.
_stdlib_encode = stdlib_fast_encode
_PROBE = FAST_PROBE
_select_encoder = select_fast_encoder
_fast_encode, FAST_ENCODER, _ENCODE_ERRORS = fast_encode, FAST_ENCODER, FAST_ENCODE_ERRORS
"""The encoder for records that normalize_record() marks ``fast``, its name, and
the exceptions it raises on a value it refuses (a lone surrogate; for orjson also
a str-subclass key). On those, the reference rfc8785 encoder decides."""


def encode_json(obj: dict[str, Any], fast: bool) -> bytes:
    """RFC 8785 bytes of a normalised record: the fast C encoder when ``fast``
    (proven byte-equal for those shapes, see tests), else the reference rfc8785."""
    if fast:
        try:
            return _fast_encode(obj)
        except _ENCODE_ERRORS:
            pass  # e.g. a str-subclass key, which orjson refuses: the reference decides
    try:
        return canonicalize(obj)
    except InputError as exc:  # a lone surrogate
        raise InputError(f"{_where(obj)}: {exc}") from None


def encode_record(record: InferenceRecord | Mapping[str, Any], pipeline: str | None = None) -> bytes:
    """The canonical line (without newline) that becomes the Merkle leaf."""
    src = record.to_dict() if isinstance(record, InferenceRecord) else record
    obj, fast = normalize_record(src, pipeline)
    return encode_json(obj, fast)


def digest_value(value: Any) -> str:
    """sha256 hex of a value's RFC 8785 form: for inputFeaturesDigest / predictionDigest."""
    return sha256_hex(canonicalize(value))


def _clf_token(value: str | None) -> str:
    """A space-free CLF token; '-' when absent. Apache-style \\xhh escapes."""
    if value is None or value == "":
        return "-"
    return "".join(c if 0x20 < ord(c) < 0x7F and c not in '"\\' else _esc(c) for c in value)


def _clf_quoted(value: str) -> str:
    return "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else _esc(c) for c in value)


def _esc(c: str) -> str:
    if c in '"\\':
        return "\\" + c
    return "".join(f"\\x{b:02x}" for b in c.encode("utf-8", "surrogatepass"))


def ncsa_time(value: str) -> str:
    """RFC 3339 -> CLF '[10/Oct/2000:13:55:36 -0700]' (English months, source offset)."""
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"not an RFC 3339 timestamp: {value!r:.80}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    off = dt.utcoffset()
    minutes = int(off.total_seconds() // 60) if off else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f"[{dt.day:02d}/{_MONTHS[dt.month - 1]}/{dt.year:04d}:{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
        f" {sign}{minutes // 60:02d}{minutes % 60:02d}]"
    )


@dataclass(slots=True)
class InferenceRecord:
    """One inference: the NCSA Common Log Format fields plus the seed's
    monitoring/logging fields, bound to the pipeline by ``pipeline`` (sha256 of the
    serve attestation payload). ``latency`` is in milliseconds."""

    host: str
    time: str
    request: str
    status: int
    application_id: str
    request_id: str
    model_id: str
    ident: str | None = None
    user: str | None = None
    bytes_sent: int | None = None
    request_timestamp: str | None = None
    latency: float | int | None = None
    input_features: dict[str, Any] | None = None
    input_features_digest: str | None = None
    prediction: Any = None
    prediction_digest: str | None = None
    explanation: dict[str, float] | None = None
    feedback: float | None = None
    pipeline: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InferenceRecord:
        """Validate a JSON record (same rules as the log) and build the dataclass."""
        obj, _ = normalize_record(data)
        return cls(**{attr: obj.get(key) for key, attr in _FIELDS})

    def to_dict(self) -> dict[str, Any]:
        """JSON object with the wire names; exactly one of each value/digest pair."""
        out: dict[str, Any] = {}
        for key, attr in _FIELDS:
            value = getattr(self, attr)
            if key == "inputFeatures":
                if self.input_features_digest is None:
                    out[key] = value
            elif key == "prediction":
                if self.prediction_digest is None:
                    out[key] = value
            elif key in ("inputFeaturesDigest", "predictionDigest", "pipeline"):
                if value is not None:
                    out[key] = value
            else:
                out[key] = value
        return out

    def ncsa_time(self) -> str:
        return ncsa_time(self.time)

    def to_ncsa(self) -> str:
        """Classic Common Log Format line: host ident authuser [date] "request" status bytes."""
        size = "-" if self.bytes_sent is None else str(self.bytes_sent)
        return (
            f"{_clf_token(self.host)} {_clf_token(self.ident)} {_clf_token(self.user)} {self.ncsa_time()}"
            f' "{_clf_quoted(self.request)}" {self.status} {size}'
        )


# --------------------------------------------------------------------------- writer


def _fsync(fh: Any) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _atomic_write(directory: Path, rel: str, data: bytes | Iterable[bytes]) -> None:
    """The one safe-write routine: random exclusive temp, no-follow below the log directory."""
    safe.write_file(directory, rel, data, replace=True, what="log file")


def _open_log_file(directory: Path, name: str) -> Any:
    """A reader on a log file: no-follow, non-blocking, fstat-checked regular file."""
    return safe.open_stream(name, root=directory, what="log file")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    def from_dict(cls, d: Mapping[str, Any]) -> Seal:
        try:
            s = cls(**{k: d[k] for k in cls.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            raise InputError(f"seal entry is missing a field: {exc}") from None
        ints = (s.seal, s.tree_size, s.previous_tree_size, s.records_start, s.records_end)
        if not all(type(i) is int and i >= 0 for i in ints):
            raise InputError("seal entry has a non-integer size or offset")
        hexes = [s.root_hash, s.checkpoint_sha256, *s.consistency_proof]
        if s.previous_root_hash is not None:
            hexes.append(s.previous_root_hash)
        if not isinstance(s.consistency_proof, list) or not all(isinstance(x, str) and _HEX64(x) for x in hexes):
            raise InputError("seal entry has a malformed hash")
        return s


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
            header = _read_header(self.directory)
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
        self._seals = _read_seals(self.directory)
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
        with _open_log_file(self.directory, RECORDS_FILE) as fh:
            size = os.fstat(fh.fileno()).st_size
        with _open_log_file(self.directory, LEAVES_FILE) as fh:
            leaves_size = os.fstat(fh.fileno()).st_size
        if size:
            with _open_log_file(self.directory, RECORDS_FILE) as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    raise InputError(
                        f"{records}: the last record is incomplete (a crash during append);"
                        " `mlspec log verify` shows it; truncate the file after its last newline to continue"
                    )
        lines = 0
        with _open_log_file(self.directory, RECORDS_FILE) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                lines += chunk.count(b"\n")
        n_leaves = leaves_size // HASH_SIZE
        if n_leaves != lines or leaves_size % HASH_SIZE:
            self._rebuild_leaves(lines)
        last = self._seals[-1] if self._seals else None
        if last is not None and last.tree_size > lines:
            raise InputError(f"{records} has {lines} records but seal {last.seal} covers {last.tree_size}: run `mlspec log verify`")
        acc = MerkleAccumulator()
        boundary = last.tree_size if last else 0

        def feed(a: int, b: int) -> None:
            for start in range(a, b, LeafFile.CHUNK):
                acc.extend(_read_leaf_range(leaves, start, min(b, start + LeafFile.CHUNK)))

        feed(0, boundary)
        prev = acc.copy()
        feed(boundary, lines)
        if last is not None and prev.root().hex() != last.root_hash:
            raise InputError(f"{self.directory}: records do not match seal {last.seal}: run `mlspec log verify`")
        self._acc = acc
        self._prev = prev
        self._bytes = size
        self._unsealed = lines - boundary

    def _rebuild_leaves(self, lines: int) -> None:
        with _open_log_file(self.directory, RECORDS_FILE) as src:
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
        batch = _read_leaf_range(self.directory / LEAVES_FILE, m, n)
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


# --------------------------------------------------------------------------- reading


def _read_header(directory: Path) -> dict[str, Any]:
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


def _read_seals(directory: Path) -> list[Seal]:
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


def _read_leaf_range(path: Path, start: int, stop: int) -> list[bytes]:
    with _open_log_file(path.parent, path.name) as fh:
        fh.seek(start * HASH_SIZE)
        blob = fh.read((stop - start) * HASH_SIZE)
    return [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]


def iter_records(directory: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each complete line of records.jsonl."""
    path = Path(directory) / RECORDS_FILE
    fh = _open_log_file(Path(directory), RECORDS_FILE)
    with fh:
        for no, line in enumerate(safe.read_lines(fh, str(path)), 1):
            if not line.endswith(b"\n"):
                raise InputError(f"{path}:{no}: incomplete last record (crash during append)")
            obj = parse_json(line, source=f"{path}:{no}")
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{no}: record is not a JSON object")
            yield no, obj


def _find(directory: Path, request_id: str) -> list[tuple[int, bytes]]:
    needle = b'"requestId":' + json.dumps(request_id, ensure_ascii=False).encode()
    hits = []
    with _open_log_file(directory, RECORDS_FILE) as fh:
        for i, line in enumerate(safe.read_lines(fh, str(directory / RECORDS_FILE))):
            if needle in line and line.endswith(b"\n"):
                try:
                    obj = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if isinstance(obj, dict) and obj.get("requestId") == request_id:
                    hits.append((i, line[:-1]))
    return hits


def _line_at(directory: Path, index: int) -> bytes:
    with _open_log_file(directory, RECORDS_FILE) as fh:
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
    header = _read_header(directory)
    seals = _read_seals(directory)
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
        if index < 0:
            raise InputError("index must be >= 0")
        line = _line_at(directory, index)
    if not seals or seals[-1].tree_size <= index:
        raise InputError(f"record {index} is not sealed yet: seal the log first (`mlspec log seal`)")
    seal = seals[-1]
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


def verify_proof(proof: Mapping[str, Any]) -> list[str]:
    """Check a proof document offline; returns problems (empty = valid). The
    root still has to be matched to a signed log attestation (``attestation``)."""
    problems: list[str] = []
    try:
        if proof.get("format") != PROOF_FORMAT:
            return [f"not an {PROOF_FORMAT} document"]
        line = canonicalize(proof["record"])
        leaf = _sha256(b"\x00" + line).digest()
        if leaf.hex() != proof["leaf_hash"]:
            problems.append("record does not hash to leaf_hash (record altered)")
        if proof["record"].get("pipeline") != proof["pipeline"]:
            problems.append("record's pipeline differs from the proof's pipeline")
        path = [bytes.fromhex(p) for p in proof["inclusion_proof"]]
        root = bytes.fromhex(proof["root_hash"])
        if not verify_inclusion(int(proof["leaf_index"]), int(proof["tree_size"]), leaf, path, root):
            problems.append(f"inclusion proof does not lead to root {proof['root_hash']} at size {proof['tree_size']}")
        expect = checkpoint_body(proof["origin"], int(proof["tree_size"]), root).decode()
        if proof.get("checkpoint") != expect:
            problems.append("checkpoint does not match origin, tree size and root")
    except (KeyError, TypeError, ValueError, AttributeError, InputError) as exc:
        problems.append(f"malformed proof: {exc}")
    return problems


# --------------------------------------------------------------------------- verify


@dataclass
class Finding:
    code: str
    severity: str  # "error" | "warning" | "info"
    message: str
    line: int | None = None
    index: int | None = None
    request_id: str | None = None
    seal: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class LogReport:
    """Outcome of :func:`verify`. ``ok`` means every sealed record verified;
    records after the last seal are counted as ``unsealed`` (not verified)."""

    directory: str
    records: int = 0
    sealed: int = 0
    unsealed: int = 0
    seals: int = 0
    seals_verified: int = 0
    attestations_checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def add(self, code: str, severity: str, message: str, **where: Any) -> None:
        self.findings.append(Finding(code, severity, message, **where))

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": "verified" if self.ok else "failed",
            "directory": self.directory,
            "records": self.records,
            "sealed": self.sealed,
            "unsealed": self.unsealed,
            "seals": self.seals,
            "seals_verified": self.seals_verified,
            "attestations_checked": self.attestations_checked,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class _Rec:
    index: int
    line_no: int
    offset: int
    leaf: bytes
    raw: bytes


def _request_id(raw: bytes) -> str | None:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    rid = obj.get("requestId") if isinstance(obj, dict) else None
    return rid if isinstance(rid, str) else None


AttestedLookup = Callable[[str], "Mapping[str, Any] | None"]
"""Given an attestation payload digest, the signed ``log`` metadata (or None if absent)."""


def verify(
    directory: str | os.PathLike[str],
    *,
    attested: AttestedLookup | None = None,
    deep: bool = False,
    max_findings: int = 100,
) -> LogReport:
    """Recompute every leaf and every sealed root from records.jsonl (streaming,
    flat memory), check the chain of seals and their consistency proofs, and locate
    changes (modified / dropped / inserted / swapped records) by aligning against
    leaves.bin wherever leaves.bin itself reproduces the signed roots."""
    directory = Path(directory)
    report = LogReport(str(directory))
    try:
        header = _read_header(directory)
    except InputError as exc:
        report.add("header-invalid", "error", str(exc))
        header = None
    try:
        seals = _read_seals(directory)
    except InputError as exc:
        report.add("seals-invalid", "error", str(exc))
        seals = []
    report.seals = len(seals)
    records_path = directory / RECORDS_FILE
    if not safe.exists(RECORDS_FILE, root=directory):
        report.add("records-missing", "error", f"{records_path} does not exist")
        return report
    records_fh = _open_log_file(directory, RECORDS_FILE)  # refuses a FIFO, device or symlink before any work
    records_fh.close()

    # 1. the chain of seals on its own
    prev_size, prev_root = 0, None
    for s in seals:
        w = {"seal": s.seal}
        if s.previous_tree_size != prev_size or s.previous_root_hash != prev_root:
            report.add("seal-chain-broken", "error",
                       f"seal {s.seal} says the previous tree was {s.previous_tree_size}/{s.previous_root_hash},"
                       f" but the seal before it is {prev_size}/{prev_root}: a seal was removed, inserted or rewritten", **w)
        if s.tree_size <= prev_size:
            report.add("seal-order", "error", f"seal {s.seal} does not grow the tree ({prev_size} -> {s.tree_size})", **w)
        elif prev_root is not None and not verify_consistency(
            prev_size, s.tree_size, bytes.fromhex(prev_root), bytes.fromhex(s.root_hash),
            [bytes.fromhex(p) for p in s.consistency_proof],
        ):
            report.add("consistency-failed", "error",
                       f"seal {s.seal - 1} -> seal {s.seal}: consistency proof fails ({prev_size} -> {s.tree_size} records):"
                       f" records 0..{prev_size - 1} were rewritten after seal {s.seal} was made,"
                       " or one of the two seals was altered", **w)
        if header is not None:
            body = checkpoint_body(header["origin"], s.tree_size, bytes.fromhex(s.root_hash))
            if sha256_hex(body) != s.checkpoint_sha256:
                report.add("checkpoint-mismatch", "error", f"seal {s.seal}: checkpoint digest does not match its tree head", **w)
        if s.attestation is not None and attested is not None:
            meta = attested(s.attestation)
            if meta is None:
                report.add("attestation-missing", "error", f"seal {s.seal}: attestation {s.attestation[:16]}... is not in the bundle", **w)
            else:
                report.attestations_checked += 1
                for key in ("tree_size", "root_hash", "previous_tree_size", "previous_root_hash", "consistency_proof"):
                    if meta.get(key) != getattr(s, key):
                        report.add("attestation-mismatch", "error",
                                   f"seal {s.seal}: {key} differs from the signed log attestation"
                                   f" ({meta.get(key)!r:.70} signed): seals.jsonl was rewritten", **w)
                        break
                if header is not None and meta.get("pipeline") != header["pipeline"]:
                    report.add("attestation-mismatch", "error", f"seal {s.seal}: signed for another pipeline", **w)
        prev_size, prev_root = s.tree_size, s.root_hash
    unsigned = [s.seal for s in seals if s.attestation is None]
    if unsigned:
        report.add("seal-unsigned", "warning",
                   f"{len(unsigned)} of {len(seals)} seals have no attestation (sealed without a key): first is seal {unsigned[0]}",
                   seal=unsigned[0])
    if seals and attested is None and any(s.attestation for s in seals):
        report.add("attestations-unchecked", "info", "seal attestations were not checked against a bundle (pass --bundle)")

    # 2. leaves.bin's own roots at each seal: where they match, it locates changes
    leaves_path = directory / LEAVES_FILE
    has_leaves = safe.exists(LEAVES_FILE, root=directory)
    if has_leaves:
        with _open_log_file(directory, LEAVES_FILE) as leaves_fh:
            n_leaves = os.fstat(leaves_fh.fileno()).st_size // HASH_SIZE
    else:
        n_leaves = 0
    leaf_ok: dict[int, bool] = {}
    if seals and n_leaves:
        acc = MerkleAccumulator()
        done = 0
        for s in seals:
            if s.tree_size > n_leaves:
                leaf_ok[s.seal] = False
                continue
            for start in range(done, s.tree_size, LeafFile.CHUNK):
                acc.extend(_read_leaf_range(leaves_path, start, min(s.tree_size, start + LeafFile.CHUNK)))
            done = s.tree_size
            leaf_ok[s.seal] = acc.root().hex() == s.root_hash
    seal_of_size = {s.tree_size: s for s in seals}
    sealed_size = seals[-1].tree_size if seals else 0

    def seal_for(index: int) -> Seal | None:
        for s in seals:
            if index < s.tree_size:
                return s
        return None

    def trusted(index: int) -> bool:
        s = seal_for(index)
        return s is not None and leaf_ok.get(s.seal, False)

    mismatched: list[Seal] = []
    partial: list[tuple[int, int]] = []
    acc = MerkleAccumulator()

    def stream() -> Iterator[_Rec]:
        offset = 0
        with _open_log_file(directory, RECORDS_FILE) as fh:
            for i, line in enumerate(safe.read_lines(fh, str(records_path))):
                if not line.endswith(b"\n"):
                    partial.append((i + 1, offset))
                    return
                body = line[:-1]
                h = _sha256(b"\x00" + body).digest()
                acc.append(h)
                n = i + 1
                s = seal_of_size.get(n)
                if s is not None:
                    if acc.root().hex() == s.root_hash:
                        report.seals_verified += 1
                    else:
                        mismatched.append(s)
                yield _Rec(i, n, offset, h, body)
                offset += len(line)

    # 3. one pass: recompute leaves and roots, align with leaves.bin
    located = 0

    def locate(code: str, msg: str, rec: _Rec | None, index: int) -> None:
        nonlocal located
        located += 1
        if located > max_findings:
            return
        s = seal_for(index)
        sev = "error" if s is not None else "warning"
        note = "" if trusted(index) or s is None else " (located via leaves.bin, which does not match the signed root either)"
        report.add(code, sev, msg + note, line=rec.line_no if rec else None, index=index,
                   request_id=_request_id(rec.raw) if rec else None, seal=s.seal if s else None)

    with _open_log_file(directory, LEAVES_FILE) if has_leaves else open(os.devnull, "rb") as lf:
        window = [0, b""]  # [first leaf index, bytes]: a sliding 2 MiB window keeps memory flat
        span = 1 << 16

        def L(j: int) -> bytes | None:
            if j >= n_leaves:
                return None
            base, blob = window
            k = (j - base) * HASH_SIZE
            if not 0 <= k < len(blob):
                lf.seek(j * HASH_SIZE)
                window[0], window[1] = j, lf.read(span * HASH_SIZE)
                base, blob, k = j, window[1], 0
            return blob[k : k + HASH_SIZE]

        it = stream()
        buf: deque[_Rec] = deque()

        def peek(k: int) -> _Rec | None:
            while len(buf) <= k:
                nxt = next(it, None)
                if nxt is None:
                    return None
                buf.append(nxt)
            return buf[k]

        j = 0
        while True:
            r0 = peek(0)
            if r0 is None:
                break
            lj = L(j)
            if lj is not None and r0.leaf == lj:
                buf.popleft()
                j += 1
                continue
            if lj is None:  # records beyond leaves.bin: cache behind (crash) - nothing to compare with
                buf.popleft()
                j += 1
                continue
            r1 = peek(1)
            if r1 is not None and r0.leaf == L(j + 1) and r1.leaf == lj:
                locate("records-swapped", f"records at lines {r0.line_no} and {r1.line_no} were swapped", r0, j)
                buf.popleft()
                buf.popleft()
                j += 2
                continue
            skip = next((k for k in range(1, 9) if r0.leaf == L(j + k)), None)
            if skip is not None:
                prev_line = r0.line_no - 1
                locate("record-dropped", f"{skip} record(s) (index {j}{'..' + str(j + skip - 1) if skip > 1 else ''})"
                       f" removed between lines {prev_line} and {r0.line_no}", r0, j)
                j += skip
                continue
            if r1 is not None and r1.leaf == lj:
                locate("record-inserted", f"line {r0.line_no} was inserted", r0, j)
                buf.popleft()
                continue
            locate("record-modified", f"record at line {r0.line_no} was changed", r0, j)
            buf.popleft()
            j += 1
    records_total = acc.size
    if located > max_findings:
        report.add("findings-truncated", "info", f"{located - max_findings} more located changes not listed")

    # 4. seals vs. recomputed roots, truncation, unsealed tail
    for s in mismatched:
        first = s.previous_tree_size
        report.add("root-mismatch", "error",
                   f"seal {s.seal}: records 0..{s.tree_size - 1} (seal batch lines {first + 1}..{s.tree_size})"
                   f" do not reproduce the sealed root", seal=s.seal)
    for s in seals:
        if s.tree_size > records_total:
            report.add("records-truncated", "error",
                       f"seal {s.seal} covers {s.tree_size} records but records.jsonl has {records_total}"
                       f" complete records: records {records_total}..{s.tree_size - 1} are missing", seal=s.seal)
            break
    for line_no, offset in partial:
        sev = "error" if line_no <= sealed_size else "warning"
        report.add("partial-record", sev,
                   f"line {line_no} (byte {offset}) is an incomplete record: an append was interrupted"
                   + (" inside the sealed range" if sev == "error" else "; it was never sealed"), line=line_no)
    if seals and not any(f.code in ("records-truncated",) for f in report.findings):
        for s in seals:
            if leaf_ok.get(s.seal) is False and s not in mismatched and s.tree_size <= n_leaves:
                report.add("leaves-stale", "warning", f"{LEAVES_FILE} does not match seal {s.seal} (records do): proofs need it rebuilt", seal=s.seal)
                break
    report.records = records_total
    report.sealed = min(sealed_size, records_total)
    report.unsealed = max(0, records_total - sealed_size)
    if report.unsealed:
        report.add("unsealed", "info",
                   f"{report.unsealed} record(s) (lines {sealed_size + 1}..{records_total}) are not sealed yet: not verified")
    if not seals and records_total:
        report.add("no-seals", "warning", "the log has never been sealed: nothing is verified")

    # 5. optional / fallback: parse lines (mismatched batches where leaves.bin cannot locate, or all with deep)
    untrusted = [s for s in mismatched if not leaf_ok.get(s.seal, False)]
    if deep or untrusted:
        ranges = [(0, records_total)] if deep else [(s.previous_tree_size, s.tree_size) for s in untrusted]
        _check_lines(records_path, ranges, header["pipeline"] if header else None, report, seal_for, max_findings)
    return report


def _check_lines(path: Path, ranges: list[tuple[int, int]], pipeline: str | None, report: LogReport,
                 seal_for: Callable[[int], Seal | None], max_findings: int) -> None:
    """Per-line checks: strict JSON, RFC 8785 canonical form, schema, pipeline."""
    count = 0
    with _open_log_file(path.parent, path.name) as fh:
        for i, line in enumerate(safe.read_lines(fh, str(path))):
            if not any(a <= i < b for a, b in ranges) or not line.endswith(b"\n"):
                continue
            body = line[:-1]
            problem = None
            try:
                obj = parse_json(body, source=f"line {i + 1}")
                if canonicalize(obj) != body:
                    problem = "is not in RFC 8785 canonical form"
                else:
                    normalize_record(obj, pipeline)
            except InputError as exc:
                problem = str(exc)
            if problem:
                count += 1
                if count <= max_findings:
                    s = seal_for(i)
                    report.add("record-invalid", "error", f"line {i + 1}: {problem}", line=i + 1, index=i,
                               request_id=_request_id(body), seal=s.seal if s else None)
