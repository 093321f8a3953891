"""The adversarial review of the leakage proof and monitor metadata (/tmp/adv-data/repro): each attack, refused.

Who: the split runner (holds the pipeline key, writes the sets, the fingerprints and the
blobs), the train/test runners (choose their materials), and anyone holding the bundle
(no key: can rewrite blobs/ but not the signed digests).
"""

from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Project, build_lifecycle

from mlspec_attest import leakage as L
from mlspec_attest.errors import InputError
from mlspec_attest.log import records
from mlspec_attest.model.metadata import validate_metadata
from mlspec_attest.verify import verify_bundle

HEADER = "id,age,label\n"
ROWS = [f"APP-{i},{20 + i},{i % 2}" for i in range(100)]
TRAIN = HEADER + "\n".join(ROWS[:60]) + "\n"


def codes(report: Any) -> set[str]:
    return {f.code for f in report.findings if f.severity == "error"}


def messages(report: Any, code: str) -> str:
    return " | ".join(f.message for f in report.findings if f.code == code)


def _split(project: Project, files: dict[str, str], products: list[str], fingerprints: list[tuple[str, str]],
           monkeypatch: pytest.MonkeyPatch | None = None, writer: Any = None, target: str = "") -> Any:
    """Attest split with the given files, products and fingerprints; ``writer`` replaces the blob of ``target``."""
    build_lifecycle(project, stages=("objectives", "ingest", "analyze", "transform", "validate"))
    for name, text in files.items():
        (project.root / name).parent.mkdir(parents=True, exist_ok=True)
        (project.root / name).write_bytes(text.encode())
    if writer is not None:
        assert monkeypatch is not None
        real = L.fingerprints_of_csv
        monkeypatch.setattr(L, "fingerprints_of_csv",
                            lambda path, header=True: writer(Path(path)) if target in str(path) else real(path))
    project.attestor().attest("split", materials=["work/clean.csv"], products=products, fingerprints=fingerprints,
                              metadata={"sets": {"train": {"size": 60}, "holdback": {"size": 40}}})
    return verify_bundle(project.bundle, project.policy())


def _csv_rows(path: Path) -> set[tuple[str, ...]]:
    with path.open(newline="") as fh:
        return {tuple(r) for r in list(csv.reader(fh))[1:] if r}


# -- 1. a lone CR is a row end, as csv reads it -------------------------------------------
@pytest.mark.parametrize("joiner", ["\r", "\r\n", "\n\r", "\r\r\n"])
def test_rows_joined_by_any_csv_line_end_are_rows(tmp_path: Path, joiner: str) -> None:
    """Attack (split runner): the hold-back file joins every training row with a lone CR (csv: 60 rows shared)."""
    (tmp_path / "train.csv").write_text(TRAIN)
    hold = tmp_path / "hold.csv"
    hold.write_bytes((HEADER + joiner.join(ROWS[60:] + ROWS[:60]) + "\n").encode())
    shared_by_csv = len(_csv_rows(tmp_path / "train.csv") & _csv_rows(hold))
    assert shared_by_csv == 60
    blob = L.fingerprints_of_csv(hold)
    train = L.parse_fingerprints(L.fingerprints_of_csv(tmp_path / "train.csv"), "t")
    assert L.overlap(train, L.parse_fingerprints(blob, "h")) == shared_by_csv
    assert L.recompute_matches(blob, hold)


