"""The keys review's attacks, each run against the gate or the loader and shown refused.

Holes 1-11 of the adversarial keys review (revocation entries, revoked head keys, rotation
and head signers, inline PEM smuggling, PINs in metadata, wrong-typed policy fields,
FIFO/device key files, trust files inside the bundle, keyless thresholds).
"""

from __future__ import annotations

import base64
import json
import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Project, build_lifecycle, resign_head

from mlspec_attest.attest.redaction import redact, scan
from mlspec_attest.errors import InputError
from mlspec_attest.keys import generate, load_signer, new_key
from mlspec_attest.model.head import HEAD_FILE
from mlspec_attest.policy import Policy
from mlspec_attest.rotation import key_entry, plan_rotation
from mlspec_attest.verify import verify_bundle


def _codes(project: Project, policy: Path | None = None) -> set[str]:
    report = verify_bundle(project.bundle, policy or project.policy())
    assert not report.passed
    return {f.code for f in report.findings}


def _append_policy(project: Project, text: str, name: str = "attack.yaml") -> Path:
    return project.write(f"policies/{name}", project.policy().read_text(encoding="utf-8") + "\n" + text)


def _keyid(project: Project, name: str) -> str:
    return load_signer(project.key(name)).public.keyid


# --------------------------------------------------------------------------- hole 1
@pytest.mark.parametrize("entries", [
    ['{{keyid: {k}, after: "2099-01-01T00:00:00Z", reason: planned}}', '{{keyid: {k}, reason: stolen}}'],
    ['{{keyid: {k}, reason: stolen}}', '{{keyid: {k}, after: "2099-01-01T00:00:00Z", reason: planned}}'],
    ['{{keyid: {k}, after: "2099-01-01T00:00:00Z"}}', '{{keyid: {k}, after: "2000-01-01T00:00:00Z"}}'],
])
def test_every_revocation_entry_for_a_key_counts_the_earliest_wins(project: Project, entries: list[str]) -> None:
    """A harmless far-future entry listed first must not hide an earlier one for the same key."""
    build_lifecycle(project)  # head signed by pipeline, before 2099: it would rescue a 2099 revocation
    kid = _keyid(project, "pipeline")
    policy = _append_policy(project, "revoked:\n" + "".join(f"  - {e.format(k=kid)}\n" for e in entries))
    loaded = Policy.from_file(policy)
    in_force = loaded.revocation_of(kid)
    assert in_force is not None and in_force.after.year < 2099
    assert "KEY_REVOKED" in _codes(project, policy)


# --------------------------------------------------------------------------- hole 2
@pytest.mark.parametrize("after", ["", ', after: "2099-01-01T00:00:00Z"'])
def test_a_revoked_head_key_does_not_sign_a_valid_head(project: Project, after: str) -> None:
    build_lifecycle(project)
    generate("headk", project.root / "keys", "ed25519", None)
    resign_head(project.bundle, [load_signer(project.key("headk"))], timedelta(hours=1))
    text = project.policy().read_text(encoding="utf-8")
    text = text.replace("  pipeline: ../keys/pipeline.pub", "  pipeline: ../keys/pipeline.pub\n  headk: ../keys/headk.pub")
    text = text.replace("head: {signers: [pipeline]", "head: {signers: [headk]")
    policy = project.write("policies/h.yaml", text + f"\nrevoked:\n  - {{keyid: {_keyid(project, 'headk')}{after}}}\n")
    assert "HEAD_SIGNATURE_INVALID" in _codes(project, policy)


# --------------------------------------------------------------------------- hole 3 / 3b
def _rotate_pipeline(project: Project, now: datetime) -> tuple[Path, str]:
    policy = project.policy()
    key = new_key("pipeline-2", project.root / "keys", "ed25519")
    plan = plan_rotation(policy, "pipeline", key.public, key_entry(key.public, policy, key.paths[1], False), now)
    key.write()
    plan.write_policy()
    return key.paths[0], plan.retired_name


def test_rotation_never_keeps_the_retired_key_as_a_head_signer(project: Project) -> None:
    _, retired = _rotate_pipeline(project, datetime.now(timezone.utc))
    data = yaml.safe_load(project.policy().read_text(encoding="utf-8"))
    assert data["head"]["signers"] == ["pipeline"] and retired not in data["head"]["signers"]
    assert retired in data["defaults"]["signers"]  # history it signed before still verifies (stages inherit)
    assert any(r["keyid"] == data["keys"][retired]["keyid"] for r in data["revoked"])


