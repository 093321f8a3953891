"""``oci://HOST[:PORT]/REPO[:TAG|@sha256:HEX]``: parsed strictly, before any network I/O."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from mlspec_attest.errors import InputError

SCHEME = "oci://"
# The distribution spec's grammar: path components of lowercase alphanumerics joined by . _ __ or dashes.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
                   r"|\[[0-9A-Fa-f:.]+\]")
_USAGE = "expected oci://HOST[:PORT]/REPO:TAG or oci://HOST[:PORT]/REPO@sha256:<64 hex>"


def is_oci_url(value: str) -> bool:
    return value.startswith(SCHEME)


@dataclass(frozen=True)
class OciReference:
    """One registry reference; ``tag`` or ``digest`` (at most one) names the model manifest."""

    host: str  # as written, brackets kept for IPv6
    port: int | None
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, url: str) -> OciReference:
        if not is_oci_url(url):
            raise InputError(f"{url}: not an OCI reference ({_USAGE})")
        rest = url[len(SCHEME):]
        authority, slash, path = rest.partition("/")
        if not slash or not path:
            raise InputError(f"{url}: no repository ({_USAGE})")
        host, port = authority, None
        if re.fullmatch(r".*:\d{1,5}", authority) and not authority.endswith("]"):
            host, _, port_text = authority.rpartition(":")
            port = int(port_text)
            if not 0 < port < 65536:
                raise InputError(f"{url}: port {port} is out of range")
        if not _HOST.fullmatch(host) or "@" in authority:
            raise InputError(f"{url}: {authority!r} is not a registry host[:port] (credentials never go in the "
                             "URL: use ~/.docker/config.json or MLSPEC_REGISTRY_USERNAME/PASSWORD)")
        tag = digest = None
        if "@" in path:
            path, _, digest = path.partition("@")
            if not _DIGEST.fullmatch(digest):
                raise InputError(f"{url}: {digest!r} is not a sha256 digest ({_USAGE})")
        elif ":" in path.rsplit("/", 1)[-1]:
            path, _, tag = path.rpartition(":")
            if not _TAG.fullmatch(tag):
                raise InputError(f"{url}: {tag!r} is not a valid tag ({_USAGE})")
        if not _REPO.fullmatch(path) or len(path) > 255:
            raise InputError(f"{url}: {path!r} is not a repository name (lowercase letters, digits, '.', '_', "
                             "'-', '/' between components)")
        return cls(host=host, port=port, repository=path, tag=tag, digest=digest)

    @property
    def registry(self) -> str:
        """``host[:port]``, as registries and docker config files name it."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """True only for 127.0.0.0/8, ::1 and ``localhost``: where plain HTTP cannot be intercepted off-host."""
        return is_loopback_host(self.host)

    def with_digest(self, digest: str) -> OciReference:
        return OciReference(self.host, self.port, self.repository, digest=digest)

    def __str__(self) -> str:
        suffix = f"@{self.digest}" if self.digest else (f":{self.tag}" if self.tag else "")
        return f"{SCHEME}{self.registry}/{self.repository}{suffix}"


def is_loopback_host(host: str) -> bool:
    """True only for 127.0.0.0/8, ::1 and ``localhost`` (a bracketed IPv6 literal is accepted)."""
    name = host.strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
