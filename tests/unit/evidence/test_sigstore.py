"""Sigstore evidence: offline verification of real upstream bundles (../shared/vectors).

Expectations come from vectors/README.md sections 4 and 5; everything runs offline.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlspec_attest.cli.evidence import evidence
from mlspec_attest.errors import InputError
from mlspec_attest.evidence.sigstore import (
    EvidenceVerificationError,
    IdentityRule,
    load_trust_config,
    pae,
    sign_statement_keyless,
    verify_evidence,
    verify_keyless_statement,
)

DSSE_SAN = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
GHA_ISSUER = "https://token.actions.githubusercontent.com"
A_TXT_SHA = "a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf"
V3_SAN = "william@yossarian.net"
V3_ISSUER = "https://github.com/login/oauth"
MODEL_SUBJECT = "sha256:92745110b1ab4368471cbe31664e10174e954b113a3df333db860317b2c6dec4"


@pytest.fixture(scope="module")
def sg(vectors: Path) -> Path:
    return vectors / "sigstore"


@pytest.fixture(scope="module")
def ms(vectors: Path) -> Path:
    return vectors / "model-signing"


@pytest.fixture(scope="module")
def staging_root(sg: Path):
    return load_trust_config(sg / "trusted_root.staging.json")


def dsse_rule(**kw: str) -> IdentityRule:
    return IdentityRule(**{"san": DSSE_SAN, "issuer": GHA_ISSUER, **kw})


V3_RULE = IdentityRule(san=V3_SAN, issuer=V3_ISSUER)


# --------------------------------------------------------------------------- keyless DSSE (Rekor v2 + TSA)


def test_dsse_bundle_verifies_offline_and_reports_signer(sg: Path, staging_root) -> None:
    r = verify_evidence(
        sg / "dsse-staging-rekor-v2/bundle.sigstore.json", trust_config=staging_root,
        artifact=sg / "dsse-staging-rekor-v2/a.txt", identities=[dsse_rule()],
    )
    assert r.kind == "dsse"
    assert r.signer.method == "keyless"
    assert r.signer.san == DSSE_SAN and r.signer.issuer == GHA_ISSUER
    assert r.signer.claims["workflow_repository"] == "sigstore-conformance/extremely-dangerous-public-oidc-beacon"
    assert r.predicate_type == "https://slsa.dev/provenance/v1"
    assert r.matched_subject == {"name": "a.txt", "digest": {"sha256": A_TXT_SHA}}
    assert r.payload is not None and r.payload.startswith(b'{"_type":"https://in-toto.io/Statement/v1"')
    assert r.integrated_time is None  # Rekor v2: no integrated time, the TSA supplies it
    assert [t.year for t in r.timestamps] == [2026]
    assert "Rekor v2" in r.tlog


def test_dsse_bundle_accepts_digest_instead_of_file(sg: Path, staging_root) -> None:
    r = verify_evidence(
        sg / "dsse-staging-rekor-v2/bundle.sigstore.json", trust_config=staging_root,
        digest=f"sha256:{A_TXT_SHA.upper()}", identities=[dsse_rule()],
    )
    assert r.matched_subject is not None


@pytest.mark.parametrize(
    "rule, fragment",
    [
        (IdentityRule(san="https://github.com/someone/else/.github/workflows/x.yml@refs/heads/main", issuer=GHA_ISSUER),
         "SANs do not match"),
        (IdentityRule(san=DSSE_SAN, issuer="https://accounts.google.com"), "OIDCIssuer does not match"),
        (dsse_rule(workflow_repository="evil/fork"), "GitHubWorkflowRepository does not match"),
        (dsse_rule(workflow_ref="refs/heads/dev"), "GitHubWorkflowRef does not match"),
    ],
)
def test_dsse_bundle_wrong_identity_fails(sg: Path, staging_root, rule: IdentityRule, fragment: str) -> None:
    with pytest.raises(EvidenceVerificationError, match=fragment):
        verify_evidence(
            sg / "dsse-staging-rekor-v2/bundle.sigstore.json", trust_config=staging_root,
            artifact=sg / "dsse-staging-rekor-v2/a.txt", identities=[rule],
        )


def test_dsse_bundle_wrong_artifact_fails(sg: Path, staging_root) -> None:
    with pytest.raises(EvidenceVerificationError, match="matches no subject"):
        verify_evidence(
            sg / "dsse-staging-rekor-v2/bundle.sigstore.json", trust_config=staging_root,
            artifact=sg / "hashedrekord-staging-v3/bundle_v3.txt", identities=[dsse_rule()],
        )


def test_dsse_bundle_production_root_fails(sg: Path) -> None:
    with pytest.raises(EvidenceVerificationError, match="not enough sources of verified time"):
        verify_evidence(
            sg / "dsse-staging-rekor-v2/bundle.sigstore.json",
            trust_config=sg / "trusted_root.production.json",
            artifact=sg / "dsse-staging-rekor-v2/a.txt", identities=[dsse_rule()],
        )


def test_dsse_bundle_tampered_payload_fails(sg: Path, staging_root, tmp_path: Path) -> None:
    doc = json.loads((sg / "dsse-staging-rekor-v2/bundle.sigstore.json").read_bytes())
    payload = bytearray(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    payload[-3] ^= 0x01
    doc["dsseEnvelope"]["payload"] = base64.b64encode(bytes(payload)).decode()
    bad = tmp_path / "tampered.sigstore.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(EvidenceVerificationError):
        verify_evidence(bad, trust_config=staging_root, digest=f"sha256:{A_TXT_SHA}", identities=[dsse_rule()])


# --------------------------------------------------------------------------- keyless message signature (Rekor v1)


def test_hashedrekord_bundle_verifies(sg: Path, staging_root) -> None:
    r = verify_evidence(
        sg / "hashedrekord-staging-v3/bundle_v3.txt.sigstore", trust_config=staging_root,
        artifact=sg / "hashedrekord-staging-v3/bundle_v3.txt", identities=[V3_RULE],
    )
    assert r.kind == "message_signature"
    assert (r.signer.san, r.signer.issuer) == (V3_SAN, V3_ISSUER)
    assert r.payload is None and r.subjects == []
    assert r.integrated_time is not None and r.integrated_time.date().isoformat() == "2024-04-02"
    assert "inclusion promise" in r.tlog


@pytest.mark.parametrize(
    "root, artifact, rule",
    [
        ("trusted_root.production.json", "hashedrekord-staging-v3/bundle_v3.txt", V3_RULE),
        ("trusted_root.staging.json", "hashedrekord-staging-v3/bundle_v3.txt",
         IdentityRule(san="someone@example.com", issuer=V3_ISSUER)),
        ("trusted_root.staging.json", "hashedrekord-staging-v3/bundle_v3.txt",
         IdentityRule(san=V3_SAN, issuer="https://accounts.google.com")),
        ("trusted_root.staging.json", "dsse-staging-rekor-v2/a.txt", V3_RULE),
    ],
    ids=["production-root", "other-identity", "other-issuer", "other-artifact"],
)
def test_hashedrekord_bundle_negative(sg: Path, root: str, artifact: str, rule: IdentityRule) -> None:
    with pytest.raises(EvidenceVerificationError):
        verify_evidence(
            sg / "hashedrekord-staging-v3/bundle_v3.txt.sigstore", trust_config=sg / root,
            artifact=sg / artifact, identities=[rule],
        )


# --------------------------------------------------------------------------- identity policies


def test_san_pattern_policy_matches_fully(sg: Path, staging_root) -> None:
    bundle = sg / "dsse-staging-rekor-v2/bundle.sigstore.json"
    ok = IdentityRule(san_pattern=r"https://github\.com/sigstore-conformance/.+@refs/heads/main", issuer=GHA_ISSUER)
    r = verify_evidence(bundle, trust_config=staging_root, digest=f"sha256:{A_TXT_SHA}", identities=[ok])
    assert r.signer.san == DSSE_SAN
    # a prefix is not enough: the whole SAN must match
    prefix = IdentityRule(san_pattern=r"https://github\.com/sigstore-conformance/", issuer=GHA_ISSUER)
    with pytest.raises(EvidenceVerificationError, match="do not fully match"):
        verify_evidence(bundle, trust_config=staging_root, digest=f"sha256:{A_TXT_SHA}", identities=[prefix])
    wrong_iss = IdentityRule(san_pattern=r".*", issuer="https://accounts.google.com")
    with pytest.raises(EvidenceVerificationError, match="issuer"):
        verify_evidence(bundle, trust_config=staging_root, digest=f"sha256:{A_TXT_SHA}", identities=[wrong_iss])


def test_any_of_identities_and_explained_failure(sg: Path, staging_root) -> None:
    bundle = sg / "dsse-staging-rekor-v2/bundle.sigstore.json"
    other = IdentityRule(san="someone@example.com", issuer=V3_ISSUER)
    r = verify_evidence(bundle, trust_config=staging_root, digest=f"sha256:{A_TXT_SHA}", identities=[other, dsse_rule()])
    assert r.signer.san == DSSE_SAN
    with pytest.raises(EvidenceVerificationError, match="matches no allowed identity: someone@example.com"):
        verify_evidence(bundle, trust_config=staging_root, digest=f"sha256:{A_TXT_SHA}",
                      identities=[other, IdentityRule(san="x@example.com", issuer=GHA_ISSUER)])


def test_identity_rule_dict_round_trip_and_validation() -> None:
    d = {"san_pattern": "https://github.com/acme/.*", "issuer": GHA_ISSUER, "workflow_repository": "acme/ml"}
    rule = IdentityRule.from_dict(d)
    assert rule.to_dict() == d
    assert IdentityRule.from_dict(rule.to_dict()) == rule
    with pytest.raises(InputError, match="unknown field"):
        IdentityRule.from_dict({"san": "a@b", "issuer": GHA_ISSUER, "workflow_repo": "typo"})
    with pytest.raises(InputError, match="issuer"):
        IdentityRule.from_dict({"san": "a@b"})
    with pytest.raises(InputError, match="exactly one"):
        IdentityRule.from_dict({"san": "a@b", "san_pattern": "a.*", "issuer": GHA_ISSUER})
    with pytest.raises(InputError, match="invalid san_pattern"):
        IdentityRule.from_dict({"san_pattern": "(", "issuer": GHA_ISSUER})
    with pytest.raises(InputError, match="must be a string"):
        IdentityRule.from_dict({"san": 3, "issuer": GHA_ISSUER})


# --------------------------------------------------------------------------- trust config forms


def _client_trust_config(sg: Path, tmp_path: Path, instance: str) -> Path:
    """Same construction as vectors/README "How checked" (the jq one-liner)."""
    doc = {
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": json.loads((sg / f"trusted_root.{instance}.json").read_bytes()),
        "signingConfig": json.loads((sg / f"signing_config.{instance}.v0.2.json").read_bytes()),
    }
    out = tmp_path / f"tc.{instance}.json"
    out.write_text(json.dumps(doc))
    return out


def test_client_trust_config_accepted(sg: Path, tmp_path: Path) -> None:
    tc = _client_trust_config(sg, tmp_path, "staging")
    r = verify_evidence(
        sg / "hashedrekord-staging-v3/bundle_v3.txt.sigstore", trust_config=tc,
        artifact=sg / "hashedrekord-staging-v3/bundle_v3.txt", identities=[V3_RULE],
    )
    assert r.signer.san == V3_SAN
    with pytest.raises(EvidenceVerificationError):
        verify_evidence(
            sg / "dsse-staging-rekor-v2/bundle.sigstore.json", trust_config=_client_trust_config(sg, tmp_path, "production"),
            artifact=sg / "dsse-staging-rekor-v2/a.txt", identities=[dsse_rule()],
        )


def test_bad_trust_config_is_input_error(sg: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a Sigstore trusted root"):
        load_trust_config(sg / "dsse-staging-rekor-v2/bundle.sigstore.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1", "tlogs": 3}')
    with pytest.raises(InputError, match=str(broken)):
        load_trust_config(broken)
    with pytest.raises(InputError, match="not found"):
        load_trust_config(tmp_path / "missing.json")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{nope")
    with pytest.raises(InputError, match="invalid JSON"):
        load_trust_config(garbage)


# --------------------------------------------------------------------------- key-signed bundles (model signing)


def test_model_signature_verifies_with_p384_key(ms: Path) -> None:
    r = verify_evidence(
        ms / "v1.1.0-elliptic-key/model.sig", trust_config=None, digest=MODEL_SUBJECT,
        key=ms / "keys/signing-key-pub.pem",
    )
    assert r.kind == "dsse" and r.signer.method == "key"
    assert r.signer.keyid and r.signer.keyid.startswith("c1e49d63")
    assert r.predicate_type == "https://model_signing/signature/v1.0"
    assert r.matched_subject is not None and r.matched_subject["name"] == "v1.1.0-elliptic-key"
    assert "no transparency log entry" in r.tlog
    assert r.timestamps == [] and r.integrated_time is None


def test_model_signature_wrong_digest_fails(ms: Path) -> None:
    # One file of the model is not the model: its name-by-name comparison says what differs.
    with pytest.raises(EvidenceVerificationError, match="not the signed model: signed but absent: signme-1"):
        verify_evidence(ms / "v1.1.0-elliptic-key/model.sig", trust_config=None,
                      artifact=ms / "v1.1.0-elliptic-key/signme-1", key=ms / "keys/signing-key-pub.pem")


def _mutated_model_sig(ms: Path, tmp_path: Path, *, payload: bool = False, sig: bool = False,
                       hint: str | None = None) -> Path:
    doc = json.loads((ms / "v1.1.0-elliptic-key/model.sig").read_bytes())
    env = doc["dsseEnvelope"]
    if payload:
        raw = bytearray(base64.b64decode(env["payload"]))
        raw[raw.index(b"signme-2")] ^= 0x01  # one byte of the signed payload
        env["payload"] = base64.b64encode(bytes(raw)).decode()
    if sig:
        raw = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
        raw[-1] ^= 0x01
        env["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    if hint is not None:
        doc["verificationMaterial"]["publicKey"]["hint"] = hint
    out = tmp_path / "model.sig"
    out.write_text(json.dumps(doc))
    return out


@pytest.mark.parametrize("what", ["payload", "sig"])
def test_model_signature_one_byte_changed_fails(ms: Path, tmp_path: Path, what: str) -> None:
    bad = _mutated_model_sig(ms, tmp_path, **{what: True})
    with pytest.raises(EvidenceVerificationError, match="signature does not verify"):
        verify_evidence(bad, trust_config=None, digest=MODEL_SUBJECT, key=ms / "keys/signing-key-pub.pem")


def test_model_signature_other_key_fails(ms: Path, vectors: Path, tmp_path: Path) -> None:
    other = vectors / "keys/securesystemslib/ecdsa_public.pem"
    with pytest.raises(EvidenceVerificationError, match="hint"):
        verify_evidence(ms / "v1.1.0-elliptic-key/model.sig", trust_config=None, digest=MODEL_SUBJECT, key=other)
    # the hint is unauthenticated: pointed at another P-384 key, the signature itself must still reject it
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    k = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = tmp_path / "other-p384.pem"
    pem.write_bytes(k.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    rehinted = _mutated_model_sig(ms, tmp_path, hint=hashlib.sha256(pem.read_bytes()).hexdigest())
    with pytest.raises(EvidenceVerificationError, match="signature does not verify"):
        verify_evidence(rehinted, trust_config=None, digest=MODEL_SUBJECT, key=pem)


@pytest.mark.parametrize("alg", ["ed25519", "p256"])
def test_key_bundle_ed25519_and_p256(tmp_path: Path, alg: str) -> None:
    """Build a key-hint bundle the way model-signing does, with our supported key types."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    priv = ed25519.Ed25519PrivateKey.generate() if alg == "ed25519" else ec.generate_private_key(ec.SECP256R1())
    pub = priv.public_key()
    digest = hashlib.sha256(b"model bytes").hexdigest()
    payload = json.dumps({"_type": "https://in-toto.io/Statement/v1",
                          "subject": [{"name": "m", "digest": {"sha256": digest}}],
                          "predicateType": "https://mlspec.org/attestation/package/v1", "predicate": {}}).encode()
    msg = pae("application/vnd.in-toto+json", payload)
    sig = priv.sign(msg) if alg == "ed25519" else priv.sign(msg, ec.ECDSA(hashes.SHA256()))
    pem = pub.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": hashlib.sha256(pem).hexdigest()}, "tlogEntries": []},
        "dsseEnvelope": {"payload": base64.b64encode(payload).decode(), "payloadType": "application/vnd.in-toto+json",
                         "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}]},
    }
    (tmp_path / "b.json").write_text(json.dumps(bundle))
    (tmp_path / "k.pem").write_bytes(pem)
    r = verify_evidence(tmp_path / "b.json", trust_config=None, digest=f"sha256:{digest}", key=tmp_path / "k.pem")
    assert r.payload == payload


