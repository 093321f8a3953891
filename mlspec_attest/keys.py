"""Signing keys: Ed25519 (default) and ECDSA P-256, with keyid = sha256(DER SPKI).

Private keys live in ``NAME.key`` (PKCS#8 PEM, mode 0600, passphrase-encrypted
unless asked otherwise); public keys in ``NAME.pub`` (SPKI PEM). Loading a private
key that other users can read is refused: a leaked pipeline key forges history.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from mlspec_attest.errors import InputError

PASSPHRASE_ENV = "MLSPEC_KEY_PASSPHRASE"
"""One passphrase for every key (the fallback); MLSPEC_KEY_PASSPHRASE_<NAME> is one key's."""
KEY_TYPES = ("ed25519", "ecdsa-p256")
_URI_SCHEME = re.compile(r"[a-z][a-z0-9+.-]+:")  # cheap pre-check; signers.is_key_uri decides
# Exactly one SPKI block and nothing but whitespace around it: a search for the first block let a
# private key body, or a second key, ride along after a first END line (the reviewer's hole 4).
_PEM_PUBLIC = re.compile(rb"\s*-----BEGIN PUBLIC KEY-----\r?\n([A-Za-z0-9+/=\s]+?)-----END PUBLIC KEY-----\s*")

PublicKeyType = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKeyType = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def keyid_of(public_key: PublicKeyType) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _key_type(key: PublicKeyType) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ecdsa-p256"
    raise InputError("unsupported key type: use Ed25519 or ECDSA P-256")


