"""Secret redaction: secret-looking metadata never reaches a signed payload.

A signed attestation is permanent and widely copied (bundles, transparency logs,
reports), so a credential that slips into metadata - the seed's model-packaging
files carry ``access_key_id`` / ``secret_access_key`` in ``data_stores`` - would
be leaked for good. :func:`redact` therefore replaces secret values before
signing and reports their JSON pointers, which the attestation lists in
``predicate.redactions``.

Two detectors, both deliberately biased towards redacting:

* by key name, normalised for case, ``-``/``_``/``.`` and camelCase: password,
  passwd, passphrase, secret, credential(s), ``*_token``, ``*auth``,
  authorization, api/private/secret/access/signing/... ``_key``, access_key_id.
  Names ending in a word that marks a reference rather than the secret itself
  (``token_count``, ``secret_name``, ``password_file``, ``token_url``...) are not
  flagged. Under a secret key, every value that can hold a secret is replaced,
  however deep (``credentials: {user: .., key: ..}``): non-empty strings and
  numbers; booleans, null and empty strings are kept (``token: ""`` is no leak).
* by value, whatever the key: AWS access key ids (AKIA...), PEM private key
  blocks, JWTs, GitHub (ghp_..., github_pat_...), Slack (xox?-), Google (AIza...),
  OpenAI/Stripe style (sk-..., sk_live_...) tokens, URLs with ``user:password@``,
  and connection strings with ``Password=``/``AccountKey=``/``SharedAccessKey=``.

Keys themselves are never rewritten (that would change the document's shape).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

from mlspec_attest.errors import InputError

REDACTED = "[REDACTED]"

# Words that make any key a secret, wherever they appear in it.
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "passphrase", "secret", "secrets", "credential", "credentials"}
)
# Last words that make a key a secret.
_SECRET_LAST = frozenset({"token", "auth", "authorization", "apikey", "cookie", "bearer", "pat"})
# "<qualifier>_key" is a secret for these qualifiers (public_key, key_id... are not).
_KEY_QUALIFIERS = frozenset(
    {"api", "private", "secret", "access", "signing", "encryption", "account", "master", "client",
     "shared", "storage", "subscription", "session", "ssh", "sas", "hmac"}
)
# Last words that say the value names or locates a secret, or describes one, rather than being it.
_REFERENCE_LAST = frozenset(
    {"name", "names", "ref", "reference", "path", "file", "env", "var", "arn", "type", "count",
     "length", "len", "size", "version", "enabled", "required", "policy", "manager", "store",
     "provider", "url", "uri", "endpoint", "id", "ids", "hint", "format", "method", "mode",
     "expiry", "expires", "ttl", "limit", "limits", "strength", "algorithm", "scheme"}
)

_VALUE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(rx))
    for label, rx in (
        ("AWS access key id", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[0-9A-Z]{16}\b"),
        ("private key block", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
        ("JWT", r"\beyJ[A-Za-z0-9_-]{6,}\.eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}"),
        ("GitHub token", r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}\b"),
        ("GitHub token", r"\bgithub_pat_[A-Za-z0-9_]{22,}"),
        ("Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
        ("Google API key", r"\bAIza[0-9A-Za-z_-]{35}\b"),
        ("API secret key", r"\b(?:sk|rk)[-_](?:live_|test_|proj-)?[A-Za-z0-9]{20,}\b"),
        ("URL with credentials", r"\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@"),
        ("connection string with credentials",
         r"(?i)(?:^|[;\s])(?:password|pwd|accountkey|sharedaccesskey)\s*=\s*[^;\s]+"),
    )
)


def normalise_key(key: str) -> list[str]:
    """Split a key into lower-case words: ``secretAccessKey`` / ``SECRET-ACCESS-KEY`` -> secret, access, key."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    return [w for w in re.split(r"[^A-Za-z0-9]+", text.lower()) if w]


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret (see the module docstring for the rules)."""
    words = normalise_key(key)
    if not words:
        return False
    if words[-3:] == ["access", "key", "id"]:  # AWS: not secret alone, but half a credential
        return True
    last = words[-1]
    if last in _REFERENCE_LAST:
        return False
    if any(w in _SECRET_WORDS for w in words):
        return True
    if last in _SECRET_LAST:
        return True
    return last == "key" and len(words) > 1 and words[-2] in _KEY_QUALIFIERS


def secret_pattern(value: str) -> str | None:
    """The kind of secret a string looks like, or None."""
    for label, pattern in _VALUE_PATTERNS:
        if pattern.search(value):
            return label
    return None


def _holds_secret_material(value: Any) -> bool:
    """Non-empty strings and numbers can be secrets; booleans, null and "" cannot (scalars only)."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, str):
        return value.strip() != "" and value != REDACTED
    if isinstance(value, (int, float)):
        return True
    return False


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _pointer(path: tuple[str, ...]) -> str:
    return "".join("/" + _escape(p) for p in path)