def test_mode_mismatch_is_input_error(sg: Path, ms: Path, staging_root) -> None:
    with pytest.raises(InputError, match="--key"):
        verify_evidence(ms / "v1.1.0-elliptic-key/model.sig", trust_config=staging_root, digest=MODEL_SUBJECT,
                      identities=[dsse_rule()])
    with pytest.raises(InputError, match="certificate"):
        verify_evidence(sg / "dsse-staging-rekor-v2/bundle.sigstore.json", trust_config=staging_root,
                      digest=f"sha256:{A_TXT_SHA}", key=ms / "keys/signing-key-pub.pem")
    with pytest.raises(InputError, match="sha256:"):
        verify_evidence(sg / "dsse-staging-rekor-v2/bundle.sigstore.json", trust_config=staging_root,
                      digest="md5:abc", identities=[dsse_rule()])


# --------------------------------------------------------------------------- chain-verifier entry point


def test_verify_keyless_statement_returns_exact_payload(sg: Path, staging_root) -> None:
    raw = (sg / "dsse-staging-rekor-v2/bundle.sigstore.json").read_bytes()
    payload, signer = verify_keyless_statement(raw, trust_config=staging_root, identities=[dsse_rule()])
    assert payload == base64.b64decode(json.loads(raw)["dsseEnvelope"]["payload"])
    assert signer.san == DSSE_SAN
    assert signer.signed_at is not None and signer.signed_at.tzinfo is not None  # the verified time, for revocation
    with pytest.raises(EvidenceVerificationError):
        verify_keyless_statement(raw, trust_config=staging_root, identities=[V3_RULE])
    with pytest.raises(EvidenceVerificationError, match="no DSSE envelope"):
        verify_keyless_statement((sg / "hashedrekord-staging-v3/bundle_v3.txt.sigstore").read_bytes(),
                                 trust_config=staging_root, identities=[V3_RULE])
    with pytest.raises(InputError):
        verify_keyless_statement(b"[]", trust_config=staging_root, identities=[V3_RULE])


