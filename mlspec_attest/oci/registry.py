"""A thin, bounded client over the ORAS Python SDK (``oras.provider.Registry``).

ORAS does the HTTP: authentication (docker ``config.json``, credential helpers, token
and basic auth), blob upload (monolithic or chunked) and container URLs. What ORAS
does not do, and a gate needs, is done here: every read is capped by the size its
descriptor declares (so a huge or endless body is refused before it is stored), every
manifest and blob read back is checked against its sha256 digest (ORAS does not
verify what it downloads), requests time out, and plain HTTP is refused for any host
that is not loopback.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import time
import urllib.parse
from typing import IO, Any

import oras.auth.utils
import oras.container
import oras.provider
import requests
import requests.adapters

from mlspec_attest.errors import InputError
from mlspec_attest.oci.layout import (
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    MAX_MANIFEST_BYTES,
    Descriptor,
    LayoutError,
    fallback_tag,
    parse_index,
)
from mlspec_attest.oci.reference import OciReference, is_loopback_host

TIMEOUT_SECONDS = 60.0
CHUNKED_MIN = 16 * 1024 * 1024  # larger blobs are uploaded in chunks, never read whole into memory
USERNAME_ENV = "MLSPEC_REGISTRY_USERNAME"
PASSWORD_ENV = "MLSPEC_REGISTRY_PASSWORD"  # the name of the variable, not a secret


class DigestMismatch(Exception):
    """The registry served bytes that are not the content the digest names (a finding, not an input error)."""


class TooLarge(DigestMismatch):
    """A descriptor or a body larger than the caps allow (refused before or while reading)."""


class DeadlineExceeded(Exception):
    """The run's total time budget (``deadline``, a time.monotonic() value) ran out: the gate fails closed."""


class Ambiguous(DigestMismatch):
    """A manifest served under another Content-Type than the one asked for (what other clients would read it as)."""


def _check_type(response: requests.Response, wanted: str, what: str) -> None:
    """The registry's Content-Type must be ``wanted``: a client that follows the header must read the same thing."""
    served = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if served != wanted:
        raise Ambiguous(f"{what} served as Content-Type {served or '(none)'!r}, not {wanted}; other clients would "
                        "read those bytes as something else")


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, the port defaulted by scheme; hosts compared case-insensitively."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


class _GuardedAdapter(requests.adapters.HTTPAdapter):
    """Every request the client sends (ORAS's, its token requests, upload Locations, each redirect hop) passes here.

    The rule: HTTPS anywhere; plain HTTP only to a loopback host, and only with --plain-http;
    credentials (an Authorization header) only to the registry itself or to a token realm
    the registry named that obeys the same scheme rule. A registry (or whoever answers for
    it) can name another host in a Bearer realm, an upload Location or a redirect; none of
    those may carry the user's password or token, and none may be cleartext off the machine.
    """

    def __init__(self, ref: OciReference, plain_http: bool) -> None:
        super().__init__()
        self._plain_http = plain_http
        self._registry = (ref.host.strip("[]").lower(), ref.port or (80 if plain_http else 443))
        self._realms: set[tuple[str, int]] = set()

    def _scheme_ok(self, scheme: str, host: str) -> bool:
        return scheme == "https" or (scheme == "http" and self._plain_http and is_loopback_host(host))

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        scheme, host, port = _origin(str(request.url))
        if not self._scheme_ok(scheme, host):
            raise InputError(f"{self._registry[0]}: refusing a request to {scheme}://{host}:{port} (named by the "
                             "registry): plain HTTP is allowed to loopback hosts only, with --plain-http")
        if request.headers.get("Authorization") and (host, port) != self._registry and (host, port) not in self._realms:
            raise InputError(f"{self._registry[0]}: refusing to send credentials to {host}:{port}, another host "
                             "than the registry and its token realm (named by an upload location or a redirect)")
        response = super().send(request, *args, **kwargs)
        challenge = response.headers.get("WWW-Authenticate", "")
        if (host, port) == self._registry and "realm=" in challenge.lower():
            realm = oras.auth.utils.parse_auth_header(challenge).realm
            if realm and "://" in realm:
                r_scheme, r_host, r_port = _origin(realm)
                if self._scheme_ok(r_scheme, r_host):
                    self._realms.add((r_host, r_port))
        return response


