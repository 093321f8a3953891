"""Keys that never leave a token or a KMS, behind securesystemslib's ``Signer`` API.

``pkcs11:`` URIs (RFC 7512, the form OpenSSF model-signing uses) are signed by
:class:`Pkcs11Signer`, a securesystemslib ``Signer`` registered for the
``pkcs11`` scheme, so one dispatch table (``SIGNER_FOR_URI_SCHEME``) also
reaches securesystemslib's own AWS, GCP, Azure, Vault and HSM signers. This
module knows nothing of mlspec's ``keys.Signer``; ``keys.load_signer`` wraps
what it returns, so the rest of the package signs exactly as with a PEM file.

PINs come from the URI's ``pin-source`` (a file only its owner can read), its ``pin-value``,
``MLSPEC_PKCS11_PIN_<TOKEN>`` or ``MLSPEC_PKCS11_PIN``; they are never printed: every message names the URI
through :func:`redact_uri`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from securesystemslib.signer import SIGNER_FOR_URI_SCHEME, Key, SecretsHandler, Signature, Signer, SSlibKey

from mlspec_attest.errors import InputError

PIN_ENV = "MLSPEC_PKCS11_PIN"
MODULE_ENV = "MLSPEC_PKCS11_MODULE"
PUBLIC_KEY_ENV = "MLSPEC_SIGNER_PUBLIC_KEY"
SCHEME = "pkcs11"
# Where ``module-name=softhsm2`` is looked for (model-signing's list plus Debian's).
MODULE_DIRECTORIES = ("/usr/lib64/pkcs11/", "/usr/lib/pkcs11/", "/usr/lib/softhsm/",
                      "/usr/lib/x86_64-linux-gnu/pkcs11/", "/usr/lib/aarch64-linux-gnu/pkcs11/",
                      "/usr/lib/x86_64-linux-gnu/softhsm/", "/usr/local/lib/softhsm/")
# DER of the named-curve OIDs in CKA_EC_PARAMS (SEC 1 / RFC 8410) and the
# PrintableString form PKCS#11 3.0 also allows for Ed25519.
_P256_PARAMS = bytes.fromhex("06082a8648ce3d030107")
_ED25519_PARAMS = (bytes.fromhex("06032b6570"), b"\x13\x0cedwards25519")
_SECRET_QUERY = re.compile(r"(pin-value=)[^&]*", re.I)

PublicKeyType = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def is_key_uri(value: str) -> bool:
    """True for ``scheme:rest`` where the scheme is a known signer (never a file path)."""
    scheme, sep, _ = value.partition(":")
    return bool(sep) and (scheme == SCHEME or scheme in _sslib_schemes())


def _sslib_schemes() -> set[str]:
    return set(SIGNER_FOR_URI_SCHEME)


def redact_uri(uri: str) -> str:
    """The URI with any ``pin-value`` blanked: safe for messages and logs."""
    return _SECRET_QUERY.sub(r"\1***", uri)


def pin_env_name(token_label: str | None) -> str | None:
    """``MLSPEC_PKCS11_PIN_<TOKEN>`` (label upper-cased, non-alphanumerics as ``_``): one token's PIN, as
    ``MLSPEC_KEY_PASSPHRASE_<NAME>`` is one key's; ``MLSPEC_PKCS11_PIN`` stays every token's fallback."""
    if not token_label:
        return None
    return f"{PIN_ENV}_{re.sub(r'[^A-Z0-9]', '_', str(token_label).upper())}"


def strip_pin(uri: str) -> str:
    """The URI without ``pin-value`` (for files that must not hold the PIN)."""
    scheme, sep, rest = uri.partition("?")
    if not sep:
        return uri
    kept = [part for part in rest.split("&") if not part.lower().startswith("pin-value=")]
    return scheme + ("?" + "&".join(kept) if kept else "")


def _pykcs11() -> Any:
    try:
        import PyKCS11
    except ImportError:
        raise InputError("pkcs11: URIs need PyKCS11: pip install 'mlspec-attest[hsm]'") from None
    return PyKCS11


def _parse(uri: str) -> Any:
    """RFC 7512 parsing by model-signing's parser (the form its pkcs11 signer accepts)."""
    _pykcs11()
    from model_signing._signing.pkcs11uri import Pkcs11URI

    parsed = Pkcs11URI()
    try:
        parsed.parse(uri)
    except ValueError as exc:
        raise InputError(f"{redact_uri(uri)}: not a valid PKCS#11 URI ({redact_uri(str(exc))}); "
                         "write e.g. 'pkcs11:token=mlspec;object=pipeline?module-name=softhsm2'") from None
    parsed.set_module_directories(list(MODULE_DIRECTORIES))
    parsed.set_allow_any_module(True)  # the operator who writes the URI chooses the module
    return parsed


