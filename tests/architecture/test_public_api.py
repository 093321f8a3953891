"""The public names of docs/api.md: each one resolves, and importing the package loads none of them."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mlspec_attest


@pytest.mark.parametrize("name", sorted(set(mlspec_attest.__all__) - {"TOOL_NAME", "__version__"}))
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(mlspec_attest, name)
    assert value is not None
    assert name in dir(mlspec_attest)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'verify_everything'"):
        _ = mlspec_attest.verify_everything  # type: ignore[attr-defined]


def test_importing_the_package_is_lazy() -> None:
    """`import mlspec_attest` must not pull in the verifier, Sigstore, CEL or cryptography."""
    code = ("import sys, mlspec_attest; "
            "print(sorted(m for m in sys.modules if m.startswith(('mlspec_attest.', 'sigstore', 'celpy', 'cryptography'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['mlspec_attest._version']"
