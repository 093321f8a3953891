"""RFC 8785 (JCS) canonical JSON: the only byte form that is ever signed or hashed."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from typing import Any

import rfc8785

from mlspec_attest.errors import InputError

# I-JSON (RFC 7493) interoperable integer range; RFC 8785 relies on it.
MAX_SAFE_INTEGER = 2**53 - 1
# Deeper documents are refused before anything recursive (canonicalisation) walks them.
MAX_JSON_DEPTH = 200


def canonicalize(value: Any) -> bytes:
    """Canonical UTF-8 bytes of a JSON value; refuses what JCS cannot represent."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InputError(f"cannot canonicalise value as RFC 8785 JSON: {exc}") from exc
    except RecursionError:
        raise InputError("cannot canonicalise value as RFC 8785 JSON: nested too deeply") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_int(text: str) -> int | float:
    """Integers a double cannot hold exactly would be silently rounded by other parsers: refuse them.

    Beyond ±(2^53-1) a digit string is accepted only when it is exactly how RFC 8785 writes
    a double (e.g. 2^53 -> 9007199254740992, 2.176247739969799e16 -> 21762477399697990, up to
    1e21); it is then read as that double, so parse(canonicalize(x)) == x for every float.
    """
    value = int(text) if len(text) <= 23 else MAX_SAFE_INTEGER * 10**9
    if abs(value) <= MAX_SAFE_INTEGER:
        return value
    if abs(value) < 10**21 and rfc8785.dumps(float(value)) == text.encode("ascii"):
        return float(value)
    raise ValueError(f"integer {text[:24]}{'...' if len(text) > 24 else ''} is outside the "
                     "interoperable range ±(2^53-1)")


def _parse_float(text: str) -> float:
    """A number that overflows to infinity (1e400) is not a JSON value anyone can reproduce."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:24]} overflows a double")
    return value


def _check_tree(value: Any) -> None:
    """Iteratively refuse nesting deeper than MAX_JSON_DEPTH and strings with lone surrogates."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            strings: Any = (item,)
        elif isinstance(item, dict):
            if depth >= MAX_JSON_DEPTH:
                raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
            strings = item.keys()
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            if depth >= MAX_JSON_DEPTH:
                raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
            stack.extend((v, depth + 1) for v in item)
            continue
        else:
            continue
        for s in strings:
            try:
                s.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("string contains a lone surrogate (\\ud800-\\udfff escape)") from None


