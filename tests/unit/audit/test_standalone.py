"""The shipped standalone re-check, run where only `cryptography` and `rfc8785` exist.

The script (mlspec_attest/data/verify_standalone.py, in the wheel; docs/verify_standalone.py
links to it) must agree with `mlspec verify` on payloads holding RFC 8785 edge numbers
(integral doubles from 2^53 to 1e21, which JCS writes as bare digits) and non-ASCII
text, and must never crash: a payload no one can canonicalise is a FAIL line.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import sysconfig
from fnmatch import fnmatch
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO, Project, build_lifecycle

from mlspec_attest.cli.audit import standalone_script_bytes
from mlspec_attest.cli.main import main
from mlspec_attest.verify import verify_bundle

SHIPPED = REPO / "mlspec_attest" / "data" / "verify_standalone.py"
EDGE = {
    "train_flops": 3.2e18, "rows": 1e16, "two_53": 2.0**53, "below_1e21": 9.999999999999999e20,
    "at_1e21": 1e21, "tiny": 5e-324, "max": 1.7976931348623157e308, "neg_big": -4.5e17,
    "safe_int": 9007199254740991, "neg_zero": -0.0, "small": 1e-7,
    "text": "Zürich – 数据 – \U0001f600 – \u2028 – \x7f – \"quoted\" \\ back",
}


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding only cryptography (and its cffi) and rfc8785, copied from ours: no mlspec, no pip."""
    root = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    py = root / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    ours = Path(sysconfig.get_paths()["purelib"])
    for name in os.listdir(ours):
        if name.split("-")[0].lower() in ("cryptography", "rfc8785", "cffi", "pycparser", "_cffi_backend"):
            os.symlink(ours / name, site / name)
        elif name.startswith("_cffi_backend"):
            os.symlink(ours / name, site / name)
    probe = subprocess.run([str(py), "-I", "-c", "import cryptography, rfc8785\n"
                            "try:\n import mlspec_attest\nexcept ImportError: print('isolated')"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "isolated", probe.stderr
    return py


def _run(py: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(py), "-I", str(SHIPPED), *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd="/")


@pytest.fixture
def edgy(project: Project) -> Project:
    build_lifecycle(project, stages=("objectives", "ingest", "analyze", "transform", "validate", "split"))
    project.attestor().attest("train", materials=["train-data=work/train.csv"], products=["model=out/model.bin"],
                              metadata={"framework": {"name": "sklearn"}, "hyperparameters": dict(EDGE)})
    return project


def test_edge_numbers_and_non_ascii_pass_in_a_bare_venv(edgy: Project, bare_python: Path) -> None:
    payload = base64.b64decode(json.loads(
        next((edgy.bundle / "attestations").glob("0006-*.dsse.json")).read_bytes())["payload"])
    assert b'"train_flops":3200000000000000000' in payload and b'"rows":10000000000000000' in payload
    assert "Zürich".encode() in payload  # raw UTF-8, as RFC 8785 writes it
    gate = verify_bundle(edgy.bundle, edgy.policy())  # a partial chain, but this attestation reads cleanly
    assert not [f for f in gate.findings if f.sequence == 6 or (f.file or "").startswith("0006")], gate.findings
    assert next(s for s in gate.stages if s.sequence == 6).signers == ["pipeline"]
    keys = edgy.root / "keys"
    res = _run(bare_python, edgy.bundle, "--key", keys / "pipeline.pub", "--stage-key",
               f"objectives={keys / 'owner.pub'}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PASS: 7 attestations" in res.stdout and "Traceback" not in res.stderr


@pytest.mark.parametrize("number, why", [
    (b"9007199254740993", "outside the interoperable range"),  # not how JCS writes any double
    (b"1" + b"0" * 21, "outside the interoperable range"),  # 1e22 as digits: JCS writes 1e+22
    (b"1e400", "overflows a double"),
])
def test_numbers_no_one_can_canonicalise_fail_without_a_traceback(edgy: Project, bare_python: Path,
                                                                  number: bytes, why: str) -> None:
    path = next((edgy.bundle / "attestations").glob("0006-*.dsse.json"))
    doc = json.loads(path.read_bytes())
    payload = base64.b64decode(doc["payload"]).replace(b"3200000000000000000", number)
    doc["payload"] = base64.b64encode(payload).decode()
    path.write_text(json.dumps(doc, indent=2) + "\n")
    res = _run(bare_python, edgy.bundle, "--key", edgy.root / "keys" / "pipeline.pub",
               "--key", edgy.root / "keys" / "owner.pub")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert why in res.stdout and "0006-train.dsse.json" in res.stdout
    assert not verify_bundle(edgy.bundle, edgy.policy()).passed  # the gate refuses it too


def test_script_ships_in_the_wheel_and_from_the_cli(tmp_path: Path) -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11+")
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["mlspec_attest"]
    assert any(fnmatch("data/verify_standalone.py", g) for g in globs)
    assert (REPO / "docs" / "verify_standalone.py").resolve() == SHIPPED.resolve()
    assert standalone_script_bytes() == SHIPPED.read_bytes()
    out = tmp_path / "v.py"
    res = CliRunner().invoke(main, ["standalone-script", "--out", str(out)])
    assert res.exit_code == 0 and out.read_bytes() == SHIPPED.read_bytes()
    again = CliRunner().invoke(main, ["standalone-script", "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output
    printed = CliRunner().invoke(main, ["standalone-script"])
    assert printed.output.encode() == SHIPPED.read_bytes()
