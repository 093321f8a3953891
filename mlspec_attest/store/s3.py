"""Bundles on S3-compatible object storage (``s3://BUCKET/PREFIX``), through obstore.

Why obstore: it is the Rust ``object_store`` crate (Apache Arrow) with a thin Python
layer: one static wheel, no botocore, and it exposes exactly the conditional writes
an append-only chain needs (``mode="create"`` sends ``If-None-Match: *``, an e-tag
mode sends ``If-Match``), mapping 412/409 to ``AlreadyExistsError``/``PreconditionError``.

The append protocol (docs/storage.md): a writer reads the tip, builds and signs the
next attestation, then *claims* its sequence number by creating ``claims/<seq>`` (the
whole signed file inside) with ``If-None-Match: *``. The claim is keyed by the number
alone, so two writers of different stages still collide on it; the loser re-reads the
tip, re-links and retries, bounded. The winner reads the claim back (a store that
ignored the condition shows another writer's bytes: a clear error, never a fork), then
copies the file to ``attestations/`` where every reader looks. A writer killed between
the two writes leaves a claim without its file: the next writer finishes it (the bytes
are in the claim, signed) before claiming the number after it.

Hostile buckets: a key that is not a bundle file name is refused, not fetched; sizes
come from the listing and are checked against the same caps as local files before
anything is read, and every read is bounded again by the response's own length.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlspec_attest import bundle as _bundle
from mlspec_attest.errors import InputError
from mlspec_attest.store.base import S3_SCHEME, HeadKept, StoreConflict

CLAIMS = "claims"
MAX_APPEND_ATTEMPTS = 64
"""How often one append re-reads the tip and retries after losing a claim before it gives up."""
MAX_HEAD_ATTEMPTS = 64
PAUSE_AFTER_CLAIM_ENV = "MLSPEC_TEST_PAUSE_AFTER_CLAIM"
"""Test hook: seconds to sleep between winning a claim and writing attestations/ (the kill -9 tests)."""
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CLAIM = re.compile(r"\d{12}")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


class StoreLiedError(InputError):
    """The store acknowledged a conditional create it did not honour (read-back shows other bytes)."""


def parse_location(location: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://BUCKET/PREFIX``; the prefix's segments must be plain names."""
    rest = location[len(S3_SCHEME):]
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.rstrip("/")
    if not _BUCKET.fullmatch(bucket):
        raise InputError(f"{location}: {bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, "
                         "'.' or '-'); write s3://BUCKET/PREFIX")
    for segment in prefix.split("/") if prefix else ():
        if not _SEGMENT.fullmatch(segment) or segment in (".", ".."):
            raise InputError(f"{location}: prefix segment {segment!r} is not a plain name (letters, digits, "
                             "'.', '_', '-'); write s3://BUCKET/PREFIX")
    return bucket, prefix


ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")
"""Every name obstore itself would take the endpoint from, so none bypasses the loopback rule."""
PLAIN_HTTP_PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
"""The proxy variables reqwest (inside obstore) applies to a plain-http request."""
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
MIN_BLANKED_SECRET = 8
"""Secrets at least this long are blanked in store error text; a shorter one withholds the text entirely."""
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
"""RFC 3986's characters: anything else (a space, a backslash, a control) is parsed differently by Python and Rust."""
_PRINTABLE = re.compile(r"[\x21-\x7e]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_STRICT_VARIABLES = frozenset(ENDPOINT_VARIABLES + SECRET_VARIABLES + ("AWS_REGION", "AWS_DEFAULT_REGION"))
_FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)