def parse_json(data: bytes | str, *, source: str = "<input>") -> Any:
    """Strict JSON (I-JSON, RFC 7493): no duplicate keys, no NaN/Infinity, integers within ±(2^53-1),
    valid UTF-8 without lone surrogates, nesting at most MAX_JSON_DEPTH."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(
            text,
            object_pairs_hook=_refuse_duplicates,
            parse_constant=_refuse_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
        _check_tree(value)
        return value
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not valid UTF-8 at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise InputError(f"{source}: JSON nested too deeply") from exc
    except ValueError as exc:
        raise InputError(f"{source}: invalid JSON: {exc}") from exc


# --------------------------------------------------------------------------- fast canonical form
#
# For many values ``json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
# (or orjson with OPT_SORT_KEYS) gives exactly the RFC 8785 bytes, 5-100x faster than the
# reference ``rfc8785`` encoder. It does when:
#
# * every key is BMP-only: RFC 8785 sorts keys by UTF-16 code units, json/orjson by code
#   points; the two orders agree unless a key holds a character above U+FFFF;
# * every integer is within +/-(2^53-1) (RFC 8785 refuses or re-formats others);
# * every float is non-integral, finite and 1e-4 <= |x| (< 1e16 follows from non-integral):
#   there Python's repr, orjson and ECMAScript's Number::toString all print the shortest
#   round-trip digits in fixed notation. ES6 prints 1.0 as "1", 1e16 without an exponent,
#   1e-5 as "0.00001" and -0.0 as "0", which repr does not;
# * no string holds a lone surrogate (the UTF-8 encoding step raises: the reference decides).
#
# String escaping is the same in both (\b \f \n \r \t, other controls as lowercase \u00xx,
# '"' and '\\'; everything else, U+007F and U+2028 included, raw). The selected encoder is
# checked against rfc8785 on a probe at import; tests/unit/verify/test_fast_paths.py and
# tests/unit/log/test_inference_log.py check the rule on generated values.

FAST_FLOAT_MIN = 1e-4


def float_is_fast(value: float) -> bool:
    """True when repr/orjson print this float exactly as RFC 8785 (ECMAScript) does."""
    return not value.is_integer() and FAST_FLOAT_MIN <= abs(value) < math.inf


_json_dumps = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False
).encode


def stdlib_fast_encode(obj: Any) -> bytes:
    """The stdlib C encoder in the RFC 8785 layout (valid only for the shapes above)."""
    return _json_dumps(obj).encode("utf-8")


# Values on which a candidate encoder must give exactly the reference bytes before
# it is used: the escapes, non-ASCII (2/3/4-byte UTF-8, U+2028, U+007F), key order,
# and floats at both ends of the fast range (1e-4 <= |x| < 1e16, non-integral).
FAST_PROBE: dict[str, Any] = {
    "z": "\x00\x01\x07\x08\t\n\x0b\x0c\r\x1f \"\\/\x7f\x80\u00e9\u2028\u2029\ufeff\U0001f600",
    "a": [0.0001, 0.00012345678901234567, -0.1, 0.30000000000000004, 123456789012345.67, 999999999999999.9,
          4503599627370495.5, 1.7976931348623157e15 + 0.5, 5e-4, 1.5e-4, 2 ** 53 - 1, -(2 ** 53 - 1), 0, True,
          False, None],
    "B": {"k": "v", "": 1, "K": [{}], "k0": []},
    "b\u00e9": "x",
}


def select_fast_encoder() -> tuple[Callable[[Any], bytes], str, tuple[type[BaseException], ...]]:
    """orjson (about 6x faster than the stdlib encoder) if it is installed and gives the
    same bytes as the stdlib encoder and rfc8785 on the probe; otherwise the stdlib C
    encoder. Returns (encode, name, exceptions it raises on a value it refuses).
    ``MLSPEC_LOG_ENCODER=json`` forces the stdlib encoder."""
    try:
        import orjson
    except ImportError:  # optional dependency
        return stdlib_fast_encode, "json", (UnicodeEncodeError, ValueError)
    opt = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
    dumps = orjson.dumps

    def _orjson_encode(obj: Any) -> bytes:
        return dumps(obj, option=opt)

    try:
        ok = _orjson_encode(FAST_PROBE) == stdlib_fast_encode(FAST_PROBE) == canonicalize(FAST_PROBE)
    except Exception:
        ok = False
    if not ok or os.environ.get("MLSPEC_LOG_ENCODER") == "json":
        return stdlib_fast_encode, "json", (UnicodeEncodeError, ValueError)
    return _orjson_encode, f"orjson {orjson.__version__}", (orjson.JSONEncodeError, UnicodeEncodeError, ValueError)


fast_encode, FAST_ENCODER, FAST_ENCODE_ERRORS = select_fast_encoder()
"""The encoder for values of the fast shape, its name, and the exceptions it raises on a
value it refuses (a lone surrogate; for orjson also a str-subclass key or an integer
beyond 2^53-1). On those, the reference rfc8785 encoder decides."""


class _NotFast(Exception):
    """Raised inside the fast decoder: this document is for the strict path to judge."""


def _fast_int(text: str) -> int:
    if len(text) > 17:  # beyond 2^53 anyway (and no quadratic int() on huge literals)
        raise _NotFast
    value = int(text)
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return value
    raise _NotFast


def _fast_float(text: str) -> float:
    value = float(text)
    if value.is_integer() or not FAST_FLOAT_MIN <= abs(value) < math.inf:
        raise _NotFast  # NaN is never produced here: parse_constant refuses it
    return value


def _not_fast(_text: str) -> Any:
    raise _NotFast


_fast_decode = json.JSONDecoder(parse_int=_fast_int, parse_float=_fast_float, parse_constant=_not_fast).decode
_ABOVE_BMP = re.compile(rb"[\xf0-\xff]")  # lead byte of a 4-byte UTF-8 sequence (or invalid UTF-8)


_FAST_DECODE_ERRORS: tuple[type[BaseException], ...] = (_NotFast, UnicodeError, ValueError, RecursionError,
                                                      *FAST_ENCODE_ERRORS)


def parse_canonical_fast(data: bytes) -> Any | None:
    """The value of ``data`` when it provably is RFC 8785 canonical JSON that
    ``parse_json`` accepts, else None (the caller then runs ``parse_json`` and
    ``canonicalize`` and reports what is wrong). Never a false acceptance:

    * the plain C parser (no duplicate-key hook) is enough because ``data`` must equal the
      serialisation of the parsed tree, in which no object has two equal keys: a document
      with a duplicate key parses to fewer keys and can never match its re-serialisation
      (tests/unit/verify/test_fast_paths.py checks it);
    * integers beyond +/-(2^53-1), floats outside the fast range and NaN/Infinity abort
      the fast parse (the strict path decides: refusal, or the reference encoder);
    * nesting: the number of '{' and '[' bytes bounds the depth, so a document with fewer
      than MAX_JSON_DEPTH of them cannot be too deep;
    * a lone surrogate makes the UTF-8 encoding of the re-serialisation fail;
    * keys above U+FFFF: refused here when ``data`` has any 4-byte UTF-8 sequence.
    """
    if data.count(b"{") + data.count(b"[") >= MAX_JSON_DEPTH:
        return None
    if not data.isascii() and _ABOVE_BMP.search(data):
        return None
    try:
        value = _fast_decode(data.decode("utf-8"))
        again = fast_encode(value)
    except _FAST_DECODE_ERRORS:
        return None
    return value if again == data else None
