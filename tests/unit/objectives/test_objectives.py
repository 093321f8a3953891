"""Objectives file and CEL success criteria (mlspec_attest.objectives.criteria, cel_functions)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlspec_attest.errors import InputError
from mlspec_attest.objectives.criteria import (
    OBJECTIVES_TEMPLATE,
    CriterionResult,
    Objectives,
    check_file,
    evaluate,
    gate_passed,
)

BASE: dict[str, Any] = {
    "version": 1,
    "project": "credit",
    "revision": 1,
    "outputs": {"task": "classification", "labels": ["approve", "deny"]},
    "errors": [{"name": "false_approve", "handling": "manual review near threshold"}],
    "criteria": [
        {
            "name": "test_accuracy",
            "stage": "test",
            "expression": "metrics.accuracy >= 0.85",
            "description": "hold-back accuracy",
        },
    ],
}

EVALUATE_MD: dict[str, Any] = {
    "metrics": {"accuracy": 0.91, "recall": 0.88},
    "slices": {
        "group": {"a": {"recall": 0.86}, "b": {"recall": 0.89}},
        "age": {"18-25": {"recall": 0.80}, "26-99": {"recall": 0.90}},
    },
}


def objectives_with(*criteria: dict[str, Any]) -> Objectives:
    data = copy.deepcopy(BASE)
    data["criteria"] = [
        {"description": "d", **c} for c in criteria
    ]
    return Objectives.from_dict(data, source="objectives.yaml")


def one(criterion: dict[str, Any], metadata_by_stage: dict[str, Any]) -> CriterionResult:
    results = evaluate(objectives_with(criterion), metadata_by_stage)
    assert len(results) == 1
    return results[0]


# --------------------------------------------------------------------------- passing / failing


def test_passing_criteria_report_values_read() -> None:
    objectives = objectives_with(
        {"name": "acc", "stage": "evaluate", "expression": "metrics.accuracy >= 0.85"},
        {"name": "gap", "stage": "evaluate", "expression": 'slices.group.max_gap("recall") <= 0.05'},
        {"name": "worst", "stage": "evaluate", "expression": 'min(slices.group, "recall") >= 0.85'},
        {"name": "t", "stage": "testing", "expression": "metrics.accuracy > 0.8"},
    )
    results = evaluate(objectives, {"evaluate": EVALUATE_MD, "test": {"metrics": {"accuracy": 0.9}}})
    assert [r.passed for r in results] == [True, True, True, True]
    assert gate_passed(results)
    assert results[0].values == {"metrics.accuracy": 0.91}
    assert results[1].values["slices.group.a.recall"] == 0.86
    assert results[1].values["slices.group.b.recall"] == 0.89
    assert results[1].values['max_gap(slices.group, "recall")'] == pytest.approx(0.03)
    assert results[2].values['min(slices.group, "recall")'] == 0.86
    assert results[3].stage == "test"  # alias resolved to the canonical name
    assert all(r.message == "" and r.status == "pass" for r in results)


def test_accuracy_below_threshold_fails_with_value_shown() -> None:
    r = one(
        {"name": "test_accuracy", "stage": "test", "expression": "metrics.accuracy >= 0.85"},
        {"test": {"metrics": {"accuracy": 0.8}}},
    )
    assert r.passed is False
    assert r.blocks is True
    assert r.values == {"metrics.accuracy": 0.8}
    assert "metrics.accuracy = 0.8" in r.message
    assert r.to_dict()["result"] == "fail"
    assert not gate_passed([r])


def test_slice_gap_above_limit_fails() -> None:
    r = one(
        {"name": "age_gap", "stage": "evaluate", "expression": 'slices.age.max_gap("recall") <= 0.05'},
        {"evaluate": EVALUATE_MD},
    )
    assert r.passed is False
    assert r.values['slices.age["18-25"].recall'] == 0.80
    assert r.values['max_gap(slices.age, "recall")'] == pytest.approx(0.10)
    assert 'max_gap(slices.age, "recall") = 0.1' in r.message


def test_global_and_receiver_max_gap_agree() -> None:
    md = {"evaluate": EVALUATE_MD}
    a = one({"name": "a", "stage": "evaluate", "expression": 'max_gap(slices.age, "recall") > 0.09'}, md)
    b = one({"name": "b", "stage": "evaluate", "expression": 'slices.age.max_gap("recall") > 0.09'}, md)
    c = one({"name": "c", "stage": "evaluate", "expression": 'slices.age.max("recall") == 0.9'}, md)
    d = one({"name": "d", "stage": "evaluate", "expression": "abs(metrics.recall - 0.9) < 0.05"}, md)
    assert (a.passed, b.passed, c.passed, d.passed) == (True, True, True, True)


def test_integer_metric_from_canonical_json_still_compares() -> None:
    # RFC 8785 writes 1.0 as 1: an int must compare and subtract against doubles.
    md = {"test": {"metrics": {"accuracy": 1}}}
    assert one({"name": "a", "stage": "test", "expression": "metrics.accuracy >= 0.85"}, md).passed
    assert one({"name": "b", "stage": "test", "expression": "abs(metrics.accuracy - 1.0) < 0.01"}, md).passed
    assert not one({"name": "c", "stage": "test", "expression": "metrics.accuracy < 0.5"}, md).passed


# --------------------------------------------------------------------------- missing is never a pass


def test_metric_never_attested_fails_naming_metric_and_stage() -> None:
    r = one(
        {"name": "f1", "stage": "test", "expression": "metrics.f1 >= 0.8"},
        {"test": {"metrics": {"accuracy": 0.9}}},
    )
    assert r.passed is False
    assert "metrics.f1" in r.message
    assert "'test'" in r.message
    assert "accuracy" in r.message  # says what the stage did attest


def test_missing_metric_fails_even_when_or_would_absorb_the_error() -> None:
    # CEL makes `error || true` true; a gate must not.
    r = one(
        {"name": "f1", "stage": "test", "expression": "metrics.f1 >= 0.8 || metrics.accuracy > 0.5"},
        {"test": {"metrics": {"accuracy": 0.9}}},
    )
    assert r.passed is False
    assert "metrics.f1" in r.message


def test_has_guard_allows_optional_metrics() -> None:
    md = {"test": {"metrics": {"accuracy": 0.9}}}
    r = one({"name": "opt", "stage": "test", "expression": "has(metrics.f1) ? metrics.f1 > 0.8 : true"}, md)
    assert r.passed is True


def test_missing_slice_metric_fails_clearly() -> None:
    md = {"evaluate": {"slices": {"group": {"a": {"recall": 0.9}, "b": {"precision": 0.9}}}}}
    r = one({"name": "gap", "stage": "evaluate", "expression": 'slices.group.max_gap("recall") <= 0.05'}, md)
    assert r.passed is False
    assert "slices.group.b.recall" in r.message
    assert "'evaluate'" in r.message


def test_missing_slice_attribute_fails() -> None:
    r = one(
        {"name": "gap", "stage": "evaluate", "expression": 'max_gap(slices.gender, "recall") <= 0.05'},
        {"evaluate": EVALUATE_MD},
    )
    assert r.passed is False
    assert "slices.gender" in r.message and "age, group" in r.message


def test_stage_absent_from_chain_fails_and_says_so() -> None:
    r = one({"name": "drift", "stage": "monitor", "expression": "signals.drift < 0.2"}, {"evaluate": EVALUATE_MD})
    assert r.passed is False
    assert "no attestation in the chain" in r.message and "'monitor'" in r.message


def test_signals_and_metadata_variables() -> None:
    md = {"monitor": {"signals": {"drift": 0.1}, "rollback": {"target": "model-2023.pkl"}}}
    assert one({"name": "d", "stage": "monitor", "expression": "signals.drift < 0.2"}, md).passed
    r = one({"name": "m", "stage": "monitor", "expression": 'metadata.rollback.target != ""'}, md)
    assert r.passed and r.values == {"metadata.rollback.target": "model-2023.pkl"}


# --------------------------------------------------------------------------- results that are not bool


def test_non_bool_result_is_a_failure() -> None:
    r = one(
        {"name": "gap", "stage": "evaluate", "expression": 'slices.group.max_gap("recall")'},
        {"evaluate": EVALUATE_MD},
    )
    assert r.passed is False
    assert "not true/false" in r.message and "double" in r.message


def test_evaluation_error_is_a_failure() -> None:
    r = one({"name": "t", "stage": "test", "expression": 'metrics.name > 1'}, {"test": {"metrics": {"name": "x"}}})
    assert r.passed is False
    assert r.message.startswith("evaluation error")


# --------------------------------------------------------------------------- severity


def test_warn_severity_is_reported_but_does_not_block() -> None:
    objectives = objectives_with(
        {"name": "soft", "stage": "test", "expression": "metrics.accuracy >= 0.95", "severity": "warn"},
        {"name": "hard", "stage": "test", "expression": "metrics.accuracy >= 0.85"},
    )
    results = evaluate(objectives, {"test": {"metrics": {"accuracy": 0.9}}})
    soft, hard = results
    assert soft.passed is False and soft.severity == "warn" and soft.status == "warn"
    assert soft.blocks is False
    assert hard.passed is True
    assert gate_passed(results) is True
    assert soft.to_dict()["result"] == "warn"


# --------------------------------------------------------------------------- compile / check


def write(tmp_path: Path, data: Any, name: str = "objectives.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def test_syntax_error_names_criterion_field_and_column(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["criteria"][0]["expression"] = "metrics.accuracy >= "
    with pytest.raises(InputError) as info:
        check_file(write(tmp_path, data))
    msg = str(info.value)
    assert "objectives.yaml: criterion 'test_accuracy' (criteria[0].expression) column 18:" in msg
    assert "fix the expression" in msg
    assert "\n" not in msg


def test_syntax_error_column_points_at_bad_character() -> None:
    o = objectives_with({"name": "x", "stage": "test", "expression": "metrics.accuracy >== 0.85"})
    with pytest.raises(InputError, match=r"column 20: syntax error: unexpected character '='"):
        o.compile_all()


def test_multiline_expression_reports_line_and_column() -> None:
    o = objectives_with({"name": "x", "stage": "test", "expression": "metrics.accuracy >= 0.8 &&\n  (metrics.f1"})
    with pytest.raises(InputError, match=r"line 2 column 12: syntax error: unexpected end of expression"):
        o.compile_all()


def test_all_bad_criteria_reported_at_once() -> None:
    o = objectives_with(
        {"name": "one", "stage": "test", "expression": "metrics.a >"},
        {"name": "two", "stage": "test", "expression": "metric.a > 1"},
    )
    with pytest.raises(InputError) as info:
        o.compile_all()
    assert "2 criteria do not compile" in str(info.value)
    assert "'one'" in str(info.value) and "'two'" in str(info.value)


@pytest.mark.parametrize(
    ("expression", "needle"),
    [
        ("metric.accuracy > 0.8", "unknown variable 'metric'"),
        ('maxgap(slices.group, "recall") < 0.1', "unknown function 'maxgap'"),
        ('slices.group.min("recall") > 0.8', "min(slices.<attribute>"),
    ],
)
def test_static_check_catches_typos_and_the_min_trap(expression: str, needle: str) -> None:
    o = objectives_with({"name": "x", "stage": "evaluate", "expression": expression})
    with pytest.raises(InputError) as info:
        o.compile_all()
    assert needle in str(info.value)
    assert "column" in str(info.value)


def test_macros_and_bound_variables_compile() -> None:
    o = objectives_with(
        {"name": "all", "stage": "evaluate", "expression": "slices.group.all(g, slices.group[g].recall >= 0.85)"},
    )
    o.compile_all()
    assert evaluate(o, {"evaluate": EVALUATE_MD})[0].passed is True


def test_check_file_accepts_json(tmp_path: Path) -> None:
    p = tmp_path / "objectives.json"
    p.write_text(json.dumps(BASE))
    assert check_file(p).criteria[0].name == "test_accuracy"


# --------------------------------------------------------------------------- validation


def _invalid(mutate: Any) -> str:
    data = copy.deepcopy(BASE)
    mutate(data)
    with pytest.raises(InputError) as info:
        Objectives.from_dict(data, source="objectives.yaml")
    return str(info.value)


def test_unknown_stage_is_refused() -> None:
    msg = _invalid(lambda d: d["criteria"][0].update(stage="tst"))
    assert "criteria[0].stage" in msg and "unknown stage 'tst'" in msg


def test_objectives_stage_is_refused() -> None:
    msg = _invalid(lambda d: d["criteria"][0].update(stage="codify-objectives"))
    assert "objectives stage" in msg


def test_duplicate_criterion_names_are_refused() -> None:
    msg = _invalid(lambda d: d["criteria"].append(dict(d["criteria"][0])))
    assert "duplicate criterion name 'test_accuracy'" in msg and "criteria[1].name" in msg


def test_bad_severity_is_refused() -> None:
    assert "severity must be 'block' or 'warn'" in _invalid(lambda d: d["criteria"][0].update(severity="fatal"))


def test_default_severity_is_block() -> None:
    assert Objectives.from_dict(BASE).criteria[0].severity == "block"


@pytest.mark.parametrize("expression", ["", "   ", None, 3])
def test_expression_must_be_non_empty_string(expression: Any) -> None:
    assert "criteria[0].expression" in _invalid(lambda d: d["criteria"][0].update(expression=expression))


def test_unknown_field_is_refused() -> None:
    msg = _invalid(lambda d: d.update(critera=[]))
    assert "critera: unknown field" in msg


def test_empty_criteria_is_refused() -> None:
    assert "criteria" in _invalid(lambda d: d.update(criteria=[]))


def test_classification_needs_labels_and_regression_needs_range() -> None:
    assert "outputs.labels" in _invalid(lambda d: d["outputs"].pop("labels"))
    assert "outputs.range" in _invalid(lambda d: d.update(outputs={"task": "regression"}))
    data = copy.deepcopy(BASE)
    data["outputs"] = {"task": "regression", "range": {"min": 0, "max": None}}
    assert Objectives.from_dict(data).outputs.range_max is None


def test_invalid_yaml_file_gives_position(tmp_path: Path) -> None:
    p = tmp_path / "objectives.yaml"
    p.write_text("criteria:\n  - name: [unclosed\n")
    with pytest.raises(InputError, match=r"objectives.yaml:\d+:\d+"):
        check_file(p)


def test_round_trip_to_dict() -> None:
    o = Objectives.from_dict(yaml.safe_load(OBJECTIVES_TEMPLATE))
    again = Objectives.from_dict(json.loads(json.dumps(o.to_dict())))
    assert again == o
    assert again.to_dict() == o.to_dict()


# --------------------------------------------------------------------------- template


def test_template_loads_and_compiles(tmp_path: Path) -> None:
    p = tmp_path / "objectives.yaml"
    p.write_text(OBJECTIVES_TEMPLATE)
    objectives = check_file(p)
    stages_used = {c.stage for c in objectives.criteria}
    assert {"evaluate", "test", "monitor"} <= stages_used
    assert any("max_gap" in c.expression for c in objectives.criteria)
    assert objectives.outputs.labels and objectives.errors
    assert OBJECTIVES_TEMPLATE.count("#") > 10  # it is commented for the user who edits it


def test_template_criteria_gate_on_realistic_metadata() -> None:
    objectives = Objectives.from_dict(yaml.safe_load(OBJECTIVES_TEMPLATE))
    md = {
        "evaluate": {"metrics": {"accuracy": 0.9}, "slices": {"group": {"a": {"recall": 0.8}, "b": {"recall": 0.82}}}},
        "test": {"metrics": {"accuracy": 0.88}},
        "monitor": {"signals": {"drift": 0.05}},
    }
    results = evaluate(objectives, md)
    assert all(r.passed for r in results), [r.message for r in results if not r.passed]


def test_overly_nested_expression_is_refused_at_check_time() -> None:
    deep = "(" * 60 + "metrics.accuracy" + ")" * 60 + " > 0.5"
    o = objectives_with({"name": "deep", "stage": "test", "expression": deep})
    with pytest.raises(InputError, match="nested too deeply"):
        o.compile_all()
    shallow = "(" * 5 + "metrics.accuracy" + ")" * 5 + " > 0.5"
    assert one({"name": "ok", "stage": "test", "expression": shallow}, {"test": {"metrics": {"accuracy": 0.9}}}).passed
