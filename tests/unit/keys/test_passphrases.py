"""Per-key passphrase sources: a file per key, a variable per key, then the shared variable.

Attacks tried: a passphrase file other users can read (or a symlink to one, or a FIFO), a file
owned by someone else, an empty file; and the old failure: two keys with different passphrases
could not be loaded in one command.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlspec_attest.errors import InputError
from mlspec_attest.keys import (
    PASSPHRASE_ENV,
    generate,
    key_passphrase,
    load_signer,
    passphrase_env_name,
    read_passphrase_file,
    set_passphrase_files,
)


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(PASSPHRASE_ENV):
            monkeypatch.delenv(name)
    set_passphrase_files({})
    yield
    set_passphrase_files({})


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("name, env", [
    ("a.key", "MLSPEC_KEY_PASSPHRASE_A"), ("ci-2.key", "MLSPEC_KEY_PASSPHRASE_CI_2"),
    ("Team.Owner.key", "MLSPEC_KEY_PASSPHRASE_TEAM_OWNER"), ("keys/b", "MLSPEC_KEY_PASSPHRASE_B"),
])
def test_variable_name_per_key(name: str, env: str) -> None:
    assert passphrase_env_name(name) == env


def test_two_keys_with_different_passphrases_load_in_one_process(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    generate("a", tmp_path, "ed25519", b"alpha-pass")
    generate("b", tmp_path, "ecdsa-p256", b"bravo-pass")
    monkeypatch.setenv("MLSPEC_KEY_PASSPHRASE_A", "alpha-pass")
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong for both")  # the shared variable only when no own one exists
    secret_file(tmp_path / "b.pass", "bravo-pass\n")
    set_passphrase_files({tmp_path / "b.key": (tmp_path / "b.pass", "--passphrase-file")})
    a, b = load_signer(tmp_path / "a.key"), load_signer(tmp_path / "b.key")
    assert a.keyid != b.keyid
    monkeypatch.setenv("MLSPEC_KEY_PASSPHRASE_B", "alpha-pass")  # the file outranks the variable
    assert load_signer(tmp_path / "b.key").keyid == b.keyid


def test_precedence_file_then_own_variable_then_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "k.key"
    monkeypatch.setenv(PASSPHRASE_ENV, "shared")
    assert key_passphrase(key) == (b"shared", PASSPHRASE_ENV)
    monkeypatch.setenv("MLSPEC_KEY_PASSPHRASE_K", "own")
    assert key_passphrase(key) == (b"own", "MLSPEC_KEY_PASSPHRASE_K")
    secret_file(tmp_path / "k.pass", "from-file")
    set_passphrase_files({key: (tmp_path / "k.pass", "test")})
    assert key_passphrase(key)[0] == b"from-file"


def test_wrong_passphrase_names_its_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate("a", tmp_path, "ed25519", b"alpha-pass")
    monkeypatch.setenv("MLSPEC_KEY_PASSPHRASE_A", "nope")
    with pytest.raises(InputError, match="wrong passphrase from MLSPEC_KEY_PASSPHRASE_A"):
        load_signer(tmp_path / "a.key")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610])
def test_passphrase_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path / "p", "secret", mode)
    with pytest.raises(InputError, match="readable by group or others"):
        read_passphrase_file(path)


def test_passphrase_file_that_is_not_a_private_regular_file_is_refused(tmp_path: Path) -> None:
    target = secret_file(tmp_path / "real", "secret")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(InputError, match="symlink"):
        read_passphrase_file(tmp_path / "link")
    os.mkfifo(tmp_path / "fifo", 0o600)
    with pytest.raises(InputError, match="not a regular file"):
        read_passphrase_file(tmp_path / "fifo")  # never blocks: opened non-blocking
    with pytest.raises(InputError, match="empty"):
        read_passphrase_file(secret_file(tmp_path / "empty", "\n"))
    with pytest.raises(InputError, match="longer than"):
        read_passphrase_file(secret_file(tmp_path / "big", "x" * 5000))
    with pytest.raises(InputError, match="cannot read"):
        read_passphrase_file(tmp_path / "absent")


def test_passphrase_file_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = secret_file(tmp_path / "p", "secret")
    real = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: real + 1)  # as if another user owned the file
    with pytest.raises(InputError, match="belongs to another user"):
        read_passphrase_file(path)


def test_one_trailing_newline_is_dropped_and_nothing_else(tmp_path: Path) -> None:
    assert read_passphrase_file(secret_file(tmp_path / "p", " pass word \r\n")) == b" pass word "
    assert read_passphrase_file(secret_file(tmp_path / "q", "pass\n\n")) == b"pass\n"
