"""The gate's speed work must not change a verdict (issue #19 items 2 and 3).

* The metadata schema re-check moved to where each file is read (worker processes for
  long chains): a key holder's schema-violating metadata is still refused, serial or
  parallel, in the parent's share or a worker's; an entry that arrives without a verdict
  is checked by the check itself (fail closed).
* Files are read through one no-follow directory fd: every refusal (symlink, FIFO,
  directory, dangling link, oversized) is the one ``Bundle.files()`` gives.
* Entries keep no file bytes and no payload (memory follows the entry count, not the
  payload sizes), except the payload a pending revocation needs.
* Compiled CEL is cached by (expression text, variable names): never a stale verdict.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mlspec_attest.errors import ExpressionError, InputError

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))
import make_chain  # noqa: E402


@pytest.fixture
def idle_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlspec_attest._internal import workers as workers_mod

    monkeypatch.setattr(workers_mod, "oversubscribed", lambda: False)


def _bad_monitor_chain(tmp_path: Path, n: int, bad: set[int]) -> Path:
    """A chain whose monitor attestations (odd sequences past 12) at ``bad`` sign metadata their schema refuses (signals: a string)."""
    real = make_chain._monitor_metadata

    def monitor(i: int):  # k-th repeated monitor is at sequence 12 + k
        md = real(i)
        if 12 + i in bad:
            md["signals"] = "all fine, trust me"
        return md

    mp = pytest.MonkeyPatch()
    mp.setattr(make_chain, "_monitor_metadata", monitor)
    mp.setattr(make_chain, "_fast_canonical", make_chain.canonicalize)  # the patched documents stay RFC 8785
    try:
        make_chain.build(n, tmp_path / "c")
    finally:
        mp.undo()
    return tmp_path / "c"


def _invalid_sequences(report) -> list[int]:
    return sorted(f.sequence for f in report.findings if f.code == "METADATA_INVALID")


@pytest.mark.parametrize("workers", ["1", "2", "3"])
def test_schema_violation_refused_in_every_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idle_cores: None,
                                                 workers: str) -> None:
    """Attack: the pipeline key holder signs monitor metadata its schema refuses, deep in a long chain,
    hoping the re-check is skipped where the work is spread (a worker's slice, the parent's own share)."""
    from mlspec_attest.verify import verify_bundle

    bad = {15, 201, 397}  # a worker's first slice, a middle one, the parent's share (the last 1/W)
    c = _bad_monitor_chain(tmp_path, 400, bad)
    monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", workers)
    report = verify_bundle(c / "bundle", c / "policy.yaml")
    assert _invalid_sequences(report) == sorted(bad)
    assert not report.passed


def test_schema_findings_identical_serial_and_parallel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       idle_cores: None) -> None:
    from mlspec_attest.verify import verify_bundle

    c = _bad_monitor_chain(tmp_path, 300, {21, 151, 299})
    out = []
    for workers in ("1", "2"):
        monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", workers)
        r = verify_bundle(c / "bundle", c / "policy.yaml")
        out.append([(f.code, f.sequence, f.message) for f in r.findings])
    assert out[0] == out[1]
    assert any(code == "METADATA_INVALID" for code, _, _ in out[0])


def test_entry_without_a_verdict_is_checked_by_the_check(tmp_path: Path) -> None:
    """Fail closed: an entry built elsewhere (no verdict taken at read time) is still schema-checked."""
    from datetime import datetime, timezone

    from mlspec_attest.bundle import Bundle
    from mlspec_attest.model.report import Report
    from mlspec_attest.policy import Policy
    from mlspec_attest.verify.chain import build_chain
    from mlspec_attest.verify.context import VerifyContext
    from mlspec_attest.verify.lineage import check_metadata_schema
    from mlspec_attest.verify.signatures import EntryReader

    c = _bad_monitor_chain(tmp_path, 16, {15})
    policy = Policy.from_file(c / "policy.yaml")
    report = Report(bundle="b", policy="p", policy_sha256=policy.digest)
    reader = EntryReader(policy)
    entries = [e for bf in Bundle(c / "bundle").files() if (e := reader.read(bf, report)) is not None]
    assert all(e.metadata_problem is None for e in entries)  # read() alone takes no verdict
    ctx = VerifyContext(policy=policy, now=datetime.now(timezone.utc), bundle=Bundle(c / "bundle"), report=report,
                        chain=build_chain(entries, report))
    check_metadata_schema(ctx)
    assert _invalid_sequences(report) == [15]


def test_a_forged_valid_verdict_needs_the_parser_not_the_bundle(tmp_path: Path, idle_cores: None,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The verdict is computed from the signed statement by the reader, never read from the bundle:
    a statement that carries a field named like it changes nothing."""
    from mlspec_attest.verify import verify_bundle

    real = make_chain._monitor_metadata

    def monitor(i: int):
        md = real(i)
        if 12 + i == 31:
            md.update({"signals": 7, "metadata_problem": ""})
        return md

    monkeypatch.setattr(make_chain, "_monitor_metadata", monitor)
    monkeypatch.setattr(make_chain, "_fast_canonical", make_chain.canonicalize)
    make_chain.build(250, tmp_path / "c")
    monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", "2")
    report = verify_bundle(tmp_path / "c" / "bundle", tmp_path / "c" / "policy.yaml")
    assert _invalid_sequences(report) == [31]


