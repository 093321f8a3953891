"""jsonschema-rs decides whether stage metadata fits (model/metadata.py); python-jsonschema explains.

Who could walk around a second validator: a stage runner or key holder who finds a document
one of them accepts and the other refuses, so the attestor and the gate (or this release and
the last) judge differently. The judge is one library everywhere, and this differential test
shows it agrees with python-jsonschema on every stage schema for the documents users write,
the seed's files, documents mutated from them and documents hypothesis draws. The one known
difference (the regex dialect: Python's ``$`` also matches before a trailing newline) is
stricter, and is refused with the judge's own message.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from test_stages_metadata import MINIMAL

from mlspec_attest.errors import InputError
from mlspec_attest.model.metadata import _load_schema, metadata_fits, validate_metadata
from mlspec_attest.model.stages import STAGES

NAMES = [s.name for s in STAGES]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6) | st.sampled_from(["", "0" * 64, "a" * 64, "succeeded", "ground_truth"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)


def _field_names(schema: Any) -> list[str]:
    """Every property name a schema mentions (so drawn documents hit its rules, not only extras)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("properties", "patternProperties"):
                if isinstance(node.get(key), dict):
                    names.update(node[key])
            for key in ("required",):
                if isinstance(node.get(key), list):
                    names.update(n for n in node[key] if isinstance(n, str))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return sorted(names)


def _python(stage: str) -> Draft202012Validator:
    return Draft202012Validator(_load_schema(stage))


@pytest.mark.parametrize("stage", NAMES)
def test_the_minimal_documents_and_their_mutations_agree(stage: str) -> None:
    base = MINIMAL[stage]
    assert metadata_fits(stage, base) and _python(stage).is_valid(base)
    for name in [*base, *_field_names(_load_schema(stage))]:
        for value in (None, True, 0, 1.5, "", "x", [], {}, ["x"], {"x": 1}, "0" * 64):
            document = {**copy.deepcopy(base), name: value}
            assert metadata_fits(stage, document) == _python(stage).is_valid(document), (stage, name, value)
        document = {k: v for k, v in base.items() if k != name}
        assert metadata_fits(stage, document) == _python(stage).is_valid(document), (stage, "without", name)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), stage=st.sampled_from(NAMES))
def test_drawn_documents_agree(data: st.DataObject, stage: str) -> None:
    keys = st.sampled_from(_field_names(_load_schema(stage)) or ["x"]) | st.text(max_size=6)
    document = data.draw(st.dictionaries(keys, json_values, max_size=5))
    if data.draw(st.booleans()):
        document = {**MINIMAL[stage], **document}
    assert metadata_fits(stage, document) == _python(stage).is_valid(document), document


@pytest.mark.parametrize("value", [[1], {"a": 1}, "x", 3, None])
def test_a_document_that_is_not_an_object_is_refused_by_both(value: Any) -> None:
    assert not metadata_fits("train", value) and not _python("train").is_valid(value)


def test_not_json_is_refused_not_crashed() -> None:
    assert not metadata_fits("train", {"framework": "x", 1: 2})
    with pytest.raises(InputError, match="metadata for stage 'train' is not signable JSON"):
        validate_metadata("train", {"framework": b"bytes"})


def test_a_python_pipelines_numpy_numbers_are_judged_as_the_json_they_sign_as() -> None:
    """Found by the review: jsonschema-rs calls a numpy float 'not a number'; it signs as one."""
    import numpy as np

    validate_metadata("evaluate", {"metrics": {"accuracy": np.float64(0.91)}, "dataset": ("a.csv", "b.csv")[0]})
    validate_metadata("transform", {"transformations": ("scale", "clip")})  # a tuple signs as an array
    with pytest.raises(InputError, match="not signable JSON"):
        validate_metadata("evaluate", {"metrics": {"accuracy": np.int64(1)}, "dataset": "a.csv"})


def test_a_huge_refused_document_is_worded_by_the_judge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the review: a bundle holder's 64 MiB refused document took python-jsonschema a minute
    to word (~1 us a byte). Beyond WORDING_NODE_LIMIT values the judge's first error words it."""
    from mlspec_attest.model import metadata as M

    def no_python_wording(*_a: Any) -> Any:
        raise AssertionError("python-jsonschema was asked to word a huge document")

    document = {"signals": {f"s{i}": "x" for i in range(M.WORDING_NODE_LIMIT + 1)},
                "rollback_target": {"name": "m", "digest": {"sha256": "0" * 64}}}
    monkeypatch.setattr(M, "best_error", no_python_wording)
    refusal = M.metadata_refusal("monitor", document)
    assert refusal is not None and refusal.startswith("/signals/s") and "is not of type" in refusal
    small = {"signals": {"s": "x"}, "rollback_target": document["rollback_target"]}
    monkeypatch.undo()
    assert M.metadata_refusal("monitor", small) == "/signals/s: 'x' is not of type 'number'"


def test_the_stricter_regex_is_refused_with_the_judges_message() -> None:
    """A digest with a trailing newline: python-jsonschema's ``re.search`` lets ``$`` match before it."""
    document = {"signals": {"x": 1.0}, "rollback_target": {"name": "m", "digest": {"sha256": "a" * 64 + "\n"}}}
    assert _python("monitor").is_valid(document)  # the dialect difference, shown
    assert not metadata_fits("monitor", document)
    with pytest.raises(InputError, match=r"invalid at /rollback_target/digest/sha256: .*does not match"):
        validate_metadata("monitor", document)
