"""The seed's logging/monitoring names in inference records, and delayed ground-truth labels.

Attacks tried: a record giving one field under two names with different values (two readers
would see two records), a stored line in the seed's spelling (not the writer's bytes), an
ensemble record naming the packaged model among others, a label inside the inference record,
a label for a request never served, a second label, and a label written before its request.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from mlspec_attest.errors import InputError
from mlspec_attest.log.inference import InferenceLog, InferenceRecord, normalize_record, prove, verify
from mlspec_attest.log.records import SEED_NAMES, encode_record, line_problem
from tests.unit.log.test_inference_log import FakeAttestor, codes, rec

PIPE = hashlib.sha256(b"serve attestation payload").hexdigest()
SEED_LOG = Path(__file__).resolve().parents[3] / ".." / "shared" / "seed" / "monitoring_proto" / "inferenceRequest.yml"


def seed_record(i: int = 1, **over: Any) -> dict[str, Any]:
    """A record spelled with the seed's names (monitoring_proto/inferenceRequest.yml, logging_proto)."""
    r: dict[str, Any] = {
        "host": "10.0.0.7", "time": "2024-05-01T13:55:36.120Z", "request": "POST /v1/models/churn:predict HTTP/1.1",
        "applicationInfo": {"applicationId": "checkout", "applicationEndpoint": "https://ml.example/v1/churn"},
        "requestInfo": {"requestId": f"req-{i}", "requestTimestamp": "2024-05-01T13:55:36.100Z",
                        "requestLatencyMs": 12.5},
        "resultInfo": {"resultCode": 200, "resultSizeInBytes": 321},
        "inputs": {"featureNames": ["age", "plan"], "featureValues": ["41", "pro"]},
        "modelInfo": {"models": ["churn/3"]},
        "predictionMimeType": "application/json", "predictionData": {"label": "stay", "score": 0.25},
    }
    r.update(over)
    return r


def canonical_record(i: int = 1) -> dict[str, Any]:
    return {
        "host": "10.0.0.7", "time": "2024-05-01T13:55:36.120Z", "request": "POST /v1/models/churn:predict HTTP/1.1",
        "applicationId": "checkout", "applicationEndpoint": "https://ml.example/v1/churn", "requestId": f"req-{i}",
        "requestTimestamp": "2024-05-01T13:55:36.100Z", "latency": 12.5, "status": 200, "bytes": 321,
        "inputFeatures": {"age": "41", "plan": "pro"}, "modelId": "churn/3", "predictionMimeType": "application/json",
        "prediction": {"label": "stay", "score": 0.25},
    }


def test_seed_names_are_the_canonical_record() -> None:
    assert encode_record(seed_record(), PIPE) == encode_record(canonical_record(), PIPE)
    flat = {**seed_record(), **seed_record()["requestInfo"], **seed_record()["applicationInfo"],
            **seed_record()["resultInfo"]}
    for group in ("requestInfo", "applicationInfo", "resultInfo"):
        del flat[group]
    assert encode_record(flat, PIPE) == encode_record(canonical_record(), PIPE)
    record = InferenceRecord.from_dict(seed_record())
    assert record.application_endpoint == "https://ml.example/v1/churn" and record.latency == 12.5
    assert encode_record(record, PIPE) == encode_record(canonical_record(), PIPE)


@pytest.mark.parametrize("seed, canonical", sorted(SEED_NAMES.items()))
def test_every_flat_seed_name_maps(seed: str, canonical: str) -> None:
    values = {"latency": 7, "status": 503, "bytes": 9, "prediction": [1, 2], "explanation": {"a": 0.5},
              "feedback": 0.5}
    base = rec(3)
    base.pop(canonical, None)
    with_seed = {**base, seed: values[canonical]}
    assert normalize_record(with_seed)[0][canonical] == values[canonical]


