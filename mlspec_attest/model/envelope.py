"""DSSE envelopes (https://github.com/secure-systems-lab/dsse, protocol v1).

Signatures cover PAE(payloadType, payload) and nothing else. Decoding is strict:
only canonical base64 (no whitespace, no stray padding bits), only ASCII payload
types, and keyids are hints that never decide whether a signature is trusted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlspec_attest.errors import InputError
from mlspec_attest.keys import PublicKey, Signer

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
_B64_STD = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_B64_URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
# Every signature is tried against every trusted key, so their number is bounded (a DoS otherwise).
MAX_SIGNATURES = 16
_json_str = json.encoder.encode_basestring_ascii  # how json.dumps (ensure_ascii) writes a str


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSEv1 Pre-Authentication Encoding; lengths are byte lengths."""
    try:
        type_bytes = payload_type.encode("ascii")
    except UnicodeEncodeError:
        raise InputError(f"payloadType {payload_type!r} is not ASCII; refusing it") from None
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode_strict(text: Any, what: str) -> bytes:
    """Decode base64 only if re-encoding gives back exactly the same text."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a base64 string")
    if _B64_STD.fullmatch(text):
        alphabet = None
    elif _B64_URL.fullmatch(text):
        alphabet = b"-_"
    else:
        raise ValueError(f"{what} is not base64 (whitespace or foreign characters)")
    try:
        raw = base64.b64decode(text, altchars=alphabet, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None
    again = base64.b64encode(raw, altchars=alphabet).decode("ascii")
    if again != text:
        raise ValueError(f"{what} is non-canonical base64 (stray padding bits)")
    return raw


@dataclass
class Signature:
    keyid: str
    sig: bytes

    def to_dict(self) -> dict[str, str]:
        return {"keyid": self.keyid, "sig": b64encode(self.sig)}


@dataclass
class Envelope:
    payload_type: str
    payload: bytes
    signatures: list[Signature] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Envelope:
        """Parse an envelope; raises ValueError with what is wrong (callers add context)."""
        if not isinstance(data, Mapping):
            raise ValueError("envelope is not a JSON object")
        unknown = set(data) - {"payloadType", "payload", "signatures"}
        if unknown:
            raise ValueError(f"unknown envelope fields: {', '.join(sorted(unknown))}")
        payload_type = data.get("payloadType")
        if not isinstance(payload_type, str) or not payload_type.isascii() or not payload_type:
            raise ValueError("payloadType must be a non-empty ASCII string")
        payload = b64decode_strict(data.get("payload"), "payload")
        sigs_raw = data.get("signatures")
        if not isinstance(sigs_raw, list):
            raise ValueError("signatures must be a list")
        if len(sigs_raw) > MAX_SIGNATURES:
            raise ValueError(f"{len(sigs_raw)} signatures; at most {MAX_SIGNATURES} are accepted")
        signatures = []
        for i, item in enumerate(sigs_raw):
            if not isinstance(item, Mapping):
                raise ValueError(f"signatures[{i}] is not an object")
            if set(item) - {"keyid", "sig"}:
                raise ValueError(f"signatures[{i}]: unknown fields {', '.join(sorted(set(item) - {'keyid', 'sig'}))}")
            keyid = item.get("keyid", "")
            if not isinstance(keyid, str):
                raise ValueError(f"signatures[{i}].keyid must be a string")
            signature = Signature(keyid=keyid, sig=b64decode_strict(item.get("sig"), f"signatures[{i}].sig"))
            if signature not in signatures:  # an exact copy adds nothing (and is not written back)
                signatures.append(signature)
        return cls(payload_type=payload_type, payload=payload, signatures=signatures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "payloadType": self.payload_type,
            "payload": b64encode(self.payload),
            "signatures": [s.to_dict() for s in self.signatures],
        }

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2) + "\n").encode("ascii")

    def _file_bytes(self) -> bytes:
        """``to_json()`` without the pure-Python indenting encoder (byte-identical, tested):
        the verifier's byte-stability check runs once per attestation."""
        head = '{\n  "payloadType": %s,\n  "payload": "%s",\n  "signatures": ' % (
            _json_str(self.payload_type), b64encode(self.payload))
        if not self.signatures:
            return (head + "[]\n}\n").encode("ascii")
        sigs = ",\n".join('    {\n      "keyid": %s,\n      "sig": "%s"\n    }' % (_json_str(s.keyid), b64encode(s.sig))
                          for s in self.signatures)
        return (head + "[\n" + sigs + "\n  ]\n}\n").encode("ascii")

    @classmethod
    def from_file_fast(cls, data: bytes) -> Envelope | None:
        """The envelope in a bundle file when the file is byte-for-byte what mlspec writes
        for it (``to_json()``), else None; the caller then takes the strict path
        (``parse_json`` + ``from_dict`` + the byte comparison), which explains what is wrong.

        The plain C parser is enough here: bytes equal to ``json.dumps`` of an envelope hold
        no duplicate key, NaN, number, deep nesting or invalid UTF-8, so ``parse_json`` would
        give the same object; the one thing ``to_json`` can write that ``parse_json`` refuses,
        a lone surrogate in a keyid (as an ``\\udXXX`` escape), is refused here too.
        """
        try:
            env = cls.from_dict(json.loads(data))
        except (ValueError, TypeError, RecursionError):
            return None
        if env._file_bytes() != data:
            return None
        for s in env.signatures:
            if not s.keyid.isascii():
                try:
                    s.keyid.encode("utf-8")
                except UnicodeEncodeError:
                    return None
        return env

    def sign(self, signer: Signer) -> None:
        self.signatures.append(Signature(keyid=signer.keyid, sig=signer.sign(pae(self.payload_type, self.payload))))

    def verified_keyids(self, trusted: Iterable[PublicKey]) -> set[str]:
        """Keyids of distinct trusted keys with a valid signature here.

        Every signature is tried against every trusted key: the keyid field is
        only a hint, so it can neither grant trust nor hide a valid signature.
        One key signing twice still counts once.
        """
        return self.check_signatures(trusted)[0]

    def check_signatures(self, trusted: Iterable[PublicKey]) -> tuple[set[str], list[str]]:
        """Verified trusted keyids, plus what a strict reader should refuse about the signatures.

        Problems: a signature by a trusted key whose keyid hint is not exactly that key's
        keyid (a swapped or blanked hint), and a hint naming a trusted key that does not
        verify the signature (moved here from another envelope). mlspec never writes
        either, so the deploy gate refuses them: hints can only ever cause a refusal,
        never trust. Signatures with an unknown hint that verify under no trusted key
        are ignored (foreign co-signers).
        """
        message = pae(self.payload_type, self.payload)
        keys = list(trusted)
        known = {k.keyid for k in keys}
        found: set[str] = set()
        problems: list[str] = []
        for index, signature in enumerate(self.signatures):
            # Try the hinted key first (fast path), then every other trusted key.
            for key in sorted(keys, key=lambda k: k.keyid != signature.keyid):
                if key.verify(signature.sig, message):
                    if signature.keyid != key.keyid:
                        problems.append(f"signature {index} names keyid {signature.keyid[:16] or '(none)'} but "
                                        f"was made by keyid {key.keyid[:16]}")
                    found.add(key.keyid)
                    break
            else:
                if signature.keyid in known:
                    problems.append(f"signature {index} names trusted keyid {signature.keyid[:16]} but does not "
                                    "verify under it")
        return found, problems
