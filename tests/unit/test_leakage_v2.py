"""Row fingerprints v2 (leakage.py): same rows as v1, compact blob, strict decoder, parallel == serial."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import xxhash

from mlspec_attest import leakage as L
from mlspec_attest.errors import InputError


def _csv(path: Path, rows: list[str], newline: str = "\n") -> Path:
    path.write_bytes(("id,x" + newline + newline.join(rows) + newline).encode())
    return path


def test_rows_are_stripped_lines_and_each_is_one_xxh3(tmp_path: Path) -> None:
    """Header left out, surrounding whitespace (CR of CRLF too) stripped, blank lines skipped, last line kept."""
    path = tmp_path / "d.csv"
    path.write_bytes(b"id,x\n1,a\r\n2,b\n\n  \n3,c\r\r\n2,b\n4,d")
    values = L.fingerprint_values_of_csv(path)
    expected = sorted({xxhash.xxh3_64_intdigest(r) for r in (b"1,a", b"2,b", b"3,c", b"4,d")})
    assert values.tolist() == expected


@pytest.mark.parametrize("copy", [b"  7,q\n", b"7,q   \n", b"\t7,q\r\n", b"7,q\x0b\x0c\n", b"7,q"])
def test_whitespace_variants_of_a_row_are_the_same_row(tmp_path: Path, copy: bytes) -> None:
    """Attack: the split runner re-pads, re-indents or re-terminates a training row in the hold-back copy."""
    a = tmp_path / "a.csv"
    a.write_bytes(b"h\n7,q\n")
    b = tmp_path / "b.csv"
    b.write_bytes(b"h\n" + copy)
    assert L.overlap(L.fingerprint_values_of_csv(a), L.fingerprint_values_of_csv(b)) == 1


def test_a_different_record_is_a_different_row(tmp_path: Path) -> None:
    """What stays out of scope (docs/format.md): inner bytes differ, so quoting or number format is another row."""
    a = tmp_path / "a.csv"
    a.write_bytes(b"h\n7,q\n")
    b = tmp_path / "b.csv"
    b.write_bytes(b'h\n"7",q\n7, q\n')
    assert L.overlap(L.fingerprint_values_of_csv(a), L.fingerprint_values_of_csv(b)) == 0


def test_crlf_copy_of_a_set_gets_the_same_fingerprints(tmp_path: Path) -> None:
    """Attack: the split runner re-writes hold-back rows with CRLF endings to dodge the match."""
    rows = [f"{i},{i * 7}" for i in range(100)]
    lf = L.fingerprint_values_of_csv(_csv(tmp_path / "lf.csv", rows))
    crlf = L.fingerprint_values_of_csv(_csv(tmp_path / "crlf.csv", rows, "\r\n"))
    assert np.array_equal(lf, crlf)
    assert L.overlap(lf, crlf) == 100


def test_round_trip_over_many_blocks_and_the_overlap_count() -> None:
    rng = np.random.default_rng(3)
    a = np.unique(rng.integers(0, 2**64 - 1, 50_000, dtype=np.uint64, endpoint=True))
    blob = L.encode(a, block_values=4096)
    assert len(blob) < 7 * a.size  # compact: the deltas' high bytes compress away
    back, sha = L.read_fingerprints(bytes(blob), "t")
    assert np.array_equal(back, a) and sha == hashlib.sha256(blob).hexdigest()
    b = np.unique(np.concatenate([a[::97], rng.integers(0, 2**63, 1000, dtype=np.uint64)]))
    assert L.overlap(a, b) == np.intersect1d(a, b).size == L.overlap(b, a)
    assert L.overlap(a, a[:0]) == 0


def test_extremes_zero_and_max_round_trip() -> None:
    values = np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64)
    assert np.array_equal(L.parse_fingerprints(bytes(L.encode(values, block_values=2)), "t"), values)


def test_v1_blobs_still_decode() -> None:
    """Auditors replay old chains: 8-byte big-endian sha256 prefixes."""
    rows = [b"1,a", b"2,b"]
    v1 = L.encode_v1(sorted(L.row_fingerprint_v1(r) for r in rows))
    assert L.parse_fingerprints(v1, "old").tolist() == sorted(L.row_fingerprint_v1(r) for r in rows)
    with pytest.raises(ValueError, match="not sorted and unique"):
        L.parse_fingerprints(v1[8:] + v1[:8], "old")
    with pytest.raises(ValueError, match="over 16 bytes"):
        L.read_fingerprints(v1 + v1[:8] * 2, "old", v1_limit=16)


def _blob(count: int, block_values: int, planes: list[tuple[int, bytes]], version: int = 2, hash_id: int = 1) -> bytes:
    head = L._HEADER.pack(L.MAGIC, version, hash_id, 0, block_values, count)
    return head + b"".join(L._PLANE.pack(codec, len(data)) + data for codec, data in planes)


def _raw_planes(deltas: list[int]) -> list[tuple[int, bytes]]:
    arr = np.array(deltas, dtype="<u8").view(np.uint8).reshape(-1, 8)
    return [(L.RAW, arr[:, k].tobytes()) for k in range(8)]


@pytest.mark.parametrize("blob, why", [
    (_blob(3, 4, _raw_planes([5, 0, 1])), "not sorted and unique"),  # a repeated row hidden as delta 0
    (_blob(2, 4, _raw_planes([2**64 - 2, 5])), "not sorted and unique"),  # wraps past 2^64 to a small value
    (_blob(4, 2, _raw_planes([5, 1]) + _raw_planes([0, 1])), "not sorted and unique"),  # repeat across blocks
    (_blob(4, 2, _raw_planes([2**64 - 3, 1]) + _raw_planes([3, 1])), "not sorted and unique"),  # wrap across blocks
    (_blob(2, 4, _raw_planes([5, 1]), version=3), "unknown fingerprint format"),
    (_blob(2, 4, _raw_planes([5, 1]), hash_id=9), "unknown fingerprint format"),
    (_blob(2, 0, _raw_planes([5, 1])), "block size 0"),
    (_blob(2**40, 4, _raw_planes([5, 1])), "over the"),  # a declared count that would allocate terabytes
    (_blob(2, 4, _raw_planes([5, 1]))[:-1], "ends early"),  # cut short
    (_blob(2, 4, _raw_planes([5, 1])) + b"x", "trailing bytes"),  # a second set smuggled after the first
    (_blob(2, 4, _raw_planes([5, 1])[:7] + [(L.ZLIB, zlib.compress(b"\0" * 3))]), "exactly 2 bytes"),
    (_blob(2, 4, _raw_planes([5, 1])[:7] + [(L.ZLIB, zlib.compress(b"\0" * (1 << 20)))]), "not valid for 2"),
    (_blob(2, 4, _raw_planes([5, 1])[:7] + [(7, b"\0\0")]), "codec 7"),
    (_blob(2, 4, _raw_planes([5, 1])[:7] + [(L.RAW, b"\0")]), "not valid for 2 values"),
])
def test_crafted_v2_blobs_are_refused(blob: bytes, why: str) -> None:
    """Attack: split's runner (or a bundle holder) signs a blob that decodes to a non-set or a bomb."""
    with pytest.raises(ValueError, match=why):
        L.read_fingerprints(blob, "crafted")


