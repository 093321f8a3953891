"""RFC 8785 (JCS) canonical JSON: the only byte form that is ever signed or hashed."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import rfc8785

from .errors import InputError

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
