"""Unbounded reads: sparse files of several GiB and endless devices wherever the tools read.

Attacker: whoever hands us the bundle or the log. Before, an 8 GiB sparse blob, head,
seals file or attestation (or a blob symlinked to /dev/zero) was read whole: a
MemoryError traceback, or the OOM killer. Now every whole-file read is bounded at 64 MiB
(checked by fstat before reading, and while reading), and large legitimate inputs
(records, leaves, data files) are streamed with a bound on each line.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hostile_harness import GIB, Target, device_link, make_target, mlspec, pristine_demo, refused, sparse

from mlspec_attest._internal.files import MAX_FILE_BYTES, open_stream, read_file, read_lines
from mlspec_attest.cli.main import main
from mlspec_attest.errors import InputError
from mlspec_attest.verify.evidence import _read_evidence


@pytest.fixture
def target(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Target:
    return make_target(pristine_demo(tmp_path_factory), tmp_path)


def test_verify_with_an_8_gib_sparse_blob_returns_at_once(target: Target) -> None:
    # Must show (issue #14): under a second, exit 1 or 2, one line naming the blob.
    for blob in (target.bundle / "blobs").iterdir():
        sparse(blob, 8 * GIB)
    start = time.perf_counter()
    result = CliRunner().invoke(main, ["verify", str(target.bundle), "--policy",
                                       str(target.root / "policies" / "default.yaml")])
    elapsed = time.perf_counter() - start
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if "over the 67108864-byte limit" in line]
    blob_codes = ("LEAKAGE_EVIDENCE_INVALID", "PACKAGE_MANIFEST_INVALID", "METADATA_SOURCE_INVALID")
    assert lines and all(any(c in line for c in blob_codes) and "blobs/" in line for line in lines), result.output
    assert any("LEAKAGE_EVIDENCE_INVALID" in line for line in lines), result.output
    assert elapsed < 30, elapsed  # hang guard only; measured ~0.3 s in-process (docs/security.md)
    run = mlspec("verify", "bundle", cwd=target.root)  # and the real console script
    refused(run, "over the 67108864-byte limit", codes=(1,))


def test_8_gib_sparse_head_is_refused_by_verify_vsa_without_a_head_rule(target: Target) -> None:
    # default.yaml has no head: rule, yet --vsa lists the head among its inputs: it must be bounded too.
    sparse(target.bundle / "head.dsse.json", 8 * GIB)
    run = mlspec("verify", "bundle", "--vsa", "vsa.json", "--vsa-key", "keys/pipeline.key", cwd=target.root)
    refused(run, "head.dsse.json", "over the", codes=(2,))
    assert not (target.root / "vsa.json").exists()  # nothing half-written


@pytest.mark.parametrize("name", ["seals.jsonl", "log.json", "records.jsonl"])
def test_8_gib_sparse_log_file(target: Target, name: str) -> None:
    sparse(target.log / name, 8 * GIB)
    log = str(target.log.relative_to(target.root))
    for args in (("log", "verify", "--log", log), ("log", "prove", "req-00042", "--log", log)):
        run = mlspec(*args, cwd=target.root)
        refused(run, name)
        assert "over the" in run.stdout + run.stderr or "longer than" in run.stdout + run.stderr


@pytest.mark.parametrize("name", ["0005-split.dsse.json", "0012-log.dsse.json"])
def test_8_gib_sparse_attestation_in_every_reader(target: Target, name: str) -> None:
    sparse(target.bundle / "attestations" / name, 8 * GIB)
    for args in (("verify", "bundle"), ("replay", "bundle"), ("report", "bundle", "--html", "r.html"),
                 ("log", "verify", "--log", "logs/inference", "--bundle", "bundle"),
                 ("inspect", f"bundle/attestations/{name}")) + (
            # attest head/stage read only the newest attestation
            (("attest", "head", "--bundle", "bundle", "--key", "keys/pipeline.key"),) if name.startswith("0012") else ()):
        refused(mlspec(*args, cwd=target.root), name, "over the", codes=(2,))


def test_attestation_symlinked_to_dev_zero(target: Target) -> None:
    device_link(target.bundle / "attestations" / "0012-log.dsse.json")
    for args in (("verify", "bundle"), ("replay", "bundle"), ("attest", "head", "--bundle", "bundle",
                                                              "--key", "keys/pipeline.key")):
        refused(mlspec(*args, cwd=target.root), "0012-log.dsse.json", "symlink", codes=(2,))


def test_evidence_files_are_read_bounded_and_no_follow(tmp_path: Path) -> None:
    (tmp_path / "evidence").mkdir()
    sparse(tmp_path / "evidence" / "big.json", 8 * GIB)
    data, why = _read_evidence(tmp_path, "evidence/big.json")
    assert data is None and why is not None and "over the" in why
    device_link(tmp_path / "evidence" / "zero.json")
    data, why = _read_evidence(tmp_path, "evidence/zero.json")
    assert data is None and why is not None and "symlink" in why
    (tmp_path / "evidence" / "ok.json").write_bytes(b"{}")
    assert _read_evidence(tmp_path, "evidence/ok.json") == (b"{}", None)
    assert _read_evidence(tmp_path, "evidence/absent.json") == (None, None)
    assert _read_evidence(tmp_path, "evidence/../evidence/ok.json")[1] == "points outside evidence/"
    assert _read_evidence(tmp_path, "blobs/x")[1] == "points outside evidence/"


def test_bound_holds_for_a_file_that_grows_while_read_and_for_long_lines(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    with pytest.raises(InputError, match="over the 99-byte limit"):
        read_file(path, limit=99)
    assert read_file(path, limit=100) == b"x" * 100
    assert MAX_FILE_BYTES == 64 * 1024 * 1024  # what docs/security.md promises
    path.write_bytes(b"short\n" + b"y" * 50 + b"\nend")
    with open_stream(path) as fh:
        lines = read_lines(fh, "f", limit=10)
        assert next(lines) == b"short\n"
        with pytest.raises(InputError, match="f:2: line is longer than 10 bytes"):
            next(lines)
    sparse(tmp_path / "huge.csv", 8 * GIB)
    from mlspec_attest.leakage import fingerprints_of_csv

    start = time.perf_counter()
    with pytest.raises(InputError, match="line is longer than"):
        fingerprints_of_csv(tmp_path / "huge.csv")  # streamed: never 8 GiB in memory
    assert time.perf_counter() - start < 30  # hang guard


def test_20_gib_sparse_tail_without_a_newline_under_a_memory_limit(target: Target) -> None:
    # R2d (log holder): valid records, then a 20 GiB sparse tail with no newline, was a MemoryError
    # (or an OOM kill). Lines are read with a bound: one line, exit 2, under a 3 GiB address-space limit.
    import os
    import resource
    import subprocess
    import sys

    from hostile_harness import HANG_GUARD, REPO

    records = target.log / "records.jsonl"
    with open(records, "r+b") as fh:
        fh.truncate(records.stat().st_size + 20 * GIB)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 * GIB, 3 * GIB))

    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("MLSPEC_KEY_PASSPHRASE", None)
    for args in (("verify", "bundle"), ("replay", "bundle"), ("log", "verify", "--log", "logs/inference"),
                 ("log", "prove", "req-00042", "--log", "logs/inference"),
                 ("log", "seal", "--unsigned", "--log", "logs/inference")):
        proc = subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", *args], cwd=target.root, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=HANG_GUARD, preexec_fn=limit)
        err = proc.stderr.decode("utf-8", "replace")
        assert "MemoryError" not in err and "Traceback" not in err, (args, err)
        assert proc.returncode == 2 and err.count("\n") == 1, (args, proc.returncode, err)
        assert "records.jsonl" in err and ("longer than" in err or "incomplete" in err), (args, err)