def _ck_error(exc: Exception) -> str:
    """A PKCS#11 error as a short text (PyKCS11Error carries the CKR_ name)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class Pkcs11Token:
    """One logged-in session on the token an RFC 7512 URI names."""

    def __init__(self, uri: str, secrets_handler: SecretsHandler | None = None, *, login: bool = True):
        self.uri = uri
        self.shown = redact_uri(uri)
        self.parsed = _parse(uri)
        self.pkcs11 = _pykcs11()
        self._lock = threading.Lock()
        self.lib = self._load_module()
        self.slot = self._find_slot()
        try:
            self.session = self.lib.openSession(self.slot, self.pkcs11.CKF_SERIAL_SESSION | self.pkcs11.CKF_RW_SESSION)
        except self.pkcs11.PyKCS11Error as exc:
            raise InputError(f"{self.shown}: cannot open a session on the token: {_ck_error(exc)}") from None
        if login:
            self._login(secrets_handler)

    def _load_module(self) -> Any:
        if self.parsed.get_query_attribute("module-path") is None and self.parsed.get_query_attribute("module-name") is None:
            env = os.environ.get(MODULE_ENV)
            if not env:
                raise InputError(f"{self.shown}: no PKCS#11 module: add '?module-path=/path/to/module.so' "
                                 f"(or module-name=...) to the URI, or set {MODULE_ENV}")
            self.parsed.set_query_attribute_unencoded("module-path", env.encode())
        try:
            module = self.parsed.get_module()
        except (ValueError, OSError) as exc:
            text = str(exc) or str(exc.__cause__ or "module not found")
            raise InputError(f"{self.shown}: PKCS#11 module not found ({text}); "
                             f"install it or fix module-path/module-name") from None
        try:
            return self.pkcs11.PyKCS11Lib().load(pkcs11dll_filename=module)
        except self.pkcs11.PyKCS11Error as exc:
            raise InputError(f"{self.shown}: cannot load PKCS#11 module {module}: {_ck_error(exc)}") from None

    def _find_slot(self) -> int:
        label = self.parsed.get_path_attribute("token")
        slot_id = self.parsed.get_path_attribute("slot-id")
        try:
            slots = self.lib.getSlotList(tokenPresent=True)
            for slot in slots:
                if slot_id is not None and str(slot) != slot_id:
                    continue
                if label is not None and self.lib.getTokenInfo(slot).label.rstrip() != label:
                    continue
                return int(slot)
        except self.pkcs11.PyKCS11Error as exc:
            raise InputError(f"{self.shown}: cannot list the module's tokens: {_ck_error(exc)}") from None
        if label is None and slot_id is None:
            raise InputError(f"{self.shown}: name the token: add 'token=LABEL;' (or slot-id=N) to the URI")
        raise InputError(f"{self.shown}: no token {label or 'in slot ' + str(slot_id)!r} in this module; "
                         "check the label ('softhsm2-util --show-slots') and SOFTHSM2_CONF")

    def _pin(self, secrets_handler: SecretsHandler | None) -> str:
        source = self.parsed.get_query_attribute("pin-source")
        if source is not None:
            from mlspec_attest._internal.secret_files import read_owner_only

            path = source.removeprefix("file:")
            try:  # no-follow, non-blocking, owner-only (the passphrase-file rule): never waited on, never shared
                return read_owner_only(path, "pin-source").decode("utf-8")
            except (InputError, UnicodeDecodeError) as exc:
                raise InputError(f"{self.shown}: cannot use pin-source: {exc}") from None
        value = self.parsed.get_query_attribute("pin-value")
        if value is not None:
            return str(value)
        for env_name in (pin_env_name(self.parsed.get_path_attribute("token")), PIN_ENV):
            env = os.environ.get(env_name) if env_name else None
            if env is not None:
                return env
        if secrets_handler is not None:
            return secrets_handler("PIN")
        raise InputError(f"{self.shown}: the token needs a PIN: set {PIN_ENV}, add pin-source=FILE to the URI, "
                         "or run on a terminal to be asked")

    def _login(self, secrets_handler: SecretsHandler | None) -> None:
        pin = self._pin(secrets_handler)
        try:
            self.session.login(pin)
        except self.pkcs11.PyKCS11Error as exc:
            if exc.value == self.pkcs11.CKR_USER_ALREADY_LOGGED_IN:
                return
            if exc.value in (self.pkcs11.CKR_PIN_INCORRECT, self.pkcs11.CKR_PIN_LEN_RANGE,
                             self.pkcs11.CKR_PIN_INVALID):
                raise InputError(f"{self.shown}: wrong PIN for the token (the PIN is not shown)") from None
            if exc.value == self.pkcs11.CKR_PIN_LOCKED:
                raise InputError(f"{self.shown}: the token's PIN is locked; ask its security officer") from None
            raise InputError(f"{self.shown}: login failed: {_ck_error(exc)}") from None
        finally:
            del pin

    def _search(self, klass: int) -> list[Any]:
        keyid, label = self.parsed.get_path_attribute_bytes("id"), self.parsed.get_path_attribute("object")
        if keyid is None and label is None:
            raise InputError(f"{self.shown}: name the key: add 'object=LABEL' (or id=%01) to the URI")
        template: list[tuple[int, Any]] = [(self.pkcs11.CKA_CLASS, klass)]
        if label is not None:
            template.append((self.pkcs11.CKA_LABEL, label))
        if keyid is not None:
            template.append((self.pkcs11.CKA_ID, tuple(keyid)))
        return list(self.session.findObjects(template))

    def find(self, klass: int) -> Any:
        """The one object of ``klass`` the URI names; none or several is an input error."""
        what = "private key" if klass == self.pkcs11.CKO_PRIVATE_KEY else "public key"
        found = self._search(klass)
        if not found:
            raise InputError(f"{self.shown}: no {what} object with that label/id on the token; "
                             "list them with 'pkcs11-tool --list-objects' or create one with "
                             "'mlspec keys generate NAME --pkcs11 URI'")
        if len(found) > 1:
            raise InputError(f"{self.shown}: {len(found)} {what} objects match; add id=... to name one")
        return found[0]

    def public_key(self) -> PublicKeyType:
        """The public half from the token's public-key object (CKA_EC_PARAMS and CKA_EC_POINT)."""
        p = self.pkcs11
        obj = self.find(p.CKO_PUBLIC_KEY)
        key_type, params, point = self.session.getAttributeValue(obj, [p.CKA_KEY_TYPE, p.CKA_EC_PARAMS, p.CKA_EC_POINT])
        params, point = bytes(params), _unwrap_octet_string(bytes(point))
        try:
            if key_type == p.CKK_EC and params == _P256_PARAMS:
                return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
            if key_type == p.CKK_EC_EDWARDS and params in _ED25519_PARAMS:
                return ed25519.Ed25519PublicKey.from_public_bytes(point)
        except ValueError as exc:
            raise InputError(f"{self.shown}: the token's public key is malformed: {exc}") from None
        raise InputError(f"{self.shown}: unsupported key on the token; use ECDSA P-256 or Ed25519")

    def sign(self, key_obj: Any, message: bytes, public: PublicKeyType) -> bytes:
        """Ed25519: raw 64 bytes (CKM_EDDSA). ECDSA: sha256 here, CKM_ECDSA on the token, DER out."""
        p = self.pkcs11
        with self._lock:
            try:
                if isinstance(public, ed25519.Ed25519PublicKey):
                    return bytes(self.session.sign(key_obj, message, p.Mechanism(p.CKM_EDDSA, None)))
                digest = hashes.Hash(hashes.SHA256())
                digest.update(message)
                raw = bytes(self.session.sign(key_obj, digest.finalize(), p.Mechanism(p.CKM_ECDSA, None)))
            except p.PyKCS11Error as exc:
                raise InputError(f"{self.shown}: the token refused to sign: {_ck_error(exc)}") from None
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def generate(self, key_type: str) -> PublicKeyType:
        """Create a key pair ON the token (private: sensitive, never extractable) and return its public key."""
        p = self.pkcs11
        if self._search(p.CKO_PRIVATE_KEY) or self._search(p.CKO_PUBLIC_KEY):
            raise InputError(f"{self.shown}: a key with that label/id already exists on the token; "
                             "refusing to create a second one")
        label = self.parsed.get_path_attribute("object")
        keyid = self.parsed.get_path_attribute_bytes("id")
        names: list[tuple[int, Any]] = []
        if label is not None:
            names.append((p.CKA_LABEL, label))
        if keyid is not None:
            names.append((p.CKA_ID, tuple(keyid)))
        if key_type == "ecdsa-p256":
            mechanism, ck_type, params = p.CKM_EC_KEY_PAIR_GEN, p.CKK_EC, _P256_PARAMS
        elif key_type == "ed25519":
            mechanism, ck_type, params = p.CKM_EC_EDWARDS_KEY_PAIR_GEN, p.CKK_EC_EDWARDS, _ED25519_PARAMS[0]
        else:
            raise InputError(f"unknown key type {key_type!r}: use ed25519 or ecdsa-p256")
        public_template = [(p.CKA_CLASS, p.CKO_PUBLIC_KEY), (p.CKA_KEY_TYPE, ck_type), (p.CKA_TOKEN, p.CK_TRUE),
                           (p.CKA_VERIFY, p.CK_TRUE), (p.CKA_EC_PARAMS, tuple(params)), *names]
        private_template = [(p.CKA_CLASS, p.CKO_PRIVATE_KEY), (p.CKA_KEY_TYPE, ck_type), (p.CKA_TOKEN, p.CK_TRUE),
                            (p.CKA_PRIVATE, p.CK_TRUE), (p.CKA_SENSITIVE, p.CK_TRUE),
                            (p.CKA_EXTRACTABLE, p.CK_FALSE), (p.CKA_SIGN, p.CK_TRUE), *names]
        try:
            self.session.generateKeyPair(public_template, private_template, p.Mechanism(mechanism, None))
        except p.PyKCS11Error as exc:
            raise InputError(f"{self.shown}: the token cannot create a {key_type} key: {_ck_error(exc)}") from None
        return self.public_key()

    def close(self) -> None:
        try:
            self.session.logout()
        except Exception:  # already logged out or closed
            pass
        try:
            self.session.closeSession()
        except Exception:
            pass


