"""Inference records: the schema every line of records.jsonl follows, its RFC 8785
encoding (a fast C encoder where it is proven byte-equal), and the NCSA Common
Log Format rendering. Straight-line code: this runs once per inference."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import (
    FAST_ENCODE_ERRORS,
    FAST_ENCODER,
    FAST_FLOAT_MIN,
    FAST_PROBE,
    MAX_SAFE_INTEGER,
    canonicalize,
    fast_encode,
    float_is_fast,
    parse_canonical_fast,
    parse_json,
    select_fast_encoder,
    sha256_hex,
    stdlib_fast_encode,
)

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
_BASE_KEYS = frozenset(k for k, _ in _FIELDS)
# Canonical fields from the seed that most records leave out: absent stays absent (they are not
# written as null), so the lines of logs written before they existed keep their exact bytes.
_OPTIONAL: tuple[tuple[str, str], ...] = (
    ("applicationEndpoint", "application_endpoint"),
    ("inferenceServiceId", "inference_service_id"),
    ("predictionMimeType", "prediction_mime_type"),
    ("feedbackActions", "feedback_actions"),
)
_OPTIONAL_KEYS = frozenset(k for k, _ in _OPTIONAL)
_ALLOWED_KEYS = _BASE_KEYS | _OPTIONAL_KEYS
_REQUIRED_STR = ("host", "request", "applicationId", "requestId", "modelId")

SEED_NAMES: dict[str, str] = {
    "requestLatencyMs": "latency",  # monitoring_proto/inferenceRequest.yml
    "requestLatency": "latency",  # logging_proto/inferenceLog.yml (milliseconds, as the other proto says)
    "inferenceLatency": "latency",  # monitoring_proto/README.md
    "resultCode": "status",
    "resultSizeInBytes": "bytes",
    "predictionData": "prediction",
    "predictionExplanation": "explanation",
    "predictionFeedback": "feedback",
}
"""The seed's flat names and the canonical field each one is written as (docs/logging.md).
The structured ones are ``inputs`` {featureNames, featureValues} -> ``inputFeatures``,
``modelInfo`` {models: [one]} -> ``modelId`` and the groups below, flattened."""
SEED_GROUPS: dict[str, frozenset[str]] = {
    "applicationInfo": frozenset(("applicationId", "applicationEndpoint")),
    "requestInfo": frozenset(("requestId", "requestTimestamp", "requestLatencyMs", "requestLatency")),
    "resultInfo": frozenset(("resultCode", "resultSizeInBytes")),
}
GROUND_TRUTH = "ground_truth"
"""``type`` of a ground-truth record: the delayed label of an earlier request, a new sealed line."""
GROUND_TRUTH_MARKER = b'"type":"ground_truth"'
"""In the RFC 8785 line of every ground-truth record (and of no inference record: they have no ``type``)."""
_GT_KEYS = frozenset(("type", "requestId", "label", "time", "pipeline"))
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
                         r"(?:\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(?:[A-Za-z0-9!#$&^_.+-]+|\"[^\"\\\\]*\"))*\Z").match


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


def _same(a: Any, b: Any) -> bool:
    """The same JSON value (by its RFC 8785 bytes: 1 and 1.0 agree, 1 and true do not)."""
    try:
        return canonicalize(a) == canonicalize(b)
    except InputError:
        return False


def _put(out: dict[str, Any], key: str, value: Any, given_as: str, src: Mapping[str, Any]) -> None:
    """Set a canonical field, refusing a second spelling of it with another value: two readers
    (one knowing the seed's name, one the canonical) would otherwise see different records."""
    if key in out and not _same(out[key], value):
        raise InputError(f"{_where(src)}: field {key!r} is given twice (as {given_as!r} and under another name,"
                         " e.g. the seed's) with different values; give it once")
    out.setdefault(key, value)


def _features_from_seed(v: Any, src: Mapping[str, Any]) -> dict[str, Any]:
    """The seed's ``inputs`` {featureNames, featureValues} as the ``inputFeatures`` object."""
    if not isinstance(v, Mapping) or set(v) != {"featureNames", "featureValues"}:
        raise _bad(src, "inputs", "an object of exactly featureNames and featureValues (the seed's inputs)")
    names, values = v["featureNames"], v["featureValues"]
    if not isinstance(names, list) or not all(type(n) is str and n for n in names):
        raise _bad(src, "inputs.featureNames", "a list of non-empty strings")
    if not isinstance(values, list) or len(values) != len(names):
        raise _bad(src, "inputs.featureValues", f"a list of {len(names)} values, one per featureNames entry")
    if len(set(names)) != len(names):
        raise _bad(src, "inputs.featureNames", "a list without repeated names")
    return dict(zip(names, values))


def _model_from_seed(v: Any, src: Mapping[str, Any]) -> str:
    """The seed's ``modelInfo`` {models: [name]} as ``modelId``: one model per record."""
    models = v.get("models") if isinstance(v, Mapping) and set(v) == {"models"} else None
    if not isinstance(models, list) or len(models) != 1 or type(models[0]) is not str:
        raise _bad(src, "modelInfo", "{models: [one model id]}: an ensemble logs one record per model (the seed's"
                   " note), so that the gate can check each against the packaged model")
    return models[0]


_INFERENCE_ONLY = frozenset(("host", "request", "status", "modelId", "inputFeatures", "inputFeaturesDigest",
                             "prediction", "predictionDigest", "modelInfo", "inputs", "predictionData"))


def _seed_to_canonical(src: Mapping[str, Any]) -> dict[str, Any]:
    """A record using the seed's names (flat, grouped or structured) with the canonical names.

    Unknown fields are refused; a field given under two names must have one value."""
    flat: list[tuple[str, Any]] = []
    for key, value in src.items():
        group = SEED_GROUPS.get(key) if isinstance(key, str) else None
        if group is None:
            flat.append((key, value))
            continue
        if not isinstance(value, Mapping) or not group.issuperset(value):
            raise _bad(src, key, f"an object of {', '.join(sorted(group))} (the seed's {key})")
        flat.extend(value.items())
    if any(k == "groundTruthLabel" for k, _ in flat):
        if _INFERENCE_ONLY.intersection(k for k, _ in flat):
            raise InputError(f"{_where(src)}: groundTruthLabel arrives after the prediction: log it as its own"
                             " later record {type: ground_truth, requestId, label, time} (docs/logging.md)")
        out: dict[str, Any] = {"type": GROUND_TRUTH}
        for key, value in flat:
            _put(out, "label" if key == "groundTruthLabel" else key, value, key, src)
        return out
    out = {}
    unknown = []
    for key, value in flat:
        if key in _ALLOWED_KEYS or key in ("type", "label"):
            _put(out, key, value, key, src)
        elif key in SEED_NAMES:
            _put(out, SEED_NAMES[key], value, key, src)
        elif key == "inputs":
            _put(out, "inputFeatures", _features_from_seed(value, src), key, src)
        elif key == "modelInfo":
            _put(out, "modelId", _model_from_seed(value, src), key, src)
        else:
            unknown.append(str(key))
    if unknown:
        raise InputError(f"{_where(src)}: unknown field(s) {', '.join(sorted(unknown))}")
    return out


def _check_optional(out: dict[str, Any]) -> None:
    """The seed's optional canonical fields, present only when given."""
    for key in ("applicationEndpoint", "inferenceServiceId"):
        v = out.get(key)
        if key in out and (type(v) is not str or not v):
            raise _bad(out, key, "a non-empty string")
    if "predictionMimeType" in out:
        v = out["predictionMimeType"]
        if type(v) is not str or not _MEDIA_TYPE(v):
            raise _bad(out, "predictionMimeType", "a media type such as application/json (RFC 6838)")
    if "feedbackActions" in out:
        v = out["feedbackActions"]
        if not isinstance(v, list) or not all(type(x) is str for x in v):
            raise _bad(out, "feedbackActions", "a list of strings (what the user did after the prediction)")
        out["feedbackActions"] = list(v)


def _normalize_ground_truth(src: dict[str, Any], pipeline: str | None) -> tuple[dict[str, Any], bool]:
    """A ground-truth record: the label, known later, of the request ``requestId`` logged earlier.
    That the request exists, comes first and gets one label is a property of the log (verification)."""
    if src.get("type") != GROUND_TRUTH:
        raise _bad(src, "type", f"{GROUND_TRUTH!r} (the only record type besides inferences, which have none)")
    unknown = sorted(str(k) for k in src if k not in _GT_KEYS)
    if unknown:
        raise InputError(f"{_where(src)}: ground-truth record has unknown field(s) {', '.join(unknown)};"
                         " it holds type, requestId, label, time (and the log's pipeline)")
    out = dict(src)
    v = out.get("requestId")
    if type(v) is not str or not v:
        raise _bad(out, "requestId", "a non-empty string: the request this label belongs to")
    _timestamp(out.get("time"), out, "time")
    if out.get("label") is None:
        raise _bad(out, "label", "the ground-truth label (any JSON value but null)")
    out["label"], fast = _any(out["label"], out, "label")
    v = out.get("pipeline")
    if v is None:
        if pipeline is not None:
            out["pipeline"] = pipeline
        else:
            out.pop("pipeline", None)
    elif pipeline is not None and v != pipeline:
        raise InputError(f"{_where(out)}: pipeline {v!r:.80} is not this log's pipeline {pipeline}")
    elif type(v) is not str or not _HEX64(v):
        raise _bad(out, "pipeline", "the lowercase hex SHA-256 of the serve attestation payload")
    return out, fast


def is_ground_truth(record: Mapping[str, Any]) -> bool:
    return record.get("type") == GROUND_TRUTH


def normalize_record(src: Mapping[str, Any], pipeline: str | None = None) -> tuple[dict[str, Any], bool]:
    """Check one record against the schema; returns (json object, fast) where
    ``fast`` says json.dumps(sort_keys, compact, ensure_ascii=False) of the object
    is byte-identical to RFC 8785 (tests prove it). Integral floats become ints
    (as JCS prints them); absent nullable fields become null, so every record
    has the same keys. Straight-line code: this runs once per inference."""
    if type(src) is not dict:
        if not isinstance(src, Mapping):
            raise InputError(f"a record must be a JSON object, got {type(src).__name__}")
    if not _BASE_KEYS.issuperset(src):  # the seed's names, optional fields, a ground truth: off the hot path
        src = _seed_to_canonical(src)
        if "type" in src or "label" in src:
            return _normalize_ground_truth(src, pipeline)
        _check_optional(src)
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


def line_problem(body: bytes, pipeline: str | None) -> str | None:
    """What is wrong with one records.jsonl line, or None (see :func:`check_line`)."""
    return check_line(body, pipeline)[0]


def check_line(body: bytes, pipeline: str | None) -> tuple[str | None, dict[str, Any] | None]:
    """What is wrong with one records.jsonl line (without its newline), or None.

    A line is sound only when it is byte for byte what the writer would write for it:
    strict JSON (no duplicate keys, depth-bounded), a valid record of ``pipeline``, in
    the RFC 8785 form of its normalised record (so no missing nullable field, no absent
    pipeline the log would fill in). The writer checks its unsealed tail with this before
    it signs, and the verifier every sealed line. Returns (problem, the parsed record when sound)."""
    obj = parse_canonical_fast(body)  # proves body is RFC 8785 of obj, or None: the strict path decides
    try:
        canonical = obj is not None
        if obj is None:
            obj = parse_json(body, source="line")
            if canonicalize(obj) != body:
                return "is not in RFC 8785 canonical form", None
        if not isinstance(obj, dict):
            return "is not a JSON object", None
        norm, fast = normalize_record(obj, pipeline)
        if "pipeline" not in obj:
            return "has no pipeline field", None
        # The fast parse yields no integral floats, and normalising only converts those and adds keys,
        # so an unchanged dict means body is already the writer's bytes; otherwise encode and compare.
        if canonical and len(norm) == len(obj) and norm == obj:
            return None, obj
        if encode_json(norm, fast) != body:
            return "is not in the form the log writer writes (the RFC 8785 form of the normalised record)", None
    except InputError as exc:
        return str(exc).removeprefix("line: "), None
    return None, obj


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
    application_endpoint: str | None = None
    inference_service_id: str | None = None
    prediction_mime_type: str | None = None
    feedback_actions: list[str] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InferenceRecord:
        """Validate a JSON record (same rules as the log; the seed's names too) and build the dataclass."""
        obj, _ = normalize_record(data)
        if is_ground_truth(obj):
            raise InputError(f"{_where(obj)}: a ground-truth record, not an inference")
        return cls(**{attr: obj.get(key) for key, attr in _FIELDS + _OPTIONAL})  # type: ignore[arg-type]  # normalize_record checked every type

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
        for key, attr in _OPTIONAL:  # absent stays absent (not null): older lines keep their bytes
            value = getattr(self, attr)
            if value is not None:
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