# --------------------------------------------------------------------------- CLI


def _cli(*args: str | Path) -> tuple[int, str, str]:
    res = CliRunner().invoke(evidence, ["verify", *map(str, args)])
    return res.exit_code, res.stdout, res.stderr


def test_cli_exit_codes(sg: Path, ms: Path, tmp_path: Path) -> None:
    bundle = sg / "dsse-staging-rekor-v2/bundle.sigstore.json"
    staging = sg / "trusted_root.staging.json"
    code, out, _ = _cli(bundle, "--artifact", sg / "dsse-staging-rekor-v2/a.txt", "--identity", DSSE_SAN,
                        "--issuer", GHA_ISSUER, "--trust-config", staging)
    assert code == 0 and out.startswith("OK:") and DSSE_SAN in out and "a.txt" in out
    code, out, _ = _cli(bundle, "--artifact", sg / "dsse-staging-rekor-v2/a.txt", "--identity", DSSE_SAN,
                        "--issuer", "https://accounts.google.com", "--trust-config", staging)
    assert code == 1 and out.startswith("FAIL:")
    code, out, _ = _cli(bundle, "--artifact", sg / "dsse-staging-rekor-v2/a.txt", "--identity", DSSE_SAN,
                        "--issuer", GHA_ISSUER, "--trust-config", sg / "trusted_root.production.json", "--format", "json")
    assert code == 1 and json.loads(out)["verdict"] == "fail"
    code, out, err = _cli(bundle, "--artifact", tmp_path / "missing.txt", "--identity", DSSE_SAN,
                          "--issuer", GHA_ISSUER, "--trust-config", staging)
    assert code == 2 and err.startswith("error:") and "Traceback" not in err + out
    code, _, err = _cli(bundle, "--digest", f"sha256:{A_TXT_SHA}", "--identity", DSSE_SAN, "--trust-config", staging)
    assert code == 2 and "--issuer" in err
    code, _, err = _cli(bundle, "--digest", f"sha256:{A_TXT_SHA}", "--identity", DSSE_SAN, "--issuer", GHA_ISSUER)
    assert code == 2 and "--trust-config" in err
    code, _, err = _cli(bundle, "--digest", f"sha256:{A_TXT_SHA}", "--artifact", sg / "dsse-staging-rekor-v2/a.txt",
                        "--identity", DSSE_SAN, "--issuer", GHA_ISSUER, "--trust-config", staging)
    assert code == 2 and "exactly one" in err


