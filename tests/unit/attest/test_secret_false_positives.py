"""The secret scan must not cry wolf: the seed's metadata files and the demo pipeline's
metadata attest with no redaction except the seed's deliberate credential slots.
The numbers here are the false-positive rows of docs/security.md's placement table."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from mlspec_attest._internal.loaders import parse_yaml
from mlspec_attest.attest.redaction import scan
from mlspec_attest.errors import InputError

# The seed's data_stores blocks carry access_key_id / secret_access_key placeholders: they are
# where a user's real credentials go, so redacting them is the point, not a false positive.
CREDENTIAL_SLOTS = {"access_key_id", "secret_access_key"}


def _seed_documents(seed: Path) -> list[tuple[Path, Any]]:
    documents = []
    for path in sorted(p for p in seed.rglob("*") if p.suffix in {".yaml", ".yml", ".json"}):
        text = path.read_text("utf-8")
        try:
            documents.append((path, parse_yaml(text.encode("utf-8"), source=str(path))))
        except InputError:
            if "\ndata_store_file_paths:" in text:  # the valid part of the model-packaging files
                prefix = text[: text.index("\ndata_store_file_paths:")]
                documents.append((path, parse_yaml(prefix.encode("utf-8"), source=str(path))))
            # else: not YAML at all (metadata_file/metadata.yaml has tabs); a user could not feed it
    return documents


def _count(value: Any) -> int:
    if isinstance(value, dict):
        return sum(1 + _count(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count(v) for v in value)
    return 1


def test_seed_metadata_has_no_false_positives(seed: Path) -> None:
    documents = _seed_documents(seed)
    assert len(documents) >= 13, "the seed's YAML files were not found"
    scanned = sum(_count(doc) for _, doc in documents)
    false_positives, slots = [], 0
    for path, doc in documents:
        for detection in scan(doc):
            if detection.path[-1] in CREDENTIAL_SLOTS and not detection.is_key:
                slots += 1
            else:
                false_positives.append((path.name, detection))
    assert false_positives == []
    assert slots == 10  # five model-packaging files x (access_key_id, secret_access_key)
    assert scanned > 700


def test_demo_metadata_has_no_false_positives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sklearn", reason="the demo needs scikit-learn (the [demo] extra, installed by make test)")
    from mlspec_attest.demo.runner import run_demo

    monkeypatch.delenv("MLSPEC_KEY_PASSPHRASE", raising=False)
    lines: list[str] = []
    assert run_demo(tmp_path / "demo", echo=lines.append) == 0, "\n".join(lines)
    files = sorted((tmp_path / "demo" / "bundle" / "attestations").glob("*.json"))
    assert len(files) == 13
    scanned = 0
    for file in files:
        statement = json.loads(base64.b64decode(json.loads(file.read_bytes())["payload"]))
        assert statement["predicate"]["redactions"] == [], file.name
        scanned += _count(statement["predicate"]["metadata"])
    assert scanned > 500
    assert not any("redacted" in line for line in lines)


def test_ml_metadata_that_only_sounds_secret_is_kept() -> None:
    """Tokenizers, seeds, passes and key ids are everyday ML metadata, not credentials."""
    from mlspec_attest.attest.redaction import redact

    metadata = {
        "tokenizer": {"pad_token": "<pad>", "eos_token": "</s>", "bos_token": "<s>", "unk_token": "[UNK]",
                      "mask_token": "[MASK]", "additional_special_tokens": ["<|im_start|>"], "eos_token_id": 2},
        "seed": 42, "random_seed": 1234, "forward_pass_ms": 3.1, "first_pass": "done", "pin_memory": True,
        "max_new_tokens": 256, "token_budget": 4096, "keyid": "a" * 64, "key_id": "pipeline",
        "signature": {"inputs": '[{"name": "age", "type": "long"}]', "outputs": '[{"type": "double"}]'},
        "source": "s3://bucket/data/train.parquet", "digest": "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        "endpoint": "/v1/projects/my-project-123/locations/us-central1/endpoints/1234567890",
        "command": "python train.py --lr 0.001 --epochs 10 --seed 42 --password-file /run/secrets/db",
        "docker": "docker run -u 1000:1000 -p 8080:80 image", "password_env": "DB_PASSWORD",
        "note": "password: <from vault>", "template": "${DB_PASSWORD}",
    }
    assert redact(metadata) == (metadata, [])


def test_digests_inside_names_are_never_redacted() -> None:
    """Hex digests and ids inside everyday names (the log's own origin, registry refs) are not secrets.

    Found as a flaky gate failure: one log attestation in ~150 had its random
    `mlspec-inference-log/<hex>` origin redacted as a base64 high-entropy string.
    """
    import hashlib

    from mlspec_attest.attest.redaction import scan

    for i in range(2000):
        digest = hashlib.sha256(str(i).encode()).hexdigest()
        for value in (f"mlspec-inference-log/{digest[:16]}", f"oci://registry.local/repo@sha256:{digest}",
                      f"models/{digest}/model.pkl", f"runs:/{digest[:32]}/model", digest):
            assert scan({"origin": value}) == [], value


def _public_pem_and_certificate() -> tuple[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlspec test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def test_review_false_positives_are_kept() -> None:
    """The reviewer's false positives: public keys, certificates, base64 digests, features about
    secrets (numbers under feature names), an object key in a query, "secret: none" in prose."""
    from mlspec_attest.attest.redaction import redact

    pem, cert = _public_pem_and_certificate()
    metadata = {
        "signer_pub": pem, "signer_cert": cert, "chain": f"leaf:\n{cert}\nkey:\n{pem}",
        "weights_sha256_b64": "LCa0a2j/xo/5m0U8HTBBNBNCLXBkg7+g+YpeiGJm564=",
        "model_digest": "sha256:" + "ab" * 32, "etag": "LCa0a2j_xo_5m0U8HTBBNA",
        "statistics": {"password_changes_30d": {"mean": 0.21, "std": 0.4, "dtype": "float64"},
                       "otp_requests": {"mean": 1.3, "max": 12}, "has_secret_question": {"rate": 0.4},
                       "credential_stuffing_score": {"mean": 0.02, "histogram": [1, 2, 3]},
                       "num_password_resets": 3},
        "features": ["password_changes_30d", "otp_requests", "has_secret_question"],
        "artifact": "https://store.example.com/get?key=models/a.onnx&version=3",
        "notes": "rotation done; secret: none was stored in the image",
        "docker": "docker run -p 8080:80 -t image:1.0",
        "columns": [["password_changes_30d", "float"]],
        "commit": "9f86d081884c7d659a2feaa0c55ad015a2feaa0c", "artifacts": [{"id": "ab" * 32, "sha256": "cd" * 32}],
    }
    assert redact(metadata) == (metadata, [])


@pytest.mark.parametrize("metadata,pointer", [
    ({"password_changes_30d": "Hunter2!x"}, "/password_changes_30d"),  # a measurement holding text
    ({"statistics": {"otp_requests": {"mean": "Hunter2!x"}}}, "/statistics/otp_requests/mean"),
    ({"weights_sha256_b64": "X5rA0yH5ytMGblUs+blZ90FFcaxo3CTk32gDJy+vFLExtjA3S66Xsw=="}, "/weights_sha256_b64"),
    ({"weights_sha256": "LCa0a2j/xo/5m0U8HTBBNBNCLXBkg7+g+YpeiGJm564= password=Hunter2x"}, "/weights_sha256"),
    ({"artifact": "https://x.example.com/get?key=AbC123xYz987QwErTy65"}, "/artifact"),
    ({"otp_requests": {"code": 123456, "mean": 1.5}}, "/otp_requests/code"),  # an OTP is an integer too
    ({"api_tokens": {"AbCdEfGhIjKlMnOpQrSt": "ci"}}, "/api_tokens/[REDACTED-KEY-1]"),  # letters-only token key
])
def test_false_positive_exemptions_cannot_carry_a_secret(metadata: dict[str, Any], pointer: str) -> None:
    """Attacker: the author who learns the exemptions and hides a credential in their shape."""
    from mlspec_attest.attest.redaction import redact

    assert redact(metadata)[1] == [pointer]