class _Registry(oras.provider.Registry):
    """ORAS's registry without its retry loop (it sleeps 2+3**n s on every error, minutes on a dead host)."""

    def do_request(self, *args: Any, **kwargs: Any) -> requests.Response:
        return oras.provider.Registry.do_request.__wrapped__(self, *args, **kwargs)


class RegistryClient:
    """One repository on one registry."""

    def __init__(self, ref: OciReference, *, plain_http: bool = False) -> None:
        if plain_http and not ref.is_loopback:
            raise InputError(f"{ref}: plain HTTP is allowed for loopback registries only (127.0.0.1, ::1, "
                             "localhost); drop --plain-http and use HTTPS")
        self.ref = ref
        self.deadline: float | None = None  # time.monotonic() after which no request starts or keeps reading
        self._oras = _Registry(hostname=ref.registry, insecure=plain_http,
                               auth_backend=self._auth_backend(ref, plain_http))
        guard = _GuardedAdapter(ref, plain_http)
        self._oras.session.mount("https://", guard)
        self._oras.session.mount("http://", guard)
        self._oras.session.request = functools.partial(self._oras.session.request, timeout=TIMEOUT_SECONDS)
        self.container = oras.container.Container(f"{ref.registry}/{ref.repository}", registry=ref.registry)
        self.container.registry = ref.registry
        namespace, _, name = ref.repository.rpartition("/")
        self.container.namespace, self.container.repository = namespace or None, name
        username, password = os.environ.get(USERNAME_ENV), os.environ.get(PASSWORD_ENV)
        if username and password:
            self._oras.auth.set_basic_auth(username, password)
        else:
            self._oras.auth.load_configs(self.container)  # ~/.docker/config.json ($DOCKER_CONFIG), helpers
        if not hasattr(self._oras.auth, "_basic_auth"):  # ORAS's basic backend reads it unset: AttributeError
            self._oras.auth._basic_auth = None

    @staticmethod
    def _auth_backend(ref: OciReference, plain_http: bool) -> str:
        """ORAS's ``basic`` backend for a registry that challenges with Basic (htpasswd), else ``token``.

        Asked once, without credentials: ``GET /v2/`` answers 200 or 401 with the scheme it wants.
        """
        url = f"{'http' if plain_http else 'https'}://{ref.registry}/v2/"
        try:
            with requests.get(url, timeout=TIMEOUT_SECONDS, allow_redirects=False, stream=True) as response:
                challenge = response.headers.get("WWW-Authenticate", "")
        except requests.exceptions.SSLError as exc:
            raise InputError(f"{ref.registry}: TLS failed ({type(exc).__name__}); for a loopback test registry "
                             "over plain HTTP pass --plain-http") from None
        except requests.exceptions.RequestException as exc:
            raise InputError(f"{ref.registry}: cannot reach the registry ({type(exc).__name__}); check the "
                             "address and the network") from None
        return "basic" if challenge.lower().startswith("basic") else "token"

    # -- plumbing ---------------------------------------------------------------------
    def _url(self, path: str) -> str:
        return f"{self._oras.prefix}://{self.ref.registry}/v2/{self.ref.repository}/{path}"

    def _check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlineExceeded(f"{self.ref.registry}: the run's time budget ran out")

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        self._check_deadline()
        try:
            return self._oras.do_request(self._url(path), method, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise InputError(f"{self.ref.registry}: TLS failed ({type(exc).__name__}); for a loopback test registry "
                             "over plain HTTP pass --plain-http") from None
        except (requests.exceptions.RequestException, ValueError) as exc:
            why = type(exc).__name__ if isinstance(exc, requests.exceptions.RequestException) else str(exc)
            raise InputError(f"{self.ref.registry}: registry request failed ({why}); check the address, the "
                             "network and your credentials") from None

    def _fail(self, response: requests.Response, what: str) -> InputError:
        if response.status_code in (401, 403):
            return InputError(f"{self.ref}: {what}: access denied (HTTP {response.status_code}); log in with "
                              f"'docker login {self.ref.registry}' or set {USERNAME_ENV}/{PASSWORD_ENV}")
        return InputError(f"{self.ref}: {what}: registry answered HTTP {response.status_code}")

    def _read_capped(self, response: requests.Response, limit: int, sink: IO[bytes] | None = None, *,
                     over: type[DigestMismatch] = DigestMismatch) -> tuple[bytes, str, int]:
        """Stream a body into memory (or ``sink``), refusing more than ``limit`` bytes; (bytes, sha256, size).

        ``over`` is what exceeding means: a body longer than its descriptor declares is not the
        content (DigestMismatch); one beyond a cap with no descriptor is TooLarge.
        """
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response.close()
            raise over(f"{declared} bytes, more than the {limit} allowed")
        h, size, parts = hashlib.sha256(), 0, []
        with response:
            try:
                for chunk in response.iter_content(chunk_size=1024 * 1024):
                    self._check_deadline()  # a registry dripping bytes cannot stretch one read past the budget
                    size += len(chunk)
                    if size > limit:
                        raise over(f"more than the {limit} bytes allowed")
                    h.update(chunk)
                    if sink is None:
                        parts.append(chunk)
                    else:
                        sink.write(chunk)
            except (requests.exceptions.RequestException, OSError) as exc:
                # A body that breaks off (chunked encoding cut, connection reset, read timeout) is not the
                # content its digest names: the same refusal as other bytes, never a traceback.
                raise DigestMismatch(f"the body broke off after {size} bytes ({type(exc).__name__})") from None
        return b"".join(parts), h.hexdigest(), size

    # -- manifests --------------------------------------------------------------------
    def manifest_exists(self, reference: str) -> bool:
        response = self._request("HEAD", f"manifests/{reference}",
                                 headers={"Accept": f"{MANIFEST_MEDIA_TYPE}, {INDEX_MEDIA_TYPE}"})
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise self._fail(response, f"checking manifest {reference}")
        return True

    def get_manifest(self, reference: str, *, accept: str = MANIFEST_MEDIA_TYPE,
                     expected: Descriptor | None = None) -> tuple[bytes, str] | None:
        """(bytes, "sha256:hex") of a manifest by tag or digest; None if absent; DigestMismatch if not its digest."""
        limit = min(expected.size, MAX_MANIFEST_BYTES) if expected is not None else MAX_MANIFEST_BYTES
        if expected is not None and expected.size > MAX_MANIFEST_BYTES:
            raise TooLarge(f"its descriptor declares {expected.size} bytes, more than the "
                                 f"{MAX_MANIFEST_BYTES}-byte manifest limit")
        response = self._request("GET", f"manifests/{reference}", headers={"Accept": accept}, stream=True)
        if response.status_code == 404:
            response.close()
            return None
        if response.status_code != 200:
            response.close()
            raise self._fail(response, f"reading manifest {reference}")
        data, hexdigest, size = self._read_capped(response, limit, over=DigestMismatch if expected else TooLarge)
        digest = f"sha256:{hexdigest}"
        want = expected.digest if expected is not None else (reference if reference.startswith("sha256:") else None)
        if want is not None and digest != want:
            raise DigestMismatch(f"the registry served {size} bytes whose digest is {digest}, not {want}")
        if expected is not None and size != expected.size:
            raise DigestMismatch(f"{size} bytes, not the {expected.size} its descriptor declares")
        _check_type(response, accept, f"manifest {reference}")
        return data, digest

    def put_manifest(self, data: bytes, reference: str, *, media_type: str = MANIFEST_MEDIA_TYPE) -> str:
        """PUT a manifest (or index) under a tag or its digest; returns the digest, checked against the registry's."""
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        response = self._request("PUT", f"manifests/{reference}", data=data, headers={"Content-Type": media_type})
        if response.status_code not in (200, 201):
            raise self._fail(response, f"writing manifest {reference}")
        answered = response.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise InputError(f"{self.ref}: the registry stored manifest {reference} as {answered}, not {digest}; "
                             "refusing to attach anything to it")
        return digest

    def referrers(self, digest: str) -> tuple[list[Descriptor], str]:
        """The referrers of a manifest: the OCI 1.1 API, else (404) the ``sha256-<hex>`` tag-schema index."""
        response = self._request("GET", f"referrers/{digest}", headers={"Accept": INDEX_MEDIA_TYPE}, stream=True)
        if response.status_code == 200:
            data, _, _ = self._read_capped(response, MAX_MANIFEST_BYTES, over=TooLarge)
            _check_type(response, INDEX_MEDIA_TYPE, f"the referrers of {digest}")
            return self._index(data, f"{self.ref} referrers of {digest}"), "referrers API"
        response.close()
        if response.status_code != 404:
            raise self._fail(response, f"listing the referrers of {digest}")
        found = self.fallback_index(digest)
        return found, "referrers tag schema"

    def fallback_index(self, digest: str) -> list[Descriptor]:
        tag = fallback_tag(digest)
        got = self.get_manifest(tag, accept=INDEX_MEDIA_TYPE)
        return [] if got is None else self._index(got[0], f"{self.ref}:{tag}")

    def referrers_api(self, digest: str) -> bool:
        """Whether the registry serves the referrers API (then it indexes ``subject`` by itself)."""
        response = self._request("GET", f"referrers/{digest}", headers={"Accept": INDEX_MEDIA_TYPE}, stream=True)
        response.close()
        return response.status_code == 200

    @staticmethod
    def _index(data: bytes, where: str) -> list[Descriptor]:
        from mlspec_attest.model.canonical import parse_json

        try:
            return parse_index(parse_json(data, source=where), where)
        except (InputError, LayoutError) as exc:
            raise DigestMismatch(f"unusable referrers index: {exc}") from None

    # -- blobs ------------------------------------------------------------------------
    def upload_file(self, path: str | os.PathLike[str], descriptor: Descriptor) -> None:
        """Upload one blob from a file (ORAS skips a blob the registry has; the registry checks the digest)."""
        layer = {"mediaType": descriptor.media_type, "digest": descriptor.digest, "size": descriptor.size}
        try:
            response = self._oras.upload_blob(os.fspath(path), self.container, layer,
                                              do_chunked=descriptor.size >= CHUNKED_MIN)
        except requests.exceptions.RequestException as exc:
            raise InputError(f"{self.ref.registry}: upload failed ({type(exc).__name__})") from None
        except ValueError as exc:
            raise InputError(f"{self.ref}: upload of {descriptor.digest} failed: {exc}") from None
        if response.status_code not in (200, 201, 202):
            raise self._fail(response, f"uploading blob {descriptor.digest} (did the file change while pushing?)")

    def upload_bytes(self, data: bytes, descriptor: Descriptor) -> None:
        with tempfile.NamedTemporaryFile(prefix="mlspec-oci-") as tmp:
            tmp.write(data)
            tmp.flush()
            self.upload_file(tmp.name, descriptor)

    def fetch_blob(self, descriptor: Descriptor, sink: IO[bytes] | None = None, *, limit: int) -> bytes:
        """A blob's bytes (or streamed into ``sink``), refused beyond ``limit`` or its declared size, digest checked."""
        if descriptor.size > limit:
            raise TooLarge(f"its descriptor declares {descriptor.size} bytes, more than the {limit} allowed")
        response = self._request("GET", f"blobs/{descriptor.digest}", stream=True)
        if response.status_code != 200:
            response.close()
            if response.status_code == 404:
                raise DigestMismatch("the registry has no such blob")
            raise self._fail(response, f"reading blob {descriptor.digest}")
        data, hexdigest, size = self._read_capped(response, descriptor.size, sink)
        if size != descriptor.size or f"sha256:{hexdigest}" != descriptor.digest:
            raise DigestMismatch(f"the registry served {size} bytes with digest sha256:{hexdigest}, not "
                                 f"{descriptor.size} bytes with {descriptor.digest}")
        return data

