"""Keys that never leave a real SoftHSM2 token: a 13-stage chain signed on the token, verified with
the exported key (by mlspec and by securesystemslib), and the ways a token key is misused or misnamed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import Project, build_lifecycle
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.signer import CryptoSigner, Signature, SSlibKey
from softhsm import SoftHSM, softhsm_missing

from mlspec_attest.attest.attestor import Attestor
from mlspec_attest.errors import InputError
from mlspec_attest.keys import PublicKey, Signer, keyid_of, load_signer
from mlspec_attest.model.envelope import Envelope, pae
from mlspec_attest.signers import Pkcs11Signer, generate_on_token, redact_uri, token_public_key
from mlspec_attest.verify import verify_bundle


# One token for the whole process: libsofthsm2 reads SOFTHSM2_CONF once, when it is loaded.
@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHSM]:
    reason = softhsm_missing()
    if reason:
        pytest.skip(reason)
    token = SoftHSM.create(tmp_path_factory.mktemp("softhsm"))
    saved = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(token.conf)
    for obj, key_type in (("p256", "ecdsa-p256"), ("ed", "ed25519"), ("other", "ecdsa-p256")):
        generate_on_token(token.uri(obj, pin=True), key_type)
    yield token
    if saved is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = saved


@pytest.fixture
def pin_env(softhsm: SoftHSM, monkeypatch: pytest.MonkeyPatch) -> SoftHSM:
    monkeypatch.setenv("MLSPEC_PKCS11_PIN", softhsm.pin)
    return softhsm



def _sign_chain_on_token(project: Project, uri: str, monkeypatch: pytest.MonkeyPatch) -> PublicKey:
    """Put the token key's public half where the policy names the pipeline key; sign all 13 stages."""
    public = PublicKey.from_crypto(token_public_key(uri))
    pub = project.root / "keys" / "pipeline.pub"
    pub.write_bytes(public.to_pem())
    (project.root / "keys" / "pipeline.key").unlink()
    token_signer = load_signer(uri)
    local = project.attestor

    def attestor(*names: str, bundle: Path | None = None) -> Attestor:
        if names == ("pipeline",):
            return Attestor(bundle or project.bundle, [token_signer], base_dir=project.root)
        return local(*names, bundle=bundle)

    monkeypatch.setattr(project, "attestor", attestor)
    build_lifecycle(project)
    return public


@pytest.mark.parametrize("obj,key_class,sig_len", [("p256", ec.EllipticCurvePublicKey, None),
                                                   ("ed", ed25519.Ed25519PublicKey, 64)])
def test_token_signs_13_stage_chain_that_verifies_with_exported_key(
        project: Project, pin_env: SoftHSM, monkeypatch: pytest.MonkeyPatch, obj: str, key_class: type,
        sig_len: int | None) -> None:
    public = _sign_chain_on_token(project, pin_env.uri(obj), monkeypatch)
    assert isinstance(public.key, key_class)
    from datetime import timedelta

    from conftest import resign_head

    from mlspec_attest.keys import load_signer

    # the shipped policies require a signed head (trust-time): the token key signs it too
    resign_head(project.bundle, [load_signer(pin_env.uri(obj))], timedelta(hours=1))
    report = verify_bundle(project.bundle, project.policy())
    assert report.passed, [f.code for f in report.findings]
    assert len(report.stages) == 13
    # The signatures are what any DSSE verifier accepts: securesystemslib checks them too.
    sslib_key = SSlibKey.from_crypto(public.key, keyid=public.keyid)
    signed_by_token = 0
    for path in sorted(project.bundle.rglob("*.dsse.json")):
        envelope = Envelope.from_dict(json.loads(path.read_bytes()))
        for sig in envelope.signatures:
            if sig.keyid == public.keyid:
                raw = sig.sig
                if sig_len:
                    assert len(raw) == sig_len
                sslib_key.verify_signature(Signature(public.keyid, raw.hex()),
                                           pae(envelope.payload_type, envelope.payload))
                signed_by_token += 1
    assert signed_by_token == 13  # every stage but the owner's objectives, plus the chain head


def test_keyid_is_sha256_of_der_spki(pin_env: SoftHSM) -> None:
    signer = load_signer(pin_env.uri("p256"))
    assert signer.keyid == keyid_of(signer.public.key)
    assert signer.private_key is None  # nothing of the private key is in this process
    assert isinstance(signer.backend, Pkcs11Signer)