def test_cli_key_mode_and_json(ms: Path, vectors: Path) -> None:
    sig = ms / "v1.1.0-elliptic-key/model.sig"
    code, out, _ = _cli(sig, "--digest", MODEL_SUBJECT, "--key", ms / "keys/signing-key-pub.pem", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["verdict"] == "pass" and doc["signer"]["method"] == "key"
    assert doc["predicate_type"] == "https://model_signing/signature/v1.0"
    code, out, _ = _cli(sig, "--digest", MODEL_SUBJECT, "--key", vectors / "keys/securesystemslib/ecdsa_public.pem")
    assert code == 1
    code, _, err = _cli(sig, "--digest", MODEL_SUBJECT, "--key", ms / "keys/signing-key-pub.pem", "--issuer", GHA_ISSUER)
    assert code == 2


def test_cli_module_does_not_import_sigstore() -> None:
    code = ("import sys, mlspec_attest.cli.evidence, mlspec_attest.evidence.sigstore; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('sigstore', 'sigstore_models')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- keyless signing


def test_keyless_signing_without_token_is_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sigstore.oidc

    monkeypatch.setattr(sigstore.oidc, "detect_credential", lambda *a, **k: None)
    stmt = json.dumps({"_type": "https://in-toto.io/Statement/v1",
                       "subject": [{"name": "a", "digest": {"sha256": A_TXT_SHA}}],
                       "predicateType": "https://mlspec.org/attestation/train/v1", "predicate": {}}).encode()
    with pytest.raises(InputError, match="no OIDC identity token"):
        sign_statement_keyless(stmt, identity_token=None, staging=True)
    with pytest.raises(InputError, match="unusable identity token"):
        sign_statement_keyless(stmt, identity_token="not-a-jwt", staging=True)
    with pytest.raises(InputError, match="not an in-toto Statement"):
        sign_statement_keyless(b"{}", identity_token="not-a-jwt", staging=True)


def _reachable(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


def test_keyless_signing_round_trip(sg: Path) -> None:
    token = os.environ.get("SIGSTORE_ID_TOKEN")
    if not token:
        pytest.skip("keyless signing needs an OIDC token in SIGSTORE_ID_TOKEN (and network)")
    staging = os.environ.get("SIGSTORE_STAGING", "1") != "0"
    host = "fulcio.sigstage.dev" if staging else "fulcio.sigstore.dev"
    if not _reachable(host):
        pytest.skip(f"keyless signing needs network access to {host}")
    from sigstore.oidc import IdentityToken

    ident = IdentityToken(token)
    stmt = json.dumps({"_type": "https://in-toto.io/Statement/v1",
                       "subject": [{"name": "a.txt", "digest": {"sha256": A_TXT_SHA}}],
                       "predicateType": "https://mlspec.org/attestation/train/v1", "predicate": {}},
                      separators=(",", ":")).encode()
    bundle = sign_statement_keyless(stmt, identity_token=token, staging=staging)
    root = sg / ("trusted_root.staging.json" if staging else "trusted_root.production.json")
    payload, signer = verify_keyless_statement(
        bundle, trust_config=root,
        identities=[IdentityRule(san=ident.identity, issuer=ident.federated_issuer)],
    )
    assert payload == stmt and signer.san == ident.identity
