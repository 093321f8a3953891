"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing and proofs.

Same hashing as RFC 6962, Trillian, transparency-dev/merkle and Rekor, so any of
their verifiers can check our inclusion and consistency proofs:

- leaf hash  = SHA-256(0x00 || leaf bytes)
- node hash  = SHA-256(0x01 || left || right)
- MTH({})    = SHA-256("")
- MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n.

The streaming writer never holds the tree: :class:`MerkleAccumulator` keeps only
the compact range ("frontier", one hash per set bit of the size). Proof
generation reads leaf hashes back through a :class:`SubtreeSource`, so the same
RFC recursion serves a leaf file on disk (``LeafFile``), an in-memory list
(``LeafList``) or "previous frontier + new batch" at seal time
(``FrontierAndBatch``), all in memory independent of the tree size.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from mlspec_attest.errors import ProofError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 §2.1.1 leaf hash: domain-separated from nodes by the 0x00 prefix."""
    return _sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1 interior node hash (0x01 prefix)."""
    return _sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(hashes: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, level by level (odd last node is carried up, which
    equals the RFC's largest-power-of-two split). O(n) memory: for small inputs."""
    level = list(hashes)
    if not level:
        return EMPTY_ROOT
    sha = _sha256
    while len(level) > 1:
        nxt = [sha(NODE_PREFIX + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def tree_head(leaves: Iterable[bytes]) -> bytes:
    """MTH over raw leaf data (hashes each leaf first); streaming, O(log n) memory."""
    acc = MerkleAccumulator()
    acc.extend(leaf_hash(d) for d in leaves)
    return acc.root()


class MerkleAccumulator:
    """Append-only Merkle tree state in O(log n) memory (the compact range).

    ``_stack`` holds the roots of the maximal perfect subtrees covering
    [0, size), largest (leftmost) first: exactly one per set bit of ``size``.
    """

    __slots__ = ("_size", "_stack")

    def __init__(self, size: int = 0, frontier: Sequence[bytes] = ()) -> None:
        if len(frontier) != bin(size).count("1"):
            raise ValueError(f"a frontier for size {size} has {bin(size).count('1')} hashes, got {len(frontier)}")
        self._size = size
        self._stack = list(frontier)

    @property
    def size(self) -> int:
        return self._size

    @property
    def frontier(self) -> list[bytes]:
        """Copy of the compact range, left to right; with ``size`` it restores the state."""
        return list(self._stack)

    def copy(self) -> MerkleAccumulator:
        return MerkleAccumulator(self._size, self._stack)

    def append(self, h: bytes) -> None:
        """Add one leaf hash; amortised one node hash."""
        stack = self._stack
        i = self._size
        while i & 1:
            h = _sha256(NODE_PREFIX + stack.pop() + h).digest()
            i >>= 1
        stack.append(h)
        self._size += 1

    def extend(self, hashes: Iterable[bytes]) -> None:
        """Add many leaf hashes. Aligned runs of 2^k leaves are reduced level by
        level in list comprehensions (less interpreter work per node), then
        pushed as one perfect subtree; the rest goes leaf by leaf."""
        hs = hashes if isinstance(hashes, list) else list(hashes)
        n = len(hs)
        i = 0
        sha = _sha256
        while i < n:
            size = self._size
            k = (n - i).bit_length() - 1
            if size:
                k = min(k, (size & -size).bit_length() - 1)
            if k < 3:
                self.append(hs[i])
                i += 1
                continue
            level = hs[i : i + (1 << k)]
            while len(level) > 1:
                level = [sha(NODE_PREFIX + a + b).digest() for a, b in zip(level[::2], level[1::2])]
            self._push(level[0], k)
            i += 1 << k

    def _push(self, h: bytes, height: int) -> None:
        """Add a perfect subtree of 2^height leaves at an aligned position."""
        stack = self._stack
        i = self._size >> height
        while i & 1:
            h = _sha256(NODE_PREFIX + stack.pop() + h).digest()
            i >>= 1
        stack.append(h)
        self._size += 1 << height

    def root(self) -> bytes:
        """MTH of everything appended so far (folds the frontier right to left)."""
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        r = stack[-1]
        for h in reversed(stack[:-1]):
            r = _sha256(NODE_PREFIX + h + r).digest()
        return r

    def ranges(self) -> list[tuple[int, int, bytes]]:
        """The frontier as (start, end, hash) perfect subtrees."""
        out: list[tuple[int, int, bytes]] = []
        start = 0
        idx = 0
        for bit in range(self._size.bit_length() - 1, -1, -1):
            width = 1 << bit
            if self._size & width:
                out.append((start, start + width, self._stack[idx]))
                start += width
                idx += 1
        return out


# --------------------------------------------------------------------------- sources


class SubtreeSource(Protocol):
    """Anything that can give MTH(D[start:end]) for the ranges a proof needs."""

    def subtree(self, start: int, end: int) -> bytes: ...


class LeafList:
    """Subtree hashes over an in-memory sequence of leaf hashes (tests, small trees)."""

    def __init__(self, hashes: Sequence[bytes]) -> None:
        self._hashes = hashes

    def __len__(self) -> int:
        return len(self._hashes)

    def subtree(self, start: int, end: int) -> bytes:
        if not 0 <= start < end <= len(self._hashes):
            raise ProofError(f"leaf range [{start}, {end}) outside 0..{len(self._hashes)}")
        acc = MerkleAccumulator()
        acc.extend(self._hashes[start:end])
        return acc.root()


class LeafFile:
    """Subtree hashes over a file of concatenated 32-byte leaf hashes.

    Streams the range in chunks through an accumulator, so proving in a tree of
    any size needs O(log n) memory and about n node hashes of time.
    """

    CHUNK = 1 << 16  # leaves per read

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        with self._open() as fh:
            self._count = os.fstat(fh.fileno()).st_size // HASH_SIZE

    def _open(self) -> BinaryIO:
        """No-follow inside the log directory, non-blocking, regular files only (_internal/files.py)."""
        from mlspec_attest._internal.files import open_stream

        return open_stream(self._path.name, root=self._path.parent, what="leaf file")

    def __len__(self) -> int:
        return self._count

    def leaf(self, index: int) -> bytes:
        with self._open() as fh:
            fh.seek(index * HASH_SIZE)
            data = fh.read(HASH_SIZE)
        if len(data) != HASH_SIZE:
            raise ProofError(f"leaf {index} is not in {self._path.name}")
        return data

    def subtree(self, start: int, end: int) -> bytes:
        if not 0 <= start < end <= self._count:
            raise ProofError(f"leaf range [{start}, {end}) outside 0..{self._count}")
        acc = MerkleAccumulator()
        with self._open() as fh:
            if self._count:
                with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    pos = start
                    while pos < end:
                        stop = min(end, pos + self.CHUNK)
                        blob = mm[pos * HASH_SIZE : stop * HASH_SIZE]
                        acc.extend([blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)])
                        pos = stop
        return acc.root()


class FrontierAndBatch:
    """Subtrees of a tree of size n, knowing only the frontier at size m and the
    leaf hashes m..n: all a consistency proof m -> n ever needs (every proof
    node is either a frontier node of m or lies wholly inside [m, n))."""

    def __init__(self, previous: MerkleAccumulator, batch: Sequence[bytes]) -> None:
        self._m = previous.size
        self._frontier = {(s, e): h for s, e, h in previous.ranges()}
        self._batch = LeafList(batch)

    def subtree(self, start: int, end: int) -> bytes:
        if end <= self._m:
            try:
                return self._frontier[(start, end)]
            except KeyError:
                raise ProofError(f"[{start}, {end}) is not a frontier node of size {self._m}") from None
        if start >= self._m:
            return self._batch.subtree(start - self._m, end - self._m)
        raise ProofError(f"[{start}, {end}) straddles the old size {self._m}")


# --------------------------------------------------------------------------- proofs


def _path(m: int, start: int, end: int, source: SubtreeSource, out: list[bytes]) -> None:
    n = end - start
    if n == 1:
        return
    k = _split(n)
    if m < k:
        _path(m, start, start + k, source, out)
        out.append(source.subtree(start + k, end))
    else:
        _path(m - k, start + k, end, source, out)
        out.append(source.subtree(start, start + k))


def _subproof(m: int, start: int, end: int, whole: bool, source: SubtreeSource, out: list[bytes]) -> None:
    n = end - start
    if m == n:
        if not whole:
            out.append(source.subtree(start, end))
        return
    k = _split(n)
    if m <= k:
        _subproof(m, start, start + k, whole, source, out)
        out.append(source.subtree(start + k, end))
    else:
        _subproof(m - k, start + k, end, False, source, out)
        out.append(source.subtree(start, start + k))


# (module-level recursion, not nested closures: a self-referencing closure is a
# reference cycle that would keep each proof's source alive until a full GC)


def inclusion_proof(index: int, size: int, source: SubtreeSource) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[0:size])."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    out: list[bytes] = []
    _path(index, 0, size, source, out)
    return out


def consistency_proof(old_size: int, new_size: int, source: SubtreeSource) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(m, D[0:n]); empty when m == 0 or m == n."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    out: list[bytes] = []
    _subproof(old_size, 0, new_size, True, source, out)
    return out


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2: the root the proof leads to, or None if it is malformed."""
    if not 0 <= index < size or len(leaf) != HASH_SIZE:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if len(p) != HASH_SIZE or sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = _sha256(NODE_PREFIX + p + r).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return None
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """True iff ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree ``root`` of ``size``."""
    got = root_from_inclusion_proof(index, size, leaf, proof)
    return got is not None and len(root) == HASH_SIZE and got == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: the tree ``new_root`` is an append-only extension of ``old_root``."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    if not proof or any(len(p) != HASH_SIZE for p in proof):
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # exact power of two: the old root is a node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _sha256(NODE_PREFIX + c + fr).digest()
            sr = _sha256(NODE_PREFIX + c + sr).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