def _is_der(signature: bytes) -> bool:
    try:
        decode_dss_signature(signature)
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class PublicKey:
    """A public key that verification may trust, identified by its keyid."""

    key: PublicKeyType
    keyid: str
    key_type: str
    source: str = ""

    @classmethod
    def from_crypto(cls, key: PublicKeyType, source: str = "") -> PublicKey:
        return cls(key=key, keyid=keyid_of(key), key_type=_key_type(key), source=source)

    @classmethod
    def from_pem(cls, data: bytes, source: str = "<pem>") -> PublicKey:
        match = _PEM_PUBLIC.fullmatch(data)
        if not match:
            raise InputError(f"{source}: not exactly one PEM 'PUBLIC KEY' block with nothing else but whitespace; "
                             "expected an SPKI public key (NAME.pub, or mlspec keys export-public)")
        try:
            der = base64.b64decode(b"".join(match.group(1).split()), validate=True)
            key = serialization.load_der_public_key(der)  # the DER must be one SubjectPublicKeyInfo
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise InputError(f"{source}: unreadable public key: {exc}") from None
        if not isinstance(key, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)):
            raise InputError(f"{source}: unsupported public key type; use Ed25519 or ECDSA P-256")
        if isinstance(key, ec.EllipticCurvePublicKey) and not isinstance(key.curve, ec.SECP256R1):
            raise InputError(f"{source}: ECDSA curve {key.curve.name} is not supported; use P-256 or Ed25519")
        return cls.from_crypto(key, source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PublicKey:
        from mlspec_attest._internal.files import read_file

        p = Path(path)
        data = read_file(p, limit=_MAX_KEY_BYTES, what="public key file")
        return cls.from_pem(data, str(p))

    def to_pem(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True only if the signature is valid for this key; never raises on bad input."""
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                if len(signature) != 64:
                    return False
                self.key.verify(signature, message)
                return True
            if len(signature) == 64 and not _is_der(signature):
                # Raw r||s (the DSSE spec's own vector); convert to DER for cryptography.
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                signature = encode_dss_signature(r, s)
            self.key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            return True
        except (InvalidSignature, ValueError):
            return False


@dataclass(frozen=True)
class Signer:
    """A signing key: a loaded private key, or a token/KMS key behind a securesystemslib ``Signer``.

    ``backend`` is set for keys that never leave a PKCS#11 token or a KMS; every
    signature it returns is checked against ``public`` before use, so a token or
    KMS that signs with another key (or in another format) cannot slip a
    signature past the writer that the verifier would later refuse.
    """

    private_key: PrivateKeyType | None
    public: PublicKey
    backend: Any = field(default=None, repr=False, compare=False)

    @property
    def keyid(self) -> str:
        return self.public.keyid

    def sign(self, message: bytes) -> bytes:
        if self.backend is not None:
            signature = bytes.fromhex(self.backend.sign(message).signature)
            if not self.public.verify(signature, message):
                raise InputError(f"{self.public.source}: the signature returned does not verify with the key's "
                                 "public half; refusing to write it")
            return signature
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(message)
        if isinstance(self.private_key, ec.EllipticCurvePrivateKey):
            return self.private_key.sign(message, ec.ECDSA(hashes.SHA256()))  # DER, as Sigstore and sslib
        raise InputError(f"{self.public.source}: no private key to sign with")

    @classmethod
    def from_private_key(cls, key: PrivateKeyType, source: str = "") -> Signer:
        return cls(private_key=key, public=PublicKey.from_crypto(key.public_key(), source))

    @classmethod
    def from_backend(cls, backend: Any, public: PublicKey) -> Signer:
        """Wrap a securesystemslib ``Signer`` (PKCS#11, AWS/GCP/Azure KMS, Vault) whose key is ``public``."""
        return cls(private_key=None, public=public, backend=backend)


_MAX_KEY_BYTES = 1024 * 1024  # a PEM key is a few hundred bytes


def _new_private_key(key_type: str) -> PrivateKeyType:
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise InputError(f"unknown key type {key_type!r}: use one of {', '.join(KEY_TYPES)}")


def _write_exclusive(path: Path, data: bytes, mode: int, dir_fd: int | None = None) -> None:
    try:
        # O_EXCL also refuses a planted symlink (even a dangling one); never follow it
        fd = os.open(path.name if dir_fd is not None else path,
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except FileExistsError:
        raise InputError(f"{path}: already exists; refusing to overwrite a key (remove it first)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot write key: {exc.strerror}") from None
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def check_key_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise InputError(f"key name {name!r}: use letters, digits, '.', '_' or '-' (no slashes)")


@dataclass(frozen=True)
class NewKey:
    """A generated key pair not yet on disk: shown first (rotation), written with :meth:`write`."""

    name: str
    directory: Path
    private_pem: bytes
    public: PublicKey
    encrypted: bool

    @property
    def paths(self) -> tuple[Path, Path]:
        return self.directory / f"{self.name}.key", self.directory / f"{self.name}.pub"

    def write(self) -> tuple[Path, Path]:
        from mlspec_attest._internal import files as safe

        priv_path, pub_path = self.paths
        # The key directory itself is opened no-follow: a symlinked keys/ planted in a project
        # must not carry the private key to wherever it points (the same rule as init).
        with safe.open_dir(self.directory.parent, self.directory.name, create=True) as dir_fd:
            for path in (priv_path, pub_path):
                try:
                    os.lstat(path.name, dir_fd=dir_fd)
                except FileNotFoundError:
                    continue
                raise InputError(f"{path}: already exists; refusing to overwrite a key (remove it first)")
            _write_exclusive(priv_path, self.private_pem, 0o600, dir_fd)
            _write_exclusive(pub_path, self.public.to_pem(), 0o644, dir_fd)
        return priv_path, pub_path


def open_key_directory(directory: str | os.PathLike[str]) -> None:
    """Create ``directory`` if absent, refusing it when it is a symlink (opened no-follow, like init)."""
    from mlspec_attest._internal import files as safe

    d = Path(directory)
    with safe.open_dir(d.parent, d.name, create=True):
        pass


def new_key(name: str, directory: str | os.PathLike[str] = "keys", key_type: str = "ed25519",
            passphrase: bytes | None = None) -> NewKey:
    """A fresh key pair in memory (PKCS#8, encrypted when a passphrase is given)."""
    check_key_name(name)
    if passphrase is not None and not passphrase:  # b"" would silently mean "unencrypted"
        raise InputError(f"{name}: the passphrase is empty; give a real one (or choose --no-passphrase explicitly)")
    d = Path(directory)
    key = _new_private_key(key_type)
    encryption: serialization.KeySerializationEncryption
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public = PublicKey.from_crypto(key.public_key(), str(d / f"{name}.pub"))
    return NewKey(name=name, directory=d, private_pem=private_pem, public=public, encrypted=bool(passphrase))


def generate(name: str, directory: str | os.PathLike[str] = "keys", key_type: str = "ed25519",
             passphrase: bytes | None = None) -> tuple[Path, Path, PublicKey]:
    """Write NAME.key (0600) and NAME.pub; encrypted when a passphrase is given."""
    key = new_key(name, directory, key_type, passphrase)
    priv_path, pub_path = key.write()
    return priv_path, pub_path, key.public


def passphrase_from_env_or_tty(prompt: str, confirm: bool = False) -> bytes | None:
    """MLSPEC_KEY_PASSPHRASE wins; else ask on a TTY; else None."""
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        return env.encode("utf-8")
    if sys.stdin.isatty():
        import click

        value = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
        return value.encode("utf-8")
    return None


def passphrase_env_name(key_path: str | os.PathLike[str]) -> str:
    """``MLSPEC_KEY_PASSPHRASE_<NAME>``: NAME is the key file's stem, upper-cased, non-alphanumerics as ``_``."""
    stem = Path(key_path).name.removesuffix(".key")
    return f"{PASSPHRASE_ENV}_{re.sub(r'[^A-Z0-9]', '_', stem.upper())}"


_passphrase_files: dict[Path, tuple[Path, str]] = {}


def set_passphrase_files(files: dict[Path, tuple[Path, str]]) -> None:
    """Which passphrase file unlocks which key (resolved key path -> (file, where it was named)).

    Set once per command by the CLI (``--passphrase-file``, mlspec.yaml ``passphrase_files:``);
    replaces what was set before, so one invocation never inherits another's files."""
    _passphrase_files.clear()
    _passphrase_files.update({Path(k).resolve(): v for k, v in files.items()})


def read_passphrase_file(path: str | os.PathLike[str], named_by: str = "passphrase file") -> bytes:
    """A passphrase from a file only its owner can read (as ssh refuses a readable private key).

    One trailing newline is dropped (``echo secret > f``); an empty passphrase is refused."""
    from mlspec_attest._internal.secret_files import read_owner_only

    return read_owner_only(path, f"passphrase file ({named_by})")


def key_passphrase(key_path: str | os.PathLike[str]) -> tuple[bytes | None, str]:
    """(passphrase, where it came from) for one key; the first source that has one wins:

    1. a passphrase file named for this key (``--passphrase-file KEY=FILE``, else mlspec.yaml);
    2. ``MLSPEC_KEY_PASSPHRASE_<NAME>`` (this key's variable);
    3. ``MLSPEC_KEY_PASSPHRASE`` (every key's);
    4. a terminal prompt.  Never argv: a passphrase there is visible to every local user."""
    p = Path(key_path)
    named = _passphrase_files.get(p.resolve())
    if named is not None:
        return read_passphrase_file(named[0], named[1]), f"passphrase file {named[0]}"
    own = passphrase_env_name(p)
    for env in (own, PASSPHRASE_ENV):
        value = os.environ.get(env)
        if value is not None:
            return value.encode("utf-8"), env
    if sys.stdin.isatty():
        import click

        return click.prompt(f"Passphrase for {p}", hide_input=True, err=True).encode("utf-8"), "the terminal"
    return None, ""


def ask_secret(name: str) -> str:
    """A securesystemslib secrets handler: ask on a terminal, never echo; refuse without one."""
    if not sys.stdin.isatty():
        raise InputError(f"a {name} is needed and there is no terminal to ask on")
    import click

    return str(click.prompt(f"Token {name}", hide_input=True, err=True))


def load_uri_signer(uri: str) -> Signer:
    """A signer for a key URI: ``pkcs11:`` (RFC 7512) or any securesystemslib scheme (awskms:, gcpkms:...).

    For pkcs11: the public key is read from the token. Other schemes need it
    given: ``MLSPEC_SIGNER_PUBLIC_KEY`` names its PEM file (KMS schemes are not
    tested here: see docs/keys.md).
    """
    from mlspec_attest.signers import PUBLIC_KEY_ENV, SCHEME, open_token_signer, open_uri_signer, redact_uri

    shown = redact_uri(uri)
    if uri.partition(":")[0] == SCHEME:
        backend, crypto_public = open_token_signer(uri, keyid_of, ask_secret)
        return Signer.from_backend(backend, PublicKey.from_crypto(crypto_public, shown))
    scheme, _, rest = uri.partition(":")
    if scheme == "file2":  # securesystemslib's file signer: the same file-mode rule as a --key path
        _refuse_shared_private_file(Path(rest.partition("?")[0]))
    pub_path = os.environ.get(PUBLIC_KEY_ENV)
    if not pub_path:
        raise InputError(f"{shown}: set {PUBLIC_KEY_ENV} to the key's public PEM file "
                         "(e.g. from 'aws kms get-public-key' or 'gcloud kms keys versions get-public-key')")
    public = PublicKey.from_file(pub_path)
    backend = open_uri_signer(uri, public.key, public.keyid, ask_secret)
    return Signer.from_backend(backend, PublicKey.from_crypto(public.key, shown))


def _refuse_shared_private_file(p: Path, st: os.stat_result | None = None) -> None:
    """A private key others can read may already be someone else's: refuse it."""
    if st is None:
        try:
            st = p.stat()
        except OSError:
            raise InputError(f"{p}: private key not found") from None
    if st.st_mode & 0o077:
        raise InputError(
            f"{p}: private key is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run 'chmod 600 {p}'"
        )


def load_signer(path: str | os.PathLike[str], passphrase: bytes | None = None) -> Signer:
    """Load a private key, refusing group/world-readable files and wrong passphrases.

    A string that is a key URI (``pkcs11:...``, ``awskms:...``) opens that token or KMS instead.
    """
    if isinstance(path, str) and _URI_SCHEME.match(path):
        try:
            from mlspec_attest.signers import is_key_uri
        except ImportError:
            raise InputError(f"{path.partition(':')[0]}: key URIs need securesystemslib and PyKCS11: "
                             "pip install 'mlspec-attest[hsm]'") from None
        if is_key_uri(path):
            return load_uri_signer(path)
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{p}: private key not found") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{p}: not a regular file")
    from mlspec_attest._internal.files import read_file

    data = read_file(p, limit=_MAX_KEY_BYTES, what="private key")
    if b"-----BEGIN PUBLIC KEY-----" in data:
        raise InputError(f"{p}: is a public key; sign with the private key (NAME.key beside it)")
    _refuse_shared_private_file(p, st)
    encrypted = b"ENCRYPTED" in data.split(b"\n", 1)[0]
    source = "the caller"
    if encrypted and passphrase is None:
        passphrase, source = key_passphrase(p)
        if passphrase is None:
            raise InputError(f"{p}: key is encrypted; set {passphrase_env_name(p)} (this key) or {PASSPHRASE_ENV}"
                             " (every key), pass --passphrase-file KEY=FILE, or run on a terminal to be asked")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase if encrypted else None)
    except TypeError as exc:
        raise InputError(f"{p}: {exc}") from None
    except ValueError:
        if encrypted:
            raise InputError(f"{p}: wrong passphrase from {source} (or corrupted key file)") from None
        raise InputError(f"{p}: not a PEM private key") from None
    except UnsupportedAlgorithm as exc:
        raise InputError(f"{p}: unsupported key: {exc}") from None
    if not isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
        raise InputError(f"{p}: unsupported private key type; use Ed25519 or ECDSA P-256")
    if isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, ec.SECP256R1):
        raise InputError(f"{p}: ECDSA curve {key.curve.name} is not supported; use P-256")
    return Signer.from_private_key(key, str(p))
