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
     "credentials", "mfa", "totp", "hotp", "otp", "privkey", "pswd", "passwrd", "pword", "pswrd", "passwort",
     "storepass", "keypass", "srcstorepass", "deststorepass", "srckeypass", "destkeypass", "passin", "passout"}
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
# "<qualifier>_tokens" is a collection of credentials.
_TOKEN_QUALIFIERS = frozenset({"api", "access", "auth", "bearer", "refresh", "session", "ci", "deploy", "personal",
                               "service", "secret", "oauth", "github", "gitlab", "hf", "npm", "pypi", "slack", "bot",
                               "user", "client", "app", "registry"})
# Last words that say the value names or locates a secret, or describes one, rather than being it.
_REFERENCE_LAST = frozenset(
    {"name", "names", "ref", "reference", "path", "file", "env", "var", "arn", "type", "count",
     "length", "len", "size", "version", "enabled", "required", "policy", "manager", "store",
     "provider", "url", "uri", "endpoint", "id", "ids", "hint", "format", "method", "mode",
     "expiry", "expires", "ttl", "limit", "limits", "strength", "algorithm", "scheme"}
)
# Trailing words that qualify a secret rather than change what it is: API_KEY_PROD, token_b64,
# private_key_hex, GITHUB_TOKEN_OLD (a word of digits - token_2, password_30d - is one too).
_TRAILING_QUALIFIERS = frozenset(
    {"prod", "production", "prd", "old", "new", "staging", "stage", "stg", "dev", "development", "test", "testing",
     "qa", "uat", "live", "sandbox", "raw", "hex", "b64", "base64", "b32", "base32", "b58", "value", "val", "str",
     "string", "bytes", "der", "pem", "json", "txt", "text", "enc", "encoded", "plain", "plaintext", "clear",
     "cleartext", "current", "curr", "cur", "prev", "previous", "primary", "secondary", "backup", "bak", "alt",
     "tmp", "temp", "local", "default", "ci", "override", "orig", "original", "rotated", "next", "legacy",
     "internal", "external"}
)
_QUALIFIER_NUMBER = re.compile(r"v?[0-9]+[a-z]{0,2}")  # 2, v2, 30d, 24h
# Last words that make a secret-word key describe a measurement of a feature rather than hold the
# secret: password_changes_30d, otp_requests, credential_stuffing_score, has_secret_question.
_MEASURE_LAST = frozenset(
    {"changes", "change", "changed", "requests", "request", "attempts", "attempt", "failures", "failure",
     "failed", "resets", "reset", "score", "scores", "rate", "rates", "ratio", "question", "questions",
     "flag", "flags", "events", "event", "age", "days", "hours", "usage", "used", "entropy", "reuse", "reused",
     "complexity", "mean", "std", "avg", "sum", "total", "num", "pct", "percent", "share", "frequency", "freq",
     "distribution", "histogram", "stats", "statistics", "feature", "features", "prob", "probability"}
)
_MEASURE_FIRST = frozenset({"has", "is", "num", "n", "count", "uses", "pct", "avg", "mean", "total"})
# Under a measurement key these fields describe the feature; everything else must be a number.
_MEASURE_DESCRIPTIONS = frozenset({"dtype", "type", "kind", "unit", "units", "feature", "description", "name"})
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
     "x-goog-signature", "x-goog-credential", "se_sig", "appid", "app_id", "appkey", "app_key", "hapikey",
     "subscription-key", "api-key", "apikey", "client_secret", "access_key", "license_key", "licensekey"}
)
# ...but a path or a file name there is an object key (?key=models/a.onnx), not a credential.
_PATH_VALUED_PARAMS = frozenset({"key", "code"})
# Formats detect-secrets 1.5 has no plugin for: PKCS#8 *encrypted* keys (what mlspec itself
# writes), GitHub's fine-grained tokens, Google, generic sk-/rk- keys, Hugging Face.
_EXTRA_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Private Key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("GitHub fine-grained token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("API secret key", re.compile(r"\b(?:sk|rk)[-_](?:live_|test_|proj-)?[A-Za-z0-9]{20,}\b")),
    ("Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    ("NPM tokens", re.compile(r":_authToken=\s*(?:npm_\S|[A-Fa-f0-9-]{36})|\bnpm_[A-Za-z0-9]{36}\b")),
    # Service tokens whose body is hex or a UUID (no entropy detector flags them): the prefix says it.
    ("Databricks token", re.compile(r"\bdapi[0-9a-f]{32,40}(?:-[0-9]+)?\b")),
    ("DigitalOcean token", re.compile(r"\bdo[opr]_v1_[0-9a-f]{64,72}\b")),
    ("Shopify token", re.compile(r"\bshp(?:at|ca|pa|ss)_[0-9a-fA-F]{32,40}\b")),
    ("Mailgun key", re.compile(r"\bkey-[0-9a-f]{32,40}\b")),
    ("Pulumi token", re.compile(r"\bpul-[0-9a-f]{40,48}\b")),
    ("Vault token", re.compile(r"\bhv[sbr]\.[A-Za-z0-9_-]{24,}")),
    ("Docker Hub token", re.compile(r"\bdckr_pat_[A-Za-z0-9_-]{20,}")),
    ("Grafana token", re.compile(r"\bgl(?:sa|c)_[A-Za-z0-9_=+/-]{32,}")),
    ("Google OAuth token", re.compile(r"\bya29\.[0-9A-Za-z_-]{20,}")),
    ("webhook URL", re.compile(r"(?i)\.webhook\.office\.com/webhookb2/|\boutlook\.office\.com/webhook/"
                               r"|\bdiscord(?:app)?\.com/api/webhooks/[0-9]+/|\bhooks\.slack\.com/(?:services|workflows)/")),
)
# The scheme is anchored by a lookbehind and bounded: "\b[A-Za-z][A-Za-z0-9+.-]*://" retried the whole
# run from every word boundary of "a-a-a-..." (quadratic: 80 kB took 9 s).
_URL_RE = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s'\"<>`]+")
# user:password@ after "scheme://", read without urllib: a raw "#", "?" or "/" in the password cuts
# urlsplit's netloc short. Bounded, so a run of "://" stays linear.
_USERINFO_RE = re.compile(r"://([^\s/?#@:]{0,128}):([^\s@]{1,256})@[\w\[\]-]")
# netrc lines: machine x login y password z (the first pattern says it is netrc, the second finds the value).
_NETRC_CONTEXT = re.compile(r"(?i)(?:^|\s)(?:machine|default|login)\s+\S")
_NETRC_PASSWORD = re.compile(r"(?i)(?:^|(?<=\s))(?:password|passwd|account)\s+(\S+)")
# <password>x</password>: Maven settings.xml, web.config, any XML element named like a secret.
_XML_ELEMENT_RE = re.compile(r"<([A-Za-z_][\w.:-]{0,64})(?:\s[^<>]{0,512})?>([^<]{1,1024})</\1\s*>")
# Oracle user/password@host (JDBC thin, sqlplus, expdp); the context tells it from a path@version.
_ORACLE_RE = re.compile(r"(?<![\w/.@$-])([A-Za-z][\w$#]{0,63})/([^\s/@\"']{1,128})@(//)?([\w.-]{1,253})(:[0-9]+)?")
_ORACLE_CONTEXT = re.compile(r"(?i)jdbc:oracle|\b(?:sqlplus|sqlldr|expdp|impdp|rman|exp|imp|tnsping|sql)\b")

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
    text = unicodedata.normalize("NFKC", key[:512])  # fullwidth ｐａｓｓｗｏｒｄ is password; no key name is longer
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)
    text = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", "_", text)  # lookarounds: linear on AAAA...A
    return [w for w in re.split(r"[^A-Za-z0-9]+", text.lower()) if w]


