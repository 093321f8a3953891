"""What ran (attest/runinfo.py): captured into the signed ``run`` block, redacted, and checkable by policy.

Attacks tried: a secret in argv or in an allow-listed CI variable signed in clear; the
whole environment leaking; a hostile repository config running a program while we
describe the tree; a lockfile that is a FIFO or a symlink; a malformed image digest;
a train from a dirty tree passing a policy that requires a clean commit; no git at all
passing that policy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, build_lifecycle

from mlspec_attest.attest import runinfo
from mlspec_attest.bundle import extract_payload
from mlspec_attest.errors import InputError
from mlspec_attest.verify import verify_bundle

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed on this machine")
SECRETS = ("hunter2-Pa55word-xyz", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "s3cr3tT0kenValue99",
           "jenkinsPa55w0rd")


def run_block(path: Path) -> dict[str, Any]:
    payload = extract_payload(path.name.split(".")[-2], path.read_bytes())
    return json.loads(payload)["predicate"]["run"]


def git(root: Path, *args: str) -> str:
    return subprocess.run([GIT or "git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com",
                           "-c", "commit.gpgsign=false", *args], check=True, capture_output=True, text=True).stdout


def commit_all(root: Path) -> str:
    (root / ".gitignore").write_text("bundle/\n*.key\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "start")
    return git(root, "rev-parse", "HEAD").strip()


def attest_ingest(project: Project) -> Path:
    if not (project.root / "raw/data.csv").exists():
        project.write("raw/data.csv", "x,y\n1,0\n")
    att = project.attestor("pipeline").attest(
        "ingest", materials=["external=raw/data.csv"], products=["raw-data=raw/data.csv"],
        metadata={"sources": [{"name": "raw", "connector": "csv", "uri": "raw/data.csv"}]})
    return att.path


def test_secrets_in_argv_and_ci_variables_are_never_signed_in_clear(project: Project,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["train.py", f"--password={SECRETS[0]}",
                                      "--repo", f"https://bot:{SECRETS[1]}@github.com/org/repo.git",
                                      "--token", SECRETS[2], "--lr", "0.1"])
    monkeypatch.setenv("BUILD_URL", f"https://admin:{SECRETS[3]}@jenkins.example/job/1")
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    path = attest_ingest(project)
    raw = path.read_bytes()
    payload = extract_payload("dsse", raw)
    for secret in SECRETS:
        assert secret.encode() not in payload and secret.encode() not in raw
    run = run_block(path)
    assert run["command"][0] == "train.py" and run["command"][-2:] == ["--lr", "0.1"]
    assert {"/command/1", "/command/3", "/command/5", "/environment/BUILD_URL"} <= set(run["redactions"])
    assert run["environment"]["GITHUB_RUN_ID"] == "4242"


def test_only_allow_listed_ci_variables_are_recorded(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("MY_APP_SETTING", "visible-only-if-leaked")
    monkeypatch.setenv("CI_JOB_ID", "77")
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    path = attest_ingest(project)
    env = run_block(path)["environment"]
    assert set(env) <= set(runinfo.CI_ENVIRONMENT)
    assert env["CI_JOB_ID"] == "77" and env["GITHUB_SHA"] == "a" * 40
    payload = path.read_bytes()
    assert b"wJalrXUtnFEMI" not in payload and b"visible-only-if-leaked" not in payload


@needs_git
def test_git_commit_dirty_and_untracked_are_recorded(project: Project) -> None:
    project.write("train.py", "print('v1')\n")
    project.write("raw/data.csv", "x,y\n1,0\n")
    commit = commit_all(project.root)
    clean = run_block(attest_ingest(project))["git"]
    assert clean == {"commit": commit, "dirty": False, "untracked": False}
    project.write("notes.log", "scratch")
    (project.root / ".git" / "info" / "exclude").write_text("*.log\n")  # ignored files do not count
    assert run_block(attest_ingest(project))["git"] == {"commit": commit, "dirty": False, "untracked": False}
    project.write("train2.py", "print('what really ran')\n")  # untracked, not ignored: not the commit either
    assert run_block(attest_ingest(project))["git"] == {"commit": commit, "dirty": True, "untracked": True}
    (project.root / "train2.py").unlink()
    project.write("train.py", "print('v2')\n")  # the code that ran is not the commit's
    assert run_block(attest_ingest(project))["git"] == {"commit": commit, "dirty": True, "untracked": False}
    git(project.root, "add", "train.py")  # staged but not committed is still not the commit
    assert run_block(attest_ingest(project))["git"]["dirty"] is True


@needs_git
@pytest.mark.parametrize("flag", ["--assume-unchanged", "--skip-worktree"])
def test_an_edit_hidden_from_git_status_still_counts_as_dirty(project: Project, flag: str) -> None:
    """update-index --assume-unchanged / --skip-worktree hide an edited file from git status."""
    project.write("train.py", "print('v1')\n")
    commit_all(project.root)
    git(project.root, "update-index", flag, "train.py")
    project.write("train.py", "print('what really ran')\n")
    assert "train.py" not in git(project.root, "status", "--porcelain")  # hidden from status...
    assert run_block(attest_ingest(project))["git"]["dirty"] is True  # ...not from the record


@needs_git
def test_git_variables_cannot_point_the_record_at_another_repository(project: Project, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    project.write("train.py", "print('v1')\n")
    commit_all(project.root)
    project.write("train.py", "print('v2')\n")  # the project's tree is dirty
    other = tmp_path / "clean"
    other.mkdir()
    (other / "f").write_text("x")
    git(other, "init", "-q")
    git(other, "add", "-A")
    git(other, "commit", "-q", "-m", "clean")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    recorded = run_block(attest_ingest(project))["git"]
    assert recorded["dirty"] is True and recorded["commit"] != git(other, "rev-parse", "HEAD").strip()


@needs_git
def test_a_renamed_file_counts_as_dirty(project: Project) -> None:
    project.write("train.py", "print('v1')\n")
    commit_all(project.root)
    git(project.root, "mv", "train.py", "fit.py")
    assert run_block(attest_ingest(project))["git"]["dirty"] is True


def test_without_git_the_git_fields_are_absent_not_an_error(project: Project, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    assert "git" not in run_block(attest_ingest(project))  # tmp_path is no work tree
    monkeypatch.setenv("PATH", str(project.root / "no-such-bin"))  # and no git binary at all
    assert "git" not in run_block(attest_ingest(project))


@needs_git
def test_a_hostile_repository_config_runs_nothing_while_we_describe_it(project: Project) -> None:
    """core.fsmonitor names a program git status would run; describing the tree must not run it."""
    commit_all(project.root)
    marker = project.root.parent / "fsmonitor-ran"
    hook = project.root.parent / "hook.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    git(project.root, "config", "core.fsmonitor", str(hook))
    run = run_block(attest_ingest(project))
    assert "commit" in run["git"]
    assert not marker.exists()


def test_distributions_are_the_sorted_installed_list_with_a_reproducible_digest(project: Project) -> None:
    from importlib import metadata

    dists = run_block(attest_ingest(project))["distributions"]
    assert dists["list"] == sorted(dists["list"]) and dists["count"] == len(dists["list"])
    assert f"cryptography=={metadata.version('cryptography')}" in dists["list"]
    text = "".join(line + "\n" for line in dists["list"])
    assert dists["sha256"] == hashlib.sha256(text.encode()).hexdigest()


def test_a_huge_environment_records_only_the_count_and_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runinfo, "MAX_LISTED_DISTRIBUTIONS", 3)
    dists = runinfo.distributions()
    assert "list" not in dists and dists["count"] > 3 and len(dists["sha256"]) == 64


def test_lockfiles_at_the_root_are_digested_and_special_files_skipped(project: Project) -> None:
    req = project.write("requirements.txt", "cryptography==44.0.0\n")
    project.write("uv.lock", "version = 1\n")
    (project.root / "requirements-dev.txt").symlink_to("/etc/passwd")  # not the project's file: skipped
    os.mkfifo(project.root / "poetry.lock")  # a FIFO would hang a naive reader: skipped
    locks = run_block(attest_ingest(project))["lockfiles"]
    assert locks == [{"name": "requirements.txt", "digest": {"sha256": hashlib.sha256(req.read_bytes()).hexdigest()}},
                     {"name": "uv.lock", "digest": {"sha256": hashlib.sha256(b"version = 1\n").hexdigest()}}]


def test_container_digest_is_recorded_and_a_malformed_one_refused_before_writing(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = "sha256:" + "ab" * 32
    monkeypatch.setenv(runinfo.CONTAINER_DIGEST_ENV, digest)
    monkeypatch.setenv("MLSPEC_CONTAINER_IMAGE", "ghcr.io/org/trainer:1.2")
    assert run_block(attest_ingest(project))["container"] == {"digest": digest, "image": "ghcr.io/org/trainer:1.2"}
    before = sorted((project.bundle / "attestations").iterdir())
    monkeypatch.setenv(runinfo.CONTAINER_DIGEST_ENV, "latest")
    with pytest.raises(InputError, match=runinfo.CONTAINER_DIGEST_ENV):
        attest_ingest(project)
    assert sorted((project.bundle / "attestations").iterdir()) == before


def test_an_image_reference_with_credentials_is_not_signed(monkeypatch: pytest.MonkeyPatch) -> None:
    image = "https://deploy:glpat-AbCdEfGhIjKlMnOpQrSt@registry.example/org/img:1"
    assert "image" not in runinfo.container_image({"MLSPEC_CONTAINER_IMAGE": image})


def test_capture_can_be_switched_off_for_the_python_api(project: Project) -> None:
    from mlspec_attest.attest.attestor import Attestor
    from mlspec_attest.keys import load_signer

    project.write("raw/data.csv", "x\n1\n")
    att = Attestor(project.bundle, load_signer(project.key("pipeline")), base_dir=project.root,
                   capture_run=False).attest("ingest", products=["raw/data.csv"],
                                             metadata={"sources": [{"name": "r", "connector": "csv"}]})
    assert set(run_block(att.path)) == {"startedOn", "finishedOn", "tool", "invocationId", "host"}


# -- policy: "train ran from a clean commit" ------------------------------------------------
CLEAN_TRAIN = "  train:      {required: true, checks: [{name: clean-commit, expression: 'run.git.dirty == false'}]}\n"


def clean_commit_policy(project: Project) -> Path:
    text = project.policy().read_text()
    assert "  train:      {required: true}\n" in text
    path = project.root / "policies" / "clean.yaml"
    path.write_text(text.replace("  train:      {required: true}\n", CLEAN_TRAIN))
    return path


def lifecycle_in_git(project: Project, *, dirty: bool) -> None:
    build_lifecycle(project, stages=("objectives",))  # writes every input file
    commit_all(project.root)
    if dirty:
        project.write("objectives.yaml.orig", "")
        git(project.root, "add", "objectives.yaml.orig")  # staged: the tree is not the commit
    rest = ("ingest", "analyze", "transform", "validate", "split", "train", "evaluate", "test", "package",
            "serve", "monitor", "log")
    build_lifecycle(project, stages=rest)


@needs_git
def test_policy_requiring_a_clean_commit_passes_a_clean_train(project: Project) -> None:
    lifecycle_in_git(project, dirty=False)
    report = verify_bundle(project.bundle, clean_commit_policy(project))
    assert report.passed, [f.message for f in report.findings]


@needs_git
def test_policy_requiring_a_clean_commit_refuses_a_dirty_tree_train(project: Project) -> None:
    lifecycle_in_git(project, dirty=True)
    report = verify_bundle(project.bundle, clean_commit_policy(project))
    failed = [f for f in report.findings if f.code == "CHECK_FAILED"]
    assert not report.passed and failed and failed[0].stage == "train"
    assert "clean-commit" in failed[0].message


def test_policy_requiring_a_clean_commit_refuses_a_train_with_no_git_record(project: Project) -> None:
    """No git (or a runner that strips the field) is not a clean commit: the check fails closed."""
    build_lifecycle(project)
    report = verify_bundle(project.bundle, clean_commit_policy(project))
    failed = [f for f in report.findings if f.code == "CHECK_FAILED"]
    assert not report.passed and failed and failed[0].stage == "train"


@pytest.mark.parametrize("argv, secret", [
    (["mlspec", "attest", "stage", "ingest", "--set", "connection.password=hunter2xyz"], "hunter2xyz"),
    (["mlspec", "attest", "stage", "ingest", "--set", "db={password: hunter2xyz}"], "hunter2xyz"),
    (["mlspec", "attest", "stage", "ingest", "--set", "api_token=abc123def456"], "abc123def456"),
    (["mlspec", "attest", "stage", "train", "--sigstore", "--identity-token",
      "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"], "eyJzdWIiOiJ4In0"),
    (["python", "train.py", "--db-url", "postgresql://u:hunter2xyz@db/x"], "hunter2xyz"),
    (["python", "train.py", "--set", "hf_token", "hf_abcdefghijklmnopqrstuvwxyz1234"], "hf_abcdefghij"),
    (["python", "train.py", "-e", "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"], "wJalrXUtnFEMI"),
    (["docker", "login", "-u", "bot", "-p", "s3cr3tPa55w0rd", "registry.example"], "s3cr3tPa55w0rd"),
    (["curl", "-H", "Authorization: Bearer abcdef0123456789abcdef", "https://x"], "abcdef0123456789"),
], ids=lambda v: v[3] if isinstance(v, list) else "")
def test_argv_shapes_that_carry_a_secret_are_redacted(tmp_path: Path, argv: list[str], secret: str) -> None:
    fields, pointers = runinfo.capture(tmp_path, argv, {})
    assert secret not in json.dumps(fields) and pointers


def test_plain_arguments_are_kept_as_they_are(tmp_path: Path) -> None:
    argv = ["python", "train.py", "--key", "keys/pipeline.key", "--material", "data/x.csv", "--lr", "0.1"]
    fields, pointers = runinfo.capture(tmp_path, argv, {})
    assert fields["command"] == argv and pointers == []
