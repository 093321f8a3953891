"""model-signing's shards and BLAKE3 serialisations (digests.oms_digest) equal model-signing's own (issue #19 item 4)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mlspec_attest import digests
from mlspec_attest.cli.main import main
from mlspec_attest.digests import oms_digest
from mlspec_attest.errors import InputError

model_signing = pytest.importorskip("model_signing", reason="model-signing (test extra) is the interop peer")


def _theirs(target: Path, method: str, hash_type: str, shard_size: int) -> tuple[str, list[tuple[str, str, str]],
                                                                                dict[str, Any]]:
    from google.protobuf import json_format
    from model_signing import hashing
    from model_signing._signing.signing import Payload

    cfg = hashing.Config()
    if method == "shards":
        cfg.use_shard_serialization(hashing_algorithm=hash_type, shard_size=shard_size)
    else:
        cfg.use_file_serialization(hashing_algorithm=hash_type)
    st = json_format.MessageToDict(Payload(cfg.hash(target)).statement.pb)
    resources = [(r["name"], r["algorithm"], r["digest"]) for r in st["predicate"]["resources"]]
    return st["subject"][0]["digest"]["sha256"], resources, st["predicate"]["serialization"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Names whose order differs by string and by component (a/b vs a-b), an empty file, git files, exact shard multiples."""
    root = tmp_path / "model"
    (root / "a").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "a" / "b").write_bytes(os.urandom(3000))  # exactly 3 shards of 1000
    (root / "a-b").write_bytes(os.urandom(2501))
    (root / "empty").write_bytes(b"")  # no shard in the shards method; a resource in the files method
    (root / "z.bin").write_bytes(os.urandom(999))
    (root / ".git" / "HEAD").write_bytes(b"ref")
    (root / ".gitignore").write_bytes(b"*.tmp")
    return root


@pytest.mark.parametrize("method, hash_type, shard_size", [
    ("shards", "sha256", 1000), ("shards", "sha256", 7), ("shards", "sha256", digests.SHARD_SIZE),
    ("files", "sha256", digests.SHARD_SIZE), ("files", "blake3", digests.SHARD_SIZE), ("shards", "blake3", 1000),
])
@pytest.mark.parametrize("single_file", [False, True])
def test_subject_and_resources_equal_model_signing(tree: Path, method: str, hash_type: str, shard_size: int,
                                                   single_file: bool) -> None:
    target = tree / "a-b" if single_file else tree
    subject, resources, serialization = _theirs(target, method, hash_type, shard_size)
    ours = oms_digest(target, method=method, hash_type=hash_type, shard_size=shard_size)
    assert ours.subject_sha256 == subject
    assert list(ours.resources) == resources
    assert {k: (int(v) if k == "shard_size" else v) for k, v in serialization.items() if k != "ignore_paths"} \
        == ours.serialization  # blake3 "shards" is model-signing's files method, recorded as such


def test_files_sha256_is_the_directory_digest_the_chain_records(tree: Path) -> None:
    assert oms_digest(tree).subject_sha256 == digests.digest_path(tree).sha256
    assert oms_digest(tree / "z.bin").subject_sha256 == digests.digest_path(tree / "z.bin").oms_sha256


