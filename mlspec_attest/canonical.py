"""RFC 8785 (JCS) canonical JSON: the only byte form that is ever signed or hashed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

from .errors import InputError

# I-JSON (RFC 7493) interoperable integer range; RFC 8785 relies on it.
MAX_SAFE_INTEGER = 2**53 - 1


def canonicalize(value: Any) -> bytes:
    """Canonical UTF-8 bytes of a JSON value; refuses what JCS cannot represent."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InputError(f"cannot canonicalise value as RFC 8785 JSON: {exc}") from exc


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


def parse_json(data: bytes | str, *, source: str = "<input>") -> Any:
    """Strict JSON: no duplicate keys, no NaN/Infinity, valid UTF-8 only."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(
            text,
            object_pairs_hook=_refuse_duplicates,
            parse_constant=_refuse_constant,
        )
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not valid UTF-8 at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise InputError(f"{source}: JSON nested too deeply") from exc
    except ValueError as exc:
        raise InputError(f"{source}: invalid JSON: {exc}") from exc
