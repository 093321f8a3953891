"""Monitor metadata is a monitor's conclusions, not an inference request in disguise.

Attack: a stage runner (or any key holder, signing by hand past the attestor) attests the
seed's monitoring_proto/inferenceRequest.yml, or a single request's fields, as the monitor
stage's metadata: a "monitor" that says nothing about the model's signals over a window.
The attestor refuses it (exit 2) and the gate refuses it when signed by hand (METADATA_INVALID).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SEED, Project, build_lifecycle, serve_payload

from mlspec_attest.digests import digest_path
from mlspec_attest.errors import InputError
from mlspec_attest.model.metadata import validate_metadata
from mlspec_attest.verify import verify_bundle

REQUEST_FIELDS = [
    {"requestInfo": {"requestId": "r1"}},
    {"requestId": "r1"},
    {"inputFeatures": {"age": "41"}},
    {"inputs": {"featureNames": ["age"], "featureValues": ["41"]}},
    {"predictionData": "stay"},
    {"groundTruthLabel": "churn"},
    {"resultInfo": {"resultCode": 200}},
]


def _rollback(project: Project) -> dict[str, Any]:
    return {"name": "pkg", "digest": {"sha256": digest_path(project.root / "pkg").sha256}}


def test_the_seed_inference_request_file_is_not_monitor_metadata() -> None:
    path = Path(SEED) / "monitoring_proto" / "inferenceRequest.yml"
    if not path.is_file():
        pytest.skip(f"seed file {path} not found (the shared checkout is absent)")
    request = yaml.safe_load(path.read_text())
    good = {"signals": {"drift_psi": 0.1}, "rollback_target": {"name": "m", "digest": {"sha256": "0" * 64}}}
    validate_metadata("monitor", good)
    with pytest.raises(InputError, match="ground-truth record fields"):
        validate_metadata("monitor", {**request, **good})
    with pytest.raises(InputError, match="ground-truth record fields.*mlspec log append"):
        validate_metadata("monitor", request)  # the request alone: what it is, and what to run instead


@pytest.mark.parametrize("fields", REQUEST_FIELDS)
def test_attestor_refuses_request_fields_as_monitor_metadata(project: Project, fields: dict[str, Any]) -> None:
    build_lifecycle(project)
    metadata = {"signals": {"x": 1.0}, "rollback_target": _rollback(project),
                "serve_attestation": serve_payload(project.bundle), **fields}
    with pytest.raises(InputError, match="ground-truth record fields"):
        project.attestor().attest("monitor", metadata=metadata)


@pytest.mark.parametrize("fields", REQUEST_FIELDS[:3] + [{"signals": {}}])
def test_gate_refuses_request_fields_signed_by_hand(project: Project, fields: dict[str, Any]) -> None:
    from test_lineage_attacks import forge, rd

    build_lifecycle(project)
    metadata = {"signals": {"x": 1.0}, "rollback_target": _rollback(project),
                "serve_attestation": serve_payload(project.bundle), **fields}
    forge(project, "monitor", subjects=[rd("mlspec:monitor-metadata", "m")], metadata=metadata)
    report = verify_bundle(project.bundle, project.policy())
    found = [f for f in report.findings if f.code == "METADATA_INVALID"]
    assert found and "(monitor)" in found[0].message, report.findings