def _core_words(words: list[str]) -> list[str]:
    """The words with trailing qualifiers (_prod, _old, _hex, _2) and a last word's digits (token2) dropped."""
    core = list(words)
    while len(core) > 1 and (core[-1] in _TRAILING_QUALIFIERS or _QUALIFIER_NUMBER.fullmatch(core[-1])):
        core.pop()
    stripped = core[-1].rstrip("0123456789") if core else ""
    if stripped and stripped != core[-1]:
        core[-1] = stripped
    return core


def is_measure_key(key: str) -> bool:
    """``password_changes_30d``, ``has_secret_question``: a feature about secrets, whose values are numbers."""
    words = normalise_key(key)
    core = _core_words(words) if words else []
    if len(core) < 2 or not _has_secret_word(core):
        return False
    return core[-1] in _MEASURE_LAST or core[0] in _MEASURE_FIRST


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
    if words[-1] == "tokens" and len(words) > 1 and words[-2] in _TOKEN_QUALIFIERS:
        return True  # api_tokens, access_tokens (max_tokens, special_tokens are vocabulary)
    return words[-1] in {"key", "keys"} and len(words) > 1 and words[-2] in _KEY_QUALIFIERS


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret (see the module docstring for the rules)."""
    words = normalise_key(key)
    if not words:
        return False
    words = _core_words(words)
    if words[-3:] == ["access", "key", "id"]:  # AWS: not secret alone, but half a credential
        return True
    if words[-2:] == ["secret", "id"]:  # Vault AppRole: the secret_id is the password half of the login
        return True
    if words[-1] in _REFERENCE_LAST:
        return False
    if len(words) > 1 and (words[-1] in _MEASURE_LAST or words[0] in _MEASURE_FIRST) and _has_secret_word(words):
        return False  # a measurement about secrets (is_measure_key): judged by its values' shape
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
# Only a real variable or placeholder *shape* counts: "$ecretP4ss!1" and "<Secr3tP4ss>" are passwords.
_PLACEHOLDER_START = re.compile(r"%\([A-Za-z_]\w*\)s|\{\{[^{}]*\}\}|\((?i:required|optional)\b")
_VARIABLE_SHAPE = re.compile(
    r"""\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_.:-]*(?:[:?=-][^{}]*)?\}|\([^()]*\))["']?"""
    r"|<[a-z][a-z0-9_ .-]{0,40}>|\{[A-Za-z_][A-Za-z0-9_.]*\}"
)
# Words that say "no secret here" when written where one could go ("secret: none").
_NO_SECRET_WORDS = frozenset({"none", "null", "nil", "n/a", "na", "false", "true", "empty", "unset", "no", "yes",
                              "redacted", "hidden", "masked", "omitted", "disabled", "required", "optional"})
