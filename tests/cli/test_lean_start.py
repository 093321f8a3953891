"""`mlspec --help` must start fast: importing the CLI loads none of the heavy machinery.

Sigstore, CEL (celpy, lark), JSON Schema, protobuf/in-toto bindings, Prometheus,
scikit-learn/numpy and the HTML report are imported only by the commands that use them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

HEAVY = ("sigstore", "celpy", "jsonschema", "lark", "google.protobuf", "in_toto_attestation",
         "prometheus_client", "sklearn", "numpy", "mlspec_attest.render.html", "mlspec_attest.evidence.sigstore",
         "mlspec_attest.objectives.criteria", "mlspec_attest.objectives.cel")


def _modules_after(statement: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", f"{statement}; import sys; print(sorted(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_cli_import_is_lean() -> None:
    assert _heavy(_modules_after("import mlspec_attest.cli.main")) == []


def test_hash_command_import_is_lean() -> None:
    assert _heavy(_modules_after("import mlspec_attest.cli.hash, mlspec_attest.digests")) == []


def test_help_exits_zero() -> None:
    mlspec = Path(sys.executable).with_name("mlspec")
    argv = [str(mlspec)] if mlspec.exists() else [sys.executable, "-m", "mlspec_attest.cli.main"]
    out = subprocess.run([*argv, "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "verify" in out.stdout
