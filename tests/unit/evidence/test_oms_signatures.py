"""OpenSSF model signatures both ways: mlspec checks model directories as model-signing does,
and model-signing accepts the signature mlspec's package stage writes.

model-signing (test extra) is the peer: every mutation below is judged by both tools,
which must agree. Attacker: whoever can change the model directory after signing
(swap, rename, add or drop files) or hand over another signature.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Project, build_lifecycle

from mlspec_attest.attest.oms import key_signed_bundle, sign_oms
from mlspec_attest.cli.main import main
from mlspec_attest.digests import digest_path
from mlspec_attest.errors import EvidenceVerificationError
from mlspec_attest.evidence.sigstore import verify_evidence
from mlspec_attest.keys import load_signer
from mlspec_attest.model.canonical import canonicalize
from mlspec_attest.verify import verify_bundle as verify_chain

ms_cli = pytest.importorskip("model_signing._cli", reason="model-signing (test extra) is not installed")


def model_signing_accepts(model: Path, sig: Path, pub: Path, *extra: str) -> bool:
    res = CliRunner().invoke(ms_cli.main, ["verify", "key", str(model), "--signature", str(sig),
                                           "--public_key", str(pub), *extra], catch_exceptions=False)
    return res.exit_code == 0


def mlspec_accepts(model: Path, sig: Path, pub: Path) -> bool:
    try:
        verify_evidence(sig, trust_config=None, artifact=model, key=pub)
        return True
    except EvidenceVerificationError:
        return False


@pytest.fixture
def vector_model(vectors: Path, tmp_path: Path) -> tuple[Path, Path]:
    src = vectors / "model-signing" / "v1.1.0-elliptic-key"
    model = tmp_path / "v1.1.0-elliptic-key"
    shutil.copytree(src, model)
    return model, vectors / "model-signing" / "keys" / "signing-key-pub.pem"


def test_evidence_verify_accepts_the_vector_directory(vector_model: tuple[Path, Path]) -> None:
    model, pub = vector_model
    res = CliRunner().invoke(main, ["evidence", "verify", str(model / "model.sig"), "--artifact", str(model),
                                    "--key", str(pub), "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["artifact_digest"] == "sha256:92745110b1ab4368471cbe31664e10174e954b113a3df333db860317b2c6dec4"


MUTATIONS = {
    "change a signed file": lambda m: (m / "signme-1").write_bytes(b"tampered"),
    "rename a file (same digest order)": lambda m: (m / "signme-2").rename(m / "signme-3"),
    "swap two files' contents": lambda m: (
        (m / "tmp").write_bytes((m / "signme-1").read_bytes()),
        (m / "signme-1").write_bytes((m / "signme-2").read_bytes()),
        (m / "signme-2").write_bytes((m / "tmp").read_bytes()), (m / "tmp").unlink()),
    "add an unsigned file": lambda m: (m / "extra.bin").write_bytes(b"x"),
    "add an unsigned nested file": lambda m: (m / "sub").mkdir() or (m / "sub" / "x").write_bytes(b"x"),
    "remove a signed file": lambda m: (m / "signme-2").unlink(),
    "move a file into a folder": lambda m: (m / "d").mkdir() or (m / "signme-2").rename(m / "d" / "signme-2"),
    # left out by the signer (signed ignore_paths): both tools accept
    "change the ignored file": lambda m: (m / "ignore-me").write_bytes(b"anything"),
    "add a .git folder": lambda m: (m / ".git").mkdir() or (m / ".git" / "HEAD").write_bytes(b"x"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_mlspec_and_model_signing_agree_on_every_mutation(vector_model: tuple[Path, Path], mutation: str) -> None:
    model, pub = vector_model
    MUTATIONS[mutation](model)
    ours, theirs = mlspec_accepts(model, model / "model.sig", pub), model_signing_accepts(model, model / "model.sig", pub)
    assert ours == theirs, (mutation, ours, theirs)
    assert ours == mutation.startswith(("change the ignored", "add a .git"))


@pytest.fixture
def packaged(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A chain whose package stage also wrote pkg/model.sig (OMS) with a P-256 key."""
    build_lifecycle(project, stages=("objectives", "ingest", "analyze", "transform", "validate", "split", "train",
                                     "evaluate", "test"))
    project.write("pkg/tokenizer.json", "{}")
    project.write("pkg/tokenizer/vocab.txt", "a b c")  # a tree where path order and component order differ
    project.write("pkg/.gitattributes", "*.bin filter=lfs")
    monkeypatch.chdir(project.root)
    res = CliRunner().invoke(main, [
        "attest", "stage", "package", "--bundle", "bundle", "--key", "keys/intruder.key", "--key", "keys/pipeline.key",
        "--material", "model=out/model.bin", "--product", "pkg", "--set", "name=demo-model",
        "--oms-signature"])
    assert res.exit_code == 0, res.output
    assert "wrote OpenSSF model signature" in res.output
    return project


