"""Helpers behind deprecated-data refusal and metadata bound to product files."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlspec_attest.model.metadata import bound_source_problems, contradictions, deprecated_markers, same_json


@pytest.mark.parametrize("metadata, pointers", [
    ({"isDeprecated": True}, ["/isDeprecated"]),
    ({"isDeprecated": False}, []),
    ({"isDeprecated": "false"}, ["/isDeprecated"]),  # only a plain false is current (fail closed)
    ({"datasets": [{"a": 1}, {"isDeprecated": True}]}, ["/datasets/1/isDeprecated"]),
    ({"dataset": {"status": " Deprecated "}}, ["/dataset/status"]),
    ({"rollout": {"status": "succeeded"}}, []),
    ({"sources": [{"name": "a", "deprecated": True}]}, ["/sources/0/deprecated"]),
    ({"deprecated": ["old-column"]}, []),
])
def test_deprecated_markers(metadata: dict[str, Any], pointers: list[str]) -> None:
    assert deprecated_markers(metadata) == pointers


@pytest.mark.parametrize("a, b, same", [
    (1, 1.0, True), (True, 1, False), (False, 0, False), (0.47, 0.47, True), ("1", 1, False),
    ({"a": [1, True]}, {"a": [1, True]}, True), ({"a": [1, True]}, {"a": [1, 1]}, False),
    ({"a": 1}, {"a": 1, "b": 2}, False), (None, None, True),
])
def test_same_json_has_no_python_coercions(a: Any, b: Any, same: bool) -> None:
    assert same_json(a, b) is same


def test_contradictions_point_at_the_changed_leaf() -> None:
    source = {"metrics": {"r2": 0.47, "acc": 0.9}, "note": "x"}
    assert contradictions(source, {**source, "extra": 1}) == []
    assert contradictions(source, {"metrics": {"r2": 0.65, "acc": 0.9}, "note": "x"}) == ["/metrics/r2"]
    assert contradictions(source, {"metrics": {"r2": 0.47, "acc": 0.9, "f1": 1}, "note": "x"}) == ["/metrics/f1"]
    assert contradictions(source, {"metrics": source["metrics"]}) == ["/note"]


def test_bound_source_problems() -> None:
    data = json.dumps({"metrics": {"r2": 0.47}}).encode()
    from mlspec_attest.model.canonical import sha256_hex

    subject = {"name": "r.json", "digest": {"sha256": sha256_hex(data)}}
    source = [dict(subject)]
    blobs = {sha256_hex(data): data}

    def read(digest: str) -> bytes:
        if digest not in blobs:
            raise OSError("absent")
        return blobs[digest]

    assert bound_source_problems({"metrics": {"r2": 0.47}}, [subject], source, read) == ([], [])
    assert bound_source_problems({"metrics": {"r2": 0.65}}, [subject], source, read)[1] == [
        "/metrics/r2 differs from r.json"]
    invalid, _ = bound_source_problems({}, [], source, read)  # not a subject of the statement
    assert invalid and "not a subject" in invalid[0]
    invalid, _ = bound_source_problems({}, [subject], source, lambda d: b"other")
    assert invalid and "differs from the digest" in invalid[0]
    invalid, _ = bound_source_problems({}, [subject], ["junk"], read)
    assert invalid