@pytest.mark.parametrize("over, match", [
    ({"latency": 99}, "given twice"),  # seed requestLatencyMs 12.5 vs canonical latency 99
    ({"status": 500}, "given twice"),
    ({"inputFeatures": {"age": "40"}}, "given twice"),
    ({"modelId": "other/1"}, "given twice"),
    ({"prediction": {"label": "churn"}}, "given twice"),
    ({"requestLatency": 13}, "given twice"),  # two seed spellings of latency, two values
    ({"requestId": "req-other"}, "given twice"),  # the group's requestId and a flat one
    ({"applicationId": "billing"}, "given twice"),
    ({"bytes": 1}, "given twice"),  # resultInfo.resultSizeInBytes is 321
    ({"modelInfo": {"models": ["churn/3", "other/1"]}}, "one record per model"),
    ({"modelInfo": {"models": []}}, "one model id"),
    ({"inputs": {"featureNames": ["a", "a"], "featureValues": ["1", "2"]}}, "repeated"),
    ({"inputs": {"featureNames": ["a"], "featureValues": ["1", "2"]}}, "1 values"),
    ({"inputs": {"featureNames": ["a"]}}, "exactly featureNames and featureValues"),
    ({"requestInfo": {"requestId": "r", "host": "x"}}, "the seed's requestInfo"),
    ({"groundTruthLabel": "churn"}, "its own later record"),
    ({"predictionMimeType": "json"}, "media type"),
    ({"feedbackActions": "clicked"}, "list of strings"),
    ({"inferenceServiceId": ""}, "non-empty"),
    ({"colour": "blue"}, "unknown field"),
])
def test_seed_record_refusals(over: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        normalize_record(seed_record(**over), PIPE)


def test_same_value_under_two_names_is_one_field() -> None:
    """Equal values (as JSON: 12.5 and 12.5, 200 and 200.0) are one field: both readers see the same record."""
    assert encode_record(seed_record(latency=12.5, status=200.0), PIPE) == encode_record(canonical_record(), PIPE)
    with pytest.raises(InputError, match="given twice"):
        normalize_record(seed_record(status=True), PIPE)  # true is not 200 (nor 1)


def test_a_stored_line_in_the_seed_spelling_is_not_the_writers_line() -> None:
    """The log holds canonical names only: a sealed line in the seed's spelling is refused on its own."""
    import json

    line = json.dumps({**seed_record(), "pipeline": PIPE}, sort_keys=True, separators=(",", ":")).encode()
    assert line_problem(line, PIPE) is not None
    assert line_problem(encode_record(seed_record(), PIPE), PIPE) is None


def test_the_seed_inference_log_file_names_are_all_accepted() -> None:
    """Every leaf name of logging_proto/inferenceLog.yml and monitoring_proto/inferenceRequest.yml is known."""
    import yaml

    shared = Path(__file__).resolve().parents[3].parent / "shared" / "seed"
    if not shared.is_dir():
        pytest.skip(f"seed files not found at {shared} (the shared checkout is absent)")
    from mlspec_attest.log.records import _ALLOWED_KEYS, SEED_GROUPS

    for rel in ("logging_proto/inferenceLog.yml", "monitoring_proto/inferenceRequest.yml"):
        doc = yaml.safe_load((shared / rel).read_text())
        for group, names in doc.items():
            if isinstance(names, list):
                for name in names:
                    known = name in _ALLOWED_KEYS or name in SEED_NAMES or name in SEED_GROUPS.get(group, ())
                    assert known, f"{rel}: {group}.{name} is not accepted"
            else:
                assert group in ("inputs", "modelInfo"), f"{rel}: {group}"


# -- ground truth ---------------------------------------------------------------------------------


def truth(rid: str, label: Any = "churn", **over: Any) -> dict[str, Any]:
    return {"type": "ground_truth", "requestId": rid, "label": label, "time": "2024-05-03T09:00:00Z", **over}


def write(path: Path, records: list[dict[str, Any]]) -> FakeAttestor:
    att = FakeAttestor()
    with InferenceLog(path, PIPE, batch_size=4, seal_fn=att, flush_every=2) as log:
        for r in records:
            log.append(r)
    return att


def test_a_later_record_carries_the_ground_truth(tmp_path: Path) -> None:
    att = write(tmp_path, [rec(i) for i in range(5)] + [truth("req-0001"), truth("req-0003", {"score": 1})])
    report = verify(tmp_path, heads=att.heads())
    assert report.ok, report.findings
    assert report.records == 7 and report.sealed == 7
    assert prove(tmp_path, "req-0001")["leaf_index"] == 1  # the inference, not its label
    # the seed's own shape of a label: requestId + groundTruthLabel
    obj, _ = normalize_record({"requestId": "req-0002", "groundTruthLabel": 0, "time": "2024-05-03T09:00:00Z"}, PIPE)
    assert obj == {**truth("req-0002", 0), "pipeline": PIPE}


@pytest.mark.parametrize("records, code", [
    ([rec(0), truth("req-9999")], "LOG_GROUND_TRUTH_UNKNOWN_REQUEST"),
    ([rec(0), truth("req-0000"), truth("req-0000", "stay")], "LOG_GROUND_TRUTH_DUPLICATE"),
    ([rec(0), truth("req-0000"), truth("req-0000")], "LOG_GROUND_TRUTH_DUPLICATE"),  # even the same label
    ([truth("req-0000"), rec(0)], "LOG_GROUND_TRUTH_BEFORE_REQUEST"),
    ([rec(0), rec(0), truth("req-0000")], "LOG_GROUND_TRUTH_AMBIGUOUS"),
])
def test_ground_truth_refusals(tmp_path: Path, records: list[dict[str, Any]], code: str) -> None:
    att = write(tmp_path, records)
    report = verify(tmp_path, heads=att.heads())
    assert code in codes(report), report.findings
    assert not report.ok
    # the same with --deep and without a bundle: the rule is the log's, not the signer's
    assert code in codes(verify(tmp_path, deep=True))


@pytest.mark.parametrize("bad, match", [
    (truth("req-1", None), "label"),
    ({**truth("req-1"), "host": "x"}, "unknown field"),
    ({**truth("req-1"), "type": "relabel"}, "type"),
    ({k: v for k, v in truth("req-1").items() if k != "time"}, "time"),
    (truth(""), "requestId"),
    ({**truth("req-1"), "groundTruthLabel": "stay"}, "given twice"),  # label and the seed's name disagree
    ({**rec(1), "label": "churn"}, "type"),  # an inference record smuggling a label
])
def test_ground_truth_record_refusals(bad: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        normalize_record(bad, PIPE)


def test_ground_truth_is_not_an_inference_for_clf_or_the_model_check(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mlspec_attest.cli.main import main as cli

    att = write(tmp_path, [rec(0), truth("req-0000")])
    assert verify(tmp_path, heads=att.heads(), model_id="churn/3").ok
    with pytest.raises(InputError, match="ground-truth record"):
        InferenceRecord.from_dict(truth("req-0000"))
    out = CliRunner().invoke(cli, ["log", "render", "--log", str(tmp_path), "--ncsa"])
    assert out.exit_code == 0 and len(out.output.splitlines()) == 1, out.output


def test_cli_appends_seed_records_and_labels_and_refuses_a_second_label(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from mlspec_attest.cli.main import main as cli

    log_dir = tmp_path / "log"
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in (seed_record(1), seed_record(2), truth("req-1"))) + "\n")
    runner = CliRunner()
    out = runner.invoke(cli, ["log", "append", str(src), "--log", str(log_dir), "--pipeline", PIPE, "--seal",
                              "--unsigned"])
    assert out.exit_code == 0, out.output
    assert verify(log_dir).ok
    src.write_text(json.dumps(truth("req-1", "stay")) + "\n")
    assert runner.invoke(cli, ["log", "append", str(src), "--log", str(log_dir), "--seal", "--unsigned"]).exit_code == 0
    res = runner.invoke(cli, ["log", "verify", "--log", str(log_dir)])
    assert res.exit_code == 1 and "LOG_GROUND_TRUTH_DUPLICATE" in res.output, res.output
    src.write_text(json.dumps(seed_record(3, latency=1)) + "\n")
    bad = runner.invoke(cli, ["log", "append", str(src), "--log", str(log_dir)])
    assert bad.exit_code == 2 and "given twice" in bad.output


@pytest.mark.parametrize("with_label", [False, True])
def test_ground_truth_pre_scan_keeps_the_readers_line_bound(tmp_path: Path, with_label: bool) -> None:
    """A 1 TiB sparse tail (one endless line of zeros) is refused after the 16 MiB line bound, label or not:
    the pre-scan that looks for labels must not read it to its end (hang guard: a child process, 120 s)."""
    import subprocess
    import sys

    records = [rec(0)] + ([truth("req-0000")] if with_label else [])
    write(tmp_path / "log", records)
    with open(tmp_path / "log" / "records.jsonl", "r+b") as fh:
        fh.truncate(1 << 40)
    code = ("import sys; from mlspec_attest.log.inference import verify\n"
            "try:\n    verify(sys.argv[1])\nexcept Exception as exc:\n    print(type(exc).__name__, exc)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "log")], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[3])
    assert "InputError" in proc.stdout and "longer than" in proc.stdout, proc.stdout + proc.stderr
