"""Hangs: FIFOs and devices where the tools read bundle, log and artifact files.

Attacker: whoever hands us a bundle or a log directory (or can write into an artifact
tree while it is hashed). Before, a FIFO at ``bundle/blobs/<digest>`` blocked ``mlspec
verify`` (and ``/varz`` of the monitor) forever; a FIFO as a log file blocked ``log
verify`` / ``log prove``; a FIFO swapped in after the directory walk blocked hashing.
Now every open is O_NONBLOCK and fstat-checked (_internal/files.py): a finding (exit 1)
or one line (exit 2), within the hang guard, and nothing outside the project changes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hostile_harness import HANG_GUARD, REPO, Target, device_link, fifo, make_target, mlspec, pristine_demo, refused

from mlspec_attest.model.report import Report, StageLine
from mlspec_attest.monitor import ChainState, MonitorService


@pytest.fixture
def target(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Target:
    return make_target(pristine_demo(tmp_path_factory), tmp_path)


def test_copied_demo_passes_its_gate(target: Target) -> None:
    # The baseline the attacks below start from: without them the gate passes.
    run = mlspec("verify", "bundle", "--artifact", "package/credit-model", cwd=target.root)
    assert run.code == 0, run.stdout + run.stderr


@pytest.mark.parametrize("plant", ["fifo", "dev-zero-symlink", "dev-null-symlink"])
def test_special_file_as_blob_is_a_finding_not_a_hang(target: Target, plant: str) -> None:
    before = target.outside_state()
    blobs = sorted((target.bundle / "blobs").iterdir())
    assert blobs, "the demo stores its row fingerprints as blobs"
    for blob in blobs:
        if plant == "fifo":
            fifo(blob)
        else:
            device_link(blob, "/dev/zero" if plant == "dev-zero-symlink" else "/dev/null")
    run = mlspec("verify", "bundle", cwd=target.root)
    refused(run, "LEAKAGE_EVIDENCE_INVALID", codes=(1,))
    why = "not a regular file" if plant == "fifo" else "symlink"
    assert why in run.stdout, run.stdout
    assert target.outside_state() == before


@pytest.mark.parametrize("name", ["records.jsonl", "log.json", "seals.jsonl", "leaves.bin"])
@pytest.mark.parametrize("plant", ["fifo", "dev-zero-symlink"])
def test_special_file_as_log_file(target: Target, name: str, plant: str) -> None:
    before = target.outside_state()
    path = target.log / name
    fifo(path) if plant == "fifo" else device_link(path)
    log = str(target.log.relative_to(target.root))
    for args in (("log", "verify", "--log", log), ("log", "verify", "--log", log, "--bundle", "bundle"),
                 ("log", "prove", "req-00042", "--log", log), ("log", "prove", "--index", "3", "--log", log)):
        run = mlspec(*args, cwd=target.root)
        refused(run, name)
        assert "not a regular file" in run.stdout + run.stderr or "symlink" in run.stdout + run.stderr
    # a writer must not open it either
    run = mlspec("log", "seal", "--log", log, "--unsigned", cwd=target.root)
    refused(run, name, codes=(2,))
    assert target.outside_state() == before


def test_fifo_swapped_in_after_the_walk_is_not_read(tmp_path: Path) -> None:
    # The race: the walk saw a regular model file; before the open, it became a FIFO.
    # Run in a child so a regression hangs the child (killed by the guard), not the suite.
    script = f"""
import os, sys
from pathlib import Path
import mlspec_attest.digests as d
from mlspec_attest.errors import InputError
root = Path({str(tmp_path)!r}) / "model"
root.mkdir()
(root / "weights.bin").write_bytes(b"w" * 10)
real_walk = d._walk_regular_files
def walk_then_swap(r):
    files = real_walk(r)
    os.unlink(root / "weights.bin"); os.mkfifo(root / "weights.bin")
    return files
d._walk_regular_files = walk_then_swap
for fn in (lambda: d.digest_directory(root, workers=1), lambda: d.sha256_file(root / "weights.bin"),
           lambda: d._hash_overlapped(root / "weights.bin", d.NullProgress())):
    try:
        fn()
    except InputError as exc:
        print("refused:", exc)
    else:
        sys.exit("read a FIFO")