def parse_pointer(pointer: str) -> tuple[str, ...]:
    """RFC 6901 pointer -> its reference tokens; the whole document ("") is refused."""
    if not pointer.startswith("/"):
        raise InputError(
            f"--allow-secret {pointer!r}: not a JSON pointer; write it like /data_stores/0/connection/access_key_id"
        )
    tokens = pointer[1:].split("/")
    for token in tokens:
        if re.search(r"~(?![01])", token):
            raise InputError(f"--allow-secret {pointer!r}: '~' must be escaped as ~0 (and '/' as ~1)")
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in tokens)


def _exists(document: Any, path: tuple[str, ...]) -> bool:
    node = document
    for token in path:
        if isinstance(node, dict):
            if token not in node:
                return False
            node = node[token]
        elif isinstance(node, list):
            if not re.fullmatch(r"0|[1-9][0-9]*", token) or int(token) >= len(node):
                return False
            node = node[int(token)]
        else:
            return False
    return True


def _find(value: Any, path: tuple[str, ...], found: list[tuple[str, ...]], under_secret: bool = False) -> None:
    """Collect pointers of secret values; everything under a secret-named key counts as secret."""
    if isinstance(value, dict):
        for key, child in value.items():
            _find(child, path + (str(key),), found, under_secret or is_secret_key(str(key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _find(child, path + (str(index),), found, under_secret)
    elif (under_secret and _holds_secret_material(value)) or (isinstance(value, str) and value != REDACTED and secret_pattern(value)):
        found.append(path)


def _replace(document: Any, path: tuple[str, ...]) -> None:
    node = document
    for token in path[:-1]:
        node = node[int(token)] if isinstance(node, list) else node[token]
    last = path[-1]
    if isinstance(node, list):
        node[int(last)] = REDACTED
    else:
        node[last] = REDACTED


def redact(metadata: dict[str, Any], allow: Iterable[str] = ()) -> tuple[dict[str, Any], list[str]]:
    """A deep copy of ``metadata`` with secrets replaced by ``REDACTED``, and their sorted pointers.

    ``allow`` lists RFC 6901 pointers kept on purpose (``--allow-secret``); one
    allows its value and everything under it. A pointer that does not exist in the
    metadata is an InputError, so a typo cannot silently leave a secret unprotected
    - or an intended exception unapplied.
    """
    allowed = []
    for pointer in allow:
        path = parse_pointer(pointer)
        if not _exists(metadata, path):
            raise InputError(f"--allow-secret {pointer!r}: no such value in the metadata (check the pointer)")
        allowed.append(path)
    result = copy.deepcopy(metadata)
    found: list[tuple[str, ...]] = []
    _find(result, (), found)
    redacted: list[str] = []
    for path in found:
        if any(path[: len(a)] == a for a in allowed):
            continue
        _replace(result, path)
        redacted.append(_pointer(path))
    return result, sorted(redacted)


def warning(redactions: list[str], source: str = "metadata") -> str | None:
    """One-line warning naming what was redacted, or None when nothing was."""
    if not redactions:
        return None
    noun = "value" if len(redactions) == 1 else "values"
    return (
        f"warning: {source}: redacted {len(redactions)} secret-looking {noun} before signing: "
        f"{', '.join(redactions)} (keep one on purpose with --allow-secret POINTER)"
    )