def test_a_zlib_bomb_plane_never_inflates_past_its_block() -> None:
    bomb = zlib.compress(b"\1" * (64 << 20), 9)  # 64 MiB from ~64 KiB: within the stored-length cap for 40,000
    assert len(bomb) <= 2 * 40_000 + 64
    blob = _blob(40_000, 40_000, [(L.ZLIB, bomb)] * 8)
    with pytest.raises(ValueError, match="exactly 40000 bytes"):
        L.read_fingerprints(blob, "bomb")


def test_encoder_refuses_unsorted_input() -> None:
    with pytest.raises(ValueError, match="sorted and unique"):
        L.encode(np.array([3, 2], dtype=np.uint64))
    with pytest.raises(ValueError, match="sorted and unique"):
        L.encode(iter([np.array([1, 5], dtype=np.uint64), np.array([5, 6], dtype=np.uint64)]), block_values=2)


def test_two_processes_give_the_serial_blob_and_count_rows_in_both_halves_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parallel path: cut at a newline, a row repeated across the halves is one fingerprint."""
    rows = [f"{i},{'v' * (i % 13)}" for i in range(20_000)]
    path = _csv(tmp_path / "d.csv", rows + rows[:500])  # the tail repeats rows of the first half
    monkeypatch.setattr(L, "PARALLEL_MIN", 1)
    monkeypatch.setattr(L, "BLOCK_VALUES", 1000)
    monkeypatch.setenv("MLSPEC_FINGERPRINT_WORKERS", "2")
    # Other tests of the session may leave threads behind (server fixtures), and a process with
    # threads never forks (workers.fork_context): this test needs the fork, so it says so.
    import multiprocessing

    from mlspec_attest._internal import workers

    monkeypatch.setattr(workers, "fork_context", lambda: multiprocessing.get_context("fork"))
    runs = L._runs_of_csv(path, True)
    assert len(runs) == 2  # really ran on two processes
    parallel = L.fingerprints_of_csv(path)
    monkeypatch.setenv("MLSPEC_FINGERPRINT_WORKERS", "1")
    assert len(L._runs_of_csv(path, True)) == 1
    serial = L.fingerprints_of_csv(path)
    assert parallel == serial
    values = L.parse_fingerprints(bytes(serial), "d")
    assert values.size == 20_000
    assert L.recompute_matches(bytes(serial), path)


def test_a_row_longer_than_the_bound_is_refused_in_either_process(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from mlspec_attest._internal import files

    path = tmp_path / "d.csv"
    path.write_bytes(b"id\n" + b"1\n" * 1000 + b"y" * 5000 + b"\n" + b"2\n" * 1000)
    monkeypatch.setattr(files, "MAX_LINE_BYTES", 4096)
    monkeypatch.setattr(L, "PARALLEL_MIN", 1)
    for workers in ("1", "2"):
        monkeypatch.setenv("MLSPEC_FINGERPRINT_WORKERS", workers)
        with pytest.raises(InputError, match="line is longer than 4096 bytes"):
            L.fingerprints_of_csv(path)


def test_recompute_tells_a_blob_of_other_data(tmp_path: Path) -> None:
    """What only a holder of the data can check: the blob is the fingerprint set of that file."""
    a = _csv(tmp_path / "a.csv", ["1,a", "2,b"])
    b = _csv(tmp_path / "b.csv", ["1,a", "3,c"])
    blob = bytes(L.fingerprints_of_csv(a))
    assert L.recompute_matches(blob, a) and not L.recompute_matches(blob, b)
    v1 = L.encode_v1(sorted(L.row_fingerprint_v1(r) for r in (b"1,a", b"2,b")))
    assert L.recompute_matches(v1, a) and not L.recompute_matches(v1, b)


def test_header_struct_is_what_docs_format_md_says() -> None:
    blob = bytes(L.encode(np.array([7], dtype=np.uint64)))
    assert blob[:8] == b"MLSPECFP" and blob[8] == 2 and blob[9] == 1
    assert struct.unpack(">I", blob[12:16])[0] == L.BLOCK_VALUES and struct.unpack(">Q", blob[16:24])[0] == 1
