"""Crash safety and concurrency of appends.

kill -9 at random moments (and at each critical instant of the write protocol)
never leaves a bundle that fails to verify or that lost an earlier attestation;
temp files a dead writer left are removed by the next append; eight concurrent
``mlspec attest`` processes yield one linear chain holding all eight.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Project

from mlspec_attest.bundle import TEMP_PREFIX
from mlspec_attest.policy import Policy
from mlspec_attest.verify import Verifier

POLICY = """\
version: 1
keys: {owner: ../keys/owner.pub, pipeline: ../keys/pipeline.pub}
objectives: {project: crash}
stages:
  objectives: {signers: [owner]}
  log: {signers: [pipeline], required: false, repeat: true}
metrics_binding: {required: false}  # an unsealed log head read by a criterion: not what these tests are about
"""
OBJECTIVES = {"project": "crash", "revision": 1, "outputs": {"task": "classification", "labels": [0, 1]}, "criteria": [
    {"name": "logged", "stage": "log", "expression": "metadata.tree_size >= 0", "severity": "block",
     "description": "a log exists"}]}
LOG = {"tree_size": 1, "root_hash": "a" * 64}


@pytest.fixture
def chain(project: Project) -> tuple[Project, Verifier]:
    project.write("policies/crash.yaml", POLICY)
    project.attestor("owner").attest("objectives", metadata=OBJECTIVES)
    project.attestor("pipeline").attest("log", metadata=LOG)
    verifier = Verifier(Policy.from_file(project.policy("crash.yaml")))
    assert verifier.verify(project.bundle).passed
    return project, verifier


def _state(project: Project) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (project.bundle / "attestations").iterdir()
            if not p.name.startswith(TEMP_PREFIX)}


def _temps(project: Project) -> list[Path]:
    return [p for p in project.bundle.rglob(TEMP_PREFIX + "*")]


def _assert_intact(project: Project, verifier: Verifier, before: dict[str, bytes]) -> int:
    after = _state(project)
    for name, data in before.items():
        assert after.get(name) == data, f"{name} lost or changed by a crash"
    assert len(after) - len(before) in (0, 1)
    report = verifier.verify(project.bundle)
    assert report.passed, [f.message for f in report.findings]
    return len(after) - len(before)


# Points in the append protocol where the child kills itself, to hit each instant for sure.
CRASH_POINTS = ("none", "fsync", "rename", "after-rename")


def _child_append(project: Project, crash_point: str) -> None:
    """Runs in a forked child: one append, optionally SIGKILLing itself at a chosen instant."""
    real_fsync, real_rename = os.fsync, os.rename

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    if crash_point == "fsync":
        os.fsync = lambda fd: die()  # type: ignore[assignment]  # temp written, not yet synced
    elif crash_point == "rename":
        os.rename = lambda a, b: die()  # type: ignore[assignment]  # temp synced, not yet renamed
    elif crash_point == "after-rename":
        def rename_then_die(a: str, b: str) -> None:
            real_rename(a, b)
            die()  # renamed, directory not yet fsynced
        os.rename = rename_then_die  # type: ignore[assignment]
    try:
        project.attestor("pipeline").attest("log", metadata=LOG)
    finally:
        os.fsync, os.rename = real_fsync, real_rename


def test_kill_9_at_random_moments_in_process(chain: tuple[Project, Verifier]) -> None:
    project, verifier = chain
    rng = random.Random(9)
    # How long one append takes here, so kill times spread over the whole of it.
    start = time.perf_counter()
    project.attestor("pipeline").attest("log", metadata=LOG)
    duration = time.perf_counter() - start
    kills = appended = 0
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline or kills < 12:
        before = _state(project)
        crash_point = CRASH_POINTS[kills % len(CRASH_POINTS)] if kills < 8 else "none"
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                _child_append(project, crash_point)
            finally:
                os._exit(0)
        if crash_point == "none":
            time.sleep(rng.uniform(0, duration * 1.5))
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        kills += 1
        appended += _assert_intact(project, verifier, before)
        if kills >= 60:
            break
    assert kills >= 12
    # The next append removes what dead writers left, and the chain still verifies.
    project.attestor("pipeline").attest("log", metadata=LOG)
    assert _temps(project) == []
    assert verifier.verify(project.bundle).passed


def _cli(project: Project, *args: str) -> list[str]:
    return [sys.executable, "-m", "mlspec_attest.cli.main", "attest", "stage", *args,
            "--bundle", str(project.bundle), "--key", str(project.key("pipeline"))]


def test_kill_9_of_the_cli_process(chain: tuple[Project, Verifier]) -> None:
    project, verifier = chain
    project.write("log.yaml", "tree_size: 1\nroot_hash: " + "a" * 64 + "\n")
    rng = random.Random(4)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for _ in range(3):
        before = _state(project)
        proc = subprocess.Popen(_cli(project, "log", "--metadata", "log.yaml"), cwd=project.root, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _assert_intact(project, verifier, before)
    # A leftover temp file (as a writer killed mid-write leaves it) is cleaned by the next run.
    (project.bundle / "attestations" / f"{TEMP_PREFIX}{'de' * 12}").write_bytes(b'{"partial": ')  # write_file's naming
    assert verifier.verify(project.bundle).passed  # never read as an attestation
    done = subprocess.run(_cli(project, "log", "--metadata", "log.yaml"), cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _temps(project) == []
    assert verifier.verify(project.bundle).passed


def test_eight_concurrent_cli_appends_make_one_linear_chain(chain: tuple[Project, Verifier]) -> None:
    project, verifier = chain
    before = len(_state(project))
    procs = []
    for i in range(8):
        project.write(f"log{i}.yaml", f"tree_size: {i + 10}\nroot_hash: {'b' * 64}\n")
        procs.append(subprocess.Popen(_cli(project, "log", "--metadata", f"log{i}.yaml"), cwd=project.root,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    report = verifier.verify(project.bundle)
    assert report.passed, [f.message for f in report.findings]
    assert [s.sequence for s in report.stages] == list(range(before + 8))
    sizes = sorted(s for line in report.stages[before:] for s in [line.stage])
    assert sizes == ["log"] * 8
    # Every one of the eight metadata files made it in, exactly once.
    from mlspec_attest.model.canonical import parse_json
    from mlspec_attest.model.envelope import Envelope

    trees = sorted(parse_json(Envelope.from_dict(parse_json((project.bundle / "attestations" / s.file).read_bytes()))
                              .payload)["predicate"]["metadata"]["tree_size"] for s in report.stages[before:])
    assert trees == list(range(10, 18))