def test_model_signing_accepts_the_package_signature(packaged: Project) -> None:
    pkg, sig, pub = packaged.root / "pkg", packaged.root / "pkg" / "model.sig", packaged.root / "keys" / "intruder.pub"
    assert model_signing_accepts(pkg, sig, pub)
    assert mlspec_accepts(pkg, sig, pub)
    # The OMS subject is the package stage's subject, and the gate still binds the package with model.sig in it.
    payload = json.loads(base64.b64decode(json.loads(sig.read_bytes())["dsseEnvelope"]["payload"]))
    assert payload["subject"][0]["digest"]["sha256"] == digest_path(pkg).sha256
    report = verify_chain(packaged.bundle, packaged.policy(), [pkg])
    assert report.artifacts[0]["matched"] is not None
    (pkg / "tokenizer" / "vocab.txt").write_text("a b d")
    assert not model_signing_accepts(pkg, sig, pub) and not mlspec_accepts(pkg, sig, pub)


def test_model_signing_refuses_another_key(packaged: Project) -> None:
    pkg = packaged.root / "pkg"
    other = packaged.root / "keys" / "other.pub"
    from mlspec_attest.keys import generate

    generate("other", packaged.root / "keys", "ecdsa-p256", None)
    assert not model_signing_accepts(pkg, pkg / "model.sig", other)
    assert not mlspec_accepts(pkg, pkg / "model.sig", other)


def test_single_file_model_signature(project: Project, tmp_path: Path) -> None:
    model = project.write("model.safetensors", b"weights" * 100)
    sig = tmp_path / "model.sig"
    sig.write_bytes(sign_oms(model, load_signer(project.key("intruder"))))
    pub = project.root / "keys" / "intruder.pub"
    assert model_signing_accepts(model, sig, pub) and mlspec_accepts(model, sig, pub)
    model.write_bytes(b"other")
    assert not model_signing_accepts(model, sig, pub) and not mlspec_accepts(model, sig, pub)


def test_ed25519_oms_signature_is_for_mlspec_only(project: Project, tmp_path: Path) -> None:
    """model-signing's key verifier takes EC keys only (documented): mlspec still checks it."""
    pkg = project.root / "m"
    project.write("m/w.bin", "w")
    sig = tmp_path / "model.sig"
    sig.write_bytes(sign_oms(pkg, load_signer(project.key("pipeline"))))
    assert mlspec_accepts(pkg, sig, project.root / "keys" / "pipeline.pub")


@pytest.mark.parametrize("args, why", [
    (["attest", "stage", "train", "--bundle", "bundle", "--key", "keys/intruder.key", "--product", "pkg",
      "--oms-signature"], "package stage"),
    (["attest", "stage", "package", "--bundle", "bundle", "--sigstore", "--product", "pkg", "--oms-signature"],
     "--sigstore"),
    (["attest", "stage", "package", "--bundle", "bundle", "--key", "keys/intruder.key", "--oms-signature"],
     "no --product"),
])
def test_oms_signature_misuse_is_refused_with_nothing_written(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                              args: list[str], why: str) -> None:
    project.write("pkg/w.bin", "w")
    monkeypatch.chdir(project.root)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and why in res.output, res.output
    assert not (project.root / "pkg" / "model.sig").exists()
    assert not list((project.root / "bundle").glob("attestations/*"))


def _generic_bundle(project: Project, tmp_path: Path, subject: dict) -> Path:
    statement = {"_type": "https://in-toto.io/Statement/v1", "subject": [subject],
                 "predicateType": "https://example.com/other/v1", "predicate": {}}
    out = tmp_path / "generic.sigstore.json"
    out.write_bytes(key_signed_bundle(canonicalize(statement), load_signer(project.key("intruder"))))
    return out


def test_directory_against_a_statement_that_binds_no_names_is_refused(project: Project, tmp_path: Path) -> None:
    """A plain directory digest does not bind names: a renamed file would pass, so it is refused."""
    project.write("m/a", "1")
    project.write("m/b", "2")
    d = digest_path(project.root / "m")
    pub = project.root / "keys" / "intruder.pub"
    bare = _generic_bundle(project, tmp_path, {"name": "m", "digest": {"sha256": d.sha256}})
    with pytest.raises(EvidenceVerificationError, match="does not bind its file names"):
        verify_evidence(bare, trust_config=None, artifact=project.root / "m", key=pub)
    bound = _generic_bundle(project, tmp_path, {"name": "m", "digest": {"sha256": d.sha256}, "annotations": {
        "mlspec.dev/manifest-sha256": d.manifest_sha256}})
    verify_evidence(bound, trust_config=None, artifact=project.root / "m", key=pub)
    (project.root / "m" / "b").rename(project.root / "m" / "c")  # same digest order, other name
    assert digest_path(project.root / "m").sha256 == d.sha256
    with pytest.raises(EvidenceVerificationError, match="does not bind its file names"):
        verify_evidence(bound, trust_config=None, artifact=project.root / "m", key=pub)