def test_one_file_on_two_threads_equals_one_thread(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(os.urandom(5 * 1024 * 1024 + 17))
    two = oms_digest(big, method="shards", shard_size=1 << 20, workers=2)
    one = oms_digest(big, method="shards", shard_size=1 << 20, workers=1)
    assert two == one and len(two.resources) == 6
    assert two.subject_sha256 == _theirs(big, "shards", "sha256", 1 << 20)[0]


def test_fifo_and_a_file_that_shrinks_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hostile files: a FIFO (would hang), a FIFO swapped in after the walk, a file cut short mid-hash."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        oms_digest(fifo, method="shards")
    root = tmp_path / "m"
    root.mkdir()
    (root / "w").write_bytes(b"x" * 5000)
    real_walk = digests._walk_regular_files

    def swap_after_walk(r: Path) -> list[Any]:
        found = real_walk(r)
        (root / "w").unlink()
        os.mkfifo(root / "w")
        return found

    monkeypatch.setattr(digests, "_walk_regular_files", swap_after_walk)
    with pytest.raises(InputError, match="not a regular file"):
        oms_digest(root, method="shards", shard_size=1000)
    monkeypatch.setattr(digests, "_walk_regular_files", real_walk)
    os.unlink(root / "w")
    (root / "w").write_bytes(b"x" * 5000)

    def shrink_after_walk(r: Path) -> list[Any]:
        found = real_walk(r)
        (root / "w").write_bytes(b"x" * 10)
        return found

    monkeypatch.setattr(digests, "_walk_regular_files", shrink_after_walk)
    with pytest.raises(InputError, match="changed while it was hashed"):
        oms_digest(root, method="shards", shard_size=1000)


def test_symlink_out_of_the_model_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (tmp_path / "secret").write_bytes(b"s")
    (root / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(InputError, match="leaves the directory"):
        oms_digest(root, method="shards")


def test_cli_prints_model_signings_subject(tree: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["hash", "--method", "shards", "--shard-size", "1000", str(tree)])
    assert out.exit_code == 0, out.output
    assert out.output.split()[0] == _theirs(tree, "shards", "sha256", 1000)[0]
    out = runner.invoke(main, ["hash", "--hash", "blake3", "--format", "json", "--files", str(tree / "a-b")])
    assert out.exit_code == 0 and '"algorithm": "blake3"' in out.output
    bad = runner.invoke(main, ["hash", "--shard-size", "10", str(tree)])
    assert bad.exit_code == 2 and "--shard-size belongs to --method shards" in bad.output


@pytest.mark.parametrize("method, hash_type", [("shards", "sha256"), ("files", "blake3")])
@pytest.mark.parametrize("single_file", [False, True])
def test_model_signing_verifies_our_shards_and_blake3_signatures(tree: Path, tmp_path: Path, method: str,
                                                                 hash_type: str, single_file: bool) -> None:
    """The OMS form: model-signing's verifier re-hashes with the signed serialisation and accepts it.

    Through its library API (verifying.Config without a hashing config guesses it from the
    signature); model-signing 1.1.1's CLI pins files/sha256 on verify, so it cannot check shards.
    """
    from model_signing import verifying

    from mlspec_attest.attest.oms import sign_oms
    from mlspec_attest.keys import generate, load_signer

    generate("p", tmp_path / "keys", "ecdsa-p256", None)
    model = tree / "a-b" if single_file else tree
    sig = tmp_path / "model.sig"
    sig.write_bytes(sign_oms(model, load_signer(tmp_path / "keys" / "p.key"), method=method, hash_type=hash_type,
                             shard_size=1000))

    def accepted() -> bool:
        try:
            verifying.Config().use_elliptic_key_verifier(public_key=tmp_path / "keys" / "p.pub").verify(model, sig)
            return True
        except ValueError:
            return False

    assert accepted()
    import base64
    import json

    statement = json.loads(base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["payload"]))
    assert statement["predicate"]["serialization"]["method"] == method
    assert {r["algorithm"] for r in statement["predicate"]["resources"]} == \
        {"sha256-sharded-1000" if method == "shards" else hash_type}
    victim = tree / "a-b" if single_file else tree / "a" / "b"
    victim.write_bytes(victim.read_bytes()[:-1] + b"!")  # one byte of the last shard
    assert not accepted()


@pytest.mark.parametrize("workers", [2, 3, 8])
def test_uneven_shards_on_threads_give_the_serial_digests(tmp_path: Path, workers: int) -> None:
    """Shards are hashed largest first on up to one thread each: the digests still land in
    model-signing's order, whatever finishes first (files of 0, 1, 3.5 and 9 shards)."""
    tree = tmp_path / "model"
    tree.mkdir()
    for name, size in (("empty.bin", 0), ("one.bin", 4096), ("uneven.bin", 3 * 65536 + 777), ("big.bin", 9 * 65536)):
        (tree / name).write_bytes(os.urandom(size))
    serial = oms_digest(tree, method="shards", shard_size=65536, workers=1)
    threaded = oms_digest(tree, method="shards", shard_size=65536, workers=workers)
    assert threaded == serial and len(serial.resources) == 1 + 4 + 9  # an empty file has no shard
    assert threaded.subject_sha256 == _theirs(tree, "shards", "sha256", 65536)[0]