def test_a_crlf_cut_by_a_read_boundary_is_one_row_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunked reads (any CHUNK) give the rows of a whole read, whatever cuts a CR from its LF."""
    ends = ("\r", "\r\n", "\n")
    text = HEADER + "".join(r + ends[i % 3] for i, r in enumerate(ROWS))
    path = tmp_path / "mixed.csv"
    path.write_bytes(text.encode())
    whole = L.fingerprint_values_of_csv(path)
    assert whole.size == 100
    for chunk in (1, 2, 7, 13):
        monkeypatch.setattr(L, "CHUNK", chunk)
        assert np.array_equal(L.fingerprint_values_of_csv(path), whole)


def test_v1_recompute_also_splits_on_a_lone_cr(tmp_path: Path) -> None:
    """An old (v1) blob that hid CR-joined rows no longer matches its file on recompute."""
    hold = tmp_path / "hold.csv"
    hold.write_bytes((HEADER + "\r".join(ROWS) + "\n").encode())
    line_rows = hold.read_bytes().split(b"\n")[1:]  # the reviewer's v1 writer: one row for the whole CR-joined line
    hiding = L.encode_v1(sorted({L.row_fingerprint_v1(r) for r in line_rows if r.strip()}))
    assert not L.recompute_matches(hiding, hold)
    honest = L.encode_v1(sorted({L.row_fingerprint_v1(r.encode()) for r in ROWS}))
    assert L.recompute_matches(honest, hold)


def test_gate_finds_training_rows_joined_by_lone_cr(project: Project) -> None:
    report = _split(project, {"work/train.csv": TRAIN,
                              "work/holdback.csv": HEADER + "\r".join(ROWS[60:] + ROWS[:3]) + "\r"},
                    ["train-data=work/train.csv", "holdback-data=work/holdback.csv"],
                    [("train", "work/train.csv"), ("holdback", "work/holdback.csv")])
    assert "3 row(s) of train also appear in holdback" in messages(report, "LEAKAGE")


# -- 2. every data set split attests has exactly one bound fingerprint set ----------------
def test_second_holdback_subject_without_fingerprints_is_refused(project: Project) -> None:
    """Attack (two_holdbacks.py): a leaky hold-back (used by test) and a clean copy, only the clean one fingerprinted."""
    leaky = HEADER + "\n".join(ROWS[60:] + ROWS[:60]) + "\n"
    clean = HEADER + "\n".join(ROWS[60:]) + "\n"
    report = _split(project, {"work/train.csv": TRAIN, "work/holdback.csv": leaky, "work/clean_hold.csv": clean},
                    ["train-data=work/train.csv", "holdback-data=work/holdback.csv", "test-data=work/clean_hold.csv"],
                    [("train", "work/train.csv"), ("holdback", "work/clean_hold.csv")])
    assert "work/holdback.csv (holdback-data) has no row fingerprints" in messages(report, "LEAKAGE_EVIDENCE_MISSING")


def test_second_train_subject_without_fingerprints_is_refused(project: Project) -> None:
    """Attack (two_trains.py): a second train-data file holding hold-back rows, never fingerprinted."""
    hold = HEADER + "\n".join(ROWS[60:]) + "\n"
    report = _split(project, {"work/train.csv": TRAIN, "work/holdback.csv": hold, "work/extra.csv": hold + "\n"},
                    ["train-data=work/train.csv", "train-data=work/extra.csv", "holdback-data=work/holdback.csv"],
                    [("train", "work/train.csv"), ("holdback", "work/holdback.csv")])
    assert "work/extra.csv (train-data) has no row fingerprints" in messages(report, "LEAKAGE_EVIDENCE_MISSING")


def test_validation_subject_without_fingerprints_is_refused(project: Project) -> None:
    """Attack (val_leak.py): validation = its rows + every training row, and no validation fingerprints."""
    val = HEADER + "\n".join(ROWS[80:] + ROWS[:60]) + "\n"
    report = _split(project, {"work/train.csv": TRAIN, "work/val.csv": val,
                              "work/holdback.csv": HEADER + "\n".join(ROWS[60:80]) + "\n"},
                    ["train-data=work/train.csv", "eval-data=work/val.csv", "holdback-data=work/holdback.csv"],
                    [("train", "work/train.csv"), ("holdback", "work/holdback.csv")])
    assert "work/val.csv (eval-data) has no row fingerprints" in messages(report, "LEAKAGE_EVIDENCE_MISSING")


def test_every_fingerprinted_set_is_compared_with_every_other(project: Project) -> None:
    """Two hold-back sets, each fingerprinted: training rows in the second are still found."""
    report = _split(project, {"work/train.csv": TRAIN, "work/holdback.csv": HEADER + ROWS[70] + "\n",
                              "work/h2.csv": HEADER + ROWS[80] + "\n" + ROWS[5] + "\n"},
                    ["train-data=work/train.csv", "holdback-data=work/holdback.csv", "test-data=work/h2.csv"],
                    [("train", "work/train.csv"), ("holdback", "work/holdback.csv"), ("holdback2", "work/h2.csv")])
    assert "1 row(s) of train also appear in holdback2" in messages(report, "LEAKAGE")
    assert "LEAKAGE_EVIDENCE_MISSING" not in codes(report)


def test_two_fingerprint_sets_bound_to_one_data_set_are_refused(project: Project,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: a second, different set bound to the same file; which one is the file's? Neither counts."""
    hold = HEADER + ROWS[70] + "\n"
    calls: list[Path] = []

    def second_differs(path: Path) -> bytes:
        calls.append(path)
        return bytes(L.encode(np.array([7 + len(calls)], dtype=np.uint64)))

    report = _split(project, {"work/train.csv": TRAIN, "work/holdback.csv": hold},
                    ["train-data=work/train.csv", "holdback-data=work/holdback.csv"],
                    [("train", "work/train.csv"), ("holdback", "work/holdback.csv"), ("other", "work/holdback.csv")],
                    monkeypatch, writer=second_differs, target="holdback")
    assert len(calls) == 2
    assert "each data set has exactly one" in messages(report, "LEAKAGE_EVIDENCE_INVALID")
    assert "LEAKAGE_EVIDENCE_MISSING" in codes(report)


