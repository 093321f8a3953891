"""Text for a terminal from values an attacker may have chosen (a record's requestId, a file name).

Control characters (C0, DEL, C1), line and paragraph separators and bidirectional overrides are
shown as escapes, so a value can neither move the cursor, recolour the output, fake a new line
nor reorder what is displayed ("display spoofing"); everything else is printed as is.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """``str(value)`` with every character that could spoof a terminal display escaped."""
    return _UNSAFE.sub(_escape, str(value))
