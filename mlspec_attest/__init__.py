"""mlspec-attest: provable ML pipeline history.

Every lifecycle stage emits a canonicalised, hash-chained, DSSE-signed in-toto
Statement; a verifier checks the whole chain against a trust policy and the
objectives codified before training.

The names below are the public Python API (docs/api.md). They load on first use,
so ``import mlspec_attest`` (and ``mlspec --help``) stays cheap::

    from mlspec_attest import Attestor, load_signer, verify_bundle
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mlspec_attest._version import TOOL_NAME, __version__

# public name -> the module that defines it
_PUBLIC: dict[str, str] = {
    # writing
    "Attestor": "mlspec_attest.attest.attestor",
    "ArtifactRef": "mlspec_attest.attest.attestor",
    "Attestation": "mlspec_attest.attest.attestor",
    "cosign": "mlspec_attest.attest.cosign",
    "sign_head": "mlspec_attest.attest.head",
    # keys
    "Signer": "mlspec_attest.keys",
    "PublicKey": "mlspec_attest.keys",
    "generate": "mlspec_attest.keys",
    "load_signer": "mlspec_attest.keys",
    # the bundle and its wire objects
    "Bundle": "mlspec_attest.bundle",
    "Envelope": "mlspec_attest.model.envelope",
    "StageStatement": "mlspec_attest.model.statement",
    "ChainHead": "mlspec_attest.model.head",
    "Stage": "mlspec_attest.model.stages",
    "STAGES": "mlspec_attest.model.stages",
    "canonicalize": "mlspec_attest.model.canonical",
    "digest_path": "mlspec_attest.digests",
    "ArtifactDigest": "mlspec_attest.digests",
    # trust and verification
    "Policy": "mlspec_attest.policy",
    "Verifier": "mlspec_attest.verify.verifier",
    "verify_bundle": "mlspec_attest.verify.verifier",
    "AppendGate": "mlspec_attest.verify.preflight",
    "Report": "mlspec_attest.model.report",
    "Finding": "mlspec_attest.model.report",
    "Objectives": "mlspec_attest.objectives.criteria",
    # the inference log
    "InferenceLog": "mlspec_attest.log.inference",
    "InferenceRecord": "mlspec_attest.log.inference",
    # audit
    "replay": "mlspec_attest.audit.replay",
    # re-runs and releases (docs/workflows.md)
    "branch_bundle": "mlspec_attest.branch",
    "describe_release": "mlspec_attest.releases",
    "Predecessor": "mlspec_attest.releases",
    "Project": "mlspec_attest.project",
    "init_project": "mlspec_attest.project",
    # errors
    "MlspecError": "mlspec_attest.errors",
    "InputError": "mlspec_attest.errors",
    "VerificationError": "mlspec_attest.errors",
    "AppendRefused": "mlspec_attest.errors",
}

__all__ = ["TOOL_NAME", "__version__", *sorted(_PUBLIC)]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'mlspec_attest' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from mlspec_attest.attest.attestor import ArtifactRef, Attestation, Attestor
    from mlspec_attest.attest.cosign import cosign
    from mlspec_attest.attest.head import sign_head
    from mlspec_attest.audit.replay import replay
    from mlspec_attest.branch import branch_bundle
    from mlspec_attest.bundle import Bundle
    from mlspec_attest.digests import ArtifactDigest, digest_path
    from mlspec_attest.errors import AppendRefused, InputError, MlspecError, VerificationError
    from mlspec_attest.keys import PublicKey, Signer, generate, load_signer
    from mlspec_attest.log.inference import InferenceLog, InferenceRecord
    from mlspec_attest.model.canonical import canonicalize
    from mlspec_attest.model.envelope import Envelope
    from mlspec_attest.model.head import ChainHead
    from mlspec_attest.model.report import Finding, Report
    from mlspec_attest.model.stages import STAGES, Stage
    from mlspec_attest.model.statement import StageStatement
    from mlspec_attest.objectives.criteria import Objectives
    from mlspec_attest.policy import Policy
    from mlspec_attest.project import Project, init_project
    from mlspec_attest.releases import Predecessor, describe_release
    from mlspec_attest.verify.preflight import AppendGate
    from mlspec_attest.verify.verifier import Verifier, verify_bundle
