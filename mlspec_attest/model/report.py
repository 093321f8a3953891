"""What a verification produces: findings, per-stage lines, objective results.

The JSON form (``Report.to_dict``) is the stable ``--format json`` schema
documented in docs/verify-output.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ERROR = "error"
WARNING = "warning"
INFO = "info"


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    message: str
    stage: str | None = None
    sequence: int | None = None
    file: str | None = None
    hint: str | None = None
    # Where in an inference log (docs/logging.md): only log findings carry these.
    line: int | None = None
    index: int | None = None
    request_id: str | None = None
    seal: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class StageLine:
    sequence: int
    stage: str
    file: str
    signers: list[str]
    time: str | None
    subjects: list[dict[str, Any]]
    materials: list[dict[str, Any]]
    payload_sha256: str
    ok: bool = True
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)  # not in JSON: can be large

    def to_dict(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence, "stage": self.stage, "file": self.file, "signers": self.signers,
            "time": self.time, "ok": self.ok, "payload_sha256": self.payload_sha256,
            "subjects": [{"name": s.get("name"), "sha256": s["digest"]["sha256"]} for s in self.subjects],
            "materials": [{"name": m.get("name"), "sha256": m["digest"]["sha256"]} for m in self.materials],
        }


@dataclass
class ObjectiveLine:
    name: str
    stage: str
    expression: str
    severity: str
    passed: bool
    values: dict[str, Any]
    message: str = ""
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"criterion": self.name, "stage": self.stage, "expression": self.expression,
                "severity": self.severity, "result": "pass" if self.passed else "fail",
                "values": self.values, "message": self.message, "description": self.description}


@dataclass
class Report:
    bundle: str
    policy: str | None
    policy_sha256: str | None
    findings: list[Finding] = field(default_factory=list)
    stages: list[StageLine] = field(default_factory=list)
    objectives: list[ObjectiveLine] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    verified_at: str = ""
    phase: str = "full"  # model/stages.py PHASES: which stages had to exist (deploy: up to package)

    @property
    def passed(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "fail"

    def add(self, code: str, message: str, *, severity: str = ERROR, stage: str | None = None,
            sequence: int | None = None, file: str | None = None, hint: str | None = None) -> None:
        self.findings.append(Finding(code=code, severity=severity, message=message, stage=stage,
                                     sequence=sequence, file=file, hint=hint))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "https://mlspec.dev/verify-output/v1",
            "verdict": self.verdict,
            "bundle": self.bundle,
            "policy": self.policy,
            "policy_sha256": self.policy_sha256,
            "verified_at": self.verified_at,
            "phase": self.phase,
            "stages": [s.to_dict() for s in self.stages],
            "findings": [f.to_dict() for f in self.findings],
            "objectives": [o.to_dict() for o in self.objectives],
            "artifacts": self.artifacts,
        }
