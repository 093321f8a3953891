"""`mlspec hash` equals OpenSSF model-signing's subject on trees built to split the two.

model-signing (pip ``model-signing``, a test-only peer: mlspec never calls it at run
time) is run through its own CLI, ``model_signing sign key``, in process; the subject
of the model.sig it writes is compared with ``mlspec hash``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mlspec_attest.cli.main import main as mlspec_cli
from mlspec_attest.digests import digest_directory, digest_path

ms_cli = pytest.importorskip("model_signing._cli", reason="model-signing (test extra) is not installed")


def _w(root: Path, rel: str, data: bytes = b"") -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data or rel.encode())


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    p = tmp_path_factory.mktemp("k") / "key.pem"
    p.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return p


def model_signing_subject(model: Path, key: Path, *extra: str, sig: Path | None = None) -> tuple[str, list[str]]:
    """Sign with `model_signing sign key` and return (subject sha256, resource names in order)."""
    sig = sig or model / "model.sig"
    res = CliRunner().invoke(ms_cli.main, ["sign", "key", str(model), "--private_key", str(key),
                                           "--signature", str(sig), *extra], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    bundle = json.loads(sig.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    names = [r["name"] for r in statement["predicate"]["resources"]]
    return statement["subject"][0]["digest"]["sha256"], names


def mlspec_hash(*args: str) -> str:
    res = CliRunner().invoke(mlspec_cli, ["hash", *args])
    assert res.exit_code == 0, res.output
    return res.output.split()[0]


TREES: dict[str, Callable[[Path], None]] = {
    # sorting whole strings puts "tokenizer.json" before "tokenizer/vocab"; components do not
    "folder-beside-file": lambda r: [_w(r, n) for n in ("tokenizer.json", "tokenizer/vocab.txt", "tokenizer/merges")],
    # "-" (0x2d) < "/" (0x2f): whole strings put a-b/x first, components put a/b first
    "dash-beside-dir": lambda r: [_w(r, n) for n in ("a-b/x", "a/b", "a.b", "a/c/d", "a_b")],
    "git-files": lambda r: [_w(r, n) for n in (".git/HEAD", ".git/objects/ab/cd", ".gitattributes", ".github/ci.yml",
                                               ".gitignore", "weights.bin", "sub/.gitignore", ".gitkeep")],
    "unicode-and-case": lambda r: [_w(r, n) for n in ("B", "a", "é/x", "e/x", "Z/z", "\U0001f600.bin", "z")],
    "deep": lambda r: [_w(r, n) for n in ("a/b/c/d/e", "a/b/c-d", "a/b-c/d", "a.b/c", "a/b.c")],
}


@pytest.mark.parametrize("tree", sorted(TREES))
def test_mlspec_hash_equals_model_signing_subject(tree: str, tmp_path: Path, signing_key: Path) -> None:
    model = tmp_path / "model"
    TREES[tree](model)
    ours = mlspec_hash(str(model))  # before model.sig exists
    theirs, names = model_signing_subject(model, signing_key)
    assert ours == theirs, (tree, names)
    assert [rel for rel, _ in digest_directory(model).files] == names  # same order, same members
    assert mlspec_hash(str(model)) == theirs  # model.sig inside the tree is left out, as model-signing does


def test_sorting_rule_is_what_splits_them(tmp_path: Path) -> None:
    """The trees above do tell the rules apart: whole-string order gives another digest."""
    model = tmp_path / "m"
    TREES["dash-beside-dir"](model)
    d = digest_directory(model)
    by_string = sorted(d.files)
    assert [r for r, _ in d.files] != [r for r, _ in by_string]
    assert d.sha256 != hashlib.sha256(b"".join(bytes.fromhex(h) for _, h in by_string)).hexdigest()


def test_explicit_ignore_equals_model_signing_ignore_paths(tmp_path: Path, signing_key: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "model"
    for n in ("w.bin", "README.md", "cache/a", "cache/b", "cachefile"):
        _w(model, n)
    monkeypatch.chdir(tmp_path)  # both CLIs read --ignore paths relative to the working directory
    theirs, names = model_signing_subject(model, signing_key, "--ignore-paths", "model/README.md",
                                          "--ignore-paths", "model/cache")
    assert names == ["cachefile", "w.bin"]
    assert mlspec_hash("model", "--ignore", "model/README.md", "--ignore", "model/cache") == theirs
    assert mlspec_hash("model") != theirs


def test_no_ignore_git_paths_equals_model_signing(tmp_path: Path, signing_key: Path) -> None:
    model = tmp_path / "model"
    TREES["git-files"](model)
    theirs, names = model_signing_subject(model, signing_key, "--no-ignore-git-paths", sig=tmp_path / "out.sig")
    assert ".git/HEAD" in names
    assert mlspec_hash(str(model), "--no-ignore-git-paths") == theirs


def test_single_file_oms_form(tmp_path: Path, signing_key: Path) -> None:
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"weights" * 1000)
    theirs, names = model_signing_subject(f, signing_key, sig=tmp_path / "model.sig")
    assert names == ["."]
    assert mlspec_hash("--oms", str(f)) == theirs == digest_path(f).oms_sha256
    assert mlspec_hash(str(f)) == hashlib.sha256(f.read_bytes()).hexdigest()  # sha256sum form stays the default


def test_ignore_outside_the_directory_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "model"
    _w(model, "w.bin")
    res = CliRunner().invoke(mlspec_cli, ["hash", str(model), "--ignore", str(tmp_path / "elsewhere")])
    assert res.exit_code == 2 and "not inside the directory" in res.output


def test_ignored_files_stay_bound_by_the_manifest(tmp_path: Path) -> None:
    """Leaving git files out of the OMS subject must not let them change unseen."""
    model = tmp_path / "model"
    TREES["git-files"](model)
    before = digest_directory(model)
    assert [r for r, _ in before.ignored] == [".git/HEAD", ".git/objects/ab/cd", ".gitattributes",
                                              ".github/ci.yml", ".gitignore"]
    (model / ".gitattributes").write_bytes(b"*.bin filter=evil")
    after = digest_directory(model)
    assert after.sha256 == before.sha256  # the OMS subject does not see it (interop)...
    assert after.manifest_sha256 != before.manifest_sha256  # ...the manifest does
    _w(model, ".github/new.yml")
    assert digest_directory(model).manifest_sha256 not in (before.manifest_sha256, after.manifest_sha256)
