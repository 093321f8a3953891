"""CI use (issue #15 item 7): --format json everywhere, one verdict vocabulary, JSON errors,
OBJECTIVE_FAILED with its sequence, file and hint, log seal's project defaults, and path
options that mean the same file from any subdirectory of the project.

Attacks tried: a CI script that parses stdout getting a pass out of an error (two JSON
documents, text before the object, a verdict word other than pass/fail/error); an error
object that spells a secret or carries raw control characters; a subdirectory run that
signs other names than the same run from the root (so lineage breaks or a file is
silently swapped); a seal that falls back to no key.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import Project, build_lifecycle

from mlspec_attest.cli.main import main
from mlspec_attest.verify import verify_bundle

VERDICTS = {0: "pass", 1: "fail", 2: "error"}


@pytest.fixture
def demo(demo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the demo project; the working directory is two levels below its root."""
    (demo_copy / "sub" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(demo_copy / "sub" / "deeper")
    return demo_copy


def mlspec(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_json(result: Any) -> dict[str, Any]:
    """stdout must be exactly one JSON object whose verdict mirrors the exit status."""
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    assert data["verdict"] == VERDICTS[result.exit_code], (result.exit_code, result.stdout)
    return data


READ_ONLY_COMMANDS = [
    ("verify", "bundle", "--artifact", "package/credit-model"),
    ("inspect", "bundle/attestations/0008-test.dsse.json", "--key", "keys/pipeline.pub"),
    ("keys", "list"),
    ("objectives", "check", "objectives.yaml"),
    ("log", "verify", "--bundle", "bundle"),
    ("log", "verify"),
    ("log", "prove", "req-00042"),
    ("log", "render"),
    ("log", "seal"),  # nothing new to seal: still a JSON answer
]


@pytest.mark.parametrize("args", READ_ONLY_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_ci_command_prints_one_json_object_with_pass(demo: Path, args: tuple[str, ...]) -> None:
    result = mlspec(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    one_json(result)


def test_json_shapes_carry_what_ci_needs(demo: Path) -> None:
    keys = one_json(mlspec("keys", "list", "--format", "json"))["keys"]
    assert {k["name"] for k in keys} == {"owner", "pipeline"} and all(len(k["keyid"]) == 64 for k in keys)
    objectives = one_json(mlspec("objectives", "check", "objectives.yaml", "--format", "json"))
    assert len(objectives["sha256"]) == 64 and objectives["criteria"][0]["severity"] in ("block", "warn")
    inspected = one_json(mlspec("inspect", "bundle/attestations/0008-test.dsse.json", "--key", "keys/pipeline.pub",
                                "--format", "json"))
    assert inspected["signatures_checked"] and inspected["signatures"][0]["checks"][0]["valid"] is True
    assert inspected["statement"]["predicate"]["chain"]["sequence"] == 8
    proof = one_json(mlspec("log", "prove", "req-00042", "--format", "json"))["proof"]
    assert proof["record"]["requestId"] == "req-00042"
    records = one_json(mlspec("log", "render", "--format", "json"))["records"]
    assert records and all("requestId" in r for r in records)


def test_attest_stage_prints_its_result_as_json(demo: Path) -> None:
    result = mlspec("attest", "stage", "monitor", "--material", "package=package/credit-model",
                    "--product", "monitor-report=reports/monitor.json", "--metadata", "reports/monitor.json",
                    "--format", "json")
    assert result.exit_code == 0, result.output
    data = one_json(result)
    assert data["sequence"] == 13 and data["stage"] == "monitor" and Path(data["file"]).is_file()
    assert len(data["payload_sha256"]) == 64 and data["head"] == str(demo / "bundle" / "head.dsse.json")


def test_one_verdict_vocabulary_pass_fail(demo: Path) -> None:
    records = demo / "logs" / "inference" / "records.jsonl"
    lines = records.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b"req-0", b"req-X", 1)
    records.write_bytes(b"".join(lines))
    for args in (("log", "verify", "--bundle", "bundle"), ("verify", "bundle")):
        result = mlspec(*args, "--format", "json")
        assert result.exit_code == 1 and one_json(result)["verdict"] == "fail"
        assert '"verified"' not in result.stdout and '"failed"' not in result.stdout
    text = mlspec("log", "verify", "--bundle", "bundle")
    assert text.exit_code == 1 and text.stdout.startswith("FAIL: ")
    wrong_key = mlspec("inspect", "bundle/attestations/0008-test.dsse.json", "--key", "keys/owner.pub",
                       "--format", "json")
    assert wrong_key.exit_code == 1 and one_json(wrong_key)["signatures"][0]["checks"][0]["valid"] is False


BAD_INPUT = [
    (("inspect", "missing.json"), "missing.json"),
    (("keys", "list", "nodir"), "nodir"),
    (("objectives", "check", "bad-objectives.yaml"), "bad-objectives.yaml"),
    (("attest", "stage", "train", "--material", "train-data=nope.csv", "--product", "model=models"), "nope.csv"),
    (("attest", "stage", "trainn"), None),
    (("log", "seal", "--log", "nolog"), "nolog"),
    (("log", "verify", "--proof", "missing-proof.json"), "missing-proof.json"),
    (("log", "append", "bad.jsonl"), "bad.jsonl"),
    (("attest", "stage", "monitor", "--metadata", "bad.yaml"), "bad.yaml"),  # PATH:LINE:COL: names the file
    (("verify", "bundle", "--policy", "nope.yaml"), "nope.yaml"),
    (("log", "render", "--bogus"), None),  # a usage error, before the command's options are parsed
    (("keys", "list", "--format", "yaml"), None),  # even a bad --format value asked for... text: no JSON
]


@pytest.mark.parametrize("args, file", BAD_INPUT, ids=lambda a: " ".join(a[:2]) if isinstance(a, tuple) else "")
def test_an_exit_2_error_under_json_is_one_error_object_on_stdout(demo: Path, args: tuple[str, ...],
                                                                   file: str | None) -> None:
    (demo / "bad-objectives.yaml").write_text((demo / "objectives.yaml").read_text().replace(">= 0.82", ">= "))
    (demo / "bad.jsonl").write_text('{"host": 1}\n')
    (demo / "bad.yaml").write_text("a: 1\n  b: [\n")
    before = sorted(p.name for p in (demo / "bundle" / "attestations").iterdir())
    asks_json = "--format" not in args
    result = mlspec(*args, *(("--format", "json") if asks_json else ()))
    assert result.exit_code == 2, result.output
    assert sorted(p.name for p in (demo / "bundle" / "attestations").iterdir()) == before  # nothing written
    if not asks_json:
        assert not result.stdout.strip()
        return
    data = one_json(result)
    assert set(data) == {"error", "verdict"} and set(data["error"]) == {"code", "message", "file", "hint"}
    assert data["error"]["code"].isupper() and data["error"]["message"]
    if file is not None:  # the root's file; one that exists nowhere is the working directory's (docs/ci.md "Paths")
        assert data["error"]["file"] == str(demo / file if (demo / file).exists() else Path.cwd() / file)
    assert result.stderr.startswith(("error: ", "Usage: "))  # humans still get the line on stderr


def test_a_json_error_never_spells_a_secret_nor_a_control_character(demo: Path) -> None:
    secret = "hunter2-Zq8xV9pLm3"
    result = mlspec("attest", "stage", "monitor", "--material", "package=package/credit-model",
                    "--set", f"connection.password={secret}", "--fail-on-secret", "--format", "json")
    assert result.exit_code == 2 and secret not in result.output
    assert one_json(result)["error"]["code"] == "INPUT_ERROR"
    hostile = "evil\x1b[32mPASS\x1b[0m\u202e.json"
    result = mlspec("inspect", hostile, "--format", "json")
    assert result.exit_code == 2 and "\x1b" not in result.stdout and "\u202e" not in result.stdout
    assert one_json(result)["error"]["file"].endswith(hostile)  # escaped in the JSON text, exact once parsed


def test_objective_failed_names_the_sequence_file_and_hint(project: Project) -> None:
    build_lifecycle(project, accuracy=0.5)
    report = verify_bundle(project.bundle, project.policy())
    failed = next(f for f in report.findings if f.code == "OBJECTIVE_FAILED")
    assert failed.sequence == 8 and failed.file == "0008-test.dsse.json" and failed.stage == "test"
    assert failed.hint and "attest test again" in failed.hint
    shown = next(f for f in report.to_dict()["findings"] if f["code"] == "OBJECTIVE_FAILED")
    assert {"sequence": 8, "file": "0008-test.dsse.json"}.items() <= shown.items() and shown["hint"]


def test_objective_failed_for_a_missing_stage_says_to_attest_it(project: Project) -> None:
    build_lifecycle(project, stages=("objectives", "ingest", "analyze", "transform", "validate", "split", "train"))
    failed = next(f for f in verify_bundle(project.bundle, project.policy()).findings if f.code == "OBJECTIVE_FAILED")
    assert failed.sequence is None and failed.file is None and "attest the test stage" in (failed.hint or "")


def test_log_seal_signs_with_the_project_key_by_default(demo: Path) -> None:
    record = json.loads((demo / "logs" / "inference" / "records.jsonl").read_text().splitlines()[0])
    record.pop("pipeline", None)
    (demo / "new.jsonl").write_text(json.dumps({**record, "requestId": "req-ci-1"}) + "\n")
    assert mlspec("log", "append", "new.jsonl").exit_code == 0
    before = len(list((demo / "bundle" / "attestations").iterdir()))
    result = mlspec("log", "seal", "--format", "json")  # no --bundle, no --key: mlspec.yaml's
    assert result.exit_code == 0, result.output
    seal = one_json(result)["seal"]
    assert seal and seal["attestation"] and seal["tree_size"] == seal["previous_tree_size"] + 1
    assert len(list((demo / "bundle" / "attestations").iterdir())) == before + 1
    assert mlspec("verify", "bundle").exit_code == 0  # the new seal is signed by a key the policy allows


def test_log_seal_without_a_project_or_key_is_refused(demo_built: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(demo_built / "logs" / "inference", tmp_path / "lg")
    monkeypatch.chdir(tmp_path)  # no mlspec.yaml here or above: no key to fall back to
    result = mlspec("log", "seal", "--log", "lg", "--format", "json")
    assert result.exit_code == 2 and "sealing needs --bundle" in one_json(result)["error"]["message"]


# -- paths: the same file from any subdirectory ------------------------------------------------------------
def names(statement_file: Path) -> tuple[list[str], list[str]]:
    from mlspec_attest.bundle import extract_payload

    payload = json.loads(extract_payload("dsse", statement_file.read_bytes()))
    return ([s["name"] for s in payload["subject"]], [m["name"] for m in payload["predicate"]["materials"]])


def test_attest_stage_from_a_subdirectory_records_the_names_the_root_would(demo: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    args = ("attest", "stage", "monitor", "--material", "package=package/credit-model",
            "--product", "monitor-report=reports/monitor.json", "--metadata", "reports/monitor.json")
    from_sub = one_json(mlspec(*args, "--format", "json"))
    monkeypatch.chdir(demo)
    from_root = one_json(mlspec(*args, "--format", "json"))
    assert names(Path(from_sub["file"])) == names(Path(from_root["file"])) == (
        ["reports/monitor.json"], ["package/credit-model"])
    monkeypatch.chdir(demo / "sub" / "deeper")
    assert mlspec("verify", "bundle", "--artifact", "package/credit-model").exit_code == 0


@pytest.mark.parametrize("args", [
    ("verify", "bundle", "--policy", "policies/default.yaml", "--log", "logs/inference",
     "--artifact", "package/credit-model"),
    ("replay", "bundle", "--policy", "policies/default.yaml", "--log", "logs/inference"),
    ("report", "bundle", "--html", "reports/ci.html"),
    ("hash", "package/credit-model"),
    ("policy", "check", "policies/default.yaml"),
    ("objectives", "check", "objectives.yaml"),
    ("inspect", "bundle/attestations/0000-objectives.dsse.json", "--key", "keys/owner.pub"),
    ("keys", "list", "keys"),
    ("log", "verify", "--log", "logs/inference", "--bundle", "bundle", "--policy", "policies/default.yaml"),
    ("log", "prove", "req-00042", "--log", "logs/inference", "-o", "reports/proof.json"),
    ("log", "render", "--log", "logs/inference"),
    ("attest", "head", "--bundle", "bundle", "--key", "keys/pipeline.key"),
], ids=lambda a: " ".join(a[:2]))
def test_every_path_option_means_the_same_file_from_a_subdirectory(demo: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    args: tuple[str, ...]) -> None:
    from_sub = mlspec(*args)
    monkeypatch.chdir(demo)
    from_root = mlspec(*args)
    assert from_sub.exit_code == from_root.exit_code, (from_sub.output, from_root.output)
    assert from_root.exit_code in (0, 1) and "error:" not in from_sub.output
    assert not any((demo / "sub").rglob("*.*"))  # nothing landed in the working directory instead


def test_outside_a_project_relative_paths_stay_relative_to_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlspec_attest.cli._project import in_project

    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    assert in_project("x/y.csv") == "x/y.csv" and in_project("/abs/p") == "/abs/p" and in_project("-") == "-"


def test_key_uris_are_never_taken_for_paths_inside_the_project(demo: Path) -> None:
    """From a subdirectory, ``--key pkcs11:...`` must reach the token, not ``<root>/pkcs11:...``."""
    from mlspec_attest.cli._project import in_project

    uri = "pkcs11:token=mlspec;object=pipeline?module-path=/usr/lib/softhsm/libsofthsm2.so"
    assert in_project(uri) == uri
    assert in_project("keys/pipeline.key") == str(demo.resolve() / "keys" / "pipeline.key")


def test_log_seal_believes_a_head_by_another_policy_head_signer(demo: Path) -> None:
    """Third review: 'log seal' trusted only mlspec.yaml's head key, so after the scheduled 'attest head'
    by another head signer of the policy it refused an honest chain (exit 1). It now reads the policy."""
    import yaml

    policy = demo / "policies" / "default.yaml"
    data = yaml.safe_load(policy.read_text())
    data["head"]["signers"] = ["pipeline", "owner"]
    policy.write_text(yaml.safe_dump(data))
    assert mlspec("attest", "head", "--key", str(demo / "keys" / "owner.key")).exit_code == 0
    record = json.loads((demo / "logs" / "inference" / "records.jsonl").read_text().splitlines()[0])
    record.pop("pipeline", None)
    (demo / "new.jsonl").write_text(json.dumps({**record, "requestId": "req-ci-2"}) + "\n")
    assert mlspec("log", "append", "new.jsonl").exit_code == 0
    result = mlspec("log", "seal")
    assert result.exit_code == 0, result.output


def test_attest_head_policy_names_whose_heads_are_believed(demo: Path) -> None:
    """A cron job signing the head with another head signer: --policy says whose existing head counts."""
    import yaml

    data = yaml.safe_load((demo / "policies" / "default.yaml").read_text())
    data["head"]["signers"] = ["pipeline", "owner"]
    data["keys"] = {name: str(demo / "keys" / f"{name}.pub") for name in ("pipeline", "owner")}
    (demo / "two-signers.yaml").write_text(yaml.safe_dump(data))
    two = str(demo / "two-signers.yaml")
    by_owner = mlspec("attest", "head", "--key", str(demo / "keys" / "owner.key"), "--policy", two)
    assert by_owner.exit_code == 0, by_owner.output  # it believes the pipeline's head: a head signer of both
    pipeline_key = str(demo / "keys" / "pipeline.key")
    refused = mlspec("attest", "head", "--key", pipeline_key)  # mlspec.yaml's policy: pipeline alone
    assert refused.exit_code == 1 and "signed by no key this writer trusts" in refused.output
    assert mlspec("attest", "head", "--key", pipeline_key, "--policy", two).exit_code == 0
