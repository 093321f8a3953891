"""Keys in the open (issue #14 item 6): ``mlspec init`` never leaves a private key
stageable by git, and never writes one unencrypted unless told to with --no-passphrase."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlspec_attest.errors import InputError
from mlspec_attest.project import ignore_keys, init_project

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed on this machine")


def mlspec(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI with no terminal on stdin and no passphrase unless ``env`` gives one."""
    base = {k: v for k, v in os.environ.items() if k != "MLSPEC_KEY_PASSPHRASE"}
    return subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", *args], cwd=cwd, text=True,
                          capture_output=True, env={**base, **(env or {})}, timeout=120,
                          stdin=subprocess.DEVNULL)


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_SYSTEM": os.devnull}
    return subprocess.run([GIT or "git", *args], cwd=cwd, text=True, capture_output=True, check=True,
                          env=env, timeout=60).stdout


def staged_keys(repo: Path) -> list[str]:
    git(repo, "add", "-A")
    status = git(repo, "status", "--porcelain", "--untracked-files=all")
    return [line for line in status.splitlines() if line.endswith(".key") or ".key " in line]


@needs_git
@pytest.mark.parametrize(
    "existing",
    [
        None,                                   # no .gitignore at all
        "__pycache__/\n*.pyc\n",                # the user's own, without *.key
        "__pycache__/",                         # ... without a final newline
        "!keys/\n!*.key\n!keys/pipeline.key\n",  # a user's negations that would un-ignore keys
    ],
)
def test_init_in_a_git_repository_never_stages_a_private_key(tmp_path: Path, existing: str | None) -> None:
    """Attack: a user runs 'mlspec init .' in their repository, then 'git add -A && git push'."""
    git(tmp_path, "init", "-q")
    if existing is not None:
        (tmp_path / ".gitignore").write_text(existing, encoding="utf-8")
    result = mlspec(["init", "."], tmp_path, {"MLSPEC_KEY_PASSPHRASE": "pw"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "keys" / "pipeline.key").is_file() and (tmp_path / "keys" / "owner.key").is_file()
    assert staged_keys(tmp_path) == []
    status = git(tmp_path, "status", "--porcelain")
    assert "keys/pipeline.pub" in status and "keys/owner.pub" in status  # public keys are meant to be shared
    assert "keys/.gitignore" in status
    if existing is not None:
        assert (tmp_path / ".gitignore").read_text("utf-8").startswith(existing)  # the user's lines are kept


@needs_git
def test_init_in_a_subdirectory_of_a_repository(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("!*.key\n", encoding="utf-8")
    assert mlspec(["init", "ml/proj"], tmp_path, {"MLSPEC_KEY_PASSPHRASE": "pw"}).returncode == 0
    assert staged_keys(tmp_path) == []


@needs_git
def test_a_key_added_later_beside_the_others_is_ignored_too(tmp_path: Path) -> None:
    """The patterns are *.key, not the two file names: 'mlspec keys generate head' is covered."""
    git(tmp_path, "init", "-q")
    assert mlspec(["init", "."], tmp_path, {"MLSPEC_KEY_PASSPHRASE": "pw"}).returncode == 0
    result = mlspec(["keys", "generate", "head", "--dir", "keys"], tmp_path, {"MLSPEC_KEY_PASSPHRASE": "pw"})
    assert result.returncode == 0, result.stderr
    assert staged_keys(tmp_path) == []


def test_ignore_keys_is_idempotent(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("venv/\n", encoding="utf-8")
    first = ignore_keys(tmp_path)
    assert any("appended" in line for line in first)
    text = (tmp_path / ".gitignore").read_text("utf-8")
    assert text.startswith("venv/\n") and text.count("*.key") == 1
    assert ignore_keys(tmp_path) == []
    assert (tmp_path / ".gitignore").read_text("utf-8") == text
    assert "*.key" in (tmp_path / "keys" / ".gitignore").read_text("utf-8").split()


def test_init_without_a_passphrase_source_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    """Attack (by accident): CI runs 'mlspec init' with no terminal and no passphrase; before,
    it wrote plaintext keys with only a warning, while 'mlspec keys generate' refused."""
    result = mlspec(["init", "proj"], tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "MLSPEC_KEY_PASSPHRASE" in lines[0] and "--no-passphrase" in lines[0] and "proj" in lines[0]
    assert not (tmp_path / "proj").exists()


def test_init_in_an_existing_directory_without_a_passphrase_touches_nothing(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("venv/\n", encoding="utf-8")
    assert mlspec(["init", "."], tmp_path).returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitignore"]
    assert (tmp_path / ".gitignore").read_text("utf-8") == "venv/\n"


def test_init_api_refuses_without_a_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSPEC_KEY_PASSPHRASE", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    with pytest.raises(InputError, match="--no-passphrase"):
        init_project(tmp_path / "p")
    with pytest.raises(InputError, match="no passphrase"):
        init_project(tmp_path / "p", passphrase=b"")  # an empty passphrase is no encryption
    assert not (tmp_path / "p").exists()


def test_init_with_a_passphrase_writes_encrypted_keys(tmp_path: Path) -> None:
    result = mlspec(["init", "proj"], tmp_path, {"MLSPEC_KEY_PASSPHRASE": "pw"})
    assert result.returncode == 0, result.stderr
    for name in ("owner", "pipeline"):
        assert b"BEGIN ENCRYPTED PRIVATE KEY" in (tmp_path / "proj" / "keys" / f"{name}.key").read_bytes()
    assert "UNENCRYPTED" not in result.stdout + result.stderr


def test_init_no_passphrase_says_so_and_writes_plain_keys(tmp_path: Path) -> None:
    result = mlspec(["init", "proj", "--no-passphrase"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "UNENCRYPTED" in result.stdout
    key = (tmp_path / "proj" / "keys" / "pipeline.key").read_bytes()
    assert b"BEGIN PRIVATE KEY" in key and b"ENCRYPTED" not in key
    assert "*.key" in (tmp_path / "proj" / ".gitignore").read_text("utf-8").split()


def test_existing_keys_gitignore_is_appended_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / ".gitignore").write_text("*.tmp\n", encoding="utf-8")
    ignore_keys(tmp_path)
    assert (tmp_path / "keys" / ".gitignore").read_text("utf-8").startswith("*.tmp\n")
    assert "*.key" in (tmp_path / "keys" / ".gitignore").read_text("utf-8").split()


@needs_git
def test_keys_generate_in_a_repository_ignores_its_keys(tmp_path: Path) -> None:
    """Attack (by accident): 'mlspec keys generate ci --dir .' at a repository's root, then 'git add -A'."""
    git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("venv/", encoding="utf-8")
    for directory in (".", "secrets/signing"):
        result = mlspec(["keys", "generate", "ci", "--dir", directory], tmp_path, {"MLSPEC_KEY_PASSPHRASE": "pw"})
        assert result.returncode == 0, result.stderr
    assert staged_keys(tmp_path) == []
    assert (tmp_path / ".gitignore").read_text("utf-8").startswith("venv/\n")


# Each .gitignore fools a "is '*.key' already a line?" check: a later negation wins for git,
# an indented or tab-suffixed pattern is another pattern. git decides, so git is asked.
FOOLING_GITIGNORES = {
    "negation-all": "*.key\n!*.key\n",
    "negation-one": "*.key\n!ci.key\n!pipeline.key\n!owner.key\n",
    "indented": "# secrets\n  *.key\n",
    "tab-suffixed": "*.key\t\n",
    "negated-directory-glob": "*.key\n!**/*.key\n",
}


@needs_git
@pytest.mark.parametrize("text", list(FOOLING_GITIGNORES.values()), ids=list(FOOLING_GITIGNORES))
@pytest.mark.parametrize("where", [".gitignore", "keys/.gitignore"])
def test_keys_generate_is_not_fooled_by_an_existing_gitignore(tmp_path: Path, text: str, where: str) -> None:
    """H8/H8b: attacker = a careless (or hostile) .gitignore; 'git add -A' must still not stage the key."""
    git(tmp_path, "init", "-q", ".")
    (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / where).write_text(text, encoding="utf-8")
    directory = str(Path(where).parent)
    result = mlspec(["keys", "generate", "ci", "--dir", directory, "--no-passphrase"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / directory / "ci.key").is_file()
    assert staged_keys(tmp_path) == []


@needs_git
@pytest.mark.parametrize("text", list(FOOLING_GITIGNORES.values()), ids=list(FOOLING_GITIGNORES))
def test_init_is_not_fooled_by_an_existing_gitignore(tmp_path: Path, text: str) -> None:
    git(tmp_path, "init", "-q", ".")
    (tmp_path / ".gitignore").write_text(text, encoding="utf-8")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / ".gitignore").write_text(text, encoding="utf-8")
    result = mlspec(["init", "--no-passphrase", "."], tmp_path)
    assert result.returncode == 0, result.stderr
    assert staged_keys(tmp_path) == []
    assert (tmp_path / "keys" / ".gitignore").read_text("utf-8").startswith(text), "the user's lines are kept"


def test_without_a_repository_the_block_is_appended_unless_it_is_the_last_rule(tmp_path: Path) -> None:
    from mlspec_attest.project import ensure_keys_ignored

    gitignore = tmp_path / ".gitignore"
    gitignore.write_text("*.key\n!ci.key\n", encoding="utf-8")
    assert ensure_keys_ignored(gitignore, ["ci.key"]) is not None
    assert gitignore.read_text("utf-8").splitlines()[-1] == "*.key"
    assert ensure_keys_ignored(gitignore, ["ci.key"]) is None  # idempotent: '*.key' is now the last rule


@pytest.mark.parametrize("command", [["init", "."], ["keys", "generate", "ci", "--dir", "."]])
def test_gitignore_that_is_a_directory_is_one_line_exit_2(tmp_path: Path, command: list[str]) -> None:
    """H9: DIR/.gitignore a directory was an IsADirectoryError traceback."""
    (tmp_path / ".gitignore").mkdir()
    result = mlspec(command, tmp_path, env={"MLSPEC_KEY_PASSPHRASE": "pw"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and ".gitignore" in lines[0] and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitignore"], "nothing may be written"
