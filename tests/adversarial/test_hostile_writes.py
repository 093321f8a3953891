"""Writes and deletes outside: symlinks planted at every path the tools write.

Attacker: whoever prepared the bundle, log or project directory we then write into
(a received bundle, a shared log volume). Before, a symlinked ``evidence/`` made
``mlspec attest`` delete another directory's ``.tmp-*`` files, a symlinked
``.mlspec.lock`` created a file outside, a symlinked ``blobs/`` took the blobs
elsewhere, and a symlinked ``leaves.bin`` or checkpoint temp made ``log seal``
overwrite the link's target. Now every write goes through _internal/files.py:
no-follow opens relative to a directory fd, random exclusive temp names, symlinked
components refused. Each test snapshots everything outside the target directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hostile_harness import Target, make_target, mlspec, pristine_demo, refused

from mlspec_attest._internal import files as safe
from mlspec_attest.bundle import Bundle
from mlspec_attest.errors import InputError

ATTEST = ("attest", "stage", "monitor", "--material", "package=package/credit-model",
          "--metadata", "reports/monitor.json", "--key", "keys/pipeline.key", "--bundle", "bundle")
HEAD = ("attest", "head", "--bundle", "bundle", "--key", "keys/pipeline.key")


@pytest.fixture
def target(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Target:
    return make_target(pristine_demo(tmp_path_factory), tmp_path)


def _plant(link: Path, to: Path) -> None:
    if link.is_dir() and not link.is_symlink():
        import shutil

        shutil.rmtree(link)
    elif link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(to)


@pytest.mark.parametrize("name, points_to", [
    ("evidence", "outside"),  # the stale-temp sweep would delete outside/.tmp-victim
    ("blobs", "outside"),  # blobs would be written (and swept) outside
    ("attestations", "outside"),  # the attestation itself would land outside
    (".mlspec.lock", "outside/created-by-the-lock"),  # O_CREAT through the link
    (".mlspec.lock", "outside/victim.txt"),
])
@pytest.mark.parametrize("command", [ATTEST, HEAD], ids=["attest-stage", "attest-head"])
def test_planted_symlink_in_a_received_bundle(target: Target, name: str, points_to: str,
                                              command: tuple[str, ...]) -> None:
    before = target.outside_state()
    _plant(target.bundle / name, target.root.parent / points_to)
    run = mlspec(*command, cwd=target.root)
    refused(run, name, "symlink", codes=(2,))
    assert target.outside_state() == before, "something outside the bundle changed"


def test_planted_head_symlink_is_replaced_not_followed(target: Target) -> None:
    before = target.outside_state()
    _plant(target.bundle / "head.dsse.json", target.outside / "victim.txt")
    run = mlspec(*HEAD, cwd=target.root)
    # an unreadable head is refused (re-signing over it is how a truncation would be laundered) ...
    assert run.code == 1 and "symlink" in run.stderr, run.stderr
    assert target.outside_state() == before
    run = mlspec(*HEAD, "--initial", cwd=target.root)  # ... and a deliberate first head replaces the link
    assert run.code == 0, run.stderr
    assert not (target.bundle / "head.dsse.json").is_symlink()  # the link itself was replaced, never followed
    assert target.outside_state() == before


def test_blob_store_through_a_symlinked_blobs_dir_is_refused(target: Target) -> None:
    before = target.outside_state()
    _plant(target.bundle / "blobs", target.outside)
    with pytest.raises(InputError, match="blobs: is a symlink"):
        Bundle(target.bundle).store_file("blobs/" + "a" * 64, b"fingerprints")
    assert target.outside_state() == before


def _one_record(target: Target) -> Path:
    line = (target.log / "records.jsonl").read_bytes().splitlines()[0]
    record = json.loads(line)
    record["requestId"] = "req-hostile-1"
    path = target.root / "new.jsonl"
    path.write_text(json.dumps(record) + "\n")
    return path


@pytest.mark.parametrize("name", [
    "leaves.bin", "records.jsonl", "seals.jsonl", "checkpoints",
    "checkpoints/00000002.checkpoint.tmp",  # the old, predictable temp name
])
@pytest.mark.parametrize("command", ["append-seal", "seal"])
def test_planted_symlink_in_a_log_directory(target: Target, name: str, command: str) -> None:
    src = _one_record(target)
    if command == "seal":  # something to seal: append first, unsealed
        assert mlspec("log", "append", str(src), "--log", "logs/inference", cwd=target.root).code == 0
    link = target.log / name
    victim = target.outside / ("leaves.bin" if name.endswith(".bin") else "victim.txt")
    _plant(link, target.outside if name == "checkpoints" else victim)
    before = target.outside_state()
    args = (("log", "append", str(src), "--seal") if command == "append-seal" else ("log", "seal"))
    run = mlspec(*args, "--log", "logs/inference", "--unsigned", cwd=target.root)
    if name.endswith(".tmp"):
        refused(run, codes=(0,))  # a temp name is never predictable, so the plant is simply not hit
        assert link.is_symlink()
    else:
        refused(run, name.split("/")[0], "symlink", codes=(2,))
    assert target.outside_state() == before, "something outside the log directory changed"


@pytest.mark.parametrize("name", ["leaves.bin", "records.jsonl", "seals.jsonl"])
def test_planted_hard_link_in_a_log_directory(target: Target, name: str) -> None:
    # O_NOFOLLOW does not see hard links: an appended file must have no other name.
    victim = target.outside / "shared.bin"
    victim.write_bytes((target.log / name).read_bytes())
    (target.log / name).unlink()
    os.link(victim, target.log / name)
    before = target.outside_state()
    run = mlspec("log", "append", str(_one_record(target)), "--seal", "--unsigned", "--log", "logs/inference",
                 cwd=target.root)
    refused(run, name, "hard links", codes=(2,))
    assert target.outside_state() == before


def test_planted_symlinks_with_a_signed_append_and_seal(target: Target) -> None:
    # R4 exactly as reported: leaves.bin and the old checkpoint temp name symlinked outside, then the
    # operator's ordinary signed `log append --seal --bundle --key`: refused, nothing outside touched.
    victim = target.outside / "leaves.bin"
    _plant(target.log / "leaves.bin", victim)
    _plant(target.log / "checkpoints" / "00000002.checkpoint.tmp", target.outside / "victim.txt")
    before = target.outside_state()
    attestations = sorted((target.bundle / "attestations").iterdir())
    run = mlspec("log", "append", str(_one_record(target)), "--log", "logs/inference", "--seal", "--bundle", "bundle",
                 "--key", "keys/pipeline.key", cwd=target.root)
    refused(run, "leaves.bin", "symlink", codes=(2,))
    assert target.outside_state() == before
    assert sorted((target.bundle / "attestations").iterdir()) == attestations  # nothing signed


def test_checkpoint_symlink_is_replaced_not_followed(target: Target) -> None:
    src = _one_record(target)
    _plant(target.log / "checkpoints" / "00000002.checkpoint", target.outside / "victim.txt")
    before = target.outside_state()
    run = mlspec("log", "append", str(src), "--seal", "--unsigned", "--log", "logs/inference", cwd=target.root)
    assert run.code == 0, run.stderr
    assert not (target.log / "checkpoints" / "00000002.checkpoint").is_symlink()
    assert target.outside_state() == before
    assert mlspec("log", "verify", "--log", "logs/inference", cwd=target.root).code in (0, 1)


@pytest.mark.parametrize("name", ["keys", "policies", "bundle", "objectives.yaml", ".gitignore"])
def test_planted_symlink_in_a_project_being_initialised(tmp_path: Path, name: str) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("do not touch\n")
    (project / name).symlink_to(outside if "." not in name else outside / "victim.txt")
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    run = mlspec("init", str(project), "--no-passphrase", cwd=tmp_path)
    if name in ("objectives.yaml",):
        refused(run, codes=(0,))  # replaced by a regular file: the link goes, its target stays
        assert not (project / name).is_symlink()
    elif name == ".gitignore":
        refused(run, codes=(0,))  # present (as a link): left alone, never written through
        assert "*.key" in (project / "keys" / ".gitignore").read_text().splitlines()  # keys still ignored
    else:
        refused(run, name, "symlink", codes=(2,))
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before


def test_temp_names_are_created_exclusively(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Even a guessed temp name cannot be used: O_CREAT|O_EXCL|O_NOFOLLOW refuses a planted link.
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch\n")
    (tmp_path / "dir").mkdir()
    monkeypatch.setattr(safe.secrets, "token_hex", lambda n: "guessed")
    (tmp_path / "dir" / ".tmp-guessed").symlink_to(victim)
    with pytest.raises(InputError, match="cannot write"):
        safe.write_file(tmp_path / "dir", "out.json", b"data")
    assert victim.read_text() == "do not touch\n" and not (tmp_path / "dir" / "out.json").exists()


def test_write_new_never_replaces_and_dirs_are_opened_no_follow(tmp_path: Path) -> None:
    safe.write_file(tmp_path, "a/b/c.txt", b"1", replace=False)
    with pytest.raises(InputError, match="already exists"):
        safe.write_file(tmp_path, "a/b/c.txt", b"2", replace=False)
    assert (tmp_path / "a" / "b" / "c.txt").read_bytes() == b"1"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "a" / "link").symlink_to(tmp_path / "elsewhere")
    for call in (lambda: safe.write_file(tmp_path, "a/link/x", b"x"),
                 lambda: safe.make_dirs(tmp_path, "a/link/sub"),
                 lambda: safe.read_file("a/link/x", root=tmp_path),
                 lambda: safe.open_append(tmp_path, "a/link/x"),
                 lambda: safe.remove_stale_temps(tmp_path, "a/link")):
        with pytest.raises(InputError, match="symlink"):
            call()
    assert list((tmp_path / "elsewhere").iterdir()) == []
    for bad in ("../x", "/etc/passwd", "a/../../x"):
        with pytest.raises(InputError):
            safe.write_file(tmp_path, bad, b"x")
    assert not os.path.exists(tmp_path.parent / "x")


def test_write_errors_are_one_line_and_leave_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A directory swapped in at the name after the check (or any failing rename) is an
    # InputError naming the file, and the temp file is gone.
    real_replace = os.replace

    def swap_then_replace(src: str, dst: str, **kw: object) -> None:
        os.mkdir(dst, dir_fd=kw["dst_dir_fd"])  # type: ignore[arg-type]
        os.mkdir(os.path.join(dst, "x"), dir_fd=kw["dst_dir_fd"])  # type: ignore[arg-type]
        real_replace(src, dst, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(safe.os, "replace", swap_then_replace)
    with pytest.raises(InputError, match="out.json: cannot write"):
        safe.write_file(tmp_path, "out.json", b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"] and (tmp_path / "out.json").is_dir()
