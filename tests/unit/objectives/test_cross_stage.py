"""Criteria that read another stage of the chain (evaluate.metrics.r2) or the previous release
(previous.test.metrics.r2): absent stages and an absent predecessor fail, never pass or crash."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mlspec_attest.errors import InputError
from mlspec_attest.objectives.criteria import Objectives, PreviousRelease, evaluate

BASE: dict[str, Any] = {
    "version": 1, "project": "ridge", "revision": 1,
    "outputs": {"task": "regression", "range": {"min": 0.0, "max": None}},
    "errors": [{"name": "overestimate", "handling": "reviewed"}],
    "criteria": [],
}


def objectives(*criteria: dict[str, Any]) -> Objectives:
    data = copy.deepcopy(BASE)
    data["criteria"] = [{"description": "d", **c} for c in criteria]
    return Objectives.from_dict(data)


CHAIN = {"evaluate": {"metrics": {"r2": 0.70}}, "test": {"metrics": {"r2": 0.69}}}


def test_a_test_criterion_reads_evaluate_by_name() -> None:
    """The issue's case: evaluate.metrics.r2 in a test criterion (was: unknown variable 'evaluate')."""
    obj = objectives({"name": "close", "stage": "test", "expression": "metrics.r2 >= evaluate.metrics.r2 - 0.02"},
                     {"name": "far", "stage": "test", "expression": "metrics.r2 >= evaluate.metrics.r2"})
    close, far = evaluate(obj, CHAIN)
    assert close.passed and close.values == {"metrics.r2": 0.69, "evaluate.metrics.r2": 0.70}
    assert not far.passed


def test_a_stage_not_in_the_chain_is_a_clear_failure() -> None:
    obj = objectives({"name": "c", "stage": "test", "expression": "metrics.r2 >= analyze.metrics.r2"})
    (result,) = evaluate(obj, CHAIN)
    assert not result.passed and "stage 'analyze' is not in the chain" in result.message


def test_previous_without_a_predecessor_fails_closed() -> None:
    obj = objectives({"name": "champion", "stage": "test",
                      "expression": "test.metrics.r2 >= previous.test.metrics.r2 - 0.01"})
    (none,) = evaluate(obj, CHAIN)
    assert not none.passed and "previous" in none.message
    (unverified,) = evaluate(obj, CHAIN, PreviousRelease(reason="the declared predecessor release did not verify"))
    assert not unverified.passed and "did not verify" in unverified.message
    (first,) = evaluate(obj, CHAIN, PreviousRelease(first_release=True, reason="first release"))
    assert not first.passed and "first_release: pass" in first.message  # default: a first release fails


def test_previous_compares_with_the_predecessor() -> None:
    obj = objectives({"name": "champion", "stage": "test",
                      "expression": "test.metrics.r2 >= previous.test.metrics.r2 - 0.01"})
    (better,) = evaluate(obj, CHAIN, PreviousRelease(metadata={"test": {"metrics": {"r2": 0.695}}}))
    assert better.passed and better.values["previous.test.metrics.r2"] == 0.695
    (worse,) = evaluate(obj, CHAIN, PreviousRelease(metadata={"test": {"metrics": {"r2": 0.75}}}))
    assert not worse.passed
    (gone,) = evaluate(obj, CHAIN, PreviousRelease(metadata={"evaluate": {"metrics": {"r2": 0.7}}}))
    assert not gone.passed and "not in the predecessor release's chain" in gone.message


def test_first_release_pass_applies_only_to_an_established_first_release() -> None:
    obj = objectives({"name": "champion", "stage": "test", "first_release": "pass",
                      "expression": "test.metrics.r2 >= previous.test.metrics.r2 - 0.01"})
    (first,) = evaluate(obj, CHAIN, PreviousRelease(first_release=True))
    assert first.passed and "first release" in first.message
    (unknown,) = evaluate(obj, CHAIN, PreviousRelease(reason="no release history was given"))
    assert not unknown.passed
    assert Objectives.from_dict(obj.to_dict()).criteria[0].first_release == "pass"  # round-trips


@pytest.mark.parametrize("criterion,problem", [
    ({"expression": "!has(previous.test) || test.metrics.r2 >= previous.test.metrics.r2"}, "checks nothing"),
    ({"expression": "metrics.r2 >= 0.5", "first_release": "pass"}, "does not read previous"),
    ({"expression": "metrics.r2 >= previous.test.metrics.r2", "first_release": "maybe"}, "'fail' or 'pass'"),
    ({"expression": "metrics.r2 >= nosuchstage.metrics.r2"}, "unknown variable"),
])
def test_refused_when_checked(criterion: dict[str, Any], problem: str) -> None:
    """A has(previous...) escape is vacuous (true when nothing was attested): first_release says it instead."""
    with pytest.raises(InputError, match=problem):
        objectives({"name": "c", "stage": "test", **criterion}).compile_all()
