"""Secret redaction: secret-looking metadata never reaches a signed payload.

A signed attestation is permanent and widely copied (bundles, transparency logs,
reports), so a credential that slips into metadata - the seed's model-packaging
files carry ``access_key_id`` / ``secret_access_key`` in ``data_stores`` - would
be leaked for good. :func:`scan` finds secrets, :func:`redact` replaces them
before signing and reports their JSON pointers (``predicate.redactions``), and
``--fail-on-secret`` refuses to sign instead.

What is looked at - every mapping key, every list item, every scalar, and the
text *inside* strings:

* **Yelp's detect-secrets** plugins, in-process and offline (no verification
  calls): AWS, private-key armour, basic-auth URLs, JWT, Azure storage, GitHub,
  GitLab, Slack, Stripe, OpenAI, npm, PyPI, SendGrid, Twilio, Discord, Telegram,
  Mailchimp, Artifactory, Square, IBM, Cloudant, Softlayer, the keyword detector
  (``password=..``, ``secret: ..`` inside text) and Base64 high entropy (limit
  4.5). Hex entropy is left out: an attestation is full of sha256 digests.
* **Structure detect-secrets cannot see** because it scans lines, not documents:
  secret-named keys (everything under them, however deep); ``{name: SECRET_NAME,
  value: ..}`` pairs (Kubernetes env lists, headers, parameters); ``NAME=VALUE`` and
  ``Name: value`` inside strings (env strings, ``Authorization: Bearer ..``,
  JDBC/ODBC ``password=``); argv lists and command strings, split with ``shlex``
  (``--token X``, ``--password=X``, ``curl -u user:pw``); URLs parsed with
  ``urllib`` (``user:pw@``, a token as the user name, ``?token=``, ``?sig=``,
  ``X-Amz-Signature``); JSON inside a string; base64 that decodes to a DER or
  OpenSSH private key (``cryptography`` parses it), to ``user:password`` (docker
  ``auth``) or to text that itself holds a secret.
* ``*_env``/``*_file``/``*_name``... keys name a secret rather than hold it, but
  only when the value has that shape: ``password_env: DB_PASSWORD`` is kept,
  ``password_env: hunter2`` is redacted.

The whole value is replaced by ``[REDACTED]`` (not only the part that looked
secret): a partial cut depends on every parser agreeing with the one that will
later read the value, which is exactly what an attacker varies. A mapping *key*
that is itself a secret is renamed ``[REDACTED-KEY-n]`` and its pointer uses the
new name, so no pointer, warning or error ever spells the secret.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import json
import re
import shlex
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mlspec_attest.errors import InputError

REDACTED = "[REDACTED]"
KEY_PLACEHOLDER = "[REDACTED-KEY-{n}]"
_PLACEHOLDER_RE = re.compile(r"\[REDACTED(?:-KEY-[0-9]+)?\]")

# Words that make any key a secret, wherever they appear in it.
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "passphrase", "passcode", "pincode", "secret", "secrets", "credential",
     "credentials", "mfa", "totp", "hotp", "otp", "privkey"}
)
# Last words that make a key a secret.
_SECRET_LAST = frozenset({"token", "auth", "authorization", "apikey", "cookie", "bearer", "pat", "pin", "pw",
                          "sas", "dsn"})
# "<qualifier>_token" names a tokenizer's special token (pad_token: "<pad>"), not a credential.
_VOCABULARY_TOKENS = frozenset({"pad", "eos", "bos", "unk", "sep", "cls", "mask", "special", "start", "end", "stop",
                                "eot", "eom", "image", "audio", "video", "vision", "chat", "fim", "prefix", "suffix",
                                "middle", "think", "tool", "im"})
# "<qualifier>_pass" is a password (db_pass, smtp_pass); forward_pass, first_pass are not.
_PASS_QUALIFIERS = frozenset({"db", "database", "key", "smtp", "user", "admin", "root", "ftp", "mail", "proxy",
                              "ldap", "redis", "mysql", "postgres", "pg", "basic", "login"})
# "<qualifier>_key" is a secret for these qualifiers (public_key, key_id... are not).
_KEY_QUALIFIERS = frozenset(
    {"api", "private", "priv", "secret", "access", "signing", "encryption", "account", "master", "client",
     "shared", "storage", "subscription", "session", "ssh", "sas", "hmac", "auth", "service", "db", "database",
     "license", "webhook"}
)
# Last words that say the value names or locates a secret, or describes one, rather than being it.
_REFERENCE_LAST = frozenset(
    {"name", "names", "ref", "reference", "path", "file", "env", "var", "arn", "type", "count",
     "length", "len", "size", "version", "enabled", "required", "policy", "manager", "store",
     "provider", "url", "uri", "endpoint", "id", "ids", "hint", "format", "method", "mode",
     "expiry", "expires", "ttl", "limit", "limits", "strength", "algorithm", "scheme"}
)
# For these reference words the value must also *look* like a reference to be kept.
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_FILE_NAME = re.compile(r"(?:[~.]|[A-Za-z]:)?[\w.~-]*[/\\][\w./\\~-]*|[\w-]+\.[A-Za-z0-9]{1,8}")
_SHAPED_REFERENCES = {"env": _ENV_NAME, "var": _ENV_NAME, "file": _FILE_NAME, "path": _FILE_NAME}

# Mapping fields that name a variable / header / parameter, and those that then hold its value.
_NAME_FIELDS = frozenset({"name", "key", "env", "variable", "var", "header", "param", "parameter", "field"})
_VALUE_FIELDS = frozenset({"value", "val", "data", "content", "string_value", "stringvalue", "default"})

# URL query parameters that carry a credential although their names are not secret words.
_URL_SECRET_PARAMS = frozenset(
    {"sig", "signature", "key", "code", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
     "x-goog-signature", "x-goog-credential", "se_sig"}
)
# Formats detect-secrets 1.5 has no plugin for: PKCS#8 *encrypted* keys (what mlspec itself
# writes), GitHub's fine-grained tokens, Google, generic sk-/rk- keys, Hugging Face.
_EXTRA_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Private Key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("GitHub fine-grained token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("API secret key", re.compile(r"\b(?:sk|rk)[-_](?:live_|test_|proj-)?[A-Za-z0-9]{20,}\b")),
    ("Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
)
_URL_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
# NAME=VALUE, NAME: VALUE, "NAME": "VALUE" inside text (env strings, headers, ODBC/JDBC, YAML lines).
_ASSIGNMENT_RE = re.compile(
    r"""(?:^|(?<=[\s;&?,{(\['"]))["']?(-{0,2}[A-Za-z_][\w.-]*)["']?\s*(?:=|:(?!//))\s*["']?([^\s;&,'"}\])]+)"""
)
# An HTTP credential without its header name: "Bearer x", "token ghp_..", "Basic <base64 user:pw>".
_AUTH_SCHEME_RE = re.compile(r"(?i)\b(bearer|token|basic)\s+([A-Za-z0-9._~+/=-]{8,})")
_BASE64_RE = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")
_MAX_DEPTH = 4  # decode-and-rescan nesting (base64 of JSON of base64...)


@dataclass(frozen=True)
class Detection:
    """One secret: where (original reference tokens), whether a key or a value, and why."""

    path: tuple[str, ...]
    is_key: bool
    reason: str


def normalise_key(key: str) -> list[str]:
    """Split a key into lower-case words: ``secretAccessKey`` / ``SECRET-ACCESS-KEY`` -> secret, access, key."""
    text = unicodedata.normalize("NFKC", key)  # fullwidth ｐａｓｓｗｏｒｄ is password
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    return [w for w in re.split(r"[^A-Za-z0-9]+", text.lower()) if w]


# Run together with other words (PGPASSWORD, dbpassword, myapikey, accesstoken), these still count.
_SECRET_INFIXES = ("password", "passwd", "passphrase", "passcode", "secret", "credential", "apikey", "privatekey")
_SECRET_SUFFIXES = ("token", "apikey", "authkey")


def _has_secret_word(words: list[str]) -> bool:
    # Adjacent words joined too: devicePassCode, pass_word, api-key split one word in two.
    joined = [a + b for a, b in zip(words, words[1:])]
    if any(w in _SECRET_WORDS for w in words + joined):
        return True
    if any(infix in w for w in words for infix in _SECRET_INFIXES):
        return True
    if words[-1] in _SECRET_LAST or (joined and joined[-1] in _SECRET_LAST):
        return True
    if words[-1].endswith(_SECRET_SUFFIXES) and words[-1] not in {"token", "apikey", "authkey"}:
        return True
    if words[-1] == "pass" and (len(words) == 1 or words[-2] in _PASS_QUALIFIERS):
        return True
    return words[-1] == "key" and len(words) > 1 and words[-2] in _KEY_QUALIFIERS


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret (see the module docstring for the rules)."""
    words = normalise_key(key)
    if not words:
        return False
    if words[-3:] == ["access", "key", "id"]:  # AWS: not secret alone, but half a credential
        return True
    if words[-1] in _REFERENCE_LAST:
        return False
    if words[-1] == "token" and len(words) > 1 and words[-2] in _VOCABULARY_TOKENS:
        return False
    return _has_secret_word(words)


def _reference_holds_secret(key: str, value: Any) -> bool:
    """``password_env: hunter2``: a reference-named key whose value is not shaped like the reference."""
    words = normalise_key(key)
    if len(words) < 2 or words[-1] not in _SHAPED_REFERENCES or not _has_secret_word(words[:-1]):
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    return isinstance(value, str) and bool(value.strip()) and not _SHAPED_REFERENCES[words[-1]].fullmatch(value)


# --- detect-secrets --------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _plugins() -> tuple[tuple[Any, ...], Any, Any]:
    """The detect-secrets plugins, built once: (format detectors, keyword detector, base64 entropy).

    Plugins are instantiated directly and only ``analyze_string`` is called: no global
    settings are touched, no baseline or file is read, no network verification runs.
    """
    from detect_secrets.plugins.artifactory import ArtifactoryDetector
    from detect_secrets.plugins.aws import AWSKeyDetector
    from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
    from detect_secrets.plugins.basic_auth import BasicAuthDetector
    from detect_secrets.plugins.cloudant import CloudantDetector
    from detect_secrets.plugins.discord import DiscordBotTokenDetector
    from detect_secrets.plugins.github_token import GitHubTokenDetector
    from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
    from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString
    from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
    from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
    from detect_secrets.plugins.jwt import JwtTokenDetector
    from detect_secrets.plugins.keyword import KeywordDetector
    from detect_secrets.plugins.mailchimp import MailchimpDetector
    from detect_secrets.plugins.npm import NpmDetector
    from detect_secrets.plugins.openai import OpenAIDetector
    from detect_secrets.plugins.private_key import PrivateKeyDetector
    from detect_secrets.plugins.pypi_token import PypiTokenDetector
    from detect_secrets.plugins.sendgrid import SendGridDetector
    from detect_secrets.plugins.slack import SlackDetector
    from detect_secrets.plugins.softlayer import SoftlayerDetector
    from detect_secrets.plugins.square_oauth import SquareOAuthDetector
    from detect_secrets.plugins.stripe import StripeDetector
    from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
    from detect_secrets.plugins.twilio import TwilioKeyDetector

    formats = tuple(cls() for cls in (
        AWSKeyDetector, PrivateKeyDetector, BasicAuthDetector, JwtTokenDetector, AzureStorageKeyDetector,
        GitHubTokenDetector, GitLabTokenDetector, SlackDetector, StripeDetector, OpenAIDetector, NpmDetector,
        PypiTokenDetector, SendGridDetector, TwilioKeyDetector, DiscordBotTokenDetector, TelegramBotTokenDetector,
        MailchimpDetector, ArtifactoryDetector, SquareOAuthDetector, IbmCloudIamDetector, IbmCosHmacDetector,
        CloudantDetector, SoftlayerDetector))
    return formats, KeywordDetector(), Base64HighEntropyString()


# Placeholders documentation writes where the value goes: <from vault>, (Required) ..., %(pw)s.
_PLACEHOLDER_START = re.compile(r"<|\$|%\(|\{\{|\((?i:required|optional)\b")
# Subresource-integrity digests (sha256-<base64>): random-looking by design, never secret.
_SRI_DIGEST = re.compile(r"sha(?:256|384|512)-[A-Za-z0-9+/]+={0,2}")


def _is_reference(secret: str, line: str) -> bool:
    """detect-secrets' own heuristics for a value that points at a secret: ``${X}``, ``$X``, ``<x>``, calls."""
    from detect_secrets.filters.heuristic import (
        is_indirect_reference,
        is_prefixed_with_dollar_sign,
        is_sequential_string,
        is_templated_secret,
    )

    return (is_templated_secret(secret) or is_prefixed_with_dollar_sign(secret) or is_sequential_string(secret)
            or is_indirect_reference(line) or bool(_PLACEHOLDER_RE.fullmatch(secret))
            or bool(_PLACEHOLDER_START.match(secret)))


_HEX_ONLY = re.compile(r"[0-9a-fA-F]+")
_WORDS = re.compile(r"[a-z][a-z0-9]*(?:[-_.][a-z0-9]+)*")  # a lower-case name like mlspec-inference-log


def _random_looking(token: str, entropy: Any) -> bool:
    """detect-secrets' Base64 entropy test, minus digests and lower-case paths it would flag.

    A token with ``/`` is a path unless one of its segments is itself long and random
    (an AWS secret key has ``/`` in it; ``/v1/projects/my-project/...`` is a path).
    """
    # Entropy is at most log2(distinct characters): skip the exact (slow) count when it cannot pass.
    if len(set(token)) <= 2 ** entropy.entropy_limit:
        return False
    if entropy.calculate_shannon_entropy(token) <= entropy.entropy_limit or _SRI_DIGEST.fullmatch(token):
        return False
    if _HEX_ONLY.fullmatch(token):
        return False  # a digest or an id: hex tokens are judged by the hex rules, never as base64
    if "/" in token and not any(len(seg) >= 16 and not _HEX_ONLY.fullmatch(seg) and not _WORDS.fullmatch(seg)
                                and entropy.calculate_shannon_entropy(seg) > 3.5 for seg in token.split("/")):
        return False
    decoded = _printable_base64(token)
    if decoded is not None:
        # Random bytes almost never decode to printable text: this is encoded text, judge what it says.
        return _text_secret(decoded, 1) is not None
    return True


def _printable_base64(token: str) -> str | None:
    """The text a base64 token encodes, when it decodes (either alphabet) to printable UTF-8."""
    candidate = token.strip()
    if not _BASE64_RE.fullmatch(candidate) or len(candidate) % 4 == 1:
        return None
    padded = candidate + "=" * (-len(candidate) % 4)
    try:
        text = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    return text if text and all(c.isprintable() or c in "\r\n\t" for c in text) else None


@functools.lru_cache(maxsize=1)
def _entropy_tokens(charset: str) -> re.Pattern[str]:
    return re.compile(f"[{re.escape(charset)}]+")


@functools.lru_cache(maxsize=8192)
def _detect_secrets(line: str) -> str | None:
    """The secret type detect-secrets reports for one line of text, or None."""
    from detect_secrets.plugins.keyword import CONFIG_DENYLIST_REGEX_TO_GROUP

    formats, keyword, entropy = _plugins()
    for plugin in formats:
        if any(True for _ in plugin.analyze_string(line)):
            return str(plugin.secret_type)
    for found in keyword.analyze_string(line, denylist_regex_to_group=CONFIG_DENYLIST_REGEX_TO_GROUP):
        if found and not _is_reference(found, line):
            return str(keyword.secret_type)
    for token in _entropy_tokens(entropy.charset).findall(line):
        if _random_looking(token, entropy) and not _is_reference(token, line):
            return str(entropy.secret_type)
    return None


# --- structure inside strings ------------------------------------------------------


def _is_secret_assignment(name: str, value: str) -> bool:
    if not value or _is_reference(value, f"{name}={value}"):
        return False
    bare = name.lstrip("-")
    return is_secret_key(bare) or _reference_holds_secret(bare, value)


def _url_secret(text: str) -> str | None:
    for match in _URL_RE.finditer(text):
        try:
            parts = urlsplit(match.group(0))
            user, password = parts.username, parts.password
        except ValueError:
            continue
        if password:
            return "URL with a password"
        if user and (_looks_like_token(user) or _detect_secrets(user)):
            return "URL with a token as its user name"
        for name, value in parse_qsl(parts.query, keep_blank_values=False):
            if value and (name.lower() in _URL_SECRET_PARAMS or is_secret_key(name)):
                return "URL query parameter holding a credential"
    return None


def _looks_like_token(text: str) -> bool:
    """A user name that is a credential: long, and mixing letters and digits (ghp_..., glpat-..., a hex PAT)."""
    return len(text) >= 20 and bool(re.search(r"[A-Za-z]", text)) and bool(re.search(r"[0-9]", text))


def _argv_secrets(tokens: list[str]) -> set[int]:
    """Indexes of the arguments that are secrets: ``--token X``, ``--password=X``, ``-u user:pw``."""
    found: set[int] = set()
    for index, token in enumerate(tokens):
        if not token.startswith("-") or token == "-":
            continue
        name, eq, value = token.lstrip("-").partition("=")
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if eq:
            if _is_secret_assignment(name, value):
                found.add(index)
            continue
        if not following or following.startswith("-"):
            continue
        if (is_secret_key(name) or _reference_holds_secret(name, following)) and not _is_reference(following, token):
            found.add(index + 1)
        elif name in {"u", "user", "proxy-user", "U"} and re.fullmatch(r"[^:\s]*:(?![0-9]*$)\S+", following):
            found.add(index + 1)  # curl/wget -u user:password (not docker's -u 1000:1000)
    return found


def _decoded_secret(text: str, depth: int) -> str | None:
    """Base64 that decodes to a private key, to ``user:password``, or to text holding a secret."""
    candidate = text.strip()
    if not _BASE64_RE.fullmatch(candidate) or len(candidate) % 4 == 1:
        return None
    padded = candidate + "=" * (-len(candidate) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) >= 32 and _is_private_key_der(raw):
        return "base64 private key (no PEM armour)"
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not decoded.isprintable() and not all(c.isprintable() or c in "\r\n\t" for c in decoded):
        return None
    if re.fullmatch(r"[^:\s]+:[^\s]+", decoded) and "://" not in decoded:
        return "base64 user:password (docker auth)"
    inner = _text_secret(decoded, depth + 1)
    return f"base64 of {inner}" if inner else None


def _is_private_key_der(raw: bytes) -> bool:
    if raw.startswith(b"openssh-key-v1\x00"):
        return True
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    try:
        load_der_private_key(raw, password=None)
        return True
    except TypeError:
        return True  # an encrypted PKCS#8 key: still a private key
    except (ValueError, UnsupportedAlgorithm):
        return False


def _text_secret(text: str, depth: int = 0) -> str | None:
    """Why a piece of text holds a secret, or None; looks inside lines, URLs, argv, JSON and base64."""
    if not text.strip() or _PLACEHOLDER_RE.fullmatch(text.strip()):
        return None
    if depth > _MAX_DEPTH:
        # Still encoded after this many layers: fail closed rather than stop looking.
        stripped = text.strip()
        return "deeply nested encoding" if stripped[:1] in "{[" or _BASE64_RE.fullmatch(stripped) else None
    text = unicodedata.normalize("NFKC", text)
    for label, pattern in _EXTRA_FORMATS:
        if pattern.search(text):
            return label
    for line in text.splitlines() or [text]:
        found = _detect_secrets(line)
        if found:
            return found
        for match in _ASSIGNMENT_RE.finditer(line):
            if _is_secret_assignment(match.group(1), match.group(2)):
                return "secret-named NAME=VALUE inside text"
    for match in _AUTH_SCHEME_RE.finditer(text):
        scheme, credential = match.group(1).lower(), match.group(2)
        if scheme == "basic":
            if _decoded_secret(credential, depth):
                return "HTTP Basic credentials"
        elif (len(credential) >= 16 or re.search(r"[0-9]", credential)) and not _is_reference(credential, text):
            return "HTTP bearer credential"
    url = _url_secret(text)
    if url:
        return url
    if re.search(r"\s", text.strip()):
        try:
            tokens = shlex.split(text, posix=True)
        except ValueError:
            tokens = text.split()
        if _argv_secrets(tokens):
            return "command-line argument"
    stripped = text.strip()
    if stripped[:1] in "{[":
        try:
            inner = json.loads(stripped)
        except ValueError:
            inner = None
        if isinstance(inner, (dict, list)) and any(True for _ in _walk(inner, (), False, depth + 1)):
            return "JSON inside a string"
    return _decoded_secret(text, depth)


def secret_pattern(value: str) -> str | None:
    """The kind of secret a string looks like, or None."""
    return _text_secret(value)


# --- the document walk -------------------------------------------------------------


def _holds_secret_material(value: Any) -> bool:
    """Non-empty strings and numbers can be secrets; booleans, null and "" cannot (scalars only)."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, str):
        return value.strip() != "" and not _PLACEHOLDER_RE.fullmatch(value)
    return isinstance(value, (int, float))


def _names_a_secret(mapping: dict[str, Any]) -> bool:
    """``{name: AWS_SECRET_ACCESS_KEY, value: ..}``: a name/value pair whose name is a secret's."""
    return any(str(k).lower() in _NAME_FIELDS and isinstance(v, str) and is_secret_key(v)
               for k, v in mapping.items())


def _walk(value: Any, path: tuple[str, ...], under_secret: bool, depth: int = 0) -> Iterator[Detection]:
    if isinstance(value, dict):
        pair = _names_a_secret(value)
        for key, child in value.items():
            name = str(key)
            reason = _text_secret(name, depth)
            if reason:
                yield Detection(path + (name,), True, f"mapping key: {reason}")
            secret_child = (under_secret or is_secret_key(name) or (pair and name.lower() in _VALUE_FIELDS))
            if not secret_child and _reference_holds_secret(name, child):
                yield Detection(path + (name,), False, "reference-named key whose value is no reference")
                continue
            yield from _walk(child, path + (name,), secret_child, depth)
    elif isinstance(value, list):
        strings = [item if isinstance(item, str)
                   else str(item) if isinstance(item, (int, float)) and not isinstance(item, bool) else ""
                   for item in value]
        flagged = _argv_secrets(strings) if not under_secret else set()
        for index, child in enumerate(value):
            if index in flagged and _holds_secret_material(child):
                yield Detection(path + (str(index),), False, "command-line argument")
                continue
            yield from _walk(child, path + (str(index),), under_secret, depth)
    elif under_secret and _holds_secret_material(value):
        yield Detection(path, False, "under a secret-named key")
    elif isinstance(value, str):
        reason = _text_secret(value, depth)
        if reason:
            yield Detection(path, False, reason)


def scan(metadata: Any) -> list[Detection]:
    """Every secret in ``metadata`` (keys and values), in document order; nothing is changed."""
    return list(_walk(metadata, (), False))


# --- pointers ------------------------------------------------------------------------


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


def _node(document: Any, path: tuple[str, ...]) -> Any:
    node = document
    for token in path:
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


@dataclass(frozen=True)
class Redaction:
    """What :func:`redact_all` did: the clean document and, per pointer (new names), why."""

    metadata: dict[str, Any]
    reasons: dict[str, str]

    @property
    def pointers(self) -> list[str]:
        return sorted(self.reasons)


def redact_all(metadata: dict[str, Any], allow: Iterable[str] = ()) -> Redaction:
    """A deep copy of ``metadata`` with secret values replaced and secret keys renamed.

    ``allow`` lists RFC 6901 pointers (in the metadata as given) kept on purpose
    (``--allow-secret``); one allows its value and everything under it. A pointer
    that does not exist is an InputError, so a typo cannot silently leave a secret
    unprotected - or an intended exception unapplied.
    """
    allowed = []
    for pointer in allow:
        path = parse_pointer(pointer)
        if not _exists(metadata, path):
            raise InputError(f"--allow-secret {pointer!r}: no such value in the metadata (check the pointer)")
        allowed.append(path)
    detections = [d for d in scan(metadata) if not any(d.path[: len(a)] == a for a in allowed)]
    result = copy.deepcopy(metadata)
    for d in detections:
        if not d.is_key:
            parent = _node(result, d.path[:-1])
            parent[int(d.path[-1]) if isinstance(parent, list) else d.path[-1]] = REDACTED
    # Rename secret keys, deepest first so the shallower paths stay valid while we go.
    renames: dict[tuple[str, ...], str] = {}
    taken = {str(k) for d in detections if d.is_key for k in _node(result, d.path[:-1])}
    keys = sorted({d.path for d in detections if d.is_key})
    for number, path in enumerate(keys, start=1):
        new = KEY_PLACEHOLDER.format(n=number)
        while new in taken:
            number += len(keys)
            new = KEY_PLACEHOLDER.format(n=number)
        taken.add(new)
        renames[path] = new
    for path in sorted(renames, key=len, reverse=True):
        parent = _node(result, path[:-1])
        parent[renames[path]] = parent.pop(path[-1])

    def shown(path: tuple[str, ...]) -> str:
        return _pointer(tuple(renames.get(path[: i + 1], token) for i, token in enumerate(path)))

    reasons: dict[str, str] = {}
    for d in detections:
        reasons.setdefault(shown(d.path), d.reason)
    return Redaction(result, reasons)


def redact(metadata: dict[str, Any], allow: Iterable[str] = ()) -> tuple[dict[str, Any], list[str]]:
    """A deep copy of ``metadata`` with secrets replaced, and the sorted pointers of what was replaced."""
    done = redact_all(metadata, allow)
    return done.metadata, done.pointers


def warning(redactions: list[str], source: str = "metadata") -> str | None:
    """One-line warning naming what was redacted, or None when nothing was."""
    if not redactions:
        return None
    noun = "value" if len(redactions) == 1 else "values"
    return (
        f"warning: {source}: redacted {len(redactions)} secret-looking {noun} before signing: "
        f"{', '.join(redactions)} (keep one on purpose with --allow-secret POINTER)"
    )


def refusal(reasons: dict[str, str], source: str = "metadata") -> str:
    """The one-line ``--fail-on-secret`` error: pointers and reasons, never the secret itself."""
    listed = "; ".join(f"{pointer} ({reason})" for pointer, reason in sorted(reasons.items()))
    return (f"{source}: refusing to sign (--fail-on-secret): {len(reasons)} secret-looking "
            f"value{'s' if len(reasons) != 1 else ''} at {listed}; remove {'them' if len(reasons) != 1 else 'it'} "
            "or keep one on purpose with --allow-secret POINTER")
