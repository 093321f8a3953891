"""Small fingerprint sets are decoded and compared without numpy; the result must be the numpy path's.

Who could walk around a second decoder: split's signer crafting a small blob that one decoder
accepts and the other refuses (or decodes to other values), so a shared row is hidden from the
gate. Every blob below is decoded both ways (``SMALL_SET`` moved to force each path) and the
two must agree on the values, or on the exact refusal; overlaps of lists must equal numpy's.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlspec_attest import leakage as L


def _decode(blob: bytes, small: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    monkeypatch.setattr(L, "SMALL_SET", 1 << 30 if small else 0)
    try:
        stream = L.FingerprintStream(blob, "blob")
        values = [int(v) for v in stream.values()]
        return "ok", (values, stream.sha256)
    except ValueError as exc:
        return "refused", str(exc)


def _both(blob: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    python, numpy_ = _decode(blob, True, monkeypatch), _decode(blob, False, monkeypatch)
    assert python == numpy_, blob[:64]
    return python


sets = st.lists(st.integers(0, 2**64 - 1), max_size=300, unique=True).map(sorted)


@settings(max_examples=200, deadline=None)
@given(values=sets, block=st.sampled_from([1, 2, 7, 4096]))
def test_valid_blobs_decode_to_the_same_values(values: list[int], block: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        blob = bytes(L.encode(np.array(values, dtype=np.uint64), block_values=block))
        verdict, (decoded, _) = _both(blob, mp)
        assert verdict == "ok" and decoded == values


@settings(max_examples=300, deadline=None)
@given(values=sets.filter(len), block=st.sampled_from([1, 3, 4096]), at=st.integers(0), byte=st.integers(0, 255))
def test_mutated_blobs_get_the_same_verdict(values: list[int], block: int, at: int, byte: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        blob = bytearray(L.encode(np.array(values, dtype=np.uint64), block_values=block))
        blob[L._HEADER.size + at % (len(blob) - L._HEADER.size)] = byte
        _both(bytes(blob), mp)


def _raw_blob(deltas: list[int], block: int) -> bytes:
    """A v2 blob of these deltas stored raw, whatever they are (unsorted, zero, wrapping)."""
    out = bytearray(L._HEADER.pack(L.MAGIC, 2, 1, 0, block, len(deltas)))
    for start in range(0, len(deltas), block):
        chunk = deltas[start:start + block]
        planes = [bytes((d >> (8 * k)) & 0xFF for d in chunk) for k in range(8)]
        for plane in planes:
            out += L._PLANE.pack(L.RAW, len(plane)) + plane
    return bytes(out)


@pytest.mark.parametrize("deltas, block", [
    ([0, 5, 9], 3),                      # a first value of 0 is fine
    ([5, 0, 9], 3),                      # a repeat inside a block
    ([5, 9, 0], 2),                      # a repeat across blocks
    ([2**64 - 1, 1], 2),                 # the sum passes 2^64 inside a block
    ([2**64 - 2, 1, 1], 2),              # ... across blocks
    ([2**63, 2**63], 1),                 # ... by wrapping exactly to 0
    ([1] * 5, 1),                        # blocks of one value
])
def test_crafted_sums_get_the_same_verdict(deltas: list[int], block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    verdict, _ = _both(_raw_blob(deltas, block), monkeypatch)
    expected = "ok" if all(d >= 1 for d in deltas[1:]) and sum(deltas) <= 2**64 - 1 else "refused"
    assert verdict == expected


@pytest.mark.parametrize("values", [[], [7], [1, 2, 3], [3, 2], [1, 1], [0, 2**64 - 1]])
def test_v1_blobs_get_the_same_verdict(values: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    blob = b"".join(struct.pack(">Q", v) for v in values)
    verdict, _ = _both(blob, monkeypatch)
    assert verdict == ("ok" if values == sorted(set(values)) else "refused")


@settings(max_examples=200, deadline=None)
@given(a=sets, b=sets)
def test_overlap_of_lists_equals_numpy(a: list[int], b: list[int]) -> None:
    shared = b[: len(b) // 2]
    a = sorted(set(a) | set(shared))
    expected = L.overlap(np.array(a, dtype=np.uint64), np.array(b, dtype=np.uint64))
    assert L.overlap(a, b) == expected == len(set(a) & set(b))


def test_verifying_a_small_split_does_not_import_numpy(tmp_path: Any) -> None:
    """The point of the small path: the gate's leakage check of a demo-sized split leaves numpy out."""
    code = (
        "import sys\n"
        "from mlspec_attest import leakage as L\n"
        "blob = bytes.fromhex(sys.argv[1])\n"
        "s = L.FingerprintStream(blob, 'b'); v = s.values()\n"
        "assert L.overlap(v, [v[0]]) == 1\n"
        "print('numpy' in sys.modules)\n"
    )
    blob = bytes(L.encode(np.arange(1, 400, dtype=np.uint64)))
    out = subprocess.run([sys.executable, "-c", code, blob.hex()], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
