"""The adversarial review of the CEL tree cache (objectives/cel.py "tree cache"), kept as tests.

Found and fixed: every new text re-pickled every cached tree (quadratic: 16 criteria of 8 KiB
pickled 136 MiB per run, again on the next run), a crashed writer's pid-named temp file
blocked saving for good, and a short write was not retried. Shown to hold: a cached tree
means what a fresh parse means (27 texts: refusals with positions, values, reads, missing
paths, vacuity notes), deep trees and truncated files are handled. Not kept in a cached
tree: lark's token end positions (``Token.__reduce__`` drops them); nothing reads them.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from chain_harness import fresh_cel_process

from mlspec_attest.errors import ExpressionError

VARS = ["metrics", "slices", "run", "subject", "metadata", "previous"]


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    return fresh_cel_process(monkeypatch, tmp_path)


def _big(i: int, n: int = 8192) -> str:
    s = f"size([metrics.a{i}"
    k = 0
    while len(s) + 20 < n:
        s += f", metrics.x{k}"
        k += 1
    return s + "]) > 0"


def _count_pickled(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from mlspec_attest.objectives import cel

    sizes: list[int] = []
    real = pickle.dumps

    class P:
        @staticmethod
        def dumps(obj, protocol=None):
            data = real(obj, protocol=protocol)
            sizes.append(len(data))
            return data

    monkeypatch.setattr(cel, "pickle", type("M", (), {"dumps": P.dumps, "Unpickler": pickle.Unpickler,
                                                      "UnpicklingError": pickle.UnpicklingError}))
    return sizes


def test_c1_a_new_text_does_not_repickle_the_cache(fresh, monkeypatch: pytest.MonkeyPatch) -> None:
    """Role 2/3 (objectives or policy author): N distinct max-size criteria must cost about N trees
    of pickling, not N squared (each new text used to re-pickle every cached tree)."""
    from mlspec_attest.objectives import cel

    sizes = _count_pickled(monkeypatch)
    n = 16
    per_compile: list[int] = []
    for i in range(n):
        before = sum(sizes)
        cel.compile_expression(_big(i), VARS)
        per_compile.append(sum(sizes) - before)
    total = sum(per_compile)
    assert total < 4 * n * per_compile[0]
    # a second "process": the file holds only the newest few; the others are parsed and re-pickled again
    fresh()
    sizes.clear()
    for i in range(n):
        cel.compile_expression(_big(i), VARS)
    one = per_compile[0]
    assert per_compile[-1] < 4 * one, f"the {n}th compile pickled {per_compile[-1] / one:.1f}x one tree"
    assert sum(sizes) < 2 * total  # the second run costs no more than the first


def test_c1b_same_with_cache_disabled_pickles_nothing(fresh, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlspec_attest.objectives import cel

    monkeypatch.setenv("MLSPEC_CEL_CACHE", "0")
    sizes = _count_pickled(monkeypatch)
    for i in range(8):
        cel.compile_expression(_big(i), VARS)
    assert sum(sizes) == 0


TRICKY = [
    "metrics.accuracy >= 0.85",
    "metrics.accuracy >= 0.85 // a comment\n&& true",
    "\n\n   metrics.f1 > 0.9 || true",
    'metadata.name == "caf\u00e9" && metadata["\u00e9t\u00e9"] == 1',
    'metadata.x == "\ud800"',  # a lone surrogate inside a string literal
    "metadata.x == b'\\xff\\x00'",
    "true && false || !true",
    "slices.group.all(g, slices.group[g].recall > 0.5)",
    "max_gap(slices.group, 'recall') < 0.1",
    "has(metrics.f1) ? metrics.f1 > 0.5 : metrics.accuracy > 0.5",
    "metrics.a + 1 == 2.0 && -metrics.b < 0u",
    "[1, 2, 3].exists(x, x == metrics.n)",
    "{'a': 1}.a == 1",
    "metadata.z.filter(v, v > 1).size() == 0",
    "dyn(metrics.a) == 1",
    "type(metrics.a) == double",
    "(" * 30 + "metrics.a" + ")" * 30 + " > 0",
]
BAD = [
    "metrics.accuracy >=", "foo.bar > 1", "metrics.x.min(1) > 0", "nope(metrics.a)", "metrics.a >= 0.85 &&\n  unknown > 1",
    "'\ud800' == x", "metrics.a ==== 1", "1 +", "a.b.c(" , "(" * 200 + "1" + ")" * 200,
]
BINDINGS = [
    {"metrics": {"accuracy": 0.9, "f1": 0.95, "a": 1.0, "b": 2, "n": 2},
     "metadata": {"name": "caf\u00e9", "\u00e9t\u00e9": 1, "x": "\ud800", "z": [0]},
     "slices": {"group": {"a": {"recall": 0.6}, "b": {"recall": 0.7}}}},
    {"metrics": {"accuracy": 0.5}, "metadata": {}, "slices": {"group": {"a": {"recall": 0.1}}}},
]


def _positions(tree) -> list:
    import lark

    out = []
    for node in tree.iter_subtrees():
        m = node._meta
        out.append((str(node.data), None if m is None else sorted(vars(m).items())))
        for c in node.children:
            if isinstance(c, lark.Token):
                out.append((c.type, str(c), c.line, c.column, c.start_pos))
    return out


def _outcome(text: str):
    from mlspec_attest.objectives import cel

    try:
        tree = cel.compile_expression(text, VARS)
    except ExpressionError as exc:
        return ("refused", exc.reason, exc.line, exc.column)
    evals = []
    for b in BINDINGS:
        e = cel.evaluate_expression(tree, b)
        evals.append((repr(e.value), e.error, e.reads, e.missing, e.refusals))
    return ("tree", tree, _positions(tree), evals, cel.vacuity_notes(tree))


@pytest.mark.parametrize("text", TRICKY + BAD)
def test_c2_cached_tree_means_what_a_fresh_parse_means(fresh, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """Role 3: a text whose cached tree differs from its fresh parse (positions, refusals, reads)."""
    from mlspec_attest.objectives import cel

    monkeypatch.setenv("MLSPEC_CEL_CACHE", "0")
    uncached = _outcome(text)
    monkeypatch.delenv("MLSPEC_CEL_CACHE")
    fresh()
    first = _outcome(text)  # parsed and saved
    fresh()
    cached = _outcome(text)  # from the file
    if uncached[0] == "tree":
        assert cel._load_trees(), "not cached"
    assert uncached == first == cached


def test_c2b_a_cached_tree_keeps_every_position_a_refusal_or_report_reads(fresh) -> None:
    """Token start positions (what ExpressionError and the static checks report) survive the cache;
    lark does not pickle end positions, which neither celpy nor mlspec reads."""
    from mlspec_attest.objectives import cel

    text = "metrics.accuracy >= 0.85 &&\n  metrics.f1 > 0.5"
    a = cel.compile_expression(text, VARS)
    fresh()
    b = cel.compile_expression(text, VARS)
    ta = list(a.scan_values(lambda v: True))
    tb = list(b.scan_values(lambda v: True))
    assert [(t.type, str(t), t.line, t.column, t.start_pos) for t in ta] == \
        [(t.type, str(t), t.line, t.column, t.start_pos) for t in tb]


def test_c3_a_deep_tree_does_not_stop_later_saves(fresh) -> None:
    """Role 3: one criterion near the depth limit, then another: both are cached."""
    import sys

    from mlspec_attest.objectives import cel

    deep = "(" * 37 + "metrics.a" + ")" * 37 + " > 0"
    t = cel.compile_expression(deep, VARS)
    assert cel._depth(t) <= cel.MAX_TREE_DEPTH and sys.getrecursionlimit() >= 1000
    cel.compile_expression("metrics.later > 1", VARS)
    fresh()
    assert len(cel._load_trees()) == 2


def test_c5_a_stale_temp_file_of_this_pid_does_not_block_saving(fresh, monkeypatch: pytest.MonkeyPatch) -> None:
    """A temp left by a crashed process with the same pid (pid 1 in every container) must not block saves."""
    from mlspec_attest.objectives import cel

    d = Path(os.environ["MLSPEC_CACHE_DIR"])
    d.mkdir(mode=0o700)
    (d / f".{cel._TREES_FILE}.{os.getpid()}.tmp").write_bytes(b"left by a crash")
    cel.compile_expression("metrics.a > 1", VARS)
    assert (d / cel._TREES_FILE).exists(), "never saved while the stale temp exists"


def test_c6_truncated_file_after_a_short_write_is_ignored(fresh) -> None:
    """A full disk: the file cut mid-pickle (as an unchecked short os.write leaves it) must be ignored."""
    from mlspec_attest.objectives import cel

    cel.compile_expression("metrics.a > 1", VARS)
    p = Path(os.environ["MLSPEC_CACHE_DIR"]) / cel._TREES_FILE
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    fresh()
    tree = cel.compile_expression("metrics.a > 1", VARS)
    assert bool(cel.evaluate_expression(tree, {"metrics": {"a": 2}}).value) is True
    assert bool(cel.evaluate_expression(tree, {"metrics": {"a": 0}}).value) is False
