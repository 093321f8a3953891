"""Findings of the adversarial review of attest / run capture / CLI paths (/tmp/adv-attest/repro).

Each test is the reviewer's attack; each fails on the code before its fix.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mlspec_attest.attest.runinfo import git_state

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=a@b", "-c", "user.name=a", "-C", str(root), *args],
                   check=True, capture_output=True)


def _repo(root: Path, text: str = 'print("honest")\n') -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _git(root, "init", "-q", ".")
    (root / "train.py").write_text(text)
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "init")
    return root


# H1 ------------------------------------------------------------------------------------------------

@needs_git
@pytest.mark.parametrize("kind", ["clean", "process", "smudge"])
def test_h1_a_filter_driver_in_the_repository_config_is_not_run(tmp_path: Path, kind: str) -> None:
    """A hostile .git/config names a filter program; describing the tree runs none of it (clean or process)."""
    root = _repo(tmp_path / "repo")
    marker = tmp_path / "PWNED"
    _git(root, "config", f"filter.evil.{kind}", f"sh -c 'touch {marker}; cat'")
    _git(root, "config", "filter.evil.required", "true")
    (root / ".git" / "info" / "attributes").write_text("* filter=evil\n")
    (root / "train.py").write_text('print("honest")\n')  # rewritten: stale stat, status re-hashes it
    state = git_state(root)
    assert not marker.exists(), "a filter named by the repository's config ran"
    assert state is not None and state["filters"] == ["evil"]


@needs_git
def test_h1_a_filter_in_a_submodule_config_is_not_run(tmp_path: Path) -> None:
    """git status recurses into submodules with their own config: those filters are neutralised too."""
    inner = _repo(tmp_path / "inner")
    root = _repo(tmp_path / "repo")
    subprocess.run(["git", "-c", "protocol.file.allow=always", "-c", "user.email=a@b", "-c", "user.name=a",
                    "-C", str(root), "submodule", "add", "-q", str(inner), "sub"], check=True, capture_output=True)
    _git(root, "commit", "-qm", "sub")
    marker = tmp_path / "PWNED"
    _git(root / "sub", "config", "filter.evil.clean", f"sh -c 'touch {marker}; cat'")
    gitdir = Path(subprocess.run(["git", "-C", str(root / "sub"), "rev-parse", "--absolute-git-dir"],
                                 check=True, capture_output=True, text=True).stdout.strip())
    (gitdir / "info").mkdir(exist_ok=True)
    (gitdir / "info" / "attributes").write_text("* filter=evil\n")
    (root / "sub" / "train.py").write_text('print("honest")\n')
    state = git_state(root)
    assert not marker.exists(), "a submodule's filter ran"
    assert state is not None and "evil" in state["filters"]


@needs_git
def test_h1_a_lying_clean_filter_cannot_make_an_edited_tree_look_clean(tmp_path: Path) -> None:
    """The clean filter returns the committed blob: with filters neutralised the edit is seen raw."""
    root = _repo(tmp_path / "repo")
    _git(root, "config", "filter.lie.clean", "sh -c 'cat >/dev/null; git show HEAD:\"$1\"' _ %f")
    (root / ".git" / "info" / "attributes").write_text("*.py filter=lie\n")
    (root / "train.py").write_text('print("EVIL!!")\n')  # same size as the committed file
    state = git_state(root)
    assert state is not None and state["dirty"] is True and state["filters"] == ["lie"]


@needs_git
def test_h1_a_repository_without_filters_records_none(tmp_path: Path) -> None:
    state = git_state(_repo(tmp_path / "repo"))
    assert state is not None and state["dirty"] is False and "filters" not in state