# Subresource-integrity digests (sha256-<base64>): random-looking by design, never secret.
_SRI_DIGEST = re.compile(r"sha(?:256|384|512)-[A-Za-z0-9+/]+={0,2}")


def _is_reference(secret: str, line: str) -> bool:
    """detect-secrets' own heuristics for a value that points at a secret: ``${X}``, ``$X``, ``<x>``, calls."""
    # Not detect-secrets' is_templated_secret / is_prefixed_with_dollar_sign: too loose ("$ecretP4ss!1").
    from detect_secrets.filters.heuristic import is_indirect_reference, is_sequential_string

    candidate = secret.strip().strip("'\"")
    words = candidate.split(None, 1) or [""]
    if words[0].lower().rstrip(".,;") in _NO_SECRET_WORDS or set(candidate) <= {"*", "x", "X", "-", "."}:
        return True
    if _VARIABLE_SHAPE.fullmatch(candidate) or _PLACEHOLDER_RE.fullmatch(candidate):
        return True
    if candidate.startswith("<"):  # "<from" as found in "password: <from vault>"
        at = line.find(candidate)
        if at >= 0 and re.compile(r"<[a-z][a-z0-9_ .-]{0,40}>").match(line, at):
            return True
    return (is_sequential_string(secret) or is_indirect_reference(line) or bool(_PLACEHOLDER_START.match(candidate)))


_HEX_ONLY = re.compile(r"[0-9a-fA-F]+")
_AWS_SECRET_SHAPE = re.compile(r"[A-Za-z0-9+][A-Za-z0-9/+]{38}[A-Za-z0-9+]")
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
    if _AWS_SECRET_SHAPE.fullmatch(token) and not all(_WORDS.fullmatch(seg) for seg in token.split("/") if seg) \
            and re.search(r"[A-Z]", token) and re.search(r"[a-z]", token) and re.search(r"[0-9]", token):
        return True  # an AWS secret access key: 40 characters, "/" allowed, segments may all be short
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


# A literal each of these detect-secrets plugins' patterns requires (npm: r"//.+/:_authToken=...").
_PLUGIN_NEEDS = {"NpmDetector": ":_authToken"}
_PLUGIN_MAX_LINE = {"NpmDetector": 4096}  # longer lines: the linear "npm token" pattern of _EXTRA_FORMATS


