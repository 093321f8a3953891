"""CEL number semantics: bool and string are never numbers; quantifiers over nothing prove nothing."""

from __future__ import annotations

from typing import Any

import pytest

from mlspec_attest.objectives.cel import compile_expression, evaluate_expression, vacuity_notes

VARS = ("metrics", "slices")


def run(expr: str, **bindings: Any) -> Any:
    return evaluate_expression(compile_expression(expr, VARS), bindings)


@pytest.mark.parametrize("expr, value", [
    ("metrics.accuracy >= 0.82", True),
    ("metrics.accuracy > 0", True),
    ("metrics.accuracy == 1", True),
    ("metrics.accuracy != 0", True),
    ("metrics.accuracy <= 1.0", False),
    ("metrics.accuracy + 0.5 > 1.0", True),
    ("metrics.accuracy * 2 >= 0", True),
    ("metrics.accuracy >= 0.82", "0.95"),
    ("metrics.accuracy == 0.95", "0.95"),
])
def test_bool_and_string_never_compare_as_numbers(expr: str, value: Any) -> None:
    outcome = run(expr, metrics={"accuracy": value})
    assert outcome.error is not None and "never numbers" in outcome.error or "not a number" in outcome.error
    assert outcome.refusals


def test_a_refusal_is_not_absorbed_by_or() -> None:
    outcome = run("metrics.accuracy >= 0.82 || true", metrics={"accuracy": True})
    assert outcome.error is not None and outcome.refusals


@pytest.mark.parametrize("expr, bindings, expected", [
    ("metrics.accuracy >= 0.82", {"metrics": {"accuracy": 1}}, True),  # RFC 8785 writes 1.0 as 1
    ("metrics.accuracy >= 0.82", {"metrics": {"accuracy": 0.81}}, False),
    ("metrics.ok == true", {"metrics": {"ok": True}}, True),
    ("metrics.name == 'x'", {"metrics": {"name": "x"}}, True),
    ("true && metrics.accuracy > 0.5", {"metrics": {"accuracy": 0.9}}, True),
])
def test_same_kind_comparisons_still_work(expr: str, bindings: dict[str, Any], expected: bool) -> None:
    outcome = run(expr, **bindings)
    assert outcome.error is None and bool(outcome.value) is expected


@pytest.mark.parametrize("expr, slices", [
    ('max_gap(slices.group, "recall") < 0.1', {"group": {"a": {"recall": 0.5}}}),
    ('min(slices.group, "recall") > 0.1', {"group": {"a": {"recall": 0.5}}}),
    ('max(slices.group, "recall") < 0.9', {"group": {"a": {"recall": 0.5}}}),
    ('max_gap(slices.group, "recall") < 0.1', {"group": {}}),
    ("slices.group.all(g, slices.group[g].recall > 0.1)", {"group": {}}),
    ("slices.list.all(x, x > 0)", {"list": []}),
    ("slices.group.filter(g, slices.group[g].recall < 0.5).size() == 0", {"group": {}}),
    ("slices.list.map(x, x * 2).size() == 0", {"list": []}),
])
def test_vacuous_inputs_fail(expr: str, slices: dict[str, Any]) -> None:
    outcome = run(expr, slices=slices)
    assert outcome.error is not None and outcome.refusals


def test_two_slices_and_non_empty_all_pass() -> None:
    two = {"group": {"a": {"recall": 0.5}, "b": {"recall": 0.55}}}
    assert bool(run('max_gap(slices.group, "recall") < 0.1', slices=two).value)
    assert bool(run("slices.group.all(g, slices.group[g].recall > 0.1)", slices=two).value)
    assert bool(run("min(1, 2) == 1", slices={}).value)  # plain numbers: not a slice comparison


def test_vacuity_notes_name_the_helpers() -> None:
    ast = compile_expression('max_gap(slices.g, "r") < 0.1 && slices.l.all(x, x > 0) && min(1, 2) > 0', VARS)
    notes = vacuity_notes(ast)
    assert len(notes) == 2
    assert any(n.startswith("max_gap()") for n in notes) and any(n.startswith("all()") for n in notes)


@pytest.mark.parametrize("expr, metrics", [
    ("metrics.a in [1, 2]", {"a": True}),
    ("metrics.l == [1]", {"l": [True]}),
    ("metrics.l != [1]", {"l": [True]}),
    ('metrics.m == {"a": 1}', {"m": {"a": True}}),
])
def test_membership_and_container_equality_do_not_coerce(expr: str, metrics: dict[str, Any]) -> None:
    outcome = run(expr, metrics=metrics)
    assert outcome.error is not None and outcome.refusals


@pytest.mark.parametrize("expr, metrics", [
    ("metrics.a in [1, 2]", {"a": 1}), ("metrics.l == [1, true]", {"l": [1, True]}),
    ('"x" in metrics.l', {"l": ["x"]}), ("metrics.l != [2]", {"l": [1]}),
])
def test_membership_and_container_equality_still_work(expr: str, metrics: dict[str, Any]) -> None:
    outcome = run(expr, metrics=metrics)
    assert outcome.error is None and bool(outcome.value) is True
