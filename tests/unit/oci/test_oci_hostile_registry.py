"""A registry that lies (or a machine in the middle of loopback HTTP): every byte is checked and capped.

ORAS does not verify what it downloads; the gate does (oci/registry.py). Each test serves
one lie through a proxy in front of the real registry and shows the refusal.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from oci_registry import (  # noqa: F401 - fixtures
    Demo,
    HostileRegistry,
    demo_fixture,
    demo_project_fixture,
    push_demo,
    registry_fixture,
    repo_fixture,
)

from mlspec_attest.model.canonical import parse_json
from mlspec_attest.oci.gate import GateResult, gate
from mlspec_attest.oci.layout import (
    CHAIN_ARTIFACT_TYPE,
    EMPTY,
    TITLE,
    Descriptor,
    Manifest,
    encode_index,
    fallback_tag,
)
from mlspec_attest.oci.reference import OciReference
from mlspec_attest.oci.registry import RegistryClient


@pytest.fixture
def hostile(registry: str) -> Iterator[HostileRegistry]:
    proxy = HostileRegistry(registry)
    yield proxy
    proxy.close()


def _setup(demo: Demo, repo: OciReference, hostile: HostileRegistry) -> tuple[OciReference, Manifest, str]:
    result = push_demo(demo, repo)
    model_ref = OciReference.parse(result.model)
    client = RegistryClient(repo, plain_http=True)
    got = client.get_manifest(result.chain)
    assert got is not None
    through = OciReference.parse(f"oci://{hostile.address}/{repo.repository}@{model_ref.digest}")
    return through, Manifest.from_dict(parse_json(got[0]), "chain"), result.chain


def _gate(ref: OciReference, demo: Demo, tmp_path: Path) -> GateResult:
    return gate(ref, demo.policy, tmp_path, plain_http=True, log_dir=demo.log)


def _codes(result: GateResult) -> set[str]:
    return {f.code for f in result.report.findings if f.severity == "error"}


def test_the_proxy_alone_changes_nothing(demo: Demo, repo: OciReference, hostile: HostileRegistry,
                                         tmp_path: Path) -> None:
    through, _, _ = _setup(demo, repo, hostile)
    assert _gate(through, demo, tmp_path).report.passed


def test_a_model_manifest_that_is_not_its_digest_is_refused(demo: Demo, repo: OciReference,
                                                            hostile: HostileRegistry, tmp_path: Path) -> None:
    through, _, _ = _setup(demo, repo, hostile)
    hostile.overrides[f"/v2/{repo.repository}/manifests/{through.digest}"] = (200, b'{"schemaVersion": 2}')
    result = _gate(through, demo, tmp_path)
    assert not result.report.passed and "OCI_DIGEST_MISMATCH" in _codes(result)


def test_a_chain_blob_with_other_bytes_is_refused(demo: Demo, repo: OciReference, hostile: HostileRegistry,
                                                  tmp_path: Path) -> None:
    """The registry serves a different (same-size) envelope for a chain layer's digest."""
    through, chain, _ = _setup(demo, repo, hostile)
    layer = next(d for d in chain.layers if d.title == "attestations/0008-test.dsse.json")
    hostile.overrides[f"/v2/{repo.repository}/blobs/{layer.digest}"] = (200, b"x" * layer.size)
    result = _gate(through, demo, tmp_path)
    assert not result.report.passed
    assert {"OCI_DIGEST_MISMATCH", "OCI_NO_TRUSTED_CHAIN"} <= _codes(result)


def test_an_endless_blob_is_cut_at_its_declared_size(demo: Demo, repo: OciReference, hostile: HostileRegistry,
                                                     tmp_path: Path) -> None:
    """The registry streams a chain layer forever (no Content-Length): reading stops past the descriptor's size."""
    through, chain, _ = _setup(demo, repo, hostile)
    layer = next(d for d in chain.layers if d.title == "attestations/0008-test.dsse.json")
    sent = itertools.count()
    endless = (b"\\0" * 65536 for _ in iter(lambda: next(sent) < 10**7, False))
    hostile.overrides[f"/v2/{repo.repository}/blobs/{layer.digest}"] = (200, endless)
    result = _gate(through, demo, tmp_path)
    assert not result.report.passed and "OCI_DIGEST_MISMATCH" in _codes(result)
    assert next(sent) < 10**6  # stopped early, not after 10**7 chunks