@functools.lru_cache(maxsize=8192)
def _detect_secrets(line: str) -> str | None:
    """The secret type detect-secrets reports for one line of text, or None."""
    from detect_secrets.plugins.keyword import CONFIG_DENYLIST_REGEX_TO_GROUP

    formats, keyword, entropy = _plugins()
    for plugin in formats:
        needed = _PLUGIN_NEEDS.get(type(plugin).__name__)
        if needed and (needed not in line or len(line) > _PLUGIN_MAX_LINE[type(plugin).__name__]):
            continue  # the plugin's regex needs this literal; skipping it avoids its quadratic "//.+/" scan
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


def _is_secret_assignment(name: str, value: str, line: str | None = None, nested: bool = True) -> bool:
    if not value or _is_reference(value, line or f"{name}={value}"):
        return False
    bare = name.lstrip("-")
    if is_secret_key(bare) or _reference_holds_secret(bare, value) or _plain_key_holds_credential(bare, value):
        return True
    inner_name, eq, inner_value = value.partition("=")  # --from-literal=password=x, -e=TOKEN=x
    return (nested and bool(eq) and bool(re.fullmatch(r"[A-Za-z_][\w.-]{0,127}", inner_name))
            and _is_secret_assignment(inner_name, inner_value, line, nested=False))  # one level: a=a=a=.. stays linear


