"""Compiled CEL is cached on disk (issue #19 item 2): the same trees, never a stale or foreign one.

A process whose criteria were all parsed before loads their trees from the private cache
and never loads celpy's parser (nor builds its lexer). What must hold:

* a cached tree equals celpy's own parse of the text, and evaluates alike;
* the variable-name check runs on every compile, cached tree or not;
* a text that does not parse is never cached: its refusal keeps its position;
* the file is read only when it is ours, 0600, not a symlink, keyed by this grammar, and
  unpickled by an allow-list: a planted ``os.system`` payload never runs.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from chain_harness import fresh_cel_process

from mlspec_attest.errors import ExpressionError

TEXTS = ["metrics.accuracy >= 0.85 && has(metrics.f1)", "max_gap(slices.group, 'recall') < 0.1",
         "run.lockfiles.exists(l, l.name == \"uv.lock\")", "size(subject) > 0 ? metadata.x : 1.5e3"]
VARIABLES = ["metrics", "slices", "run", "subject", "metadata"]


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    return fresh_cel_process(monkeypatch, tmp_path)


def test_cached_trees_equal_celpys_parse_and_need_no_parser(fresh) -> None:
    import celpy
    from celpy.celparser import CELParser

    from mlspec_attest.objectives import cel

    first = [cel.compile_expression(t, VARIABLES) for t in TEXTS]
    trees_file = Path(os.environ["MLSPEC_CACHE_DIR"]) / cel._TREES_FILE
    assert trees_file.is_file() and (trees_file.stat().st_mode & 0o777) == 0o600
    fresh()  # a new process
    again = [cel.compile_expression(t, VARIABLES) for t in TEXTS]
    assert again == first
    binding = {"metrics": {"accuracy": 0.9, "f1": 0.5}}
    assert bool(cel.evaluate_expression(again[0], binding).value) is True
    assert bool(cel.evaluate_expression(again[0], {"metrics": {"accuracy": 0.8, "f1": 0.5}}).value) is False
    assert isinstance(CELParser.CEL_PARSER, cel._ParserOnDemand)  # compiled and evaluated: no parser loaded
    assert again == [celpy.Environment().compile(t) for t in TEXTS]  # celpy's own parse (now loads one)


def test_names_are_checked_on_every_compile_of_a_cached_tree(fresh) -> None:
    from mlspec_attest.objectives import cel

    cel.compile_expression(TEXTS[0], ["metrics"])
    fresh()
    with pytest.raises(ExpressionError, match="metrics"):
        cel.compile_expression(TEXTS[0], ["metadata"])


def test_a_text_that_does_not_parse_is_never_cached(fresh) -> None:
    from mlspec_attest.objectives import cel

    for _ in range(2):
        with pytest.raises(ExpressionError) as refused:
            cel.compile_expression("metrics.accuracy >=", ["metrics"])
        assert refused.value.column is not None and "end of expression" in refused.value.reason
        fresh()
    assert not (Path(os.environ["MLSPEC_CACHE_DIR"]) / cel._TREES_FILE).exists()


def _planted(cel, tmp_path: Path) -> tuple[Path, bytes]:
    cel.compile_expression(TEXTS[0], VARIABLES)
    path = Path(os.environ["MLSPEC_CACHE_DIR"]) / cel._TREES_FILE
    return path, path.read_bytes().split(b"\n", 1)[0]


def test_a_planted_payload_never_runs(fresh, tmp_path: Path) -> None:
    """Attack: a file in the cache that would run a command when unpickled."""
    from mlspec_attest.objectives import cel

    path, key = _planted(cel, tmp_path)

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    import hashlib

    digest = hashlib.sha256(TEXTS[0].encode()).hexdigest()
    for planted in ({"x": Boom()}, {digest: pickle.dumps(Boom())}):  # in the index, or as the tree
        path.write_bytes(key + b"\n" + pickle.dumps(planted))
        fresh()
        tree = cel.compile_expression(TEXTS[0], VARIABLES)  # parsed again instead
        assert not (tmp_path / "pwned").exists()
        assert bool(cel.evaluate_expression(tree, {"metrics": {"accuracy": 0.9, "f1": 0.5}}).value) is True


@pytest.mark.parametrize("how", ["other-key", "group-readable", "symlink", "not-a-dict", "not-trees"])
def test_a_file_that_is_not_ours_or_not_this_grammars_is_ignored(fresh, tmp_path: Path, how: str) -> None:
    """Attack: a tree for this text planted in a file the cache must not trust; the criterion must
    still mean what its text says (here: a planted tree of ``true`` for a strict criterion)."""
    from mlspec_attest.objectives import cel

    path, key = _planted(cel, tmp_path)
    import hashlib

    digest = hashlib.sha256(TEXTS[0].encode()).hexdigest()
    lax = cel.compile_expression("true", [])
    body = pickle.dumps({digest: pickle.dumps(lax)})
    if how == "other-key":
        path.write_bytes(b"another grammar\n" + body)
    elif how == "group-readable":
        path.write_bytes(key + b"\n" + body)
        path.chmod(0o640)
    elif how == "symlink":
        elsewhere = tmp_path / "elsewhere.pickle"
        elsewhere.write_bytes(key + b"\n" + body)
        elsewhere.chmod(0o600)
        path.unlink()
        path.symlink_to(elsewhere)
    elif how == "not-a-dict":
        path.write_bytes(key + b"\n" + pickle.dumps([pickle.dumps(lax)]))
    else:
        path.write_bytes(key + b"\n" + pickle.dumps({digest: pickle.dumps("true")}))
    fresh()
    tree = cel.compile_expression(TEXTS[0], VARIABLES)
    assert tree != lax
    assert bool(cel.evaluate_expression(tree, {"metrics": {"accuracy": 0.1, "f1": 0.5}}).value) is False


def test_no_cache_when_disabled(fresh, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlspec_attest.objectives import cel

    monkeypatch.setenv("MLSPEC_CEL_CACHE", "0")
    cel.compile_expression(TEXTS[1], VARIABLES)
    assert not Path(os.environ["MLSPEC_CACHE_DIR"]).exists()


def test_each_tree_is_pickled_once_whatever_the_cache_holds(fresh, monkeypatch: pytest.MonkeyPatch) -> None:
    """The review's slowdown: every new text re-pickled every cached tree (16 criteria of 8 KiB:
    136 MiB pickled per run). Each tree is now pickled when parsed, and a huge one not cached."""
    import lark

    from mlspec_attest.objectives import cel

    trees_pickled: list[int] = []
    real_dumps = pickle.dumps

    def counting(value, *args, **kwargs):
        out = real_dumps(value, *args, **kwargs)
        if isinstance(value, lark.Tree):
            trees_pickled.append(len(out))
        return out

    monkeypatch.setattr(cel.pickle, "dumps", counting)
    texts = [f"metrics.m{i} >= 0.5 && [{', '.join(str(j) for j in range(20))}].size() == 20" for i in range(16)]
    for text in texts:
        cel.compile_expression(text, ["metrics"])
    assert len(trees_pickled) == 16 and max(trees_pickled) <= cel._TREE_MAX_BYTES
    huge = "[" + ",".join("1" * 4000) + "].size() > 0"  # under the 8192-character limit, a large tree
    cel.compile_expression(huge, [])
    fresh()
    assert len(cel._load_trees()) == 16  # the huge tree (over 64 KiB pickled) was not kept
    assert all(cel.compile_expression(t, ["metrics"]) for t in texts)
    assert len(trees_pickled) == 17  # nothing re-pickled when read back


def test_a_leftover_temp_file_does_not_block_saving(fresh) -> None:
    """A crashed writer's temporary file (same pid in a container) must not stop later saves."""
    from mlspec_attest.objectives import cel

    cache = Path(os.environ["MLSPEC_CACHE_DIR"])
    cache.mkdir(mode=0o700)
    (cache / f".{cel._TREES_FILE}.{os.getpid()}.tmp").write_bytes(b"left by a crash")
    cel.compile_expression(TEXTS[0], VARIABLES)
    assert (cache / cel._TREES_FILE).is_file()


def test_nothing_is_pickled_when_the_cache_directory_is_not_private(fresh, monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    """A shared (0755) cache directory is never used, and no tree is pickled for it either."""
    import lark

    from mlspec_attest.objectives import cel

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    monkeypatch.setenv("MLSPEC_CACHE_DIR", str(shared))
    pickled: list[object] = []
    real_dumps = pickle.dumps
    monkeypatch.setattr(cel.pickle, "dumps", lambda v, *a, **k: (pickled.append(v), real_dumps(v, *a, **k))[1])
    tree = cel.compile_expression(TEXTS[0], VARIABLES)
    assert isinstance(tree, lark.Tree) and not [v for v in pickled if isinstance(v, lark.Tree)]
    assert list(shared.iterdir()) == []