"""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    try:
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=HANG_GUARD)
    except subprocess.TimeoutExpired:
        pytest.fail("hashing blocked on a FIFO swapped in after the walk")
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert out.count("refused:") == 3 and "not a regular file" in out, out


def _serve(service: MonitorService) -> tuple[int, object]:
    server = service.make_server("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1], server


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=HANG_GUARD) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_monitor_keeps_answering_with_a_fifo_blob_and_without_attestations(target: Target) -> None:
    service = MonitorService(target.bundle, target.root / "policies" / "default.yaml", refresh=0.0,
                             log_dir=target.log)  # the default policy requires the log (LOG_MISSING)
    port, server = _serve(service)
    try:
        status, body = _get(port, "/varz")
        assert status == 200 and json.loads(body)["verdict"] == "pass"
        for blob in (target.bundle / "blobs").iterdir():
            fifo(blob)
        for _ in range(2):  # every later request answers too
            status, body = _get(port, "/varz")
            varz = json.loads(body)
            assert status == 200 and varz["verdict"] == "fail"
            assert any(f["code"] == "LEAKAGE_EVIDENCE_INVALID" for f in varz["findings"])
        saved = target.root / "attestations.saved"
        shutil.move(target.bundle / "attestations", saved)
        for path in ("/varz", "/metrics", "/varz"):
            status, body = _get(port, path)
            assert status == 503 and b"cannot be verified" in body, (status, body)
        assert _get(port, "/ok") == (200, b"ok\n")  # still serving
        shutil.move(saved, target.bundle / "attestations")
        status, body = _get(port, "/varz")
        assert status == 200 and json.loads(body)["chain_length"] == 13
    finally:
        server.shutdown()  # type: ignore[attr-defined]
        server.server_close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("tree_size", ["12", 1.5, None, [], {"n": 1}, True])
def test_monitor_state_survives_a_log_attestation_whose_tree_size_is_not_an_integer(tree_size: object) -> None:
    report = Report(bundle="b", policy="p", policy_sha256=None)
    report.stages.append(StageLine(sequence=12, stage="log", file="0012-log.dsse.json", signers=["pipeline"],
                                   time="2026-01-01T00:00:00Z", subjects=[], materials=[], payload_sha256="0" * 64,
                                   metadata={"tree_size": tree_size, "root_hash": "ab"}))
    report.stages.append(StageLine(sequence=11, stage="monitor", file="0011-monitor.dsse.json", signers=["p"],
                                   time=None, subjects=[], materials=[], payload_sha256="1" * 64,
                                   metadata={"signals": "not-a-mapping"}))
    state = ChainState.from_report(report)
    assert state.records == 0 and state.seals == 1 and state.signals == {}
    assert b"mlspec_log_records 0.0" in state.metrics()


@pytest.mark.parametrize("name", ["records.jsonl", "log.json", "seals.jsonl", "leaves.bin"])
def test_fifo_log_file_in_the_gate_replay_and_render(target: Target, name: str) -> None:
    # R1 (log holder): the gate, replay and render open the log too; a FIFO there never blocks them.
    before = target.outside_state()
    fifo(target.log / name)
    for args in (("verify", "bundle"), ("replay", "bundle"), ("log", "render", "--log", "logs/inference")):
        run = mlspec(*args, cwd=target.root)
        if args[1] == "render" and name != "records.jsonl":
            refused(run, codes=(0,))  # render reads only the records
            continue
        refused(run, name)
        assert "not a regular file" in run.stdout + run.stderr
    assert target.outside_state() == before


def test_unsigned_seal_of_2_36_records_over_a_sparse_leaf_file_is_not_hashed(target: Target) -> None:
    # R3 (log holder): one unsigned seal claiming 2^36 records, and leaves.bin a 2 TiB sparse file,
    # made the gate hash 2^36 leaves. A seal's size is only trusted up to the records actually read.
    seals = target.log / "seals.jsonl"
    last = json.loads(seals.read_text().splitlines()[-1])
    n = 2 ** 36
    try:
        with open(target.log / "leaves.bin", "r+b") as fh:
            fh.truncate(n * 32)
    except OSError as exc:
        pytest.skip(f"this filesystem cannot hold a 2 TiB sparse file: {exc}")
    forged = dict(last, seal=last["seal"] + 1, tree_size=n, previous_tree_size=last["tree_size"],
                  previous_root_hash=last["root_hash"], attestation=None, consistency_proof=[last["root_hash"]])
    with open(seals, "a") as fh:
        fh.write(json.dumps(forged) + "\n")
    run = mlspec("verify", "bundle", cwd=target.root)
    refused(run, "LOG_RECORDS_TRUNCATED", codes=(1,))
    run = mlspec("log", "verify", "--log", "logs/inference", "--bundle", "bundle", cwd=target.root)
    refused(run, "LOG_RECORDS_TRUNCATED", codes=(1,))
    run = mlspec("log", "prove", "req-00042", "--log", "logs/inference", cwd=target.root)
    refused(run, f"covers {n} records", codes=(2,))
    run = mlspec("log", "seal", "--unsigned", "--log", "logs/inference", cwd=target.root)
    refused(run, f"covers {n}", codes=(2,))
