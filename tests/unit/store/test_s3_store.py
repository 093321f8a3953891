"""S3 bundles: URL and endpoint rules, a hostile bucket's objects, and the gate reading straight from the store.

The server tests run against a real SeaweedFS (tests/seaweed.py); they skip only when it cannot start.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import obstore
import pytest
from conftest import Project, build_lifecycle
from seaweed import SeaweedS3

from mlspec_attest import bundle as bundle_mod
from mlspec_attest.errors import InputError
from mlspec_attest.project import Project as MlspecProject
from mlspec_attest.store import open_bundle
from mlspec_attest.store.s3 import S3Bundle, S3Store, endpoint_from_env, parse_location
from mlspec_attest.verify import verify_bundle

REPO = Path(__file__).resolve().parents[3]


# -- locations and endpoints (no server) -------------------------------------------------------
@pytest.mark.parametrize("url", ["s3://Bad_Bucket/p", "s3://ab/p", "s3:///p", "s3://bucket/../etc",
                                 "s3://bucket/a//b", "s3://bucket/a/./b", "s3://bucket/a b"])
def test_a_location_that_is_not_plain_bucket_and_prefix_is_refused(url: str) -> None:
    with pytest.raises(InputError, match="s3://BUCKET/PREFIX"):
        parse_location(url)


def test_bucket_and_prefix_are_split() -> None:
    assert parse_location("s3://my-bucket/team/model-a/") == ("my-bucket", "team/model-a")
    assert parse_location("s3://my-bucket") == ("my-bucket", "")


@pytest.mark.parametrize("endpoint", ["http://10.0.0.5:9000", "http://minio.internal", "http://127.0.0.1.evil.com",
                                      "http://[::ffff:10.0.0.1]:9000"])
def test_plain_http_to_anything_but_loopback_is_refused(endpoint: str) -> None:
    """Someone on the path could rewrite every object (and so the chain, the head, the blobs) over plain http."""
    with pytest.raises(InputError, match="only for a loopback endpoint"):
        endpoint_from_env({"AWS_ENDPOINT_URL": endpoint})


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8333", "http://127.8.9.10", "http://[::1]:9000",
                                      "http://localhost:9000"])
def test_plain_http_to_loopback_is_allowed(endpoint: str) -> None:
    assert endpoint_from_env({"AWS_ENDPOINT_URL": endpoint}) == (endpoint, True)


def test_the_loopback_rule_holds_for_every_endpoint_variable_obstore_reads() -> None:
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"):
        with pytest.raises(InputError, match="only for a loopback endpoint"):
            endpoint_from_env({name: "http://192.0.2.1:9000"})


def test_https_anywhere_and_no_endpoint_at_all() -> None:
    assert endpoint_from_env({"AWS_ENDPOINT_URL": "https://s3.example.com"}) == ("https://s3.example.com", False)
    assert endpoint_from_env({}) == (None, False)
    with pytest.raises(InputError, match="not an http"):
        endpoint_from_env({"AWS_ENDPOINT_URL": "ftp://127.0.0.1"})


def test_mlspec_yaml_bundle_may_be_an_s3_url(tmp_path: Path) -> None:
    (tmp_path / "mlspec.yaml").write_text("bundle: s3://team-bucket/pipelines/model-a\npolicy: policies/p.yaml\n")
    project = MlspecProject.load(tmp_path / "mlspec.yaml")
    assert project.bundle == "s3://team-bucket/pipelines/model-a"  # not mangled into a local path


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | env | {"PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", *args], cwd=cwd, env=child,
                          text=True, capture_output=True, timeout=180)


def test_an_unreachable_store_is_one_line_exit_2_and_never_shows_the_credentials(tmp_path: Path,
                                                                               project: Project) -> None:
    """Credentials are never printed: not in the message, not in a traceback (there is none)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    secret, key_id = "SECRET-do-not-print-4711", "AKIA-DO-NOT-PRINT"
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": key_id,
           "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": "us-east-1"}
    policy = project.policy()
    tmp_path = tmp_path / "cwd"
    tmp_path.mkdir()
    result = _cli(["verify", "s3://some-bucket/p", "--policy", str(policy)], env, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "s3://some-bucket/p" in result.stderr
    assert secret not in result.stdout + result.stderr and key_id not in result.stdout + result.stderr
    result = _cli(["verify", "s3://some-bucket/p", "--policy", str(policy)],
                  env | {"AWS_ENDPOINT_URL": "http://192.0.2.1:9000"}, tmp_path)
    assert result.returncode == 2 and "loopback" in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran


# -- against the server -------------------------------------------------------------------------
@pytest.fixture
def s3_chain(s3_env: SeaweedS3, project: Project) -> tuple[str, SeaweedS3, Project]:
    url = f"s3://{s3_env.new_bucket()}/pipe"
    project.bundle = url  # type: ignore[assignment]
    build_lifecycle(project)
    return url, s3_env, project


def _plant(server: SeaweedS3, url: str, name: str, data: bytes) -> None:
    bucket, prefix = parse_location(url)
    obstore.put(server.raw_store(bucket), f"{prefix}/{name}", data)


def test_the_gate_and_replay_read_straight_from_the_bucket(s3_chain: tuple[str, SeaweedS3, Project],
                                                           tmp_path: Path) -> None:
    url, server, project = s3_chain
    work = tmp_path / "gate"
    work.mkdir()
    result = _cli(["verify", url, "--policy", str(project.policy())], server.env(), work)
    assert result.returncode == 0, result.stdout + result.stderr
    replay = _cli(["replay", url, "--policy", str(project.policy())], server.env(), work)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    report = _cli(["report", url, "--policy", str(project.policy()), "--html", str(work / "r.html")],
                  server.env(), work)
    assert report.returncode == 0, report.stderr
    assert sorted(p.name for p in work.iterdir()) == ["r.html"]  # no local copy of the bundle was made


def test_an_edited_object_in_the_bucket_fails_the_gate(s3_chain: tuple[str, SeaweedS3, Project]) -> None:
    """Whoever can write the bucket can change bytes; the signatures and links still decide."""
    url, server, project = s3_chain
    victim = next(bf for bf in open_bundle(url).files() if bf.path.name.endswith("-test.dsse.json"))
    doc = json.loads(victim.data)
    doc["signatures"][0]["sig"] = base64.b64encode(bytes(64)).decode()
    _plant(server, url, f"attestations/{victim.path.name}", json.dumps(doc).encode())
    report = verify_bundle(url, project.policy())
    assert not report.passed
    assert {f.code for f in report.findings} & {"SIGNATURE_INVALID", "THRESHOLD_NOT_MET", "ENVELOPE_INVALID"}


def test_deleting_the_newest_objects_is_a_rollback(s3_chain: tuple[str, SeaweedS3, Project]) -> None:
    """Deleting the newest attestations (and their claims) from the bucket: the signed head says CHAIN_ROLLBACK."""
    url, server, project = s3_chain
    bucket, prefix = parse_location(url)
    store = server.raw_store(bucket)
    newest = max(bf.path.name for bf in open_bundle(url).files())
    obstore.delete(store, f"{prefix}/attestations/{newest}")
    obstore.delete(store, f"{prefix}/claims/{int(newest[:4]):012d}")
    codes = {f.code for f in verify_bundle(url, project.policy()).findings}
    assert "CHAIN_ROLLBACK" in codes


@pytest.mark.parametrize("name", ["attestations/0099-train.dsse.json.bak", "attestations/sub/0001-ingest.dsse.json",
                                  "attestations/.hidden", "attestations/.tmp-0123abcd", "attestations/0001-ingest.dsse.json%2F..%2F..%2Fx"])
def test_a_key_that_is_not_a_bundle_file_name_is_refused_not_fetched(
        s3_chain: tuple[str, SeaweedS3, Project], name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url, server, project = s3_chain
    _plant(server, url, name, b"{}")
    fetched: list[str] = []
    real = S3Store._get
    monkeypatch.setattr(S3Store, "_get", lambda self, n, **kw: fetched.append(n) or real(self, n, **kw))
    with pytest.raises(InputError, match="not a bundle file name"):
        verify_bundle(url, project.policy())
    assert fetched == []  # refused from the listing: not one object was read


def test_an_oversized_object_is_refused_from_the_listing_before_it_is_read(
        s3_chain: tuple[str, SeaweedS3, Project], monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile bucket's 10 GB object costs a listing, not a download (the caps are lowered to keep the test small)."""
    url, server, project = s3_chain
    _plant(server, url, "attestations/0013-monitor.dsse.json", b"x" * 5000)
    monkeypatch.setattr(bundle_mod, "MAX_INPUT_BYTES", 4096)
    fetched: list[str] = []
    real = S3Store._get
    monkeypatch.setattr(S3Store, "_get", lambda self, n, **kw: fetched.append(n) or real(self, n, **kw))
    with pytest.raises(InputError, match="more than the 4096"):
        verify_bundle(url, project.policy())
    assert fetched == []
    monkeypatch.setattr(bundle_mod, "MAX_INPUT_BYTES", 64 * 1024 * 1024)
    monkeypatch.setattr(bundle_mod, "MAX_BUNDLE_BYTES", 20_000)  # all objects together, from the listing too
    with pytest.raises(InputError, match="add up to more than 20000"):
        verify_bundle(url, project.policy())
    assert fetched == []


def test_a_blob_read_is_bounded_by_the_response_and_names_are_checked(
        s3_chain: tuple[str, SeaweedS3, Project]) -> None:
    """Blobs, evidence and the head are read through the same bounded reader; a '..' name is never sent."""
    url, server, _project = s3_chain
    bundle = open_bundle(url)
    _plant(server, url, "blobs/big", b"y" * 3000)
    with pytest.raises(InputError, match="more than the 2048 allowed"):
        bundle.read("blobs/big", limit=2048, what="blob")
    for name in ("blobs/../../other-prefix/x", "/blobs/x", "blobs//x", "evidence/\x1b[2Jx"):
        with pytest.raises(InputError, match="not a bundle file name"):
            bundle.read(name, what="blob")
    with pytest.raises(InputError, match="blob not found"):
        bundle.read("blobs/" + "0" * 64, what="blob")


def test_a_bundle_synced_from_disk_without_claims_is_appended_to_in_order(
        s3_env: SeaweedS3, project: Project) -> None:
    """A local bundle copied to the bucket (aws s3 sync) has no claims/: the next append follows its newest file."""
    build_lifecycle(project, stages=("objectives", "ingest", "analyze"))
    url = f"s3://{s3_env.new_bucket()}/synced"
    bucket, prefix = parse_location(url)
    for path in sorted(project.bundle.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            obstore.put(s3_env.raw_store(bucket), f"{prefix}/{path.relative_to(project.bundle)}", path.read_bytes())
    att = project.attestor("pipeline", bundle=url).attest(  # type: ignore[arg-type]
        "transform", materials=["raw/data.csv"], products=["work/clean.csv"],
        metadata={"transformations": [{"name": "dropna"}]})
    assert att.sequence == 3
    bundle = open_bundle(url)
    assert isinstance(bundle, S3Bundle)
    assert [bf.number for bf in bundle.files()] == [0, 1, 2, 3]
    codes = {f.code for f in verify_bundle(url, project.policy()).findings if f.severity == "error"}
    assert not codes & {"CHAIN_BROKEN", "CHAIN_FORK", "SEQUENCE_GAP", "HEAD_MISMATCH", "HEAD_BEHIND"}, codes


def test_the_demo_runs_its_chain_into_the_bucket_and_the_gate_passes_from_there(
        s3_env: SeaweedS3, tmp_path: Path) -> None:
    """docs/storage.md's walk-through: 'mlspec demo DIR --bundle s3://...' then 'mlspec verify s3://...' from the bucket."""
    pytest.importorskip("sklearn", reason="the demo extra (scikit-learn) is not installed")
    url = f"s3://{s3_env.new_bucket()}/credit-demo"
    env = s3_env.env() | {"MLSPEC_KEY_PASSPHRASE": "demo-passphrase"}
    run = _cli(["demo", str(tmp_path / "demo"), "--bundle", url], env, tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert "Deploy gate: PASSED. 13 attestations verified" in run.stdout
    printed = "mlspec attest stage monitor --material package=package/credit-model --metadata reports/monitor.json"
    assert printed in run.stdout  # the next step the demo prints is the one run below
    assert not (tmp_path / "demo" / "bundle" / "attestations").exists() or not any(
        (tmp_path / "demo" / "bundle" / "attestations").iterdir())  # the chain went to the bucket, not the disk
    assert f"bundle: {url}" in (tmp_path / "demo" / "mlspec.yaml").read_text()
    gate = _cli(["verify", url, "--artifact", "package/credit-model"], env, tmp_path / "demo")
    assert gate.returncode == 0, gate.stdout[-2000:] + gate.stderr
    # The project's next step, as printed: a 14th attestation, appended to the bucket from mlspec.yaml's bundle:.
    more = _cli(["attest", "stage", "monitor", "--material", "package=package/credit-model",
                 "--metadata", "reports/monitor.json", "--product", "reports/monitor.json"], env, tmp_path / "demo")
    assert more.returncode == 0 and "appended sequence 13 (monitor)" in more.stdout, more.stdout + more.stderr
    gate = _cli(["verify", url, "--artifact", "package/credit-model"], env, tmp_path / "demo")
    assert gate.returncode == 0, gate.stdout[-2000:] + gate.stderr
    again = _cli(["demo", str(tmp_path / "demo-2"), "--bundle", url], env, tmp_path)
    assert again.returncode == 2 and "already holds a chain" in again.stderr


def test_commands_that_need_a_local_bundle_say_so_for_an_s3_url(tmp_path: Path, project: Project) -> None:
    """monitor serve watches a directory: an s3:// URL is one clear line, exit 2, not 'not found'."""
    result = _cli(["monitor", "serve", "s3://some-bucket/p", "--policy", str(project.policy())],
                  {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, tmp_path)
    assert result.returncode == 2 and "watches a local bundle directory" in result.stderr, result.stderr
