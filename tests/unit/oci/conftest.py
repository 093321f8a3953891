"""Fixtures for the OCI tests: one registry and one signed demo project per session."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from oci_registry import MISSING, Demo, running_registry

from mlspec_attest.oci.reference import OciReference
from mlspec_attest.policy import Policy

_names = itertools.count()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if MISSING:
        pytest.skip(MISSING)
    with running_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    pytest.importorskip("sklearn")
    from mlspec_attest.demo.runner import run_demo

    root = tmp_path_factory.mktemp("oci-demo") / "demo"
    assert run_demo(root, echo=lambda _line: None) == 0
    return Demo(root, root / "bundle", root / "package" / "credit-model",
                Policy.from_file(root / "policies" / "default.yaml"))


@pytest.fixture
def demo(demo_project: Demo, tmp_path: Path) -> Demo:
    """A private copy of the session's demo project (tests change their copy freely)."""
    root = tmp_path / "demo"
    shutil.copytree(demo_project.root, root, symlinks=True)
    return Demo(root, root / "bundle", root / "package" / "credit-model",
                Policy.from_file(root / "policies" / "default.yaml"))


@pytest.fixture
def repo(registry: str) -> OciReference:
    """A fresh repository (a tag in it) for each test."""
    return OciReference.parse(f"oci://{registry}/test/model-{next(_names)}:v1")
