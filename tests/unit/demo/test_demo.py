"""`mlspec demo`: the real 13-stage pipeline, its gate, and the demo directory's safety rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="the demo needs scikit-learn (the [demo] extra, installed by make test)")

from mlspec_attest.demo import runner as demo
from mlspec_attest.errors import InputError
from mlspec_attest.verify import verify_bundle

STAGES = ["objectives", "ingest", "analyze", "transform", "validate", "split", "train", "evaluate", "test",
          "package", "serve", "monitor", "log"]


def _run(directory: Path, fail_objective: bool = False) -> tuple[int, str]:
    lines: list[str] = []
    code = demo.run_demo(directory, fail_objective=fail_objective, echo=lines.append)
    return code, "\n".join(lines)


@pytest.fixture(autouse=True)
def _no_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSPEC_KEY_PASSPHRASE", raising=False)


def test_demo_passes_attests_13_real_stages_and_reruns(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    code, out = _run(root)
    assert code == 0, out
    assert "Verdict: PASS (13 attestations, 0 errors, 0 warnings)" in out
    assert "warning: MLSPEC_KEY_PASSPHRASE is not set" in out
    files = sorted(p.name for p in (root / "bundle" / "attestations").iterdir())
    assert [f.split("-", 1)[1].split(".")[0] for f in files] == STAGES

    # The gate passes again from the files alone, and binds the package directory.
    policy, logs = root / "policies" / "default.yaml", root / "logs" / "inference"
    report = verify_bundle(root / "bundle", policy, [root / "package" / "credit-model"], log_dir=logs)
    assert report.passed, [f.message for f in report.findings]
    assert [o.name for o in report.objectives if o.passed] == [o.name for o in report.objectives]
    # The sealed log is part of the gate: without it, or with one record edited, the gate refuses.
    assert "LOG_MISSING" in {f.code for f in verify_bundle(root / "bundle", policy).findings}
    records = logs / "records.jsonl"
    original = records.read_bytes()
    records.write_bytes(original.replace(b'"status":200', b'"status":201', 1))
    edited = verify_bundle(root / "bundle", policy, log_dir=logs)
    assert not edited.passed and "LOG_SIGNED_ROOT_MISMATCH" in {f.code for f in edited.findings}
    records.write_bytes(original)

    # Real artifacts behind the attestations.
    test = json.loads((root / "reports" / "test.json").read_text())
    assert test["metrics"]["accuracy"] >= 0.82 and set(test["slices"]["group"]) == {"A", "B"}
    assert (root / "package" / "credit-model" / "model.pkl").read_bytes() == (root / "models" / "model.pkl").read_bytes()
    monitor = json.loads((root / "reports" / "monitor.json").read_text())
    assert monitor["signals"]["requests"] == 200 and monitor["signals"]["unlogged_requests"] == 0
    assert len((root / "logs" / "inference" / "records.jsonl").read_text().splitlines()) == 200
    for name in ("mlspec.yaml", "objectives.yaml", "policies/default.yaml", "keys/owner.key", "keys/pipeline.pub"):
        assert (root / name).is_file(), name

    # A re-run into the same directory is refused (the demo never deletes; a marker proves nothing);
    # a run into a fresh directory gives the same package digest.
    package_line = next(line for line in out.splitlines() if " package " in line and "directory sha256" in line)
    (root / "stray.txt").write_text("from the first run")
    with pytest.raises(InputError, match="not empty"):
        _run(root)
    assert (root / "stray.txt").read_text() == "from the first run"
    assert len(list((root / "bundle" / "attestations").iterdir())) == 13
    code, again = _run(tmp_path / "second")
    assert code == 0, again
    assert package_line.split("directory sha256")[1] in again


def test_fail_objective_is_refused_naming_criterion_and_value(tmp_path: Path) -> None:
    root = tmp_path / "weak"
    code, out = _run(root, fail_objective=True)
    assert code == 1, out
    assert "Deploy gate: REFUSED." in out
    evaluation = json.loads((root / "reports" / "evaluation.json").read_text())
    recalls = evaluation["slices"]["group"]
    gap = abs(recalls["A"]["recall"] - recalls["B"]["recall"])
    assert gap > 0.10
    line = next(line for line in out.splitlines() if line.startswith("  criterion evaluate_recall_gap failed"))
    assert f'max_gap(slices.group, "recall") = {round(gap, 4)}' in line
    assert f"slices.group.B.recall = {recalls['B']['recall']}" in line
    assert "[OBJECTIVE_FAILED] criterion evaluate_recall_gap" in out


def test_refuses_a_non_empty_directory_it_did_not_create(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="directory is not empty; nothing was changed"):
        demo.run_demo(tmp_path, echo=lambda _: None)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_missing_scikit_learn_is_an_input_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    with pytest.raises(InputError, match=r"pip install 'mlspec-attest\[demo\]'"):
        demo.run_demo(tmp_path / "d", echo=lambda _: None)
    assert not (tmp_path / "d").exists()


def test_cli_demo_with_encrypted_keys(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("mlspec")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "from mlspec_attest.cli.main import main; main()"]
    env = {**os.environ, "MLSPEC_KEY_PASSPHRASE": "demo passphrase"}
    env.pop("NO_COLOR", None)
    # A relative directory, as `make demo` passes it.
    proc = subprocess.run([*cmd, "demo", "cli"], capture_output=True, text=True, env=env, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Verdict: PASS" in proc.stdout and "mlspec verify bundle --artifact package/credit-model" in proc.stdout
    assert b"ENCRYPTED" in (tmp_path / "cli" / "keys" / "pipeline.key").read_bytes().split(b"\n", 1)[0]
    shutil.rmtree(tmp_path / "cli")