_HEX_CREDENTIAL = re.compile(r"[0-9a-fA-F]{32,}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Keys and flags named only "key" (kaggle.json, --key): a path is a path, but hex or a token is a credential.
_PLAIN_CREDENTIAL_NAMES = frozenset({"key", "keys", "apikey", "appid", "app_id", "license", "licence"})


def _plain_key_holds_credential(name: str, value: Any) -> bool:
    """``key: <32 hex>`` (kaggle.json), ``--key <hex>``: a bare ``key`` holding hex or a random token.

    A dotted name (``--set wandb.key=<hex>``, a metadata key ``"wandb.key"``) is judged by its
    last component, as the metadata walk judges the nested ``{"wandb": {"key": ...}}``: one rule for both.
    """
    leaf = name.rsplit(".", 1)[-1]
    if not isinstance(value, str) or "_".join(normalise_key(leaf)) not in _PLAIN_CREDENTIAL_NAMES:
        return False
    candidate = value.strip()
    if _FILE_NAME.fullmatch(candidate) or not 16 <= len(candidate) <= 512 or re.search(r"\s", candidate):
        return False
    return bool(_HEX_CREDENTIAL.fullmatch(candidate)) or _looks_like_token(candidate)


def _query_secret(query: str) -> bool:
    """A query string (of a URL, or pasted alone like a SAS token) with a credential parameter."""
    for name, value in parse_qsl(query, keep_blank_values=False):
        lowered = name.lower()
        if not value or _is_reference(value, query):
            continue
        if lowered in _PATH_VALUED_PARAMS and _FILE_NAME.fullmatch(value):
            continue  # ?key=models/a.onnx is an object key
        if lowered in _URL_SECRET_PARAMS or is_secret_key(name) or _reference_holds_secret(name, value):
            return True
    return False


def _url_secret(text: str) -> str | None:
    for match in _USERINFO_RE.finditer(text):
        password = match.group(2)
        if not re.fullmatch(r"[0-9]*(?:/.*)?", password) and not _is_reference(password, text):
            return "URL with a password"  # a port then a path (host:8080/x@y) is not one
    for match in _URL_RE.finditer(text):
        try:
            parts = urlsplit(match.group(0))
            user, password = parts.username, parts.password
        except ValueError:
            continue
        if password and not _is_reference(password, text):
            return "URL with a password"
        if user and (_looks_like_token(user) or _detect_secrets(user)):
            return "URL with a token as its user name"
        if _query_secret(parts.query):
            return "URL query parameter holding a credential"
    stripped = text.strip()
    if "&" in stripped and "=" in stripped and not re.search(r"\s", stripped) and "://" not in stripped:
        if _query_secret(stripped.lstrip("?")):
            return "query string holding a credential"
    return None


def _format_secret(line: str) -> str | None:
    """Passwords inside text formats that have no NAME=VALUE: netrc, XML elements, Oracle user/pw@host."""
    if _NETRC_CONTEXT.search(line):
        for match in _NETRC_PASSWORD.finditer(line):
            if not _is_reference(match.group(1), line):
                return "netrc password"
    if "</" in line:
        for match in _XML_ELEMENT_RE.finditer(line):
            value = match.group(2).strip()
            if value and (is_secret_key(match.group(1).rpartition(":")[2]) and not _is_reference(value, line)):
                return "secret-named XML element"
    if "@" in line and "/" in line:
        for match in _ORACLE_RE.finditer(line):
            if (match.group(3) or match.group(5) or _ORACLE_CONTEXT.search(line)) \
                    and not _is_reference(match.group(2), line) and not re.fullmatch(r"sha[0-9]+", match.group(4)):
                return "user/password@database"
    return None


def _looks_like_token(text: str) -> bool:
    """A user name that is a credential: long, and mixing letters and digits (ghp_..., glpat-..., a hex PAT)."""
    return len(text) >= 20 and bool(re.search(r"[A-Za-z]", text)) and bool(re.search(r"[0-9]", text))


# Short flags that are a password or a token for one program (elsewhere -p is a port, -t a tag).
# Registry clients use -p for the password only after "login" (docker run -p is a port).
_PROGRAM_SECRET_FLAGS = {
    "sqlcmd": {"P"}, "bcp": {"P"}, "osql": {"P"}, "databricks": {"t"}, "doctl": {"t"}, "mysql": {"p"},
    "mysqldump": {"p"}, "mysqladmin": {"p"}, "mariadb": {"p"},
}
_LOGIN_SECRET_FLAGS = {"docker": {"p"}, "podman": {"p"}, "nerdctl": {"p"}, "helm": {"p"}, "buildah": {"p"},
                       "skopeo": {"p"}, "oras": {"p"}, "crane": {"p"}, "cosign": {"p"}}
# "<verb> NAME VALUE": aws configure set aws_secret_access_key X, npm config set _authToken X.
_SETTING_VERBS = frozenset({"set", "put", "add", "config", "configure", "setenv", "export"})
# "<program> login VALUE": wandb login <key>.
_LOGIN_POSITIONAL = frozenset({"wandb", "kaggle", "replicate", "ngrok", "comet", "neptune"})


def _program_names(tokens: list[str]) -> set[str]:
    return {re.split(r"[/\\]", t)[-1].removesuffix(".exe").lower() for t in tokens if t and not t.startswith("-")}


def _positional_secrets(tokens: list[str]) -> set[int]:
    """``aws configure set aws_secret_access_key X``, ``wandb login KEY``: a secret with no flag before it."""
    found: set[int] = set()
    programs = _program_names(tokens)
    for index, token in enumerate(tokens[:-1]):
        following = tokens[index + 1]
        if not following or following.startswith("-") or _is_reference(following, token):
            continue
        before = tokens[index - 1].lower() if index else ""
        if before in _SETTING_VERBS and (is_secret_key(token) or _plain_key_holds_credential(token, following)):
            found.add(index + 1)
        elif token.lower() == "login" and programs & _LOGIN_POSITIONAL and index + 2 >= len(tokens):
            found.add(index + 1)
        elif token.lower() == "login" and programs & _LOGIN_POSITIONAL and _looks_like_token(following):
            found.add(index + 1)
    return found


def _argv_secrets(tokens: list[str]) -> set[int]:
    """Indexes of the arguments that are secrets: ``--token X``, ``--password=X``, ``-u user:pw``."""
    found: set[int] = _positional_secrets(tokens)
    programs = _program_names(tokens)
    short = {flag for program in programs for flag in _PROGRAM_SECRET_FLAGS.get(program, ())}
    if "login" in programs:
        short |= {flag for program in programs for flag in _LOGIN_SECRET_FLAGS.get(program, ())}
    for index, token in enumerate(tokens):
        if not token.startswith("-") or token == "-":
            continue
        if re.fullmatch(r"-p\S+", token) and _program_names(tokens) & {"mysql", "mysqldump", "mysqladmin", "mariadb"}:
            found.add(index)  # mysql -pPASSWORD
            continue
        if not token.startswith("--") and token[1:] in short:
            flag_value = tokens[index + 1] if index + 1 < len(tokens) else ""
            if flag_value and not flag_value.startswith("-") and not _is_reference(flag_value, token):
                found.add(index + 1)
            continue
        name, eq, value = token.lstrip("-").partition("=")
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if eq:
            if _is_secret_assignment(name, value):
                found.add(index)
            continue
        if not following or following.startswith("-"):
            continue
        if (is_secret_key(name) or _reference_holds_secret(name, following)
                or _plain_key_holds_credential(name, following)) and not _is_reference(following, token):
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
    if _HEX_ONLY.fullmatch(candidate):
        return None  # hex digits are valid base64 too: judged by _hex_private_key
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


_PKCS11_PIN_RE = re.compile(r"(?i)pkcs11:[^\s]*?[?;&]pin-(?:value|source)=")


def _pkcs11_pin(text: str) -> bool:
    """An RFC 7512 URI carrying its PIN (pin-value) or where to read it (pin-source), even %-encoded.

    RFC 7512 lets any attribute be percent-encoded, so ``pin%2Dvalue`` is the same attribute.
    """
    from urllib.parse import unquote

    return bool(_PKCS11_PIN_RE.search(text) or _PKCS11_PIN_RE.search(unquote(text)))


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
    text = _without_public_pem(text)
    if _pkcs11_pin(text):
        return "PKCS#11 URI with a PIN (pin-value / pin-source)"
    for line in text.splitlines() or [text]:
        found = _detect_secrets(line) or _format_secret(line)
        if found:
            return found
        pending = False  # ParameterKey=DBPassword,ParameterValue=x: a name/value pair written as text
        for match in _ASSIGNMENT_RE.finditer(line):
            name, value = match.group(1), match.group(2)
            if _is_secret_assignment(name, value, line):
                return "secret-named NAME=VALUE inside text"
            if pending and _field_kind(name) == "value" and not _is_reference(value, line):
                return "secret-named name/value pair inside text"
            if _field_kind(name) == "name":
                pending = is_secret_key(value)
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
    return _decoded_secret(text, depth) or _hex_private_key(stripped)


_PUBLIC_PEM = re.compile(r"-----BEGIN (PUBLIC KEY|CERTIFICATE|X509 CRL|SSH2 PUBLIC KEY|RSA PUBLIC KEY)-----"
                         r"[A-Za-z0-9+/=\s]{0,65536}?-----END \1-----")


def _without_public_pem(text: str) -> str:
    """``text`` with the public-key and certificate blocks cryptography parses as such cut out.

    Their base64 is random-looking by nature; a block whose armour says PUBLIC but whose body
    is anything else (a private key in disguise) is kept and scanned like any text.
    """
    if "-----BEGIN " not in text:
        return text
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from cryptography.x509 import load_pem_x509_certificate, load_pem_x509_crl

    def parsed(match: re.Match[str]) -> str:
        block = match.group(0).encode()
        loader = {"CERTIFICATE": load_pem_x509_certificate, "X509 CRL": load_pem_x509_crl}.get(
            match.group(1), load_pem_public_key)
        try:
            loader(block)
        except (ValueError, TypeError, UnsupportedAlgorithm):  # not provably public: scan it
            return match.group(0)
        return " "

    return _PUBLIC_PEM.sub(parsed, text)


def _hex_private_key(text: str) -> str | None:
    """Hex that decodes to a DER private key (raw key material pasted as hex); digests never parse as one."""
    if len(text) < 64 or len(text) % 2 or not _HEX_ONLY.fullmatch(text) or not text.startswith("30"):
        return None
    return "hex private key" if _is_private_key_der(bytes.fromhex(text)) else None


def _field_kind(field: str) -> str | None:
    """``name``/``key``-like fields (ParameterKey, OptionName) name a variable; ``value``-like fields hold it."""
    words = normalise_key(field)
    if not words:
        return None
    if field.lower() in _NAME_FIELDS or words[-1] in {"name", "key"} and len(words) <= 2:
        return "name"
    if field.lower() in _VALUE_FIELDS or words[-1] in {"value", "val"} and len(words) <= 2:
        return "value"
    return None


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
    """``{name: AWS_SECRET_ACCESS_KEY, value: ..}``, ``{ParameterKey: DBPassword, ParameterValue: ..}``,
    ``{OptionName: DB_PASSWORD, Value: ..}``: a name/value pair whose name is a secret's."""
    return any(_field_kind(str(k)) == "name" and isinstance(v, str) and is_secret_key(v) for k, v in mapping.items())


# A key under a secret-named mapping that is a plain field name (username, ci-bot); any other key
# there - hex, digits, punctuation - may be the secret itself (api_tokens: {<token>: owner}).
_FIELD_NAME = re.compile(r"(?=.{1,40}$)(?:[a-z]+(?:[_ -][a-z]+)*|[A-Z]?[a-z]{2,}(?:[A-Z][a-z]{2,})*|[A-Z]+(?:_[A-Z]+)*)")
# Keys whose value is a digest: base64 or hex of a hash's length there is the hash (weights_sha256_b64).
_DIGEST_WORDS = frozenset({"sha", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3", "blake2b", "blake3",
                           "md5", "digest", "digests", "hash", "checksum", "integrity", "etag", "fingerprint"})
_DIGEST_LENGTHS = frozenset({16, 20, 28, 32, 48, 64})


def _is_digest_value(name: str, value: str) -> bool:
    words = set(normalise_key(name))
    if not words & _DIGEST_WORDS or _has_secret_word(sorted(words)):
        return False
    body = re.sub(r"^(?:sha(?:1|224|256|384|512)|md5|blake3)[-:]", "", value.strip())
    if _HEX_ONLY.fullmatch(body):
        return len(body) // 2 in _DIGEST_LENGTHS and len(body) % 2 == 0
    if not re.fullmatch(r"[A-Za-z0-9+/_-]+={0,2}", body):
        return False
    try:
        raw = base64.b64decode(body.replace("-", "+").replace("_", "/") + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) in _DIGEST_LENGTHS


# Under a measurement key an integer is a statistic only under one of these names (or in a list).
_STATISTIC_FIELD = re.compile(r"(?i)mean|std|stddev|var|variance|min|max|median|mode|count|counts|sum|total|rate|"
                              r"ratio|missing|nulls?|null_count|unique|distinct|nunique|iqr|skew|kurtosis|pct|"
                              r"percent|share|freq|frequency|histogram|bins?|value|avg|n|zeros|[pq][0-9]{1,2}")


def _measure_holds_secret(value: Any, field: str, direct: bool = False) -> bool:
    """Under a measurement key (``password_changes_30d``) only statistics, booleans and descriptions belong.

    Text is redacted, and so is an integer under a field that is no statistic
    (``otp_requests: {code: 123456}``): a PIN or an OTP is an integer too.
    """
    if isinstance(value, str):
        return value.strip() != "" and field.lower() not in _MEASURE_DESCRIPTIONS
    if isinstance(value, int) and not isinstance(value, bool):
        return not direct and field != "" and not _STATISTIC_FIELD.fullmatch(field)
    return False


def _walk(value: Any, path: tuple[str, ...], under_secret: bool, depth: int = 0,
          measure: bool = False) -> Iterator[Detection]:
    if isinstance(value, dict):
        pair = _names_a_secret(value)
        for key, child in value.items():
            name = str(key)
            reason = _text_secret(name, depth)
            if not reason and under_secret and not _FIELD_NAME.fullmatch(name):
                reason = "not a field name under a secret-named key"
            if reason:
                yield Detection(path + (name,), True, f"mapping key: {reason}")
            secret_child = (under_secret or is_secret_key(name) or (pair and _field_kind(name) == "value"))
            if not secret_child and (_reference_holds_secret(name, child) or _plain_key_holds_credential(name, child)):
                yield Detection(path + (name,), False, "reference-named key whose value is no reference")
                continue
            if not secret_child and isinstance(child, str) and _is_digest_value(name, child):
                continue
            child_measure = measure or (not secret_child and is_measure_key(name))
            if child_measure and not secret_child and _measure_holds_secret(child, name, direct=not measure):
                yield Detection(path + (name,), False, "text under a secret-named measurement")
                continue
            yield from _walk(child, path + (name,), secret_child, depth, child_measure)
    elif isinstance(value, list):
        strings = [item if isinstance(item, str)
                   else str(item) if isinstance(item, (int, float)) and not isinstance(item, bool) else ""
                   for item in value]
        flagged = _argv_secrets(strings) if not under_secret else set()
        if len(value) == 2 and isinstance(value[0], str) and is_secret_key(value[0]) and not under_secret:
            flagged.add(1)  # [["DB_PASSWORD", "x"]]: a name/value pair written as a list
        for index, child in enumerate(value):
            if index in flagged and _holds_secret_material(child):
                yield Detection(path + (str(index),), False, "command-line argument" if len(value) != 2 or
                                index != 1 or not is_secret_key(strings[0]) else "name/value pair")
                continue
            if measure and not under_secret and _measure_holds_secret(child, ""):
                yield Detection(path + (str(index),), False, "text under a secret-named measurement")
                continue
            yield from _walk(child, path + (str(index),), under_secret, depth, measure)
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


# --- error messages ----------------------------------------------------------------

# What an error message quotes: a Python repr ('..' with \' escapes), a "..." string, or a bare word.
_MESSAGE_SPAN = re.compile(r"""'(?:[^'\\\n]|\\.){0,4096}'|"(?:[^"\\\n]|\\.){0,4096}"|[^\s'"]{1,4096}""")
_LONG_NUMBER = re.compile(r"[0-9]{16,}")  # only integers past ±2^53 are refused, and a number is no digest
_PIECES = re.compile(r"[^/.=:,;\s]+")


def _span_is_secret(span: str) -> bool:
    inner = span[1:-1] if span[:1] in "'\"" and span[-1:] == span[:1] and len(span) > 1 else span
    inner = inner.replace("\\'", "'").replace('\\"', '"')
    if _text_secret(inner) or _text_secret(inner.strip("'\":,;()")):
        return True
    # "db_password:x", "HF_TOKEN x": a secret-named key path with its value.
    parts = re.split(r"\s*[=:]\s*|\s+", inner.strip(), maxsplit=1)
    return len(parts) == 2 and bool(parts[1].strip()) and any(is_secret_key(p) for p in re.split(r"[./]", parts[0]))


# scheme:[//]USERINFO@ in a URI (also after a path normalised "//" to "/"): user:password, key id:secret.
_URI_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,31}:/{0,2})([^/\s@'\"]{1,1024})@")


def redact_uri_userinfo(text: str) -> str:
    """``text`` with the userinfo of every URI in it (``hashivault://u:pw@host``) replaced by ``[REDACTED]``.

    Error messages quote a --key, an evidence or a log URI; its userinfo is a credential
    whatever it looks like, so it is never shown (the signed run.command redacts it too).
    """
    return _URI_USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", text)


def sanitise_message(message: str, hints: Iterable[str] = ()) -> str:
    """``message`` with every secret it quotes replaced by ``[REDACTED]``.

    Errors go to stderr, which CI keeps; an error about metadata quotes what it could
    not read - a duplicate key, a --set typo, a number - and that may be the credential.
    ``hints`` are values known to be secret (a --set value under a secret-named key);
    then every quoted span the scanner flags, every piece of a pointer or key path it
    flags, and every long run of digits is replaced.
    """
    for hint in sorted({h for h in hints if h and h.strip()}, key=len, reverse=True):
        for shown in (hint, hint.strip(), repr(hint)[1:-1], repr(hint.strip())[1:-1], json.dumps(hint)[1:-1]):
            if len(shown) >= 2:
                message = message.replace(shown, REDACTED)

    def clean(match: re.Match[str]) -> str:
        span = match.group(0)
        if REDACTED in span and not _PLACEHOLDER_RE.sub("", span).strip("'\"/.=: "):
            return span
        if _span_is_secret(span):
            return "'" + REDACTED + "'" if span[:1] in "'\"" else REDACTED
        return _PIECES.sub(lambda piece: REDACTED if len(piece.group(0)) >= 8 and _text_secret(piece.group(0))
                           else piece.group(0), span)

    message = _MESSAGE_SPAN.sub(clean, message)
    # "--set db.password: VALUE '...' is not valid YAML": a secret-named key quoted with its value.
    lead = re.match(r"(.*?--set\s+'?([^\s':=]+)'?\s*[:=]?\s*VALUE\s+)(.*)", message, re.S)
    if lead and any(is_secret_key(part) for part in lead.group(2).split(".")):
        message = lead.group(1) + re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", REDACTED, lead.group(3), count=1)
    return _LONG_NUMBER.sub(REDACTED, message)
