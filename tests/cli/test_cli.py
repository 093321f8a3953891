"""The command line as a user meets it: a chain built with `mlspec attest`, the
gate's exit codes and output, and bad input that gets one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Project, serve_payload

from mlspec_attest.cli.main import main
from mlspec_attest.digests import digest_path


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", *args], cwd=cwd, text=True,
                          capture_output=True, env={**os.environ, **(env or {})}, timeout=120)


def snapshot(bundle: Path) -> dict[str, bytes]:
    return {str(p.relative_to(bundle)): p.read_bytes() for p in sorted(bundle.rglob("*")) if p.is_file()}


def cli(project: Project, *args: str) -> object:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


@pytest.fixture
def in_project(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.chdir(project.root)
    return project


STAGE_ARGS = [
    ["objectives", "--key", "keys/owner.key", "--metadata", "objectives.yaml"],
    ["ingest", "--material", "external=raw/data.csv", "--product", "raw/data.csv",
     "--set", "sources=[{name: raw, connector: csv}]"],
    ["analyze", "--material", "raw/data.csv", "--product", "work/stats.json", "--set", "statistics.x.mean=2.0"],
    ["transform", "--material", "raw/data.csv", "--product", "work/clean.csv", "--set", "transformations=[dropna]"],
    ["validate", "--material", "work/clean.csv", "--set", "schema_version=1", "--set", "passed=true"],
    ["split", "--material", "work/clean.csv", "--product", "train-data=work/train.csv",
     "--product", "eval-data=work/val.csv", "--product", "holdback-data=work/holdback.csv",
     "--fingerprints", "train=work/train.csv", "--fingerprints", "holdback=work/holdback.csv", "--fingerprints", "validation=work/val.csv",
     "--set", "sets.train.size=1", "--set", "sets.holdback.size=1"],
    ["training", "--material", "train-data=work/train.csv", "--product", "model=out/model.bin",
     "--set", "framework=sklearn"],
    ["evaluate", "--material", "model=out/model.bin", "--material", "eval-data=work/val.csv",
     "--set", "metrics.accuracy=0.91"],
    ["test", "--material", "model=out/model.bin", "--material", "holdback-data=work/holdback.csv",
     "--product", "test-report=work/test.json", "--metadata", "work/test.json"],  # bound (METADATA_UNBOUND)
    ["packaging", "--material", "model=out/model.bin", "--product", "package=pkg", "--set", "name=demo"],
    ["serve", "--material", "package=pkg", "--set", "rollout.status=succeeded"],
    ["monitor", "--material", "pkg", "--set", "signals.latency_ms=3.5", "--set", "rollback_target.name=pkg",
     "--set", "rollback_target.digest.sha256=ROLLBACK", "--set", "serve_attestation=SERVE"],
    ["log", "--set", "tree_size=0", "--set", "root_hash=" + "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "--set", "pipeline=SERVE"],
]


def _files(project: Project) -> None:
    from conftest import OBJECTIVES_YAML

    project.write("objectives.yaml", OBJECTIVES_YAML)
    for rel, text in {"raw/data.csv": "x\n1\n2\n3\n", "work/stats.json": "{}", "work/clean.csv": "x\n1\n2\n3\n",
                      "work/train.csv": "x\n1\n", "work/val.csv": "x\n2\n", "work/holdback.csv": "x\n3\n",
                      "work/test.json": '{"metrics": {"accuracy": 0.88}}',
                      "out/model.bin": "m", "pkg/model.bin": "m"}.items():
        project.write(rel, text)


def test_thirteen_stage_chain_built_with_the_cli_passes(in_project: Project) -> None:
    _files(in_project)
    # As in an init'ed project: every append re-signs the chain head the default policy requires.
    in_project.write("mlspec.yaml", "version: 1\nhead: {key: keys/pipeline.key, expires: 24h}\n")
    rollback = digest_path(in_project.root / "pkg").sha256
    for args in STAGE_ARGS:
        args = [a.replace("ROLLBACK", rollback) for a in args]
        if any("SERVE" in a for a in args):
            args = [a.replace("SERVE", serve_payload(in_project.bundle)) for a in args]
        extra = [] if "--key" in args else ["--key", "keys/pipeline.key"]
        result = cli(in_project, "attest", "stage", *args, "--bundle", "bundle", *extra)
        assert result.exit_code == 0, (args, result.output)
        assert "appended sequence" in result.output
    result = cli(in_project, "verify", "bundle", "--policy", "policies/default.yaml", "--artifact", "pkg")
    assert result.exit_code == 0, result.output
    assert "Verdict: PASS (13 attestations" in result.output
    result = cli(in_project, "verify", "bundle", "--policy", "policies/default.yaml", "--format", "json")
    data = json.loads(result.stdout)
    assert data["verdict"] == "pass" and [s["stage"] for s in data["stages"]][6] == "train"
    assert data["objectives"][0]["result"] == "pass"
    # inspect shows the statement and checks the signature against a key.
    result = cli(in_project, "inspect", "bundle/attestations/0006-train.dsse.json", "--key", "keys/pipeline.pub")
    assert result.exit_code == 0 and "VALID" in result.output and "train/v1" in result.output
    result = cli(in_project, "inspect", "bundle/attestations/0006-train.dsse.json", "--key", "keys/owner.pub")
    assert result.exit_code == 1 and "invalid" in result.output


def test_gate_failure_is_exit_1_with_checklist(in_project: Project) -> None:
    _files(in_project)
    cli(in_project, "attest", "stage", *STAGE_ARGS[0], "--bundle", "bundle")
    result = cli(in_project, "verify", "bundle", "--policy", "policies/default.yaml")
    assert result.exit_code == 1
    assert "[STAGE_MISSING] required stage ingest is missing" in result.output
    assert "Verdict: FAIL" in result.output


@pytest.mark.parametrize("args,needle", [
    (["attest", "stage", "train", "--bundle", "bundle", "--key", "keys/missing.key"], "private key not found"),
    (["attest", "stage", "train", "--bundle", "bundle", "--key", "keys/pipeline.pub"], "is a public key"),
    (["attest", "stage", "train", "--bundle", "bundle", "--key", "keys/pipeline.key",
      "--metadata", "nope.yaml"], "metadata file not found"),
    (["attest", "stage", "train", "--bundle", "bundle", "--key", "keys/pipeline.key",
      "--metadata", "bad.yaml"], "bad.yaml:2:"),
    (["attest", "stage", "train", "--bundle", "bundle", "--key", "keys/pipeline.key",
      "--product", "model=missing.bin", "--set", "framework=x"], "artifact not found"),
    (["attest", "stage", "trainn", "--bundle", "bundle", "--key", "keys/pipeline.key"], "unknown stage 'trainn'"),
    (["attest", "stage", "train", "--bundle", "bundle", "--key", "keys/pipeline.key",
      "--material", "../outside.txt"], "outside the project"),
    (["verify", "no-such-bundle", "--policy", "policies/default.yaml"], "bundle directory not found"),
    (["verify", "bundle", "--policy", "policies/none.yaml"], "policy not found"),
])
def test_bad_input_is_one_line_exit_2_and_bundle_unchanged(in_project: Project, args: list[str], needle: str) -> None:
    _files(in_project)
    in_project.write("bad.yaml", "framework: a\n  bad: [\n")
    (in_project.root.parent / "outside.txt").write_text("x")
    cli(in_project, "attest", "stage", *STAGE_ARGS[0], "--bundle", "bundle")
    before = snapshot(in_project.bundle)
    result = run(args, in_project.root)
    assert result.returncode == 2, result
    assert needle in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert snapshot(in_project.bundle) == before


def test_wrong_passphrase_is_exit_2(tmp_path: Path) -> None:
    result = run(["keys", "generate", "k", "--dir", "keys"], tmp_path, {"MLSPEC_KEY_PASSPHRASE": "right"})
    assert result.returncode == 0 and "encrypted" in result.stdout
    (tmp_path / "m.bin").write_text("x")
    result = run(["attest", "stage", "train", "--bundle", "b", "--key", "keys/k.key", "--product", "m.bin",
                  "--set", "framework=x"], tmp_path, {"MLSPEC_KEY_PASSPHRASE": "wrong"})
    assert result.returncode == 2 and "wrong passphrase" in result.stderr
    assert not (tmp_path / "b" / "attestations").exists() or not any((tmp_path / "b" / "attestations").iterdir())


def test_keys_list_shows_keyids(in_project: Project) -> None:
    result = cli(in_project, "keys", "list", "keys")
    assert result.exit_code == 0
    from mlspec_attest.keys import PublicKey

    assert PublicKey.from_file(in_project.root / "keys/pipeline.pub").keyid in result.output


def test_init_writes_a_working_project(tmp_path: Path) -> None:
    result = run(["init", "proj"], tmp_path, {"MLSPEC_KEY_PASSPHRASE": "pw"})
    assert result.returncode == 0, result.stderr
    root = tmp_path / "proj"
    for rel in ("mlspec.yaml", "policies/default.yaml", "keys/owner.key", "keys/pipeline.pub", "objectives.yaml",
                "bundle/attestations"):
        assert (root / rel).exists(), rel
    assert run(["objectives", "check", "objectives.yaml"], root).returncode == 0
    # Inside the project no flags are needed.
    result = run(["attest", "stage", "objectives", "--key", "keys/owner.key", "--metadata", "objectives.yaml"],
                 root, {"MLSPEC_KEY_PASSPHRASE": "pw"})
    assert result.returncode == 0, result.stderr
    result = run(["verify", "bundle"], root)
    assert result.returncode == 1 and "STAGE_MISSING" in result.stdout  # runs, finds the rest missing
    assert run(["init", "proj"], tmp_path).returncode == 2


def test_objectives_check_reports_position(tmp_path: Path) -> None:
    (tmp_path / "o.yaml").write_text("project: p\nrevision: 1\noutputs: {task: regression, range: {min: 0, max: 1}}\ncriteria:\n"
                                     "  - {name: a, stage: test, description: d, expression: 'metrics.accuracy >= '}\n")
    result = run(["objectives", "check", "o.yaml"], tmp_path)
    assert result.returncode == 2 and "column" in result.stderr and "criterion 'a'" in result.stderr


def test_help_teaches(tmp_path: Path) -> None:
    result = run(["--help"], tmp_path)
    assert result.returncode == 0
    for word in ("attest", "verify", "keys", "init", "demo", "inspect", "objectives"):
        assert word in result.stdout
    result = run(["attest", "stage", "--help"], tmp_path)
    assert "ROLE=" in result.stdout and "lifecycle order" in result.stdout