# -- 3. one blob version per split -------------------------------------------------------
def test_v1_and_v2_sets_are_not_compared(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack (mixed_versions.py): hold-back (with every training row) as v1 sha256 prefixes, train as v2 XXH3."""
    def v1(path: Path) -> bytes:
        rows = [r for r in path.read_bytes().split(b"\n")[1:] if r.strip()]
        return L.encode_v1(sorted({L.row_fingerprint_v1(r) for r in rows}))

    report = _split(project, {"work/train.csv": TRAIN,
                              "work/holdback.csv": HEADER + "\n".join(ROWS[60:] + ROWS[:60]) + "\n"},
                    ["train-data=work/train.csv", "holdback-data=work/holdback.csv"],
                    [("train", "work/train.csv"), ("holdback", "work/holdback.csv")],
                    monkeypatch, writer=v1, target="holdback")
    text = messages(report, "LEAKAGE_EVIDENCE_INVALID")
    assert "mixed formats (train v2, holdback v1)" in text or "mixed formats (holdback v1, train v2)" in text
    assert "LEAKAGE_EVIDENCE_MISSING" in codes(report)  # nothing usable: fail closed


# -- 4/5. a blob that is not the signed one is never decoded; a signed bad one is a finding ----
def _blobs(project: Project) -> list[Path]:
    return [p for p in (project.bundle / "blobs").iterdir() if p.read_bytes()[:8] == L.MAGIC]


def _honest(project: Project) -> Any:
    return _split(project, {"work/train.csv": TRAIN, "work/holdback.csv": HEADER + ROWS[70] + "\n"},
                  ["train-data=work/train.csv", "holdback-data=work/holdback.csv"],
                  [("train", "work/train.csv"), ("holdback", "work/holdback.csv")])


NOT_ZLIB = struct.pack(">8sBBHIQ", L.MAGIC, 2, 1, 0, 4, 4) + struct.pack(">BI", 1, 4) + b"\0\1\2\3"


def _bomb(count: int, block: int) -> bytes:
    def plane(byte: int) -> bytes:
        packed = zlib.compress(bytes([byte]) * block, 9)
        return struct.pack(">BI", L.ZLIB, len(packed)) + packed
    return L._HEADER.pack(L.MAGIC, 2, 1, 0, block, count) + (plane(1) + plane(0) * 7) * (count // block)


@pytest.mark.parametrize("blob", [NOT_ZLIB, _bomb(1 << 22, 1 << 20)], ids=["not-zlib", "zlib-bomb"])
def test_a_swapped_blob_costs_one_hash_and_is_never_decoded(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                            blob: bytes) -> None:
    """Attack (zlib_crash.sh, dos.sh; no key): rewrite blobs/ with a crash or a bomb; the digest check comes first."""
    assert not codes(_honest(project)) & {"LEAKAGE", "LEAKAGE_EVIDENCE_INVALID", "LEAKAGE_EVIDENCE_MISSING"}
    for path in _blobs(project):
        path.write_bytes(blob)
    decoded: list[str] = []
    real = L.FingerprintStream
    def spy(*args: Any, **kwargs: Any) -> Any:
        decoded.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(L, "FingerprintStream", spy)
    report = verify_bundle(project.bundle, project.policy())
    assert messages(report, "LEAKAGE_EVIDENCE_INVALID").count("differs from the digest split signed") == 2
    assert "LEAKAGE_EVIDENCE_MISSING" in codes(report) and decoded == []


def test_a_signed_blob_that_is_not_zlib_is_a_finding(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack (split runner signs it): a v2 header with a plane that is not zlib: a finding, no traceback."""
    report = _split(project, {"work/train.csv": TRAIN, "work/holdback.csv": HEADER + ROWS[70] + "\n"},
                    ["train-data=work/train.csv", "holdback-data=work/holdback.csv"],
                    [("train", "work/train.csv"), ("holdback", "work/holdback.csv")],
                    monkeypatch, writer=lambda _p: NOT_ZLIB, target="holdback")
    assert "not valid zlib" in messages(report, "LEAKAGE_EVIDENCE_INVALID")
    assert "fingerprints-holdback" in messages(report, "LEAKAGE_EVIDENCE_MISSING")


def test_tiny_blocks_of_a_large_set_are_refused_before_decoding() -> None:
    """Attack (dos.sh b): block size 1 makes each value cost 8 plane headers (minutes for a 75 MB blob)."""
    head = L._HEADER.pack(L.MAGIC, 2, 1, 0, 1, L.MIN_BLOCK_VALUES + 1)
    with pytest.raises(ValueError, match="block size 1 is outside 4096"):
        L.FingerprintStream(head, "crafted")
    small = L.FingerprintStream(bytes(L.encode(np.arange(1, 50, dtype=np.uint64), block_values=1)), "small")
    assert len(small.values()) == 49  # a set that small may use small blocks: its cost is bounded by its size


def test_running_out_of_memory_while_decoding_is_a_finding(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    _honest(project)

    def no_memory(self: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(L.FingerprintStream, "values", no_memory)
    monkeypatch.setattr(L.FingerprintStream, "blocks", no_memory)
    report = verify_bundle(project.bundle, project.policy())
    assert "LEAKAGE_EVIDENCE_INVALID" in codes(report) and "LEAKAGE_EVIDENCE_MISSING" in codes(report)


# -- 6. monitor metadata is not an inference or ground-truth record ------------------------
# Record keys a monitor report may share with a record (a window's times, the pipeline it watches);
# every other key of log/records.py is refused. A new record field must be classified here.
SHARED_WITH_MONITOR = frozenset({"time", "pipeline", "ident", "user", "bytes"})
ROLLBACK = {"name": "pkg", "digest": {"sha256": "0" * 64}}


def _record_keys() -> set[str]:
    keys = {k for k, _ in records._FIELDS} | set(records._OPTIONAL_KEYS) | set(records.SEED_NAMES)
    keys |= set(records.SEED_GROUPS) | {k for group in records.SEED_GROUPS.values() for k in group}
    keys |= set(records._INFERENCE_ONLY) | (set(records._GT_KEYS) - {"type"})
    return keys - SHARED_WITH_MONITOR


@pytest.mark.parametrize("key", sorted(_record_keys()))
def test_every_record_field_is_refused_in_monitor_metadata(key: str) -> None:
    """Attack (stage runner): an inference record's field passed off as monitor metadata."""
    with pytest.raises(InputError):
        validate_metadata("monitor", {"signals": {"drift": 0.1}, "rollback_target": ROLLBACK, key: "x"})


def test_a_ground_truth_record_is_not_monitor_metadata() -> None:
    with pytest.raises(InputError):
        validate_metadata("monitor", {"signals": {"drift": 0.1}, "rollback_target": ROLLBACK,
                                      "type": records.GROUND_TRUTH})
    validate_metadata("monitor", {"signals": {"drift": 0.1}, "rollback_target": ROLLBACK, "type": "weekly",
                                  "time": "2026-01-01T00:00:00Z", "pipeline": "credit"})


@pytest.mark.parametrize("big_rows, shared", [(L.SMALL_SET + 50, 0), (L.SMALL_SET + 50, 3), (40, 2)])
def test_small_and_large_sets_compared_right_and_as_arrays_against_a_large_one(
        project: Project, monkeypatch: pytest.MonkeyPatch, big_rows: int, shared: int) -> None:
    """Second review: a small set (a list, no numpy) against a large streamed set was converted to an
    array on every block (5x slower). It is converted once; either way, shared rows are found."""
    import numpy as np

    seen: list[tuple[type, type]] = []
    honest_overlap = L.overlap

    def recording(a: Any, b: Any) -> int:
        seen.append((type(a), type(b)))
        return honest_overlap(a, b)

    monkeypatch.setattr(L, "overlap", recording)
    train_rows = [f"T-{i},{i},1" for i in range(big_rows)]
    holdback_rows = [f"H-{i},{i},0" for i in range(30)] + train_rows[:shared]
    report = _split(project, {"work/train.csv": HEADER + "\n".join(train_rows) + "\n",
                              "work/holdback.csv": HEADER + "\n".join(holdback_rows) + "\n"},
                    ["train-data=work/train.csv", "holdback-data=work/holdback.csv"],
                    [("train", "work/train.csv"), ("holdback", "work/holdback.csv")])
    assert ("LEAKAGE" in codes(report)) == bool(shared), report.findings
    if shared:
        assert f"{shared} row(s)" in messages(report, "LEAKAGE")
    if big_rows > L.SMALL_SET:
        assert seen and all(a is np.ndarray for a, _ in seen), seen
    else:
        assert seen and all(a is list and b is list for a, b in seen), seen
