"""Shared fixtures. External vectors live in ../shared/vectors (skipped cleanly when absent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlspec_attest.model.report import Finding, ObjectiveLine, Report, StageLine

REPO = Path(__file__).resolve().parent.parent
VECTORS = REPO.parent / "shared" / "vectors"
SEED = REPO.parent / "shared" / "seed"


@pytest.fixture(scope="session")
def vectors() -> Path:
    if not VECTORS.is_dir():
        pytest.skip("external vectors folder ../shared/vectors is absent on this machine")
    return VECTORS


@pytest.fixture(scope="session")
def seed() -> Path:
    if not SEED.is_dir():
        pytest.skip("seed folder ../shared/seed is absent on this machine")
    return SEED


# -- a small signed project, built through the public API ------------------------------
import shutil  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from mlspec_attest.attest.attestor import Attestor  # noqa: E402
from mlspec_attest.attest.head import HeadSigning  # noqa: E402
from mlspec_attest.digests import digest_path  # noqa: E402
from mlspec_attest.keys import generate, load_signer  # noqa: E402

POLICIES = REPO / "policies"


@dataclass
class Project:
    root: Path
    bundle: Path

    def key(self, name: str) -> Path:
        return self.root / "keys" / f"{name}.key"

    def write(self, rel: str, content: str | bytes) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        return p

    def attestor(self, *names: str, bundle: Path | None = None, head: bool = True) -> Attestor:
        """Signs with ``names``; like an init'ed project, re-signs the chain head with the pipeline key."""
        # (a project whose pipeline key lives on a token has no key file: no head, as without head: in mlspec.yaml)
        signing = HeadSigning((load_signer(self.key("pipeline")),)) if head and self.key("pipeline").is_file() else None
        return Attestor(bundle or self.bundle, [load_signer(self.key(n)) for n in names or ("pipeline",)],
                        base_dir=self.root, head=signing)

    def policy(self, name: str = "default.yaml") -> Path:
        return self.root / "policies" / name


OBJECTIVES_YAML = """\
project: my-model
revision: 1
outputs: {task: binary-classification, labels: [0, 1]}
errors:
  - {name: false-negative, handling: manual review}
criteria:
  - name: test-accuracy
    stage: test
    expression: metrics.accuracy >= 0.8
    severity: block
    description: hold-back accuracy
"""