def test_policy_naming_another_key_refuses_chain_signed_on_token(
        project: Project, pin_env: SoftHSM, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runner holding a token key the policy does not name cannot pass the gate with it."""
    _sign_chain_on_token(project, pin_env.uri("p256"), monkeypatch)
    other = PublicKey.from_crypto(token_public_key(pin_env.uri("other")))
    (project.root / "keys" / "pipeline.pub").write_bytes(other.to_pem())
    report = verify_bundle(project.bundle, project.policy())
    assert not report.passed
    assert "SIGNATURE_INVALID" in {f.code for f in report.findings}
    assert {f.stage for f in report.findings if f.code == "SIGNATURE_INVALID"} >= {"ingest", "train", "package"}


def test_wrong_pin_is_one_line_without_the_pin(softhsm: SoftHSM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSPEC_PKCS11_PIN", "9999-wrong")
    with pytest.raises(InputError) as exc:
        load_signer(softhsm.uri("p256"))
    text = str(exc.value)
    assert "wrong PIN" in text and "9999-wrong" not in text and "\n" not in text


def test_pin_value_in_uri_is_redacted_from_errors_and_absent_from_payloads(
        project: Project, softhsm: SoftHSM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSPEC_PKCS11_PIN", raising=False)
    missing = softhsm.uri("no-such-object", pin=True)
    with pytest.raises(InputError) as exc:
        load_signer(missing)
    assert softhsm.pin not in str(exc.value) and "pin-value=***" in str(exc.value)
    assert "no private key object" in str(exc.value) or "no public key object" in str(exc.value)
    _sign_chain_on_token(project, softhsm.uri("ed", pin=True), monkeypatch)
    for path in project.bundle.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert softhsm.pin.encode() not in data
            for envelope_field in (b"pin-value", b"pkcs11:"):
                assert envelope_field not in data


def test_no_pin_anywhere_and_no_terminal_is_refused(softhsm: SoftHSM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSPEC_PKCS11_PIN", raising=False)
    with pytest.raises(InputError, match="needs a PIN|no terminal"):
        load_signer(softhsm.uri("p256"))


def test_pin_source_file_is_read_without_its_newline(softhsm: SoftHSM, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSPEC_PKCS11_PIN", raising=False)
    pin_file = tmp_path / "pin"
    pin_file.write_text(softhsm.pin + "\n")
    pin_file.chmod(0o600)
    uri = f"pkcs11:token={softhsm.label};object=p256?module-path={softhsm.module}&pin-source={pin_file}"
    assert load_signer(uri).sign(b"x")


def test_pin_source_others_can_read_is_refused(softhsm: SoftHSM, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The passphrase-file rule for PINs too: a PIN file group or others can read may be someone else's."""
    monkeypatch.setenv("MLSPEC_PKCS11_PIN", softhsm.pin)  # a usable fallback must not rescue a shared file
    pin_file = tmp_path / "pin"
    pin_file.write_text(softhsm.pin)
    pin_file.chmod(0o644)
    uri = f"pkcs11:token={softhsm.label};object=p256?module-path={softhsm.module}&pin-source={pin_file}"
    with pytest.raises(InputError, match="readable by group or others") as exc:
        load_signer(uri)
    assert softhsm.pin not in str(exc.value)


def test_pin_per_token_variable_outranks_the_shared_one(softhsm: SoftHSM, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlspec_attest.signers import pin_env_name

    monkeypatch.setenv("MLSPEC_PKCS11_PIN", "999999")  # wrong: used only when the token has no own variable
    monkeypatch.setenv(pin_env_name(softhsm.label), softhsm.pin)
    monkeypatch.setenv("MLSPEC_PKCS11_MODULE", softhsm.module)
    assert load_signer(softhsm.uri("p256").split("?")[0]).sign(b"x")
    assert pin_env_name("ci-token.1") == "MLSPEC_PKCS11_PIN_CI_TOKEN_1"


def test_missing_module_is_one_line(softhsm: SoftHSM, pin_env: SoftHSM) -> None:
    with pytest.raises(InputError, match="PKCS#11 module not found") as exc:
        load_signer(f"pkcs11:token={softhsm.label};object=p256?module-path=/nonexistent/libnope.so")
    assert "\n" not in str(exc.value)


def test_no_module_named_at_all_is_refused(softhsm: SoftHSM, pin_env: SoftHSM,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSPEC_PKCS11_MODULE", raising=False)
    with pytest.raises(InputError, match="no PKCS#11 module"):
        load_signer(f"pkcs11:token={softhsm.label};object=p256")
    monkeypatch.setenv("MLSPEC_PKCS11_MODULE", softhsm.module)
    assert load_signer(f"pkcs11:token={softhsm.label};object=p256").sign(b"x")


def test_unknown_token_and_unnamed_object_are_refused(pin_env: SoftHSM) -> None:
    with pytest.raises(InputError, match="no token 'nope'"):
        load_signer(f"pkcs11:token=nope;object=p256?module-path={pin_env.module}")
    with pytest.raises(InputError, match="name the key"):
        load_signer(f"pkcs11:token={pin_env.label}?module-path={pin_env.module}")
    with pytest.raises(InputError, match="not a valid PKCS#11 URI"):
        load_signer("pkcs11:token")


def test_generate_refuses_a_second_key_under_the_same_label(pin_env: SoftHSM) -> None:
    before = token_public_key(pin_env.uri("p256"))
    with pytest.raises(InputError, match="already exists"):
        generate_on_token(pin_env.uri("p256"), "ed25519")
    assert keyid_of(token_public_key(pin_env.uri("p256"))) == keyid_of(before)


def test_token_private_key_is_sensitive_and_not_extractable(pin_env: SoftHSM) -> None:
    """The key never leaves the token: the token itself says so."""
    import PyKCS11

    signer = load_signer(pin_env.uri("ed"))
    token = signer.backend.token
    obj = token.find(PyKCS11.CKO_PRIVATE_KEY)
    sensitive, extractable = token.session.getAttributeValue(obj, [PyKCS11.CKA_SENSITIVE, PyKCS11.CKA_EXTRACTABLE])
    assert sensitive and not extractable


def test_backend_signing_with_another_key_is_refused_before_writing(tmp_path: Path) -> None:
    """A token or KMS that answers with another key's signature must not produce an envelope."""
    named = ec.generate_private_key(ec.SECP256R1())
    actual = ec.generate_private_key(ec.SECP256R1())
    public = PublicKey.from_crypto(named.public_key(), "kms-key")
    backend = CryptoSigner(actual)
    signer = Signer.from_backend(backend, public)
    with pytest.raises(InputError, match="does not verify"):
        signer.sign(b"payload")


def test_securesystemslib_uri_schemes_reach_the_same_signer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The generic route KMS URIs take (awskms:, gcpkms:...), exercised with securesystemslib's file2: signer."""
    from cryptography.hazmat.primitives import serialization

    key = ec.generate_private_key(ec.SECP256R1())
    priv = tmp_path / "k.pem"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub = tmp_path / "k.pub"
    pub.write_bytes(PublicKey.from_crypto(key.public_key()).to_pem())
    monkeypatch.setenv("MLSPEC_SIGNER_PUBLIC_KEY", str(pub))
    priv.chmod(0o644)  # the file-mode rule of --key paths is not walked around through a URI
    with pytest.raises(InputError, match="readable by group or others"):
        load_signer(f"file2:{priv}")
    priv.chmod(0o600)
    monkeypatch.delenv("MLSPEC_SIGNER_PUBLIC_KEY", raising=False)
    with pytest.raises(InputError, match="MLSPEC_SIGNER_PUBLIC_KEY"):
        load_signer(f"file2:{priv}")
    monkeypatch.setenv("MLSPEC_SIGNER_PUBLIC_KEY", str(pub))
    signer = load_signer(f"file2:{priv}")
    sig = signer.sign(b"m")
    assert signer.public.verify(sig, b"m") and signer.keyid == keyid_of(key.public_key())
    # The public key given for it is someone else's: refused when signing, nothing returned.
    other = tmp_path / "other.pub"
    other.write_bytes(PublicKey.from_crypto(ec.generate_private_key(ec.SECP256R1()).public_key()).to_pem())
    monkeypatch.setenv("MLSPEC_SIGNER_PUBLIC_KEY", str(other))
    with pytest.raises(InputError, match="does not (verify|match)"):
        load_signer(f"file2:{priv}").sign(b"m")


def test_redact_uri_blanks_every_pin_value() -> None:
    uri = "pkcs11:token=t;object=o?pin-value=1234&module-path=/m.so&PIN-VALUE=99"
    shown = redact_uri(uri)
    assert "1234" not in shown and "99" not in shown and "module-path=/m.so" in shown


def test_head_cosignature_and_vsa_signed_on_the_token_are_what_the_gate_accepts(
        project: Project, pin_env: SoftHSM, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every signing path (chain head, co-signature, VSA) takes a token key through the same Signer."""
    import yaml
    from conftest import resign_head

    from mlspec_attest.attest.cosign import cosign
    from mlspec_attest.verify.vsa import write_vsa

    public = _sign_chain_on_token(project, pin_env.uri("p256"), monkeypatch)
    ed_signer = load_signer(pin_env.uri("ed"))
    (project.root / "keys" / "reviewer.pub").write_bytes(ed_signer.public.to_pem())
    data = yaml.safe_load(project.policy().read_text())
    data["keys"]["reviewer"] = "../keys/reviewer.pub"
    data["stages"]["train"] = {"required": True, "signers": ["pipeline", "reviewer"], "threshold": 2}
    data["head"] = {"signers": ["reviewer"], "required": True}
    project.policy().write_text(yaml.safe_dump(data))
    assert not verify_bundle(project.bundle, project.policy()).passed  # threshold 2 and head not yet met

    train = next(project.bundle.rglob("*-train.dsse.json"))
    cosign(train, ed_signer)
    resign_head(project.bundle, [ed_signer], timedelta(hours=1))
    report = verify_bundle(project.bundle, project.policy())
    assert report.passed, [(f.code, f.message) for f in report.findings]

    vsa = write_vsa(report, tmp_path / "vsa.dsse.json", load_signer(pin_env.uri("p256")))
    envelope = Envelope.from_dict(json.loads(vsa.read_bytes()))
    assert envelope.verified_keyids([public]) == {public.keyid}
