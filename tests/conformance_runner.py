"""Run sigstore-conformance's ``bundle-verify`` cases through ``mlspec evidence verify``.

The cases are not committed here (their provenance comes only through ../shared):
the runner reads them from ``../shared/vectors/sigstore-conformance/bundle-verify``
(a copy of sigstore/sigstore-conformance ``test/assets/bundle-verify/``), or from
the folder given as the first argument or in ``SIGSTORE_CONFORMANCE_CASES``, and says
why it skipped when absent. ``tests/unit/evidence/test_sigstore_conformance_suite.py``
runs the same cases under pytest, one test per case.

It drives the CLI the way the suite drives a client (test/client.py
``build_verify_args``): ``key.pub`` selects ``--key``, otherwise the case's
``identity``/``issuer`` files (or the suite's defaults) pin the signer;
``trusted_root.json`` is ``--trust-config``, else the Sigstore production root that
sigstore-python ships; each case runs twice, with the artifact path and with its
``sha256:`` digest. A case whose folder name ends in ``_fail`` must fail.

    PYTHONPATH=$PWD .venv/bin/python tests/conformance_runner.py [CASES_DIR]
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_CASES = REPO.parent / "shared" / "vectors" / "sigstore-conformance" / "bundle-verify"
# a local export elsewhere (never committed) may be named here instead
CASES = Path(os.environ.get("SIGSTORE_CONFORMANCE_CASES") or SHARED_CASES)
DEFAULT_IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
DEFAULT_ISSUER = "https://token.actions.githubusercontent.com"
MODES = ("path", "digest")


def production_root() -> Path:
    """The production trusted root sigstore-python ships (what the suite uses by default)."""
    import sigstore

    store = Path(sigstore.__file__).parent / "_store" / "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"
    return store / "trusted_root.json"


def case_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "bundle.sigstore.json").is_file())


def _text(path: Path, default: str) -> str:
    return path.read_text().strip() if path.is_file() else default


def build_args(case: Path, mode: str) -> list[str]:
    """The ``mlspec evidence verify`` arguments for one case, as client.py builds them."""
    artifact = case / "artifact" if (case / "artifact").is_file() else case.parent / "a.txt"
    args = ["evidence", "verify", str(case / "bundle.sigstore.json")]
    if (case / "key.pub").is_file():
        args += ["--key", str(case / "key.pub")]
    else:
        args += ["--identity", _text(case / "identity", DEFAULT_IDENTITY),
                 "--issuer", _text(case / "issuer", DEFAULT_ISSUER)]
    root = case / "trusted_root.json"
    args += ["--trust-config", str(root if root.is_file() else production_root())]
    if mode == "digest":
        args += ["--digest", "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()]
    else:
        args += ["--artifact", str(artifact)]
    return args


@dataclass(frozen=True)
class Outcome:
    case: str
    mode: str
    expected_fail: bool
    exit_code: int
    output: str

    @property
    def agrees(self) -> bool:
        """Exit 0 for a passing case; exit 1 or 2 (never a crash) for a ``_fail`` case."""
        if self.expected_fail:
            return self.exit_code in (1, 2)
        return self.exit_code == 0


def run_case(case: Path, mode: str) -> Outcome:
    from click.testing import CliRunner

    from mlspec_attest.cli.main import main

    result = CliRunner().invoke(main, build_args(case, mode))
    return Outcome(case.name, mode, case.name.endswith("_fail"), result.exit_code,
                   (result.output + (result.stderr if result.stderr_bytes is not None else "")).strip())


def run_all(root: Path) -> list[Outcome]:
    return [run_case(case, mode) for case in case_dirs(root) for mode in MODES]


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else CASES
    if not root.is_dir():
        print(f"skipped: sigstore-conformance cases not found at {root} "
              "(copy sigstore/sigstore-conformance test/assets/bundle-verify/ there)")
        return 0
    outcomes = run_all(root)
    by_case: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_case.setdefault(o.case, []).append(o)
    agreed = [name for name, os_ in by_case.items() if all(o.agrees for o in os_)]
    for name, os_ in by_case.items():
        for o in os_:
            if not o.agrees:
                first = o.output.splitlines()[-1] if o.output else ""
                print(f"DISAGREE {name} [{o.mode}] exit {o.exit_code}: {first}")
    print(f"{len(agreed)}/{len(by_case)} cases agree ({sum(o.agrees for o in outcomes)}/{len(outcomes)} runs)")
    return 0 if len(agreed) == len(by_case) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