def check_environment(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Refuse AWS_* values the Rust client would panic on (a newline, a control byte, DEL).

    A panic is a BaseException with a traceback; one line naming the variable (never a secret's
    value) is the answer. Every AWS_* variable is checked, as obstore reads them all; the ones
    that go into a request line or header (the endpoint, region and credentials) must be
    printable ASCII without spaces.
    """
    for name in sorted(k for k in environ if k.startswith("AWS_")):
        value = environ[name]
        strict = name in _STRICT_VARIABLES
        if (strict and not _PRINTABLE.fullmatch(value)) or _CONTROL.search(value):
            kind = "printable ASCII without spaces" if strict else "free of control characters"
            raise InputError(f"{name}: must be {kind} (it holds a newline, a control byte or another character "
                             "the S3 client cannot send); set it again without it")


def endpoint_from_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> tuple[str | None, bool]:
    """The endpoint URL (or None for AWS itself) and whether plain http is allowed (loopback only, no proxy)."""
    check_environment(environ)
    chosen: tuple[str | None, bool] = (None, False)
    for variable in reversed(ENDPOINT_VARIABLES):  # every one set is checked (obstore may read any); the first wins
        if environ.get(variable):
            chosen = environ[variable], _check_endpoint(variable, environ[variable], environ)
    return chosen


def _check_endpoint(variable: str, endpoint: str, environ: dict[str, str] | os._Environ[str]) -> bool:
    """Refuse an endpoint obstore would misparse, leak or send in the clear; True when plain http is allowed."""
    parts = urlsplit(endpoint)
    if "@" in parts.netloc:  # checked first: nothing below may echo a user name or password
        raise InputError(f"{variable}: holds a user name or password (user:password@host); remove it and give the "
                         "credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if not _URL_CHARS.fullmatch(endpoint):
        raise InputError(f"{variable}={endpoint!r}: has characters a URL may not hold (RFC 3986: no spaces, "
                         "backslashes or controls); set it to https://HOST[:PORT]")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or port == 0:
        raise InputError(f"{variable}={endpoint}: not an http(s) URL with a valid port (1-65535); "
                         "set it to https://HOST[:PORT]")
    if parts.scheme == "https":
        return False
    if not _is_loopback(parts.hostname):
        raise InputError(f"{variable}={endpoint}: plain http is allowed only for a loopback endpoint "
                         "(127.0.0.0/8, ::1, localhost); anyone on the path could rewrite the bundle. Use https")
    for proxy in PLAIN_HTTP_PROXY_VARIABLES:
        if environ.get(proxy) and not _no_proxy_covers(environ, parts.hostname):
            raise InputError(f"{proxy} is set: the plain-http requests to the loopback endpoint {variable} names "
                             f"would go through that proxy, where anyone could read or rewrite them; unset {proxy} "
                             f"or add {parts.hostname} to NO_PROXY")
    return True


def _no_proxy_covers(environ: dict[str, str] | os._Environ[str], host: str) -> bool:
    """Whether NO_PROXY (or no_proxy) exempts HOST: the host itself, or a CIDR range holding it.

    Only what the client inside obstore was seen to honour counts ('*' is not: its requests still
    went to the proxy, tests/unit/store/test_s3_hardening.py), so anything else is refused.
    """
    value = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
    host = host.lower().strip("[]")
    for entry in (e.strip().lower().strip("[]") for e in value.split(",")):
        if entry == host:
            return True
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def _proxy_passwords(environ: dict[str, str] | os._Environ[str]) -> tuple[str, ...]:
    """Passwords inside proxy URLs (an https endpoint may use a proxy): blanked in store error text too."""
    found = []
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        try:
            password = urlsplit(environ.get(name) or "").password
        except ValueError:
            password = None
        if password:
            found.append(password)
    return tuple(found)


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class S3Store:
    """A ``BundleStore`` over one bucket and prefix; credentials stay in obstore (read from the environment)."""

    def __init__(self, location: str, *, environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
        self.bucket, self.prefix = parse_location(location)
        try:
            from obstore.store import S3Store as _ObS3Store
        except ImportError:
            raise InputError(f"{location}: s3:// bundles need the object-store client: "
                             "pip install 'mlspec-attest[s3]'") from None
        self.label = f"{S3_SCHEME}{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        endpoint, allow_http = endpoint_from_env(environ)
        config: dict[str, Any] = {"virtual_hosted_style_request": False}
        if endpoint:
            config["endpoint"] = endpoint
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
        if region:
            config["region"] = region
        self._secrets = tuple(v for k in SECRET_VARIABLES if (v := environ.get(k))) + _proxy_passwords(environ)
        try:
            self._store = _ObS3Store(self.bucket, config=config,  # type: ignore[arg-type]
                                     client_options={"allow_http": allow_http, "timeout": "30s",
                                                     "connect_timeout": "5s"},
                                     retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=30)})
        except BaseException as exc:  # obstore's configuration errors, and a Rust panic (a BaseException)
            if isinstance(exc, _FATAL):
                raise
            raise InputError(f"{self.label}: cannot configure the S3 client: {self._quiet(exc)}") from None

    # -- names -------------------------------------------------------------------------------
    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def where(self, name: str) -> str:
        return f"{self.label}/{name}"

    def _quiet(self, exc: BaseException) -> str:
        """The store's error on one line, with any credential from the environment blanked out.

        A secret shorter than MIN_BLANKED_SECRET would blank ordinary words (and show where it
        sits); then the store's text is withheld and only the error's kind is said.
        """
        if any(len(secret) < MIN_BLANKED_SECRET for secret in self._secrets):
            return (f"{type(exc).__name__} (the store's message is withheld: a credential in the environment is "
                    f"shorter than {MIN_BLANKED_SECRET} characters and could not be blanked out of it)")
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    @staticmethod
    def check_name(name: str, where: str) -> None:
        """Refuse a name that is not plain '/'-separated segments (no '..', no empty, no odd bytes)."""
        segments = name.split("/")
        if not all(_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments):
            raise InputError(f"{where}: {name!r} is not a bundle file name; refusing to fetch it "
                             "(remove the object from the bucket)")

    # -- BundleStore -------------------------------------------------------------------------
    def list(self, folder: str) -> list[tuple[str, int]]:
        import obstore

        base = self.key(folder) + "/"
        try:
            metas = [m for chunk in obstore.list(self._store, prefix=base, chunk_size=1000) for m in chunk]
        except BaseException as exc:
            if isinstance(exc, _FATAL):
                raise
            raise InputError(f"{self.where(folder)}: cannot list the bucket: {self._quiet(exc)}") from None
        return sorted((str(m["path"])[len(base):], int(m["size"])) for m in metas)

    def read(self, name: str, *, limit: int, what: str) -> bytes:
        found = self._get(name, limit=limit, what=what)
        if found is None:
            raise InputError(f"{self.where(name)}: {what} not found")
        return found[0]

    def exists(self, name: str) -> bool:
        import obstore
        self.check_name(name, self.label)
        try:
            obstore.head(self._store, self.key(name))
        except FileNotFoundError:  # obstore's NotFoundError
            return False
        except BaseException as exc:
            if isinstance(exc, _FATAL):
                raise
            raise InputError(f"{self.where(name)}: cannot reach the object: {self._quiet(exc)}") from None
        return True

    def read_versioned(self, name: str, *, limit: int, what: str) -> tuple[bytes, str] | None:
        return self._get(name, limit=limit, what=what)

    def _get(self, name: str, *, limit: int, what: str) -> tuple[bytes, str] | None:
        import obstore
        self.check_name(name, self.label)
        try:
            result = obstore.get(self._store, self.key(name))
            size = int(result.meta["size"])
            if size > limit:  # the body is never read: the response's own length is over the cap
                raise InputError(f"{self.where(name)}: {what} is {size} bytes, more than the {limit} allowed; "
                                 "refusing to read it")
            data = bytes(result.bytes())
        except FileNotFoundError:  # obstore's NotFoundError
            return None
        except InputError:
            raise
        except BaseException as exc:
            if isinstance(exc, _FATAL):
                raise
            raise InputError(f"{self.where(name)}: cannot read the {what}: {self._quiet(exc)}") from None
        if len(data) > limit:
            raise InputError(f"{self.where(name)}: {what} is larger than the {limit} bytes allowed")
        return data, str(result.meta.get("e_tag") or "")

    def create(self, name: str, data: bytes) -> None:
        self._put(name, data, mode="create")

    def create_checked(self, name: str, data: bytes) -> None:
        """``create``, then prove the store honoured the condition: never trust an acknowledgement.

        Two checks: a second create of the same name must be refused (a store that ignores
        If-None-Match accepts it, on every append, deterministically), and reading the object
        back must give our bytes (a racing writer's bytes there mean both were told they won).
        """
        self.create(name, data)
        try:  # different bytes: a store that only de-duplicates identical PUTs must not pass as honest
            self._put(name, data + b" ", mode="create")  # JSON with trailing space: the same claim if accepted
        except StoreConflict:
            pass  # refused, as an honest store must
        else:
            raise StoreLiedError(self._lie(name, "accepted a second If-None-Match: * create of the same object"))
        if self.read(name, limit=2 * _bundle.MAX_INPUT_BYTES, what="object just written") != data:
            raise StoreLiedError(self._lie(name, "acknowledged our conditional create but holds other bytes"))

    def _lie(self, name: str, what: str) -> str:
        return (f"{self.where(name)}: the store {what}: it does not honour conditional writes, so concurrent "
                "writers could fork the chain; this append was not published. Use a store that does (AWS S3, MinIO, "
                "SeaweedFS, Cloudflare R2) or a local bundle")

    def replace(self, name: str, data: bytes, *, version: str | None) -> None:
        self._put(name, data, mode={"e_tag": version} if version else "create")

    def _put(self, name: str, data: bytes, *, mode: Any) -> None:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        self.check_name(name, self.label)
        try:
            obstore.put(self._store, self.key(name), data, mode=mode)
        except (AlreadyExistsError, PreconditionError):
            raise StoreConflict(name) from None
        except BaseException as exc:
            if isinstance(exc, _FATAL):
                raise
            raise InputError(f"{self.where(name)}: cannot write the object: {self._quiet(exc)}") from None


class S3Bundle(_bundle.Bundle):
    """A bundle in a bucket: the same layout as a directory, appended with claims instead of a lock."""

    is_remote = True
    store: S3Store

    def __init__(self, location: str, *, store: S3Store | None = None) -> None:
        self.store = store or S3Store(location)
        self.retries = 0  # claims this bundle object lost (re-read, re-linked, retried)
        self.head_retries = 0  # head replacements that lost an If-Match race (re-read, retried)

    @property
    def root(self) -> Path:  # type: ignore[override]
        raise TypeError(f"{self.label}: an S3 bundle has no local directory; read it through the bundle")

    @property
    def attestations_dir(self) -> Path:  # type: ignore[override]
        raise TypeError(f"{self.label}: an S3 bundle has no local directory; read it through the bundle")

    @property
    def label(self) -> str:
        return self.store.label

    # -- reading ------------------------------------------------------------------------------
    def create(self) -> None:
        """Nothing to make: a prefix exists once an object is under it."""

    def _attestation_listing(self) -> list[tuple[str, int]]:
        """Every object under attestations/: a bucket has no temp files, so no name is skipped."""
        return self.store.list(_bundle.ATTESTATIONS)

    def require_exists(self) -> None:
        if not self._attestation_listing():
            raise InputError(f"{self.label}: not a bundle (no objects under {_bundle.ATTESTATIONS}/); "
                             "create one with 'mlspec attest stage --bundle " + self.label + "'")

    def files(self) -> list[_bundle.BundleFile]:
        """Every attestation object, after the names, count and sizes in the listing passed the caps."""
        listing = self._attestation_listing()
        if not listing:
            self.require_exists()
        where = self.store.where(_bundle.ATTESTATIONS)
        if len(listing) > _bundle.MAX_ATTESTATIONS:
            raise InputError(f"{where}: {len(listing)} objects, more than the {_bundle.MAX_ATTESTATIONS} a bundle "
                             "may hold; refusing to read it (remove the stray objects)")
        total = 0
        for name, size in listing:
            if not _bundle._NAME.fullmatch(name):
                raise InputError(f"{where}/{name}: not a bundle file name (NNNN-stage.dsse.json); refusing to "
                                 "fetch it (remove the object from the bucket)")
            if size > _bundle.MAX_INPUT_BYTES:
                raise InputError(f"{where}/{name}: {size} bytes, more than the {_bundle.MAX_INPUT_BYTES} an "
                                 "attestation may have; refusing to read it")
            total += size
            if total > _bundle.MAX_BUNDLE_BYTES:
                raise InputError(f"{where}: its objects add up to more than {_bundle.MAX_BUNDLE_BYTES} bytes (the "
                                 "bundle limit, see docs/security.md); refusing to read it")
        found = []
        read = 0
        for name, _size in listing:
            match = _bundle._NAME.fullmatch(name)
            assert match is not None
            data = self.store.read(f"{_bundle.ATTESTATIONS}/{name}", limit=_bundle.MAX_INPUT_BYTES,
                                   what="attestation")
            read += len(data)  # objects swapped for bigger ones after the listing still hit the total
            if read > _bundle.MAX_BUNDLE_BYTES:
                raise InputError(f"{where}: its objects add up to more than {_bundle.MAX_BUNDLE_BYTES} bytes as "
                                 "read (they grew after the listing); refusing to read further")
            found.append(_bundle.BundleFile(path=Path(_bundle.ATTESTATIONS) / name, number=int(match.group(1)),
                                            kind=match.group(3), data=data))
        return found

    def read(self, name: str, *, limit: int = _bundle.MAX_INPUT_BYTES, what: str = "file") -> bytes:
        return self.store.read(name, limit=limit, what=what)

    def exists(self, name: str) -> bool:
        return self.store.exists(name)

    # -- appending ----------------------------------------------------------------------------
    @contextmanager
    def locked(self, *, create: bool = True) -> Iterator[None]:
        """No lock across machines: appends are claimed with conditional creates instead."""
        if not create:
            self.require_exists()
        yield

    def attempts(self) -> Iterator[int]:
        """Attempt numbers for one append; sleeps (jittered, growing) between them; gives up loudly."""
        for attempt in range(MAX_APPEND_ATTEMPTS):
            if attempt:
                self.retries += 1
                time.sleep(random.uniform(0, min(0.02 * 2 ** min(attempt, 6), 1.0)))
            yield attempt
        raise InputError(f"{self.label}: gave up appending after {MAX_APPEND_ATTEMPTS} attempts: other writers "
                         "claimed every sequence number this one tried; run the stage again")

    def _claims(self) -> list[tuple[int, str]]:
        out = []
        for name, _size in self.store.list(CLAIMS):
            if _CLAIM.fullmatch(name):
                out.append((int(name), name))
        return sorted(out)

    def head(self) -> _bundle.Head | None:
        """The tip: the newest claim (finishing its attestations/ copy if its writer died) or newest file."""
        claims = self._claims()
        files = [(int(m.group(1)), n, m.group(3)) for n, _s in self._attestation_listing()
                 if (m := _bundle._NAME.fullmatch(n))]
        newest_file = max(files, default=None)
        if claims and (newest_file is None or claims[-1][0] >= newest_file[0]):
            sequence, claim = claims[-1]
            name, data = self._open_claim(claim, sequence)
            self._finish(name, data)
            kind = _bundle._NAME.fullmatch(name).group(3)  # type: ignore[union-attr]
            return _bundle.head_from_file(kind, data, self.store.where(f"{CLAIMS}/{claim}"), sequence, self.label)
        if newest_file is None:
            return None
        number, name, kind = newest_file
        data = self.store.read(f"{_bundle.ATTESTATIONS}/{name}", limit=_bundle.MAX_INPUT_BYTES, what="attestation")
        return _bundle.head_from_file(kind, data, self.store.where(f"{_bundle.ATTESTATIONS}/{name}"), number,
                                      self.label)

    def _open_claim(self, claim: str, sequence: int) -> tuple[str, bytes]:
        where = self.store.where(f"{CLAIMS}/{claim}")
        raw = self.store.read(f"{CLAIMS}/{claim}", limit=2 * _bundle.MAX_INPUT_BYTES, what="sequence claim")
        try:
            doc = json.loads(raw)
            name, data = doc["file"], base64.b64decode(doc["attestation"], validate=True)
            match = _bundle._NAME.fullmatch(name)
            if match is None or int(match.group(1)) != sequence:
                raise ValueError(f"names {name!r}, not a file of sequence {sequence}")
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{where}: unreadable sequence claim ({exc}); run 'mlspec verify {self.label}'") from None
        return name, data

    def _finish(self, name: str, data: bytes) -> None:
        """Copy a won claim's file into attestations/; an existing copy must be the same bytes.

        Only the claim's holder (or a finisher copying the claim) writes that name, so other
        bytes there mean two writers were both told they won the number: the store lied, and
        the append that "succeeded" would be lost. Refused loudly instead of reported done.
        """
        target = f"{_bundle.ATTESTATIONS}/{name}"
        try:
            self.store.create(target, data)
        except StoreConflict:
            there = self.store.read(target, limit=2 * _bundle.MAX_INPUT_BYTES, what="published attestation")
            if there != data:
                raise StoreLiedError(self.store._lie(target, "let two writers claim the same sequence number (the "
                                                     "published file differs from the claim)")) from None

    def write_new(self, name: str, data: bytes) -> str:  # type: ignore[override]
        """Claim the file's sequence number, then publish it; SequenceTaken when another writer has it."""
        match = _bundle._NAME.fullmatch(name)
        assert match is not None
        claim = f"{CLAIMS}/{int(match.group(1)):012d}"
        body = json.dumps({"file": name, "attestation": base64.b64encode(data).decode("ascii")},
                          sort_keys=True, separators=(",", ":")).encode("utf-8")
        try:
            self.store.create_checked(claim, body)  # If-None-Match: *, then proven honoured
        except StoreConflict:
            raise _bundle.SequenceTaken(name) from None
        pause = os.environ.get(PAUSE_AFTER_CLAIM_ENV)
        if pause:
            time.sleep(float(pause))
        self._finish(name, data)
        return self.store.where(f"{_bundle.ATTESTATIONS}/{name}")

    def store_file(self, name: str, data: bytes) -> str:  # type: ignore[override]
        """Evidence or a blob (content-addressed names, so an existing object is the same bytes or a finding)."""
        try:
            self.store.create(name, data)
        except StoreConflict:
            pass
        return self.store.where(name)

    def write_head(self, data: bytes, sequence: int) -> str:  # HeadKept when a later head stays
        """Replace head.dsse.json only if it is still what was read (If-Match), and never by an older head.

        Two writers finishing out of order would otherwise leave the head on the older one
        (HEAD_BEHIND at the gate); a head that names a later sequence is left in place.
        """
        from mlspec_attest.model.head import HEAD_FILE, MAX_HEAD_BYTES

        for _attempt in range(MAX_HEAD_ATTEMPTS):
            current = self.store.read_versioned(HEAD_FILE, limit=MAX_HEAD_BYTES, what="chain head")
            if current is not None and (kept := _head_sequence(current[0])) > sequence:
                return HeadKept(self.store.where(HEAD_FILE), kept)  # not written: say so to the caller
            try:
                self.store.replace(HEAD_FILE, data, version=current[1] if current else None)
                return self.store.where(HEAD_FILE)
            except StoreConflict:
                self.head_retries += 1
                time.sleep(random.uniform(0, 0.05))
        raise InputError(f"{self.store.where(HEAD_FILE)}: gave up re-signing the chain head after "
                         f"{MAX_HEAD_ATTEMPTS} attempts (other writers kept replacing it); run 'mlspec attest head'")


def _head_sequence(data: bytes) -> int:
    """The sequence an existing head names (unverified: only to keep the head monotonic), -1 if unreadable."""
    from mlspec_attest.model.canonical import parse_json
    from mlspec_attest.model.envelope import Envelope
    from mlspec_attest.model.head import parse_head_payload

    try:
        return parse_head_payload(Envelope.from_dict(parse_json(data, source="head")).payload).sequence
    except (InputError, ValueError, KeyError, TypeError):
        return -1
