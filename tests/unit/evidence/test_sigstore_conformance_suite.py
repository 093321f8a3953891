"""sigstore-conformance ``bundle-verify``: ``mlspec evidence verify`` must agree on every case.

One test per case folder, each run with the artifact path and with its digest, as the
suite itself does. Cases named ``*_fail`` are attacks (a swapped log entry, a forged SET or
checkpoint, a certificate or timestamp outside its window, a wrong key, a tampered
envelope...): each must end in exit 1 or 2, never 0 and never a crash. The files come only
through ../shared/vectors/sigstore-conformance/bundle-verify (or SIGSTORE_CONFORMANCE_CASES);
without them the test skips and says so.
"""

from __future__ import annotations

from pathlib import Path

import conformance_runner as runner  # tests/conformance_runner.py, also a script
import pytest

_CASES = runner.case_dirs(runner.CASES) if runner.CASES.is_dir() else []
EXPECTED_CASES = 70  # sigstore/sigstore-conformance@a73de49 test/assets/bundle-verify


def test_conformance_cases_are_all_there() -> None:
    if not _CASES:
        pytest.skip(f"sigstore-conformance cases absent at {runner.CASES} (see docs/sigstore.md)")
    assert len(_CASES) >= EXPECTED_CASES, f"only {len(_CASES)} case folders in {runner.CASES}"


@pytest.mark.parametrize("mode", runner.MODES)
@pytest.mark.parametrize("case", _CASES or [None], ids=lambda c: c.name if c else "absent")
def test_conformance_case(case: Path | None, mode: str) -> None:
    if case is None:
        pytest.skip(f"sigstore-conformance cases absent at {runner.CASES} (see docs/sigstore.md)")
    outcome = runner.run_case(case, mode)
    assert outcome.agrees, (
        f"{case.name} [{mode}]: expected {'failure' if outcome.expected_fail else 'success'}, "
        f"got exit {outcome.exit_code}: {outcome.output[-400:]}"
    )
    assert "Traceback" not in outcome.output
