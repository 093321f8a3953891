"""Hostile input: every case gives one clear line on stderr, exit 2, and writes nothing.

YAML alias bombs, duplicate and non-string keys, unsafe tags; JSON duplicate keys,
NaN/Infinity, numbers outside I-JSON's range, invalid UTF-8, lone surrogates and
depth bombs; files of hundreds of MB (sparse, so refused by size before reading);
artifact paths that escape the project, symlinks that leave a directory, FIFOs and
devices.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Project

from mlspec_attest._internal.loaders import MAX_INPUT_BYTES, parse_yaml
from mlspec_attest.cli.main import main
from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import parse_json

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))


OK_INGEST = "ok-ingest.yaml"


@pytest.fixture(autouse=True)
def _ok_metadata(project: Project) -> None:
    project.write(OK_INGEST, "sources: [{name: raw}]\n")


def _listing(project: Project) -> list[str]:
    root = project.bundle
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def attest(project: Project, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    """Run 'mlspec attest stage' in the project; return (exit code, stderr) and check nothing was written."""
    monkeypatch.chdir(project.root)
    before = _listing(project)
    result = CliRunner().invoke(main, ["attest", "stage", *args, "--bundle", str(project.bundle),
                                       "--key", str(project.key("pipeline"))])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        f"traceback: {result.exception!r}"
    assert _listing(project) == before, "something was written"
    return result.exit_code, result.stderr


def one_line_exit_2(code: int, stderr: str, *needles: str) -> None:
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle.lower() in stderr.lower(), (needle, stderr)


# -- YAML ----------------------------------------------------------------------------
@pytest.mark.parametrize("text, needle", [
    (BILLION_LAUGHS, "alias bomb"),
    ("a: 1\na: 2\n", "duplicate key 'a'"),
    ("1: one\n", "non-string key"),
    ("? [a, b]\n: x\n", "invalid yaml"),  # unhashable key: refused, not crashed
    ("null: x\n", "non-string key"),
    ("!!python/object/apply:os.system ['true']\n", "invalid yaml"),
    ("a: !!binary aGVsbG8=\n", "binary value"),
    ("a: .inf\n", "nan or infinite"),
    ("a: 9007199254740993\n", "interoperable range"),
    ("a: [" * 5000 + "]" * 5000 + "\n", "nest"),
    ("a: b\n  c: d\n", ":2:"),  # a syntax error names line and column
    (b"a: \xff\n", "utf-8"),
])
def test_yaml_refused(project: Project, monkeypatch: pytest.MonkeyPatch, text: str | bytes, needle: str) -> None:
    project.write("meta.yaml", text)
    start = time.perf_counter()
    code, err = attest(project, monkeypatch, "ingest", "--metadata", "meta.yaml")
    one_line_exit_2(code, err, needle)
    assert time.perf_counter() - start < 5  # the bomb is bounded, not expanded


def test_yaml_alias_bound_is_on_expansion_not_on_aliases() -> None:
    # Ordinary anchors still work; only expansion past the bound is refused.
    assert parse_yaml(b"base: &b {x: 1}\nother: *b\n", source="ok.yaml") == {"base": {"x": 1}, "other": {"x": 1}}
    with pytest.raises(InputError, match="alias bomb"):
        parse_yaml(BILLION_LAUGHS.encode(), source="bomb.yaml")


# -- JSON ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, needle", [
    ('{"a": 1, "a": 2}', "duplicate key"),
    ('{"a": NaN}', "NaN"),
    ('{"a": Infinity}', "Infinity"),
    ('{"a": -Infinity}', "Infinity"),
    ('{"a": 1e400}', "overflows"),
    ('{"a": 9007199254740993}', "interoperable range"),
    ('{"a": -9007199254740993}', "interoperable range"),
    ('{"a": 100000000000000000000000}', "interoperable range"),
    ('{"a": ' + "9" * 5000 + "}", "interoperable range"),
    (b'{"a": "\xc3\x28"}', "utf-8"),
    ('{"a": "\\ud800"}', "surrogate"),
    ('{"a": "\\udc00x"}', "surrogate"),
    ('{"\\ud800": 1}', "surrogate"),
    ("[" * 100_000 + "]" * 100_000, "nest"),
    ('{"a":' * 300 + "1" + "}" * 300, "nest"),
])
def test_json_refused(project: Project, monkeypatch: pytest.MonkeyPatch, text: str | bytes, needle: str) -> None:
    project.write("meta.json", text)
    code, err = attest(project, monkeypatch, "ingest", "--metadata", "meta.json")
    one_line_exit_2(code, err, needle)


def test_json_within_bounds_is_accepted() -> None:
    assert parse_json('{"a": 9007199254740991, "b": -9007199254740991, "c": 1e308, "d": "\\ud83d\\ude00"}') == {
        "a": 2**53 - 1, "b": -(2**53 - 1), "c": 1e308, "d": "\U0001f600"}
    deep = "[" * 150 + "]" * 150
    assert parse_json(deep) is not None
    # RFC 8785 writes the double 2^53 as 9007199254740992: it reads back exactly, as a float.
    assert parse_json("9007199254740992") == 2.0**53


# -- huge files: refused by size before they are read -------------------------------------------
def _sparse(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


def test_huge_metadata_refused_before_reading(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    _sparse(project.root / "huge.yaml", 400 * 1024 * 1024)
    start = time.perf_counter()
    code, err = attest(project, monkeypatch, "ingest", "--metadata", "huge.yaml")
    one_line_exit_2(code, err, "over the", "limit")
    assert time.perf_counter() - start < 2


def test_huge_envelope_and_policy_refused(project: Project, tmp_path: Path) -> None:
    (project.bundle / "attestations").mkdir(parents=True)
    _sparse(project.bundle / "attestations" / "0000-objectives.dsse.json", 300 * 1024 * 1024)
    result = CliRunner().invoke(main, ["verify", str(project.bundle), "--policy", str(project.policy())])
    one_line_exit_2(result.exit_code, result.stderr, "over the")
    huge_policy = _sparse(tmp_path / "policy.yaml", MAX_INPUT_BYTES + 1)
    result = CliRunner().invoke(main, ["verify", str(project.bundle), "--policy", str(huge_policy)])
    one_line_exit_2(result.exit_code, result.stderr, "over the")
    result = CliRunner().invoke(main, ["inspect", str(project.bundle / "attestations" / "0000-objectives.dsse.json")])
    one_line_exit_2(result.exit_code, result.stderr, "over the")


# -- artifact paths -------------------------------------------------------------------------
def test_paths_escaping_the_project(project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    project.write("data/ok.csv", "x\n")
    for spec in ("../outside.txt", str(outside), "model=../outside.txt", "data/../../outside.txt"):
        code, err = attest(project, monkeypatch, "ingest", "--metadata", OK_INGEST, "--product", spec)
        one_line_exit_2(code, err, "outside the project")
    # A symlink inside the project whose target is outside: the resolved path decides.
    (project.root / "link.csv").symlink_to(outside)
    code, err = attest(project, monkeypatch, "ingest", "--metadata", OK_INGEST, "--product", "link.csv")
    one_line_exit_2(code, err, "outside the project")


def test_symlink_leaving_a_directory_artifact(project: Project, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    project.write("pkg/model.bin", "m")
    (project.root / "pkg" / "escape").symlink_to(tmp_path / "secret")
    code, err = attest(project, monkeypatch, "package", "--set", "name=m", "--product", "pkg")
    one_line_exit_2(code, err, "symlink leaves the directory")
    (project.root / "pkg" / "escape").unlink()
    (project.root / "pkg" / "dangling").symlink_to(project.root / "pkg" / "missing")
    code, err = attest(project, monkeypatch, "package", "--set", "name=m", "--product", "pkg")
    one_line_exit_2(code, err, "dangling")
    (project.root / "pkg" / "dangling").unlink()
    (project.root / "pkg" / "loop1").symlink_to(project.root / "pkg" / "loop2")
    (project.root / "pkg" / "loop2").symlink_to(project.root / "pkg" / "loop1")
    code, err = attest(project, monkeypatch, "package", "--set", "name=m", "--product", "pkg")
    one_line_exit_2(code, err, "loop")


def test_special_files_refused(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    os.mkfifo(project.root / "fifo")
    start = time.perf_counter()
    code, err = attest(project, monkeypatch, "ingest", "--metadata", OK_INGEST, "--product", "fifo")
    one_line_exit_2(code, err, "not a regular file")
    code, err = attest(project, monkeypatch, "ingest", "--metadata", "fifo")
    one_line_exit_2(code, err, "not a regular file")
    project.write("dir/a.txt", "a")
    os.mkfifo(project.root / "dir" / "pipe")
    code, err = attest(project, monkeypatch, "ingest", "--metadata", OK_INGEST, "--product", "dir")
    one_line_exit_2(code, err, "not a regular file")
    assert time.perf_counter() - start < 5  # a FIFO is never opened (that would block)
    if os.path.exists("/dev/null"):
        code, err = attest(project, monkeypatch, "ingest", "--metadata", "/dev/null")
        one_line_exit_2(code, err, "not a regular file")


def test_fifo_in_bundle_is_refused_not_read(project: Project) -> None:
    (project.bundle / "attestations").mkdir(parents=True)
    os.mkfifo(project.bundle / "attestations" / "0000-objectives.dsse.json")
    result = CliRunner().invoke(main, ["verify", str(project.bundle), "--policy", str(project.policy())])
    one_line_exit_2(result.exit_code, result.stderr, "not a regular file")


def test_garbage_policy_is_one_line(project: Project, tmp_path: Path) -> None:
    (project.bundle / "attestations").mkdir(parents=True)
    for text, needle in (("a: &a [*a]\n", "nest"), ("keys: {x: 1}\nstages: {}\n", "keys.x"),
                         ("version: 1\nkeys: {p: {path: ../keys/pipeline.pub, keyid: ABC}}\nstages: {train: {}}\n",
                          "64 lowercase hex"),
                         ("version: 1\nkeys: {p: ../keys/pipeline.pub}\nrevoked: [{keyid: 'abc'}]\n"
                          "stages: {train: {signers: [p]}}\n", "64 lowercase hex"),
                         ("version: 1\nkeys: {p: ../keys/pipeline.pub}\nhead: {signers: [nobody]}\n"
                          "stages: {train: {signers: [p]}}\n", "not defined under keys")):
        path = project.write("policies/bad.yaml", text)
        result = CliRunner().invoke(main, ["verify", str(project.bundle), "--policy", str(path)])
        one_line_exit_2(result.exit_code, result.stderr, needle)


def test_user_named_files_linked_to_devices_are_never_opened(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    # A path the user names may be a symlink (their choice), but only a regular file is read:
    # /dev/zero would never end, a FIFO would block. Refused by stat before any open, then fstat.
    if not os.path.exists("/dev/zero"):
        pytest.skip("/dev/zero is absent on this machine")
    (project.root / "zero.yaml").symlink_to("/dev/zero")
    os.mkfifo(project.root / "pipe.yaml")
    for name in ("zero.yaml", "pipe.yaml"):
        code, err = attest(project, monkeypatch, "ingest", "--metadata", name)
        one_line_exit_2(code, err, name, "not a regular file")
        (project.bundle / "attestations").mkdir(parents=True, exist_ok=True)
        result = CliRunner().invoke(main, ["verify", str(project.bundle), "--policy", str(project.root / name)])
        one_line_exit_2(result.exit_code, result.stderr, "not a regular file")
        result = CliRunner().invoke(main, ["inspect", str(project.root / name)])
        one_line_exit_2(result.exit_code, result.stderr, "not a regular file")