def test_a_huge_declared_blob_is_refused_before_it_is_requested(demo: Demo, repo: OciReference,
                                                                hostile: HostileRegistry, tmp_path: Path) -> None:
    """The registry lists a chain whose layer declares 100 GiB: refused from the descriptor, never fetched."""
    through, chain, _ = _setup(demo, repo, hostile)
    huge = Descriptor("application/vnd.dsse.envelope.v1+json", "sha256:" + "1" * 64, 100 * 2**30,
                      {TITLE: "attestations/0099-monitor.dsse.json"})
    forged = Manifest(CHAIN_ARTIFACT_TYPE, EMPTY, (*chain.layers, huge), subject=chain.subject)
    data = forged.encode()
    desc = forged.descriptor()
    assert through.digest
    hostile.overrides[f"/v2/{repo.repository}/manifests/{desc.digest}"] = (200, data)
    hostile.overrides[f"/v2/{repo.repository}/manifests/{fallback_tag(through.digest)}"] = (
        200, encode_index([Descriptor(desc.media_type, desc.digest, desc.size, {}, CHAIN_ARTIFACT_TYPE)]))
    result = _gate(through, demo, tmp_path)
    assert not result.report.passed and "OCI_TOO_LARGE" in _codes(result)
    assert not any(huge.digest in path for path in hostile.seen)


def test_a_huge_manifest_is_refused(demo: Demo, repo: OciReference, hostile: HostileRegistry,
                                    tmp_path: Path) -> None:
    """A referrers index entry declaring a 1 GiB manifest is refused from its descriptor."""
    through, _, chain_digest = _setup(demo, repo, hostile)
    assert through.digest
    hostile.overrides[f"/v2/{repo.repository}/manifests/{fallback_tag(through.digest)}"] = (
        200, encode_index([Descriptor("application/vnd.oci.image.manifest.v1+json", chain_digest, 2**30, {},
                                      CHAIN_ARTIFACT_TYPE)]))
    result = _gate(through, demo, tmp_path)
    assert not result.report.passed and "OCI_TOO_LARGE" in _codes(result)
    assert not any(chain_digest in path for path in hostile.seen if "/manifests/sha256:" in path)


def test_the_referrers_api_is_asked_first_and_the_tag_index_then_ignored(demo: Demo, repo: OciReference,
                                                                         hostile: HostileRegistry,
                                                                         tmp_path: Path) -> None:
    """A registry with the OCI 1.1 referrers API: its answer is used, a stale or planted tag index is not."""
    through, chain, chain_digest = _setup(demo, repo, hostile)
    assert through.digest
    desc = chain.descriptor()
    listed = Descriptor(desc.media_type, chain_digest, desc.size, {}, CHAIN_ARTIFACT_TYPE)
    hostile.overrides[f"/v2/{repo.repository}/referrers/{through.digest}"] = (200, encode_index([listed]))
    hostile.overrides[f"/v2/{repo.repository}/manifests/{fallback_tag(through.digest)}"] = (200, b"not an index")
    result = _gate(through, demo, tmp_path)
    assert result.report.passed, [(f.code, f.message) for f in result.report.findings]
    assert not any(fallback_tag(through.digest) in path for path in hostile.seen)
    hostile.overrides[f"/v2/{repo.repository}/referrers/{through.digest}"] = (200, encode_index([]))
    result = _gate(through, demo, tmp_path)
    assert not result.report.passed and _codes(result) == {"OCI_NO_CHAIN"}
    assert any("referrers API" in f.message for f in result.report.findings)


def test_pull_of_a_layer_with_other_bytes_leaves_nothing(demo: Demo, repo: OciReference, hostile: HostileRegistry,
                                                         tmp_path: Path) -> None:
    """The gate passes on the descriptors, then the registry serves another model.pkl: exit 2, DIR not left behind."""
    from mlspec_attest.errors import InputError
    from mlspec_attest.oci.pull import pull

    through, _, _ = _setup(demo, repo, hostile)
    client = RegistryClient(through, plain_http=True)
    got = client.get_manifest(str(through.digest))
    assert got is not None
    model = Manifest.from_dict(parse_json(got[0]), "model")
    layer = next(d for d in model.layers if d.title == "model.pkl")
    hostile.overrides[f"/v2/{repo.repository}/blobs/{layer.digest}"] = (200, b"\x80" * layer.size)
    outside = tmp_path / "pulls"
    outside.mkdir()
    with pytest.raises(InputError, match="model.pkl"):
        pull(through, demo.policy, outside / "out", plain_http=True, log_dir=demo.log)
    assert list(outside.iterdir()) == []
    del hostile.overrides[f"/v2/{repo.repository}/blobs/{layer.digest}"]
    pull(through, demo.policy, outside / "out", plain_http=True, log_dir=demo.log)
    assert (outside / "out" / "artifact" / "model.pkl").read_bytes() == (demo.package / "model.pkl").read_bytes()
