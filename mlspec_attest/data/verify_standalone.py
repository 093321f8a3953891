#!/usr/bin/env python3
"""Re-verify an mlspec bundle without mlspec-attest (see docs/audit.md).

Uses only the Python standard library, ``cryptography`` and ``rfc8785``, so an
auditor can read all of it in a few minutes and trust none of our code:

    python verify_standalone.py BUNDLE --key owner.pub --key pipeline.pub
    python verify_standalone.py BUNDLE --key pipeline.pub --stage-key objectives=owner.pub

It checks, for every ``attestations/*.dsse.json``:

1. the envelope is JSON with payloadType ``application/vnd.in-toto+json``;
2. at least one signature verifies, over PAE(payloadType, payload), with a key you
   gave (``--stage-key STAGE=PEM`` restricts a stage to the keys named for it);
3. the payload bytes equal the RFC 8785 canonical form of the JSON they hold;
4. it is an in-toto Statement v1 with an mlspec predicate type and a chain link;

and for the chain: sequences 0..n each exactly once, sequence 0 has null links,
every later ``genesis`` is sha256(payload of sequence 0) and every ``previous`` is
sha256(payload of the sequence before). It does NOT apply the rest of a trust
policy (thresholds, required stages, objectives): that is ``mlspec verify``.

Numbers are read as RFC 8785 (and mlspec) mean them: a digit string beyond
±(2^53-1) is accepted only when it is exactly how RFC 8785 writes a double (an
integral double from 2^53 up to 1e21, e.g. ``train_flops: 3.2e18`` is written
``3200000000000000000``) and is then read as that double; any other such integer
is refused, since parsers disagree on its value. A malformed payload is a FAIL
line, never a traceback.

This file ships inside the mlspec-attest wheel (``mlspec_attest/data/``);
``mlspec standalone-script --out FILE`` writes a copy. It imports nothing from
mlspec: read it, then run it with any Python that has ``cryptography`` and ``rfc8785``.

Exit status: 0 every check passed, 1 a check failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_PREFIX = "https://mlspec.org/attestation/"
MAX_SAFE_INTEGER = 2**53 - 1


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding: the only bytes a signature covers."""
    t = payload_type.encode("ascii")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def load_key(path: str):
    """An SPKI PEM public key (Ed25519 or ECDSA P-256); keyid = sha256 of its DER SPKI."""
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest(), key


def signature_ok(key, sig: bytes, message: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, message)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            try:
                key.verify(sig, message, ec.ECDSA(hashes.SHA256()))  # DER, as mlspec writes
            except (InvalidSignature, ValueError):
                if len(sig) != 64:
                    raise
                # raw r||s, as in the DSSE spec's own test vector
                raw = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
                key.verify(raw, message, ec.ECDSA(hashes.SHA256()))
        else:
            return False
        return True
    except (InvalidSignature, ValueError):
        return False


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate JSON key")
    return dict(pairs)


def b64decode(text: str) -> bytes:
    """Padded base64 in either DSSE alphabet (standard, or URL-safe), nothing lenient."""
    if not isinstance(text, str):
        raise ValueError("base64 value is not a string")
    alt = b"-_" if ("-" in text or "_" in text) else None
    raw = base64.b64decode(text, altchars=alt, validate=True)
    if base64.b64encode(raw, altchars=alt).decode("ascii") != text:
        raise ValueError("non-canonical base64")
    return raw


def jcs_int(text: str):
    """An integer, or the double RFC 8785 writes as these digits (2^53 <= |x| < 1e21); else refuse.

    json.loads would read 3200000000000000000 as a Python int, which rfc8785 then refuses
    (IntegerDomainError): it is a double that JCS writes without an exponent.
    """
    value = int(text) if len(text) <= 23 else MAX_SAFE_INTEGER * 10**9
    if abs(value) <= MAX_SAFE_INTEGER:
        return value
    if abs(value) < 10**21 and rfc8785.dumps(float(value)) == text.encode("ascii"):
        return float(value)
    raise ValueError(f"integer {text[:24]} is outside the interoperable range +-(2^53-1)")


def no_constant(text: str):
    raise ValueError(f"{text} is not JSON")


def finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:24]} overflows a double")
    return value


