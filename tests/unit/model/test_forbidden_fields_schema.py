"""The monitor schema's forbidden fields, written as ``properties`` of ``false`` for speed, judge
exactly what the former ``not: {anyOf: [{required: [name]}...]}`` judged.

Why this matters: the cheaper form must not be a walk-around. A stage runner who signs request
fields as monitor metadata must be refused under both forms, and valid monitor metadata must
pass under both; hypothesis draws key sets from the forbidden names, the allowed fields and
arbitrary names, with arbitrary values.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from mlspec_attest.errors import InputError
from mlspec_attest.model.metadata import _load_schema, validate_metadata

NEW = _load_schema("monitor")
CLAUSE = NEW["allOf"][0]
FORBIDDEN = list(CLAUSE["properties"])


def _former_schema() -> dict[str, Any]:
    """The schema as it was written before: one ``required`` branch per forbidden name."""
    old = copy.deepcopy(NEW)
    del old["allOf"]
    branches: list[dict[str, Any]] = []
    for name, rule in CLAUSE["properties"].items():
        if rule is False:
            branches.append({"required": [name]})
        else:  # {"not": X}: forbidden when present and X holds
            branches.append({"required": [name], "properties": {name: rule["not"]}})
    old["not"] = {"description": CLAUSE["description"], "anyOf": branches}
    return old


FORMER = Draft202012Validator(_former_schema())
CURRENT = Draft202012Validator(NEW)
GOOD = {"signals": {"latency_p99_ms": 12.0}, "rollback_target": {"name": "pkg", "digest": {"sha256": "0" * 64}}}
values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.just("ground_truth"),
                      lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner, max_size=2),
                      max_leaves=4)
keys = st.sampled_from(FORBIDDEN + ["signals", "thresholds", "rollback_target", "window"]) | st.text(max_size=8)


def test_the_clause_names_every_record_field_it_did_before() -> None:
    assert len(FORBIDDEN) == 37 and "requestId" in FORBIDDEN and CLAUSE["properties"]["type"] == {
        "not": {"const": "ground_truth"}}


@settings(max_examples=400, deadline=None)
@given(extra=st.dictionaries(keys, values, max_size=4), base=st.sampled_from([GOOD, {}, {"signals": {}}]))
def test_same_verdict_as_the_former_form(extra: dict[str, Any], base: dict[str, Any]) -> None:
    document = {**base, **extra}
    assert CURRENT.is_valid(document) == FORMER.is_valid(document)


def test_each_forbidden_field_is_refused_with_its_name() -> None:
    for name, rule in CLAUSE["properties"].items():
        value = "ground_truth" if rule is not False else {"x": 1}
        with pytest.raises(InputError, match=f"holds {re.escape(repr(name))}: .*mlspec log append"):
            validate_metadata("monitor", {**GOOD, name: value})
    validate_metadata("monitor", {**GOOD, "type": "drift-report"})  # 'type' is refused only as a record's
