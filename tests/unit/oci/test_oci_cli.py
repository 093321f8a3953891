"""``mlspec push``, ``mlspec pull`` and ``mlspec verify oci://`` as a release engineer runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from oci_registry import (  # noqa: F401 - fixtures
    MISSING,
    Demo,
    demo_fixture,
    demo_project_fixture,
    htpasswd_line,
    registry_fixture,
    repo_fixture,
    running_registry,
)

from mlspec_attest.oci.layout import DSSE_MEDIA_TYPE, PREDICATE_TYPE_ANNOTATIONS, VSA_PREDICATE_TYPE
from mlspec_attest.oci.reference import OciReference
from mlspec_attest.oci.registry import RegistryClient

REPO_ROOT = Path(__file__).resolve().parents[3]


def mlspec(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    full_env.pop("MLSPEC_KEY_PASSPHRASE", None)
    return subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=300)


def _one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_push_verify_pull_round_trip(demo: Demo, repo: OciReference, tmp_path: Path) -> None:
    vsa = tmp_path / "vsa.dsse.json"
    out = mlspec("verify", "bundle", "--artifact", "package/credit-model", "--vsa", str(vsa), "--vsa-key",
                 "keys/owner.key", cwd=demo.root)
    assert out.returncode == 0, out.stderr
    out = mlspec("push", "bundle", str(repo), "--plain-http", "--vsa", str(vsa), cwd=demo.root)
    assert out.returncode == 0, out.stderr
    model = next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("model:"))
    assert "(pushed)" in out.stdout and "vsa:" in out.stdout
    # pushing again re-uses the artifact that is already there
    again = mlspec("push", "bundle", str(repo), "--plain-http", cwd=demo.root)
    assert again.returncode == 0 and "(already there)" in again.stdout, again.stderr
    # the VSA is its own referrer, typed so that admission controllers find it by predicate type
    client = RegistryClient(repo, plain_http=True)
    referrers, via = client.referrers(OciReference.parse(model).digest or "")
    assert via == "referrers tag schema"
    vsas = [d for d in referrers if d.artifact_type == DSSE_MEDIA_TYPE]
    assert len(vsas) == 1
    assert all(vsas[0].annotations[k] == VSA_PREDICATE_TYPE for k in PREDICATE_TYPE_ANNOTATIONS)
    out = mlspec("verify", model, "--plain-http", "--format", "json", cwd=demo.root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["verdict"] == "pass"
    pulled = tmp_path / "pulled"
    out = mlspec("pull", model, str(pulled), "--plain-http", cwd=demo.root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(p.name for p in (pulled / "artifact").iterdir()) == sorted(p.name for p in demo.package.iterdir())
    out = mlspec("verify", str(pulled / "bundle"), "--artifact", str(pulled / "artifact"), cwd=demo.root)
    assert out.returncode == 0, out.stdout + out.stderr


def test_push_refuses_an_artifact_the_chain_does_not_bind(demo: Demo, repo: OciReference) -> None:
    """Attack: push a tampered package under the genuine chain; refused, and nothing reaches the registry."""
    tampered = demo.root / "tampered"
    shutil.copytree(demo.package, tampered)
    (tampered / "requirements.txt").write_text("evil==1\n")
    out = mlspec("push", "bundle", str(repo), "--plain-http", "--artifact", "tampered", cwd=demo.root)
    assert out.returncode == 1, out.stderr
    assert "ARTIFACT_MISMATCH" in out.stdout and "refusing to push" in out.stderr
    assert not RegistryClient(repo, plain_http=True).manifest_exists(str(repo.tag))


@pytest.mark.parametrize("args,expected", [
    (("verify", "oci://registry.example.com/m:v1", "--plain-http"), "loopback registries only"),
    (("verify", "oci://10.1.2.3:5000/m:v1", "--plain-http"), "loopback registries only"),
    (("push", "bundle", "oci://registry.example.com/m:v1", "--plain-http"), "loopback registries only"),
    (("pull", "oci://registry.example.com/m@sha256:" + "a" * 64, "out", "--plain-http"), "loopback registries only"),
    (("verify", "oci://127.0.0.1:1/m:v1", "--plain-http"), "cannot reach the registry"),
    (("verify", "oci://u:p@127.0.0.1:1/m:v1"), "credentials never go in the URL"),
    (("verify", "oci://127.0.0.1/m:v1", "--artifact", "package/credit-model"), "--artifact is for a bundle on disk"),
    (("verify", "bundle", "--plain-http"), "--plain-http applies to an oci:// BUNDLE only"),
    (("push", "bundle", "oci://127.0.0.1:5000/m@sha256:" + "a" * 64), "push to a tag"),
])
def test_bad_registry_input_is_one_line_exit_2(demo: Demo, args: tuple[str, ...], expected: str) -> None:
    assert expected in _one_line_error(mlspec(*args, cwd=demo.root))
    assert not (demo.root / "out").exists()


def test_pull_needs_a_new_or_empty_directory(demo: Demo, repo: OciReference, tmp_path: Path) -> None:
    out = mlspec("push", "bundle", str(repo), "--plain-http", cwd=demo.root)
    assert out.returncode == 0, out.stderr
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    line = _one_line_error(mlspec("pull", str(repo), str(taken), "--plain-http", cwd=demo.root))
    assert "not an empty directory" in line
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert mlspec("pull", str(repo), str(empty), "--plain-http", cwd=demo.root).returncode == 0
    assert (empty / "bundle" / "attestations").is_dir()


def test_pull_writes_nothing_when_the_gate_fails(demo: Demo, repo: OciReference, tmp_path: Path) -> None:
    """A model whose chain does not bind its layers: exit 1, DIR never created, no staging left behind."""
    out = mlspec("push", "bundle", str(repo), "--plain-http", cwd=demo.root)
    assert out.returncode == 0, out.stderr
    client = RegistryClient(repo, plain_http=True)
    from mlspec_attest.model.canonical import parse_json
    from mlspec_attest.oci.layout import Manifest

    got = client.get_manifest(str(repo.tag))
    assert got is not None
    model = Manifest.from_dict(parse_json(got[0]), "model")
    bare = Manifest(model.artifact_type, model.config, model.layers[:-1], annotations={"x": "1"})
    client.put_manifest(bare.encode(), "bare")
    pulls = tmp_path / "pulls"
    pulls.mkdir()
    target = pulls / "out"
    out = mlspec("pull", str(OciReference.parse(f"oci://{repo.registry}/{repo.repository}:bare")), str(target),
                 "--plain-http", cwd=demo.root)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "OCI_NO_CHAIN" in out.stdout
    assert list(pulls.iterdir()) == []


def test_credentials_come_from_the_environment_and_are_never_printed(demo: Demo, tmp_path: Path) -> None:
    if MISSING:
        pytest.skip(MISSING)
    secret = "s3cret-Pa55-never-printed"
    with running_registry(tmp_path, htpasswd=htpasswd_line("ci", secret)) as address:
        target = f"oci://{address}/private/model:v1"
        denied = mlspec("push", "bundle", target, "--plain-http", cwd=demo.root)
        assert "access denied" in _one_line_error(denied)
        wrong = mlspec("push", "bundle", target, "--plain-http", cwd=demo.root,
                       env={"MLSPEC_REGISTRY_USERNAME": "ci", "MLSPEC_REGISTRY_PASSWORD": secret + "x"})
        assert "access denied" in _one_line_error(wrong)
        assert secret not in wrong.stdout + wrong.stderr
        env = {"MLSPEC_REGISTRY_USERNAME": "ci", "MLSPEC_REGISTRY_PASSWORD": secret}
        out = mlspec("push", "bundle", target, "--plain-http", cwd=demo.root, env=env)
        assert out.returncode == 0, out.stderr
        model = next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("model:"))
        out = mlspec("verify", model, "--plain-http", cwd=demo.root, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert secret not in out.stdout + out.stderr
