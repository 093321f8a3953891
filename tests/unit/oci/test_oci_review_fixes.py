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
from datetime import timedelta
from pathlib import Path

import pytest
from oci_registry import Demo, demo_fixture, demo_project_fixture, registry_fixture, repo_fixture  # noqa: F401 - fixtures

from mlspec_attest.digests import digest_path, files_digest
from mlspec_attest.manifest import encode
from mlspec_attest.oci.gate import GateResult, gate
from mlspec_attest.oci.reference import OciReference
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
    from mlspec_attest.attest.head import sign_head
    from mlspec_attest.keys import load_signer
    from mlspec_attest.model.canonical import canonicalize
    from mlspec_attest.model.envelope import pae

    evil = tmp_path / "pkgB"
    shutil.copytree(demo.package, evil)
    (evil / "sitecustomize.py").write_text("import os\n")
    data = encode(digest_path(evil).files)
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
    return evil


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