# --------------------------------------------------------------------------- reading: same refusals

def _refusal(fn) -> str:
    try:
        fn()
    except InputError as exc:
        return f"InputError: {exc}"
    return "read"


@pytest.mark.parametrize("odd", ["symlink", "fifo", "dir", "dangling", "oversized"])
@pytest.mark.parametrize(("workers", "index"), [(1, 251), (2, 40), (2, 251)])  # 40: a worker's slice
def test_hostile_files_refused_as_bundle_files_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   idle_cores: None, odd: str, workers: int, index: int) -> None:
    """Attack: whoever holds the bundle plants a symlink (to a file outside), a FIFO (a hang), a
    directory or an oversized file among the attestations; the one-fd reader must refuse each
    exactly as the per-path reader does (same message), serial or in a worker."""
    from mlspec_attest import bundle as bundle_mod
    from mlspec_attest.bundle import Bundle
    from mlspec_attest.model.report import Report
    from mlspec_attest.policy import Policy
    from mlspec_attest.verify._parallel import parse_bundle
    from mlspec_attest.verify.signatures import EntryReader

    make_chain.build(260, tmp_path / "c")
    b = Bundle(tmp_path / "c" / "bundle")
    att = b.attestations_dir
    target = sorted(att.iterdir())[index]  # 251: in the parent's own share with 2 workers
    if odd == "symlink":
        outside = tmp_path / "outside.json"
        outside.write_bytes(target.read_bytes())
        target.unlink()
        os.symlink(outside, target)
    elif odd == "fifo":
        target.unlink()
        os.mkfifo(target)
    elif odd == "dir":
        target.unlink()
        target.mkdir()
    elif odd == "dangling":
        target.unlink()
        os.symlink(att / "missing", target)
    else:
        monkeypatch.setattr(bundle_mod, "MAX_INPUT_BYTES", len(target.read_bytes()) - 1)
    policy = Policy.from_file(tmp_path / "c" / "policy.yaml")
    expected = _refusal(b.files)
    assert expected.startswith("InputError: ")
    ours = _refusal(lambda: parse_bundle(EntryReader(policy), b, Report(bundle="b", policy="p", policy_sha256="0"),
                                         workers=workers))
    assert ours == expected


# --------------------------------------------------------------------------- memory: no bytes kept

def test_entries_keep_no_file_bytes_or_payload(tmp_path: Path, idle_cores: None) -> None:
    from mlspec_attest.bundle import Bundle
    from mlspec_attest.model.report import Report
    from mlspec_attest.policy import Policy
    from mlspec_attest.verify._parallel import parse_bundle
    from mlspec_attest.verify.signatures import EntryReader

    make_chain.build(250, tmp_path / "c", pad=2048)
    policy = Policy.from_file(tmp_path / "c" / "policy.yaml")
    for workers in (1, 2):
        entries = parse_bundle(EntryReader(policy), Bundle(tmp_path / "c" / "bundle"),
                               Report(bundle="b", policy="p", policy_sha256="0"), workers=workers)
        assert len(entries) == 250
        assert all(e.file.data == b"" and e.payload == b"" for e in entries)
        assert all(e.metadata_problem == "" and e.authentic for e in entries)
        assert len({e.payload_sha256 for e in entries}) == 250  # what the chain checks use is kept


# --------------------------------------------------------------------------- CEL: cached, never stale

def test_cel_compiled_once_and_evaluated_per_binding() -> None:
    from mlspec_attest.objectives.cel import compile_expression, evaluate_expression

    text = "metrics.accuracy >= 0.8 && metrics.recall > 0.5"
    first = compile_expression(text, ("metrics",))
    assert compile_expression(text, ("metrics",)) is first  # cached: the same tree
    good = evaluate_expression(first, {"metrics": {"accuracy": 0.9, "recall": 0.6}})
    bad = evaluate_expression(first, {"metrics": {"accuracy": 0.7, "recall": 0.6}})
    assert bool(good.value) is True and bool(bad.value) is False  # the verdict follows the bindings


def test_cel_cache_keyed_by_variables_and_refusals_fresh() -> None:
    """A tree checked against one set of variable names is never handed out for another set."""
    from mlspec_attest.objectives.cel import compile_expression

    text = "signals.drift < 3"
    compile_expression(text, ("metrics", "signals"))
    for _ in range(2):  # refused every time, as a new exception with the position
        with pytest.raises(ExpressionError) as exc:
            compile_expression(text, ("metrics",))
        assert "unknown variable 'signals'" in exc.value.reason and exc.value.column == 1
    with pytest.raises(ExpressionError) as syntax:
        compile_expression("metrics.accuracy >=", ("metrics",))
    with pytest.raises(ExpressionError) as again:
        compile_expression("metrics.accuracy >=", ("metrics",))
    assert again.value is not syntax.value and again.value.reason == syntax.value.reason
