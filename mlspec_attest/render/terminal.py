"""Making bundle-supplied text safe to print on a terminal.

File names, subject names, finding messages, request ids... come from files
someone else wrote. Printed raw, ``\\e[2J\\e[H... PASSED`` clears the screen and
fakes a verdict, and a bidi override (U+202E) reorders what the reader sees. Every
text renderer passes such strings through :func:`terminal_safe`, which shows each
control character as a visible escape: C0 (and, unless ``keep_newlines``, the
newline), DEL, C1, the bidi embeddings/overrides/isolates U+202A-U+202E and
U+2066-U+2069, the invisible marks U+200E, U+200F, U+061C, and the line and
paragraph separators U+2028, U+2029. The JSON outputs
are escaped by the JSON encoder; the HTML report by its own escaping.
"""

from __future__ import annotations

import re

_BIDI_AND_MARKS = "\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\u2028\u2029"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI_AND_MARKS}]")
_UNSAFE_BUT_NEWLINE = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_BIDI_AND_MARKS}]")


def _visible(match: re.Match[str]) -> str:
    # C0 as the familiar \xNN; DEL, C1 and bidi as \uNNNN, which is also a JSON escape of the same
    # character, so a JSON document passed through here (C0 already escaped by json) stays valid and equal.
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x20 else f"\\u{code:04x}"


def terminal_safe(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` with every control or bidi character shown as ``\\xNN`` (C0) / ``\\uNNNN`` (the rest).

    ``keep_newlines`` is for text whose line breaks are our own layout (a JSON dump,
    already-joined lines whose fields were escaped); a field from a file never keeps them.
    """
    pattern = _UNSAFE_BUT_NEWLINE if keep_newlines else _UNSAFE
    return pattern.sub(_visible, str(text))