def check_file(path: Path, keys: dict, stage_keys: dict) -> tuple[dict | None, list[str]]:
    """Returns (facts, problems) for one envelope file."""
    problems: list[str] = []
    try:
        env = json.loads(path.read_bytes(), object_pairs_hook=no_duplicates)
        payload_type = env["payloadType"]
        payload = b64decode(env["payload"])
        sigs = [b64decode(s["sig"]) for s in env["signatures"]]
    except (ValueError, KeyError, TypeError) as exc:
        return None, [f"not a DSSE envelope: {exc}"]
    if payload_type != PAYLOAD_TYPE:
        return None, [f"payloadType {payload_type!r} is not {PAYLOAD_TYPE}"]
    try:
        statement = json.loads(payload, object_pairs_hook=no_duplicates, parse_int=jcs_int,
                               parse_float=finite_float, parse_constant=no_constant)
    except (ValueError, RecursionError) as exc:
        return None, [f"payload is not JSON: {exc}"]
    try:
        canonical = rfc8785.dumps(statement)
    except (rfc8785.CanonicalizationError, ValueError, TypeError, RecursionError) as exc:
        return None, [f"payload cannot be canonicalised with RFC 8785: {exc}"]
    if canonical != payload:
        problems.append("payload is not RFC 8785 canonical JSON")
    ptype = statement.get("predicateType", "") if isinstance(statement, dict) else ""
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE or \
            not ptype.startswith(PREDICATE_PREFIX):
        return None, problems + ["not an in-toto Statement v1 with an mlspec predicate type"]
    stage = ptype[len(PREDICATE_PREFIX):].split("/")[0]
    chain = (statement.get("predicate") or {}).get("chain") or {}
    seq = chain.get("sequence")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return None, problems + ["predicate.chain.sequence missing"]
    allowed = stage_keys.get(stage, keys)
    message = pae(payload_type, payload)
    signers = sorted({kid for kid, key in allowed.items() for sig in sigs if signature_ok(key, sig, message)})
    if not signers:
        problems.append(f"no valid signature by a key allowed for stage {stage}")
    facts = {"file": path.name, "stage": stage, "sequence": seq, "genesis": chain.get("genesis"),
             "previous": chain.get("previous"), "payload_sha256": hashlib.sha256(payload).hexdigest(),
             "signers": [s[:12] for s in signers]}
    return facts, problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Re-verify an mlspec bundle with cryptography and rfc8785 only.")
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--key", action="append", default=[], help="trusted public key (SPKI PEM); repeat")
    ap.add_argument("--stage-key", action="append", default=[], metavar="STAGE=PEM",
                    help="only this key (repeat for several) may sign STAGE")
    args = ap.parse_args(argv)
    try:
        keys = dict(load_key(k) for k in args.key)
        stage_keys: dict[str, dict] = {}
        for spec in args.stage_key:
            stage, _, pem = spec.partition("=")
            kid, key = load_key(pem)
            stage_keys.setdefault(stage, {})[kid] = key
    except (OSError, ValueError) as exc:
        print(f"error: cannot load key: {exc}", file=sys.stderr)
        return 2
    if not keys and not stage_keys:
        print("error: give at least one --key", file=sys.stderr)
        return 2
    folder = args.bundle / "attestations"
    if not folder.is_dir():
        print(f"error: {folder} not found", file=sys.stderr)
        return 2
    failures, chain = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if not path.name.endswith(".dsse.json"):
            failures.append(f"{path.name}: not checked (only DSSE files; Sigstore bundles need sigstore-python)")
            continue
        facts, problems = check_file(path, keys, stage_keys)
        failures += [f"{path.name}: {p}" for p in problems]
        if facts:
            chain.append(facts)
            mark = "ok " if not problems else "BAD"
            print(f"{mark} {facts['sequence']:>4} {facts['stage']:<10} {path.name:<28} "
                  f"payload sha256 {facts['payload_sha256'][:16]}  signed by {', '.join(facts['signers']) or '-'}")
    chain.sort(key=lambda f: f["sequence"])
    sequences = [f["sequence"] for f in chain]
    if sequences != list(range(len(chain))):
        failures.append(f"sequences are {sequences}, expected 0..{len(chain) - 1} each once")
    if chain and chain[0]["sequence"] == 0:
        genesis = chain[0]["payload_sha256"]
        if chain[0]["genesis"] is not None or chain[0]["previous"] is not None:
            failures.append("sequence 0 must have null genesis and previous")
        for prev, cur in zip(chain, chain[1:]):
            if cur["genesis"] != genesis:
                failures.append(f"sequence {cur['sequence']}: genesis is not sha256 of sequence 0's payload")
            if cur["sequence"] == prev["sequence"] + 1 and cur["previous"] != prev["payload_sha256"]:
                failures.append(f"sequence {cur['sequence']}: previous is not sha256 of sequence "
                                f"{prev['sequence']}'s payload")
    for f in failures:
        print(f"FAIL {f}")
    verdict = "PASS" if chain and not failures else "FAIL"
    print(f"{verdict}: {len(chain)} attestations, {len(failures)} problems")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
