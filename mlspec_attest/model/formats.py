"""The lexical forms every wire object shares: hex digests and RFC 3339 times.

One definition each, so the gate, the chain head and the inference log cannot
disagree about what a valid digest or timestamp is.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

HEX64 = re.compile(r"[0-9a-f]{64}")
"""A lowercase hex SHA-256 digest (use ``fullmatch``)."""

RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})")
"""An RFC 3339 date-time with an explicit offset (use ``fullmatch``)."""

RFC3339_UTC_SECONDS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
"""The one form mlspec itself writes: UTC, whole seconds, ``Z``."""

UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def is_sha256_hex(value: Any) -> bool:
    return isinstance(value, str) and HEX64.fullmatch(value) is not None


def parse_rfc3339(value: Any) -> datetime | None:
    """An aware datetime, or None when ``value`` is not an RFC 3339 date-time string."""
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        return None
    text = value.replace("t", "T").replace("z", "Z")
    # fromisoformat takes at most 6 fractional digits before Python 3.11; RFC 3339 allows more.
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:  # e.g. month 13
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def format_utc(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime(UTC_FORMAT)
