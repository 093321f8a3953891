"""RFC 9162 Merkle tree: known CT test vectors plus property tests."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlspec_attest.log.merkle import (
    EMPTY_ROOT,
    FrontierAndBatch,
    LeafFile,
    LeafList,
    MerkleAccumulator,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    tree_head,
    verify_consistency,
    verify_inclusion,
)

# --- Known-answer vectors -----------------------------------------------------------
# Source: github.com/transparency-dev/merkle (Apache-2.0), testonly/constants.go
# (LeafInputs, RootHashes, CompactTrees) and proof/verify_test.go
# (inclusionProofs, consistencyProofs). These are the same vectors as the older
# google/certificate-transparency merkle_tree_test and Trillian. Leaf numbers in
# the inclusion vectors below are converted from that file's 1-based to 0-based.
h = bytes.fromhex
LEAF_INPUTS = [h(""), h("00"), h("10"), h("2021"), h("3031"), h("40414243"),
               h("5051525354555657"), h("606162636465666768696a6b6c6d6e6f")]
ROOTS = [  # index = tree size
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
LEAF_HASHES_VECTOR = [
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
    h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
    h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
    h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
    h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
]
INCLUSION = [  # (0-based leaf index, tree size, proof)
    (0, 1, []),
    (0, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (5, 8, [h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (1, 5, [h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
]
CONSISTENCY = [  # (size1, size2, proof)
    (1, 1, []),
    (1, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (6, 8, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 5, [h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
    (6, 7, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
]
# CompactTrees(): frontier after 7 leaves = {NodeHashes[2][0], [1][2], [0][6]}; after 8 = {[3][0]}.
COMPACT_8 = h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
COMPACT_7 = [h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
             h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
             h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f")]

LEAVES = [leaf_hash(d) for d in LEAF_INPUTS]


def test_leaf_and_node_hash_domain_separation() -> None:
    assert LEAVES == LEAF_HASHES_VECTOR
    assert node_hash(LEAVES[0], LEAVES[1]) == ROOTS[2]
    assert EMPTY_ROOT == ROOTS[0] == root_of([]) == MerkleAccumulator().root()


@pytest.mark.parametrize("size", range(0, 9))
def test_roots_for_every_size(size: int) -> None:
    assert root_of(LEAVES[:size]) == ROOTS[size]
    assert tree_head(LEAF_INPUTS[:size]) == ROOTS[size]
    acc = MerkleAccumulator()
    for leaf in LEAVES[:size]:
        acc.append(leaf)
    assert acc.root() == ROOTS[size]
    # the frontier alone restores the state
    assert MerkleAccumulator(acc.size, acc.frontier).root() == ROOTS[size]


def test_compact_range_vectors() -> None:
    acc = MerkleAccumulator()
    acc.extend(LEAVES[:7])
    assert acc.frontier == COMPACT_7
    acc.append(LEAVES[7])
    assert acc.frontier == [COMPACT_8]


@pytest.mark.parametrize("index,size,proof", INCLUSION)
def test_inclusion_vectors(index: int, size: int, proof: list[bytes]) -> None:
    assert inclusion_proof(index, size, LeafList(LEAVES)) == proof
    assert verify_inclusion(index, size, LEAVES[index], proof, ROOTS[size])
    # corruptions from the same upstream test: wrong index, size, leaf, root, extra/missing parts
    assert not verify_inclusion(index + 1, size, LEAVES[index], proof, ROOTS[size])
    assert not verify_inclusion(index, size * 2, LEAVES[index], proof, ROOTS[size])
    assert not verify_inclusion(index, size, leaf_hash(b"WrongLeaf"), proof, ROOTS[size])
    assert not verify_inclusion(index, size, LEAVES[index], proof, EMPTY_ROOT)
    assert not verify_inclusion(index, size, LEAVES[index], proof + [ROOTS[size]], ROOTS[size])
    assert not verify_inclusion(index, size, LEAVES[index], [ROOTS[size]] + proof, ROOTS[size])
    if proof:
        assert not verify_inclusion(index, size, LEAVES[index], proof[:-1], ROOTS[size])
        for i in range(len(proof)):
            bad = list(proof)
            bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
            assert not verify_inclusion(index, size, LEAVES[index], bad, ROOTS[size])


@pytest.mark.parametrize("size1,size2,proof", CONSISTENCY)
def test_consistency_vectors(size1: int, size2: int, proof: list[bytes]) -> None:
    assert consistency_proof(size1, size2, LeafList(LEAVES)) == proof
    r1, r2 = ROOTS[size1], ROOTS[size2]
    assert verify_consistency(size1, size2, r1, r2, proof)
    if proof:
        assert not verify_consistency(size1, size2, r2, r1, proof)
        assert not verify_consistency(size1 - 1, size2, r1, r2, proof)
        assert not verify_consistency(size1 + 1, size2, r1, r2, proof)
        assert not verify_consistency(size1, size2 * 2, r1, r2, proof)
        assert not verify_consistency(size1, size2, r1, r2, [])
        assert not verify_consistency(size1, size2, r1, r2, proof + [r1])
        assert not verify_consistency(size1, size2, r1, r2, [proof[0]] + proof)
        assert not verify_consistency(size1, size2, r1, r2, proof[:-1])
        for i in range(len(proof)):
            bad = list(proof)
            bad[i] = bytes([bad[i][0] ^ 16]) + bad[i][1:]
            assert not verify_consistency(size1, size2, r1, r2, bad)


def test_consistency_edge_cases() -> None:
    a, b = b"a" * 32, b"b" * 32
    assert verify_consistency(0, 0, a, a, [])
    assert verify_consistency(0, 1, a, b, [])
    assert not verify_consistency(1, 1, a, b, [])
    assert not verify_consistency(2, 1, a, b, [])
    assert not verify_consistency(1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    with pytest.raises(ProofError):
        inclusion_proof(8, 8, LeafList(LEAVES))
    with pytest.raises(ProofError):
        consistency_proof(5, 4, LeafList(LEAVES))


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 300), data=st.data())
def test_every_inclusion_proof_verifies(size: int, data: st.DataObject) -> None:
    leaves = _leaves(size)
    root = root_of(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(index, size, LeafList(leaves))
    assert verify_inclusion(index, size, leaves[index], proof, root)
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = list(proof)
        bad[i] = bytes(b ^ (1 << (bit % 8)) if j == bit // 8 else b for j, b in enumerate(bad[i]))
        assert not verify_inclusion(index, size, leaves[index], bad, root)
    flipped = bytes([leaves[index][0] ^ 1]) + leaves[index][1:]
    assert not verify_inclusion(index, size, flipped, proof, root)


@settings(max_examples=60, deadline=None)
@given(size2=st.integers(1, 300), data=st.data())
def test_every_consistency_proof_verifies(size2: int, data: st.DataObject) -> None:
    leaves = _leaves(size2)
    size1 = data.draw(st.integers(1, size2))
    r1, r2 = root_of(leaves[:size1]), root_of(leaves)
    proof = consistency_proof(size1, size2, LeafList(leaves))
    assert verify_consistency(size1, size2, r1, r2, proof)
    # the writer's way: previous frontier + new batch gives the same proof
    prev = MerkleAccumulator()
    prev.extend(leaves[:size1])
    assert consistency_proof(size1, size2, FrontierAndBatch(prev, leaves[size1:])) == proof
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 0x80]) + bad[i][1:]
        assert not verify_consistency(size1, size2, r1, r2, bad)
    if size1 < size2:
        rewritten = list(leaves)
        rewritten[data.draw(st.integers(0, size1 - 1))] = leaf_hash(b"rewritten")
        assert not verify_consistency(size1, size2, root_of(rewritten[:size1]), r2, proof)


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 200), min_size=1, max_size=6))
def test_accumulator_matches_root_at_every_size(sizes: list[int]) -> None:
    leaves = _leaves(sum(sizes))
    acc = MerkleAccumulator()
    done = 0
    for n in sizes:
        acc.extend(leaves[done : done + n])
        done += n
        assert acc.root() == root_of(leaves[:done])
        assert len(acc.frontier) <= done.bit_length()


def test_leaf_file_source(tmp_path) -> None:
    leaves = _leaves(1000)
    path = tmp_path / "leaves.bin"
    path.write_bytes(b"".join(leaves))
    src = LeafFile(path)
    LeafFile.CHUNK = 64  # exercise chunking
    try:
        assert src.subtree(0, 1000) == root_of(leaves)
        for index in (0, 1, 511, 512, 999):
            proof = inclusion_proof(index, 1000, src)
            assert proof == inclusion_proof(index, 1000, LeafList(leaves))
            assert verify_inclusion(index, 1000, leaves[index], proof, root_of(leaves))
        assert consistency_proof(300, 1000, src) == consistency_proof(300, 1000, LeafList(leaves))
    finally:
        LeafFile.CHUNK = 1 << 16
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