@pytest.mark.parametrize("attack", ["rollback", "backdated-append"])
def test_the_retired_key_cannot_roll_back_or_extend_the_chain(project: Project, attack: str) -> None:
    build_lifecycle(project)
    new_path, _ = _rotate_pipeline(project, datetime.now(timezone.utc) - timedelta(seconds=1))
    resign_head(project.bundle, [load_signer(new_path)], timedelta(hours=1))
    old = load_signer(project.key("pipeline"))
    attestations = sorted((project.bundle / "attestations").glob("*.dsse.json"))
    if attack == "rollback":
        attestations[-1].unlink()  # drop the newest attestation (say a monitor reading)
    else:
        from mlspec_attest.attest.attestor import Attestor

        Attestor(project.bundle, [old], base_dir=project.root).attest(  # a backdated log record
            "log", metadata={"tree_size": 0, "pipeline": "0" * 64,
                             "root_hash": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"})
    (project.bundle / HEAD_FILE).unlink()
    resign_head(project.bundle, [old], timedelta(hours=1))  # the attacker re-signs the head with the old key
    codes = _codes(project)
    assert "HEAD_SIGNATURE_INVALID" in codes


# --------------------------------------------------------------------------- hole 4
def _pem(project: Project, name: str = "pipeline") -> str:
    return (project.root / "keys" / f"{name}.pub").read_text(encoding="ascii")


def _private_body(project: Project) -> str:
    return "".join(project.key("pipeline").read_text(encoding="ascii").splitlines(keepends=True)[1:-1])


@pytest.mark.parametrize("shape", ["private-between-ends", "second-public-key", "text-after", "text-before",
                                   "private-key-block", "not-spki-der", "bad-base64"])
def test_inline_pem_is_exactly_one_public_key_block(project: Project, shape: str) -> None:
    pem = _pem(project)
    bodies = {
        "private-between-ends": pem + _private_body(project) + "-----END PUBLIC KEY-----\n",
        "second-public-key": pem + _pem(project, "owner"),
        "text-after": pem + "trailing words\n",
        "text-before": "comment\n" + pem,
        "private-key-block": project.key("pipeline").read_text(encoding="ascii"),
        "not-spki-der": "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(b"\x30\x03\x02\x01\x01").decode()
                        + "\n-----END PUBLIC KEY-----\n",
        "bad-base64": pem.replace("\n-----END", "*\n-----END"),
    }
    doc = {"version": 1, "keys": {"k": {"pem": bodies[shape]}}, "stages": {"train": {"signers": ["k"]}}}
    with pytest.raises(InputError, match="keys.k"):
        Policy.from_dict(doc, source=project.root / "policies" / "p.yaml")
    # the same strictness for a .pub file the policy names
    (project.root / "keys" / "smuggled.pub").write_text(bodies[shape], encoding="ascii")
    doc["keys"] = {"k": "../keys/smuggled.pub"}
    with pytest.raises(InputError):
        Policy.from_dict(doc, source=project.root / "policies" / "p.yaml")


# --------------------------------------------------------------------------- hole 5
PKCS11 = "pkcs11:token=T;object=pipeline?module-path=/usr/lib/softhsm/libsofthsm2.so"


@pytest.mark.parametrize("uri", [
    PKCS11 + "&pin-value=Zq81-77xv", PKCS11 + "&PIN-VALUE=4711", PKCS11 + "&pin%2Dvalue=4711",
    "pkcs11:token=T;object=o;pin-value=4711", PKCS11 + "&pin-source=file:/run/secrets/pin",
    "signed with " + PKCS11 + "&pin%2dvalue=4711 today", "signer " + PKCS11 + "&pin-source=|/bin/echo%204711",
])
def test_a_pkcs11_uri_carrying_its_pin_is_redacted(uri: str) -> None:
    assert scan({"signer": uri})
    cleaned, redacted = redact({"signer": uri})
    assert redacted and "4711" not in json.dumps(cleaned) and "Zq81" not in json.dumps(cleaned)


def test_a_pkcs11_uri_without_pin_is_kept() -> None:
    assert not scan({"signer": PKCS11})


# --------------------------------------------------------------------------- hole 7 / 12
BASE = {"version": 1, "keys": {"k": "../keys/pipeline.pub"}, "stages": {"train": {"signers": ["k"]}}}


@pytest.mark.parametrize("change", [
    {"defaults": 5}, {"order": 5}, {"revoked": 5}, {"order": {"interleave": 5}},
    {"artifact_flow": {"external_roles": 5}}, {"trust_config": 5}, {"max_age": "99999999999999999999d"},
    {"max_age": 10 ** 30}, {"max_age": -5}, {"freshness": "99999999999999999999w"},
    {"stages": {"train": {"signers": ["k"], "checks": 5}}}, {"stages": {"train": {"signers": [["k"]]}}},
    {"stages": {"train": {"signers": None}}}, {"stages": {"train": {"signers": {"k": True}}}},
    {"stages": {"train": {"signers": ["k"], "repeat": "false"}}},
    {"stages": {"train": {"signers": ["k"], "required": None}}},
    {"stages": {"train": {"signers": ["k"], "identities": 5}}}, {"stages": {"train": {"signers": ["k"], "evidence": 5}}},
])
def test_wrong_typed_policy_fields_are_refused_as_input(project: Project, change: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        Policy.from_dict({**BASE, **change}, source=project.root / "policies" / "p.yaml")


# --------------------------------------------------------------------------- hole 8
def _fifo_or_skip(path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    os.mkfifo(path)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_key_path_that_is_a_fifo_or_device_is_refused_not_read(project: Project, kind: str) -> None:
    target = project.root / "keys" / "k.pub"
    if kind == "fifo":
        _fifo_or_skip(target)
    else:
        if not os.path.exists("/dev/zero"):
            pytest.skip("no /dev/zero here")
        target.symlink_to("/dev/zero")
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            Policy.from_dict({**BASE, "keys": {"k": "../keys/k.pub"}}, source=project.root / "policies" / "p.yaml")
        except BaseException as exc:  # the test inspects it
            outcome.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(60)  # hang guard, not a timing assertion
    assert not worker.is_alive(), "loading the policy blocked on the key file"
    assert outcome and isinstance(outcome[0], InputError)


# --------------------------------------------------------------------------- hole 9
def test_an_evidence_key_inside_the_bundle_is_a_trust_file_in_bundle(project: Project) -> None:
    build_lifecycle(project)
    project.write("bundle/ev/evidence.pub", _pem(project, "owner"))
    text = project.policy().read_text(encoding="utf-8")
    marker = "  train:"
    assert marker in text
    policy = _append_policy(project, "")
    data = yaml.safe_load(policy.read_text(encoding="utf-8"))
    data["stages"]["train"]["evidence"] = [{"name": "scan", "key": "../bundle/ev/evidence.pub"}]
    policy.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert "TRUST_FILE_IN_BUNDLE" in _codes(project, policy)


# --------------------------------------------------------------------------- hole 11
def test_one_keyless_certificate_does_not_meet_a_threshold_of_two(project: Project, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Sigstore crypto stubbed: one valid certificate is one signature, whatever else the rule lists."""
    import mlspec_attest.evidence.sigstore as sigstore
    from mlspec_attest.bundle import BundleFile
    from mlspec_attest.model.report import Report
    from mlspec_attest.verify.signatures import EntryReader

    build_lifecycle(project, stages=("objectives", "ingest", "analyze", "transform", "validate", "split", "train"))
    (project.root / "policies" / "trust.json").write_text("{}")
    policy = Policy.from_dict({"version": 1, "trust_config": "trust.json",
                               "keys": {"pipeline": "../keys/pipeline.pub", "owner": "../keys/owner.pub"},
                               "stages": {"train": {"signers": ["pipeline", "owner"], "threshold": 2,
                                                    "identities": [{"san": "ci@example.com",
                                                                    "issuer": "https://issuer"}]}}},
                              source=project.root / "policies" / "p.yaml")
    train = next((project.bundle / "attestations").glob("*-train.dsse.json"))
    payload = base64.b64decode(json.loads(train.read_text())["payload"])

    class Identity:
        san = "ci@example.com"
        issuer = "https://issuer"

    monkeypatch.setattr(sigstore, "verify_keyless_statement", lambda data, **kw: (payload, Identity()))
    bundle_file = BundleFile(path=tmp_path / "0006-train.sigstore.json", number=6, kind="sigstore", data=b"{}")
    report = Report(bundle=str(tmp_path), policy="p.yaml", policy_sha256="")
    entry = EntryReader(policy).read(bundle_file, report)
    assert entry is not None and not entry.authentic
    assert "THRESHOLD_NOT_MET" in {f.code for f in report.findings}
