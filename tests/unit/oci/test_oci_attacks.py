"""``mlspec verify oci://`` against someone who can push to the repository (or is the registry).

Each test plays one attacker against a real registry (docker-registry on 127.0.0.1) and
shows the refusal by its finding code. The rule under attack (docs/storage.md#oci-registries): a
chain counts only if its subject is this manifest, every attestation is signed by a
trusted key, and the layers are exactly the package's signed files; of those the newest
wins, so an extra referrer can neither pass the gate nor deny it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from oci_registry import Demo, demo_fixture, demo_project_fixture, push_demo, registry_fixture, repo_fixture  # noqa: F401 - fixtures

from mlspec_attest.model.canonical import parse_json
from mlspec_attest.oci.gate import MAX_CHAINS, GateResult, gate
from mlspec_attest.oci.layout import (
    CHAIN_ARTIFACT_TYPE,
    EMPTY,
    FILE_MEDIA_TYPE,
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    TITLE,
    Descriptor,
    Manifest,
    descriptor_of,
    encode_index,
    fallback_tag,
)
from mlspec_attest.oci.reference import OciReference
from mlspec_attest.oci.registry import RegistryClient


def _gate(ref: OciReference, demo: Demo, tmp_path: Path) -> GateResult:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return gate(ref, demo.policy, work, plain_http=True, log_dir=demo.log)


def _codes(result: GateResult, severity: str | None = None) -> set[str]:
    return {f.code for f in result.report.findings if severity is None or f.severity == severity}


def _manifest(client: RegistryClient, reference: str) -> tuple[Manifest, str]:
    got = client.get_manifest(reference)
    assert got is not None
    return Manifest.from_dict(parse_json(got[0]), reference), got[1]


def _put(client: RegistryClient, manifest: Manifest, reference: str | None = None) -> Descriptor:
    client.upload_bytes(b"{}", EMPTY)
    data = manifest.encode()
    client.put_manifest(data, reference or descriptor_of(MANIFEST_MEDIA_TYPE, data).digest)
    return manifest.descriptor()


def _set_referrers(client: RegistryClient, subject: str, descriptors: list[Descriptor]) -> None:
    """What anyone with push access can do on a registry without the referrers API: rewrite the tag index."""
    client.put_manifest(encode_index(descriptors), fallback_tag(subject), media_type=INDEX_MEDIA_TYPE)


def _pushed(demo: Demo, repo: OciReference) -> tuple[RegistryClient, OciReference, Manifest, Manifest]:
    """Push the demo; return (client, model ref by digest, model manifest, chain manifest)."""
    result = push_demo(demo, repo)
    model_ref = OciReference.parse(result.model)
    client = RegistryClient(repo, plain_http=True)
    model, _ = _manifest(client, str(model_ref.digest))
    chain, _ = _manifest(client, result.chain)
    return client, model_ref, model, chain


def _blob(client: RegistryClient, data: bytes, title: str) -> Descriptor:
    layer = descriptor_of(FILE_MEDIA_TYPE, data, {TITLE: title})
    client.upload_bytes(data, layer)
    return layer


def _rehome(client: RegistryClient, chain: Manifest, subject: Descriptor) -> Descriptor:
    """The same chain layers, attached to another subject (a new referrer manifest)."""
    moved = Manifest(chain.artifact_type, chain.config, chain.layers, subject=subject, annotations=chain.annotations)
    return _put(client, moved)


def _model_with(client: RegistryClient, model: Manifest, layers: tuple[Descriptor, ...], tag: str,
                chain: Manifest) -> OciReference:
    """A new model manifest with ``layers`` under ``tag``, with the legitimate chain attached to it."""
    forged = Manifest(model.artifact_type, model.config, layers, annotations=model.annotations)
    subject = _put(client, forged, tag)
    subject = Descriptor(subject.media_type, subject.digest, subject.size, {})
    _set_referrers(client, subject.digest, [_rehome(client, chain, subject)])
    return client.ref.with_digest(subject.digest)


def test_the_pushed_demo_passes_from_the_registry(demo: Demo, repo: OciReference, tmp_path: Path) -> None:
    _, model_ref, model, chain = _pushed(demo, repo)
    result = _gate(model_ref, demo, tmp_path)
    assert result.report.passed, [(f.code, f.message) for f in result.report.findings]
    assert len(result.report.stages) == 13
    assert {layer.title for layer in model.layers} == {p.name for p in demo.package.iterdir()}
    assert chain.subject is not None and chain.subject.digest == model_ref.digest
    assert all(layer.media_type == "application/vnd.dsse.envelope.v1+json"
               for layer in chain.layers if str(layer.title).endswith(".dsse.json"))
    by_tag = _gate(repo, demo, tmp_path)  # the tag resolves to the same manifest
    assert by_tag.report.passed and by_tag.model_digest == model_ref.digest


def test_a_layer_swapped_for_another_model_file_is_refused(demo: Demo, repo: OciReference, tmp_path: Path) -> None:
    """Attack: push a manifest whose model.pkl layer is another model, attach the genuine chain to it."""
    client, _, model, chain = _pushed(demo, repo)
    evil = _blob(client, b"not the trained model", "model.pkl")
    layers = tuple(evil if layer.title == "model.pkl" else layer for layer in model.layers)
    result = _gate(_model_with(client, model, layers, "swapped", chain), demo, tmp_path)
    assert not result.report.passed
    assert {"OCI_LAYER_MISMATCH", "OCI_NO_TRUSTED_CHAIN"} <= _codes(result, "error")
    assert any("differ: model.pkl" in f.message for f in result.report.findings)


@pytest.mark.parametrize("change", ["extra", "missing", "renamed", "duplicate", "untitled"])
def test_layers_must_be_exactly_the_packaged_files(demo: Demo, repo: OciReference, tmp_path: Path,
                                                    change: str) -> None:
    """Attack: an extra layer (a loader hook), a dropped one, a renamed one, a repeated name, a nameless layer."""
    client, _, model, chain = _pushed(demo, repo)
    layers = list(model.layers)
    if change == "extra":
        layers.append(_blob(client, b"import os; os.system('id')", "sitecustomize.py"))
    elif change == "missing":
        layers.pop()
    elif change == "renamed":
        first = layers[0]
        layers[0] = Descriptor(first.media_type, first.digest, first.size, {TITLE: "other.json"})
    elif change == "duplicate":
        layers.append(_blob(client, b"shadow", str(layers[0].title)))
    else:
        layers.append(Descriptor(FILE_MEDIA_TYPE, layers[0].digest, layers[0].size, {}))
    result = _gate(_model_with(client, model, tuple(layers), change, chain), demo, tmp_path)
    assert not result.report.passed
    assert "OCI_LAYER_MISMATCH" in _codes(result, "error")


def test_a_chain_attached_to_a_different_subject_does_not_count(demo: Demo, repo: OciReference,
                                                                tmp_path: Path) -> None:
    """Attack: list model A's genuine chain referrer (subject A) in the referrers of model B.

    B even has the same files (only an annotation differs), so without the subject check it would pass.
    """
    client, model_ref, model, chain = _pushed(demo, repo)
    twin = Manifest(model.artifact_type, model.config, model.layers, annotations={"x": "twin"})
    twin_desc = _put(client, twin, "twin")
    _set_referrers(client, twin_desc.digest, [Descriptor(MANIFEST_MEDIA_TYPE, chain.descriptor().digest,
                                                         chain.descriptor().size, {}, CHAIN_ARTIFACT_TYPE)])
    result = _gate(repo.with_digest(twin_desc.digest), demo, tmp_path)
    assert not result.report.passed
    assert {"OCI_SUBJECT_MISMATCH", "OCI_NO_TRUSTED_CHAIN"} <= _codes(result, "error")
    assert _gate(model_ref, demo, tmp_path).report.passed  # the genuine one is untouched


def test_an_index_entry_whose_digest_or_size_does_not_match_is_refused(demo: Demo, repo: OciReference,
                                                                        tmp_path: Path) -> None:
    """Attack: the referrers index lists a descriptor that is not the manifest it names.

    A size that differs from the manifest's, or the digest of a manifest that is no chain
    (here the model itself, labelled as a chain). Neither counts, and neither denies the
    genuine chain when it is listed too.
    """
    client, model_ref, model, chain = _pushed(demo, repo)
    real = chain.descriptor()
    short = Descriptor(MANIFEST_MEDIA_TYPE, real.digest, real.size - 10, {}, CHAIN_ARTIFACT_TYPE)
    model_desc = model.descriptor()
    mislabelled = Descriptor(MANIFEST_MEDIA_TYPE, model_desc.digest, model_desc.size, {}, CHAIN_ARTIFACT_TYPE)
    assert model_ref.digest
    _set_referrers(client, model_ref.digest, [short, mislabelled])
    result = _gate(model_ref, demo, tmp_path)
    assert not result.report.passed
    assert {"OCI_DIGEST_MISMATCH", "OCI_REFERRER_INVALID", "OCI_NO_TRUSTED_CHAIN"} <= _codes(result, "error")
    _set_referrers(client, model_ref.digest, [short, mislabelled, real])
    result = _gate(model_ref, demo, tmp_path)
    assert result.report.passed, [(f.code, f.message) for f in result.report.findings]
    assert "OCI_REFERRER_IGNORED" in _codes(result, "warning")


def test_a_chain_for_another_model_is_refused(demo: Demo, repo: OciReference, tmp_path: Path) -> None:
    """Attack: attach a genuine, passing chain to a model it never packaged (another requirements.txt)."""
    client, _, model, chain = _pushed(demo, repo)
    other = _blob(client, b"numpy==1.0\nevil-package==6.6.6\n", "requirements.txt")
    layers = tuple(other if layer.title == "requirements.txt" else layer for layer in model.layers)
    result = _gate(_model_with(client, model, layers, "other-model", chain), demo, tmp_path)
    assert not result.report.passed
    assert "OCI_LAYER_MISMATCH" in _codes(result, "error")


def _forged_bundle(demo: Demo, tmp_path: Path) -> Path:
    """The genuine chain with one signed payload altered: its signatures no longer verify."""
    forged = tmp_path / "forged"
    shutil.copytree(demo.bundle, forged)
    target = forged / "attestations" / "0008-test.dsse.json"
    doc = json.loads(target.read_bytes())
    import base64

    payload = json.loads(base64.b64decode(doc["payload"]))
    payload["predicate"]["metadata"]["metrics"]["accuracy"] = 0.99
    doc["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    target.write_text(json.dumps(doc))
    return forged


def _attach_bundle(client: RegistryClient, bundle: Path, subject: Descriptor) -> Descriptor:
    from mlspec_attest.oci.layout import bundle_media_type
    from mlspec_attest.oci.push import bundle_files

    layers = []
    for rel, data in bundle_files(bundle):
        layer = descriptor_of(bundle_media_type(rel), data, {TITLE: rel})
        client.upload_bytes(data, layer)
        layers.append(layer)
    return _put(client, Manifest(CHAIN_ARTIFACT_TYPE, EMPTY, tuple(layers), subject=subject))


def test_a_forged_chain_can_neither_pass_nor_deny(demo: Demo, repo: OciReference, tmp_path: Path) -> None:
    """Attack: attach a second chain whose payloads the attacker edited (no trusted signature)."""
    client, model_ref, _, chain = _pushed(demo, repo)
    assert chain.subject is not None and model_ref.digest
    forged = _attach_bundle(client, _forged_bundle(demo, tmp_path), chain.subject)
    _set_referrers(client, model_ref.digest, [forged, chain.descriptor()])
    result = _gate(model_ref, demo, tmp_path)
    assert result.report.passed, [(f.code, f.message) for f in result.report.findings]
    assert result.chosen is not None and result.chosen.descriptor.digest == chain.descriptor().digest
    assert any(f.code == "OCI_REFERRER_IGNORED" and "OCI_CHAIN_UNTRUSTED" in f.message
               for f in result.report.findings), [(f.code, f.message) for f in result.report.findings]
    _set_referrers(client, model_ref.digest, [forged])  # the forged one alone
    result = _gate(model_ref, demo, tmp_path)
    assert not result.report.passed
    assert {"OCI_CHAIN_UNTRUSTED", "OCI_NO_TRUSTED_CHAIN"} <= _codes(result, "error")


def test_an_older_chain_cannot_hide_a_newer_failing_one(demo: Demo, repo: OciReference, tmp_path: Path) -> None:
    """Attack: keep the earlier, passing chain attached after a new monitor reading failed its objectives."""
    client, model_ref, _, chain = _pushed(demo, repo)
    report_path = demo.root / "reports" / "monitor.json"
    reading = json.loads(report_path.read_text())
    reading["signals"]["error_rate"] = 0.5
    report_path.write_text(json.dumps(reading))
    out = subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", "attest", "stage", "monitor", "--material",
                          "package=package/credit-model", "--metadata", "reports/monitor.json"],
                         cwd=demo.root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert chain.subject is not None and model_ref.digest
    newer = _attach_bundle(client, demo.bundle, chain.subject)
    _set_referrers(client, model_ref.digest, [chain.descriptor(), newer])
    result = _gate(model_ref, demo, tmp_path)
    assert not result.report.passed
    assert result.chosen is not None and result.chosen.descriptor.digest == newer.digest
    assert len(result.report.stages) == 14
    assert "OBJECTIVE_FAILED" in _codes(result, "error") or any("monitor_live_health" in f.message
                                                                 for f in result.report.findings)


def test_a_truncated_copy_of_the_chain_is_not_chosen(demo: Demo, repo: OciReference, tmp_path: Path) -> None:
    """Attack: attach a prefix of the genuine chain (last attestations dropped) beside it."""
    client, model_ref, _, chain = _pushed(demo, repo)
    short = tmp_path / "short"
    shutil.copytree(demo.bundle, short)
    for name in ("0012-log.dsse.json", "0011-monitor.dsse.json"):
        (short / "attestations" / name).unlink()
    assert chain.subject is not None and model_ref.digest
    prefix = _attach_bundle(client, short, chain.subject)
    _set_referrers(client, model_ref.digest, [prefix, chain.descriptor()])
    result = _gate(model_ref, demo, tmp_path)
    assert result.chosen is not None and result.chosen.descriptor.digest == chain.descriptor().digest
    assert len(result.report.stages) == 13


def test_a_flood_of_chain_referrers_is_refused(demo: Demo, repo: OciReference, tmp_path: Path) -> None:
    """More distinct chain referrers than the gate verifies: refused; the same one listed many times is one."""
    client, model_ref, _, chain = _pushed(demo, repo)
    real = chain.descriptor()
    assert model_ref.digest and chain.subject is not None
    _set_referrers(client, model_ref.digest, [real] * (MAX_CHAINS + 1))
    assert _gate(model_ref, demo, tmp_path).report.passed
    copies = [_put(client, Manifest(CHAIN_ARTIFACT_TYPE, EMPTY, chain.layers, subject=chain.subject,
                                    annotations={"copy": str(i)})) for i in range(MAX_CHAINS + 1)]
    _set_referrers(client, model_ref.digest, copies)
    result = _gate(model_ref, demo, tmp_path)
    assert not result.report.passed and "OCI_TOO_MANY_REFERRERS" in _codes(result, "error")


def test_a_copy_of_the_chain_without_its_head_cannot_deny_it(demo: Demo, repo: OciReference,
                                                             tmp_path: Path) -> None:
    """Attack: list first a copy of the genuine chain without head.dsse.json (it fails HEAD_MISSING)."""
    client, model_ref, _, chain = _pushed(demo, repo)
    assert model_ref.digest and chain.subject is not None
    headless = _put(client, Manifest(CHAIN_ARTIFACT_TYPE, EMPTY,
                                     tuple(d for d in chain.layers if d.title != "head.dsse.json"),
                                     subject=chain.subject))
    _set_referrers(client, model_ref.digest, [headless])
    alone = _gate(model_ref, demo, tmp_path)
    assert not alone.report.passed and "HEAD_MISSING" in _codes(alone, "error")
    _set_referrers(client, model_ref.digest, [headless, chain.descriptor()])
    result = _gate(model_ref, demo, tmp_path)
    assert result.report.passed, [(f.code, f.message) for f in result.report.findings]
    assert result.chosen is not None and result.chosen.descriptor.digest == chain.descriptor().digest


@pytest.mark.parametrize("retype", ["tar+gzip", "unpack", "config"])
def test_layers_typed_for_unpacking_are_refused(demo: Demo, repo: OciReference, tmp_path: Path,
                                                retype: str) -> None:
    """Attack: same files and digests, but a layer typed as an archive (or marked for unpacking), or an image
    config: ORAS and other clients would turn signed bytes into files (or a runnable image) nobody attested."""
    client, _, model, chain = _pushed(demo, repo)
    first, *rest = model.layers
    config = model.config
    if retype == "tar+gzip":
        first = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", first.digest, first.size, first.annotations)
    elif retype == "unpack":
        first = Descriptor(first.media_type, first.digest, first.size,
                           {**first.annotations, "io.deis.oras.content.unpack": "true"})
    else:
        data = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        config = descriptor_of("application/vnd.oci.image.config.v1+json", data)
        client.upload_bytes(data, config)
    forged = Manifest(model.artifact_type, config, (first, *rest), annotations=model.annotations)
    subject = _put(client, forged, retype.replace("+", "-"))
    subject = Descriptor(subject.media_type, subject.digest, subject.size, {})
    _set_referrers(client, subject.digest, [_rehome(client, chain, subject)])
    result = _gate(client.ref.with_digest(subject.digest), demo, tmp_path)
    assert not result.report.passed
    assert "OCI_LAYER_MISMATCH" in _codes(result, "error")


def test_a_model_without_a_chain_fails(demo: Demo, repo: OciReference, tmp_path: Path) -> None:
    client, _, model, _ = _pushed(demo, repo)
    bare = _put(client, Manifest(model.artifact_type, model.config, model.layers, annotations={"bare": "1"}), "bare")
    result = _gate(repo.with_digest(bare.digest), demo, tmp_path)
    assert not result.report.passed and _codes(result) == {"OCI_NO_CHAIN"}


@pytest.mark.parametrize("title", ["../escape.dsse.json", "attestations/../../escape", "/tmp/escape",
                                   "elsewhere/0000-x.dsse.json", "head.dsse.json/x"])
def test_chain_layer_names_cannot_leave_the_download_directory(demo: Demo, repo: OciReference, tmp_path: Path,
                                                               title: str) -> None:
    client, model_ref, _, chain = _pushed(demo, repo)
    evil = descriptor_of("application/vnd.dsse.envelope.v1+json", b"{}", {TITLE: title})
    client.upload_bytes(b"{}", evil)
    assert chain.subject is not None and model_ref.digest
    forged = _put(client, Manifest(CHAIN_ARTIFACT_TYPE, EMPTY, (*chain.layers, evil), subject=chain.subject))
    _set_referrers(client, model_ref.digest, [forged])
    result = _gate(model_ref, demo, tmp_path)
    assert "OCI_REFERRER_INVALID" in _codes(result, "error")
    assert not (tmp_path / "escape.dsse.json").exists() and not Path("/tmp/escape").exists()
