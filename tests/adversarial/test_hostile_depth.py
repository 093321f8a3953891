"""Tracebacks: JSON (and YAML) nested 200,000 levels deep in every file kind the tools read.

Attacker: whoever hands us a bundle, a log, a proof or a project file. Before,
``replay``, ``report --html``, ``log verify --bundle``, ``attest stage`` and ``attest
head`` died with RecursionError on such an attestation (only the gate refused it).
Now every parse goes through the depth-bounded strict parser (model/canonical.py
parse_json, _internal/loaders.py), and the CLI boundary (cli/_errors.py) turns any
RecursionError left into one line, exit 2.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hostile_harness import Target, make_target, mlspec, pristine_demo, refused

from mlspec_attest.cli._errors import ErrorHandlingGroup

DEPTH = 200_000
DEEP_OBJECT = ('{"a":' * DEPTH + "1" + "}" * DEPTH).encode()
DEEP_ARRAY = ("[" * DEPTH + "]" * DEPTH).encode()


@pytest.fixture
def target(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Target:
    return make_target(pristine_demo(tmp_path_factory), tmp_path)


def _envelope(payload: bytes) -> dict[str, object]:
    return {"payload": base64.b64encode(payload).decode(), "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"keyid": "", "sig": "AAAA"}]}


DEEP_FILES = {
    "dsse-deep-payload": ("0013-monitor.dsse.json", json.dumps(_envelope(DEEP_OBJECT)).encode()),
    "dsse-deep-file": ("0013-monitor.dsse.json", DEEP_ARRAY),
    "sigstore-deep-payload": ("0013-monitor.sigstore.json", json.dumps(
        {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
         "dsseEnvelope": _envelope(DEEP_OBJECT)}).encode()),
    "sigstore-deep-file": ("0013-monitor.sigstore.json", DEEP_OBJECT),
}

COMMANDS = {
    "verify": ("verify", "bundle"),
    "verify-json": ("verify", "bundle", "--format", "json"),
    "replay": ("replay", "bundle"),
    "report-html": ("report", "bundle", "--html", "report.html"),
    "log-verify-bundle": ("log", "verify", "--log", "logs/inference", "--bundle", "bundle"),
    "attest-stage": ("attest", "stage", "monitor", "--material", "package=package/credit-model",
                     "--metadata", "reports/monitor.json", "--key", "keys/pipeline.key", "--bundle", "bundle"),
    "attest-head": ("attest", "head", "--bundle", "bundle", "--key", "keys/pipeline.key"),
}


@pytest.mark.parametrize("kind", sorted(DEEP_FILES))
def test_deep_attestation_in_every_command(target: Target, kind: str) -> None:
    name, data = DEEP_FILES[kind]
    (target.bundle / "attestations" / name).write_bytes(data)
    for label, args in COMMANDS.items():
        run = mlspec(*args, cwd=target.root)
        # exit 1 (a finding) or 2 (one line), never a RecursionError traceback; log verify --bundle
        # only looks seals up among readable attestations (signatures are the gate's job): it may pass
        refused(run, codes=(0, 1, 2) if label == "log-verify-bundle" else (1, 2))
        if label.startswith("attest"):
            assert run.code == 2 and "nested too deeply" in run.stderr, run.stderr
    if kind.startswith("dsse"):  # inspect decodes what it can: an undecodable payload is said, not a crash
        refused(mlspec("inspect", f"bundle/attestations/{name}", cwd=target.root), codes=(0, 2))


@pytest.mark.parametrize("name, content", [
    ("log.json", DEEP_OBJECT),
    ("seals.jsonl", DEEP_OBJECT + b"\n"),
    ("records.jsonl", DEEP_OBJECT + b"\n"),
])
def test_deep_json_in_log_files(target: Target, name: str, content: bytes) -> None:
    path = target.log / name
    if name == "records.jsonl":
        path.write_bytes(path.read_bytes() + content)  # one more, deep, record after the sealed ones
    else:
        path.write_bytes(content)
    for args in (("log", "verify", "--log", "logs/inference"), ("log", "verify", "--log", "logs/inference", "--deep"),
                 ("log", "prove", "req-00042", "--log", "logs/inference"),
                 ("log", "prove", "--index", "200", "--log", "logs/inference")):
        run = mlspec(*args, cwd=target.root)
        refused(run, codes=(0, 1, 2))  # a deep unsealed record may verify (it is not sealed): no traceback
    (target.root / "deep.jsonl").write_bytes(DEEP_OBJECT + b"\n")
    refused(mlspec("log", "append", "deep.jsonl", "--log", "logs/inference", cwd=target.root), "nest", codes=(2,))


def test_deep_proof_policy_and_project_files(target: Target) -> None:
    (target.root / "proof.json").write_bytes(DEEP_OBJECT)
    refused(mlspec("log", "verify", "--proof", "proof.json", cwd=target.root), "nest", codes=(2,))
    (target.root / "policies" / "deep.yaml").write_bytes(b"a: " + b"[" * DEPTH + b"]" * DEPTH + b"\n")
    refused(mlspec("verify", "bundle", "--policy", "policies/deep.yaml", cwd=target.root), "nest", codes=(2,))
    (target.root / "policies" / "deep.json").write_bytes(DEEP_OBJECT)
    refused(mlspec("verify", "bundle", "--policy", "policies/deep.json", cwd=target.root), "nest", codes=(2,))
    (target.root / "mlspec.yaml").write_bytes(b"a: " + b"[" * DEPTH + b"]" * DEPTH + b"\n")
    refused(mlspec("verify", "bundle", cwd=target.root), "nest", codes=(2,))


def test_recursion_error_anywhere_is_one_line_exit_2() -> None:
    # The last line of defence at the one CLI boundary, should a parser ever be unbounded.
    @click.group(cls=ErrorHandlingGroup)
    def cli() -> None:
        pass

    @cli.command()
    def boom() -> None:
        def recurse(n: int) -> int:
            return recurse(n + 1) + 1

        recurse(0)

    result = CliRunner().invoke(cli, ["boom"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: input nested too deeply to process; refusing it"