def build_lifecycle(project: Project, *, accuracy: float = 0.9, stages: tuple[str, ...] | None = None,
                    objectives_yaml: str = OBJECTIVES_YAML) -> None:
    """A full 13-stage chain over small files, signed by owner (objectives) and pipeline."""
    w = project.write
    w("objectives.yaml", objectives_yaml)
    w("raw/data.csv", "x,y,group\n1,0,a\n2,1,b\n3,0,a\n")
    w("work/stats.json", '{"rows": 3}')
    w("work/clean.csv", "x,y,group\n1,0,a\n2,1,b\n")
    w("work/train.csv", "x,y,group\n1,0,a\n")
    w("work/val.csv", "x,y,group\n2,1,b\n")
    w("work/holdback.csv", "x,y,group\n3,0,a\n")
    w("out/model.bin", "model-bytes")
    w("work/evaluation.json", '{"metrics": {"accuracy": 0.9}}')
    w("work/test.json", json.dumps({"metrics": {"accuracy": accuracy}}))
    w("pkg/model.bin", "model-bytes")
    w("pkg/manifest.json", "{}")
    owner = project.attestor("owner")
    pipe = project.attestor("pipeline")
    plan = [
        ("objectives", owner, dict(metadata_files=[project.root / "objectives.yaml"])),
        ("ingest", pipe, dict(materials=["external=raw/data.csv"], products=["raw-data=raw/data.csv"],
                              metadata={"sources": [{"name": "raw", "connector": "csv", "uri": "raw/data.csv"}]})),
        ("analyze", pipe, dict(materials=["raw/data.csv"], products=["work/stats.json"],
                               metadata={"statistics": {"x": {"mean": 2.0}}})),
        ("transform", pipe, dict(materials=["raw/data.csv"], products=["work/clean.csv"],
                                 metadata={"transformations": [{"name": "dropna"}]})),
        ("validate", pipe, dict(materials=["work/clean.csv"], metadata={"schema_version": "1", "checks": [
            {"name": "no-nulls", "passed": True}], "passed": True})),
        ("split", pipe, dict(materials=["work/clean.csv"], products=[
            "train-data=work/train.csv", "eval-data=work/val.csv", "holdback-data=work/holdback.csv"],
            fingerprints=[("train", "work/train.csv"), ("validation", "work/val.csv"),
                          ("holdback", "work/holdback.csv")],
            metadata={"sets": {"train": {"rows": 1}, "validation": {"rows": 1}, "holdback": {"rows": 1}}})),
        ("train", pipe, dict(materials=["train-data=work/train.csv"], products=["model=out/model.bin"],
                             metadata={"framework": {"name": "sklearn"}, "hyperparameters": {"C": 1.0}})),
        # evaluate and test bind their metrics to the attested report (the gate requires it: METADATA_UNBOUND)
        ("evaluate", pipe, dict(materials=["model=out/model.bin", "eval-data=work/val.csv"],
                                products=["evaluation-report=work/evaluation.json"],
                                metadata_files=[project.root / "work/evaluation.json"])),
        ("test", pipe, dict(materials=["model=out/model.bin", "holdback-data=work/holdback.csv"],
                            products=["test-report=work/test.json"],
                            metadata_files=[project.root / "work/test.json"])),
        ("package", pipe, dict(materials=["model=out/model.bin"], products=["package=pkg"],
                               metadata={"name": "demo-model", "contents": ["model.bin"]})),
        ("serve", pipe, dict(materials=["package=pkg"],
                             metadata={"rollout": {"strategy": "canary", "status": "succeeded"}})),
        # monitor and log name the serve attestation they watch (filled in below, once serve is signed)
        ("monitor", pipe, dict(materials=["pkg"], metadata={"signals": {"latency_p99_ms": 12.0},
                                                          "rollback_target": {"name": "pkg", "digest": {
                                                              "sha256": digest_path(project.root / "pkg").sha256}}})),
        ("log", pipe, dict(metadata={"tree_size": 0, "root_hash": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"})),
    ]
    serve_payload = "0" * 64  # no serve in this chain: monitor/log name nothing real
    for stage, attestor, kwargs in plan:
        if stages is not None and stage not in stages:
            continue
        if stage in ("monitor", "log"):
            kwargs["metadata"] = {**kwargs["metadata"], ("serve_attestation" if stage == "monitor" else "pipeline"):
                                  serve_payload}
        att = attestor.attest(stage, **kwargs)
        if stage == "serve":
            serve_payload = att.payload_sha256


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "proj"
    (root / "policies").mkdir(parents=True)
    for name in ("default.yaml", "minimal.yaml"):
        shutil.copyfile(POLICIES / name, root / "policies" / name)
    generate("owner", root / "keys", "ed25519", None)
    generate("pipeline", root / "keys", "ed25519", None)
    generate("intruder", root / "keys", "ecdsa-p256", None)
    return Project(root=root, bundle=root / "bundle")


def serve_payload(bundle: Path) -> str:
    """The payload sha256 of the bundle's serve attestation: what monitor and log must name."""
    from mlspec_attest.bundle import extract_payload
    from mlspec_attest.model.canonical import sha256_hex

    path = next((bundle / "attestations").glob("*-serve.*.json"))
    return sha256_hex(extract_payload(path.name.split(".")[-2], path.read_bytes()))


# -- a report whose every field is hostile markup (the HTML report tests, in and out of a browser) ------
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def hostile_report() -> Report:
    rd = {"name": HOSTILE, "digest": {"sha256": "ab" * 32}}
    report = Report(bundle=HOSTILE, policy=HOSTILE, policy_sha256=HOSTILE, verified_at=HOSTILE)
    report.stages.append(StageLine(sequence=0, stage=HOSTILE, file=HOSTILE, signers=[HOSTILE], time=HOSTILE,
                                   subjects=[rd], materials=[], payload_sha256=HOSTILE))
    report.stages.append(StageLine(sequence=1, stage="train", file="x", signers=[], time=None,
                                   subjects=[{"name": "m", "digest": {"sha256": "cd" * 32}}], materials=[rd],
                                   payload_sha256="0" * 64, ok=False))
    report.objectives.append(ObjectiveLine(name=HOSTILE, stage=HOSTILE, expression=HOSTILE, severity="block",
                                           passed=False, values={HOSTILE: HOSTILE}, message=HOSTILE,
                                           description=HOSTILE))
    report.findings.append(Finding(code=HOSTILE, severity="error", message=HOSTILE, stage=HOSTILE, sequence=0,
                                   hint=HOSTILE))
    return report




# -- a real S3 server (SeaweedFS), one per session, for the object-storage tests -------------------
from seaweed import s3_env, s3_server  # noqa: E402, F401 - fixtures (tests/seaweed.py)


def resign_head(bundle: Path, signers: list[Any], valid_for: Any, *, now: Any = None) -> Any:
    """Sign a head over whatever the bundle holds now, past the writers' refusal (attest/head.py).

    For fixtures that build a chain without heads, and for attacks that re-sign a head over a
    changed chain: an attacker writes the file directly, so the gate (not the writer) must refuse.
    """
    from mlspec_attest.attest.head import HeadSigning, sign_head_locked
    from mlspec_attest.store import open_bundle

    target = open_bundle(bundle)
    with target.locked(create=False):
        return sign_head_locked(target, HeadSigning(tuple(signers), valid_for), now=now)


@pytest.fixture(scope="session")
def demo_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 13-stage demo project, built once per session; tests copy it before changing anything."""
    pytest.importorskip("sklearn", reason="the demo needs scikit-learn (the demo extra)")
    from mlspec_attest.demo.runner import run_demo

    directory = tmp_path_factory.mktemp("demo-built") / "demo"
    assert run_demo(directory, echo=lambda _: None) == 0
    return directory


@pytest.fixture
def demo_copy(demo_built: Path, tmp_path: Path) -> Path:
    """A fresh copy of the session's demo project (tmp_path/demo), free to change."""
    root = tmp_path / "demo"
    shutil.copytree(demo_built, root, symlinks=True)
    return root