def _unwrap_octet_string(point: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING (PKCS#11 2.40); some tokens store the bare point.

    Told apart by length alone: a P-256 point is 65 bytes bare, 67 wrapped; Ed25519 32 and 34.
    """
    if len(point) not in (34, 67):
        return point
    from asn1crypto.core import OctetString

    try:
        return bytes(OctetString.load(point, strict=True).native)
    except ValueError:
        return point


class Pkcs11Signer(Signer):
    """securesystemslib ``Signer`` for ``pkcs11:`` URIs; the private key stays on the token."""

    SCHEME = SCHEME

    def __init__(self, token: Pkcs11Token, public_key: SSlibKey, crypto_public: PublicKeyType):
        self.token = token
        self._public_key = public_key
        self._crypto_public = crypto_public
        self._private = token.find(token.pkcs11.CKO_PRIVATE_KEY)

    @property
    def public_key(self) -> Key:
        return self._public_key

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri: str, public_key: Key,
                          secrets_handler: SecretsHandler | None = None) -> Pkcs11Signer:
        """Open the token; refuse when ``public_key`` is not the token's own key."""
        token = Pkcs11Token(priv_key_uri, secrets_handler)
        crypto_public = token.public_key()
        if not isinstance(public_key, SSlibKey) or public_key.keyval != SSlibKey.from_crypto(crypto_public).keyval:
            token.close()
            raise InputError(f"{token.shown}: the key on the token is not the public key given for it")
        return cls(token, public_key, crypto_public)

    @classmethod
    def import_(cls, uri: str, secrets_handler: SecretsHandler | None = None,
                keyid: str | None = None) -> tuple[str, SSlibKey]:
        """(uri, public key) as securesystemslib signers return them; the URI is kept as given."""
        token = Pkcs11Token(uri, secrets_handler)
        try:
            return uri, SSlibKey.from_crypto(token.public_key(), keyid=keyid)
        finally:
            token.close()

    def sign(self, payload: bytes) -> Signature:
        raw = self.token.sign(self._private, payload, self._crypto_public)
        return Signature(self._public_key.keyid, raw.hex())


SIGNER_FOR_URI_SCHEME.setdefault(SCHEME, Pkcs11Signer)


def open_token_signer(uri: str, keyid_of: Any, secrets_handler: SecretsHandler | None = None
                      ) -> tuple[Signer, PublicKeyType]:
    """A signer for a pkcs11: URI and the token's public key; ``keyid_of`` names it (mlspec keyids)."""
    token = Pkcs11Token(uri, secrets_handler)
    crypto_public = token.public_key()
    public = SSlibKey.from_crypto(crypto_public, keyid=keyid_of(crypto_public))
    return Pkcs11Signer(token, public, crypto_public), crypto_public


def open_uri_signer(uri: str, crypto_public: PublicKeyType, keyid: str,
                    secrets_handler: SecretsHandler | None = None) -> Signer:
    """Any securesystemslib signer (awskms:, gcpkms:, azurekms:, hashivault:, hsm:, file2:) for ``uri``."""
    public = SSlibKey.from_crypto(crypto_public, keyid=keyid)
    try:
        return Signer.from_priv_key_uri(uri, public, secrets_handler)
    except InputError:
        raise
    except Exception as exc:  # KMS clients raise their own error types
        raise InputError(f"{redact_uri(uri)}: cannot open the signer: {type(exc).__name__}: "
                         f"{redact_uri(str(exc).splitlines()[0] if str(exc) else '')}") from None


def token_public_key(uri: str, secrets_handler: SecretsHandler | None = None) -> PublicKeyType:
    """The public key a pkcs11: URI names (logs in: many tokens keep public objects private too)."""
    token = Pkcs11Token(uri, secrets_handler)
    try:
        return token.public_key()
    finally:
        token.close()


def generate_on_token(uri: str, key_type: str, secrets_handler: SecretsHandler | None = None) -> PublicKeyType:
    token = Pkcs11Token(uri, secrets_handler)
    try:
        return token.generate(key_type)
    finally:
        token.close()


def known_schemes() -> Iterable[str]:
    return sorted(_sslib_schemes() | {SCHEME})
