"""Per-stage metadata schemas, the seed's example files, merging and --set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import REPO
from jsonschema import Draft202012Validator

from mlspec_attest._internal.loaders import load_document, load_mapping
from mlspec_attest.errors import InputError
from mlspec_attest.model.metadata import apply_set, merge_metadata, parse_set, schema_for, validate_metadata
from mlspec_attest.model.stages import STAGES

SCHEMA_DIR = REPO / "mlspec_attest" / "schemas"

# Seed files that are valid YAML, and the stages each must validate for.
VALID_SEED = [
    ("model_packaging/model_example.yml", "package"),
    ("model_packaging/model.yaml", "package"),
    ("model_packaging/data.yaml", "package"),
    ("model_packaging/data.yaml", "ingest"),
    ("data/dataset.yml", "ingest"),
    ("experiment_tracking/experiment_example.yml", "train"),
]

# Seed files that are not YAML: where the parser stops, and why.
INVALID_SEED = [
    ("model_packaging/model_training.yaml", "128:25", "mapping values are not allowed here"),
    ("model_packaging/model_serving.yaml", "70:20", "mapping values are not allowed here"),
    ("model_packaging/model_scoring.yaml", "63:20", "mapping values are not allowed here"),
    ("model_packaging/model_packaging.yaml", "247:20", "mapping values are not allowed here"),
    ("model_packaging/model_onnx_conversion.yaml", "57:20", "mapping values are not allowed here"),
    ("metadata_file/metadata.yaml", "2:3", "found character '\\t' that cannot start any token"),
]

# A minimal, hand-written metadata document per stage: what a pipeline author would write.
MINIMAL = {
    "objectives": {"criteria": [{"name": "acc", "expression": "metrics.accuracy >= 0.8"}]},
    "ingest": {"sources": [{"name": "loans.csv"}]},
    "analyze": {"statistics": {"age": {"mean": 40.0}}},
    "transform": {"transformations": ["scale"]},
    "validate": {"schema_version": "1", "passed": True},
    "split": {"sets": {"train": {"size": 80}, "holdback": {"size": 20}}},
    "train": {"framework": "scikit-learn"},
    "evaluate": {"metrics": {"accuracy": 0.9}, "dataset": "validation.csv"},
    "test": {"metrics": {"accuracy": 0.88}, "dataset": "holdback.csv", "holdback": True},
    "package": {"contents": ["model.pkl"]},
    "serve": {"rollout": {"status": "succeeded"}},
    "monitor": {"signals": {"drift": 0.01}, "rollback_target": {"name": "m.pkl", "digest": {"sha256": "a" * 64}}},
    "log": {"tree_size": 3, "root_hash": "b" * 64},
}


# --- the schemas themselves ------------------------------------------------------


def test_one_schema_file_per_stage_and_nothing_else() -> None:
    assert sorted(p.stem for p in SCHEMA_DIR.glob("*.json")) == sorted(s.name for s in STAGES)


@pytest.mark.parametrize("stage", [s.name for s in STAGES])
def test_schema_is_valid_draft_2020_12(stage: str) -> None:
    schema = schema_for(stage)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://mlspec.org/attestation/{stage}/v1/metadata.schema.json"
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert schema.get("additionalProperties", True) is True, "schemas must allow extra fields"


@pytest.mark.parametrize("stage", [s.name for s in STAGES])
def test_schema_examples_and_minimal_metadata_validate(stage: str) -> None:
    schema = schema_for(stage)
    assert schema["examples"], "docs/stages.md shows the first example"
    for example in schema["examples"]:
        validate_metadata(stage, example)
    validate_metadata(stage, MINIMAL[stage])
    validate_metadata(stage, dict(MINIMAL[stage], extra_field={"anything": [1, "two"]}))


@pytest.mark.parametrize("stage", [s.name for s in STAGES])
def test_empty_metadata_is_refused_for_every_stage(stage: str) -> None:
    with pytest.raises(InputError) as exc:
        validate_metadata(stage, {}, source="empty.yaml")
    message = str(exc.value)
    assert message.startswith(f"empty.yaml: metadata for stage '{stage}' is invalid at the top level: ")
    assert message.endswith("; see docs/stages.md")
    assert "\n" not in message


def test_aliases_resolve_to_the_same_schema() -> None:
    assert schema_for("training") == schema_for("train") == schema_for("Tuning")
    validate_metadata("evaluation", MINIMAL["evaluate"])


def test_schema_for_returns_a_copy() -> None:
    schema_for("log")["required"].append("mutated")
    assert "mutated" not in schema_for("log")["required"]


def test_unknown_stage_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown stage"):
        schema_for("deploy")


def test_docs_cover_every_stage_and_predicate_type() -> None:
    docs = (REPO / "docs" / "stages.md").read_text("utf-8")
    for stage in STAGES:
        assert f"`{stage.predicate_type}`" in docs
        assert f"### {stage.order}. `{stage.name}`" in docs
    assert "## Secret redaction" in docs


# --- the seed's example files ----------------------------------------------------


@pytest.mark.parametrize(("relpath", "stage"), VALID_SEED)
def test_seed_file_validates_for_its_stage(seed: Path, relpath: str, stage: str) -> None:
    path = seed / relpath
    metadata = load_mapping(path)
    validate_metadata(stage, metadata, source=str(path))


@pytest.mark.parametrize(("relpath", "where", "problem"), INVALID_SEED)
def test_invalid_seed_file_is_refused_with_file_line_col(seed: Path, relpath: str, where: str, problem: str) -> None:
    path = seed / relpath
    with pytest.raises(InputError) as exc:
        load_document(path)
    message = str(exc.value)
    assert message.startswith(f"{path}:{where}: invalid YAML: ")
    assert problem in message
    assert "\n" not in message
    assert re.search(r":\d+:\d+: ", message)


def test_seed_model_files_conflict_when_merged(seed: Path) -> None:
    model = seed / "model_packaging" / "model.yaml"
    example = seed / "model_packaging" / "model_example.yml"
    with pytest.raises(InputError) as exc:
        merge_metadata([(str(model), load_mapping(model)), (str(example), load_mapping(example))])
    message = str(exc.value)
    assert message.startswith(f"{example}: metadata key 'framework'")
    assert str(model) in message


def test_seed_model_and_data_merge_for_package(seed: Path) -> None:
    parts = [(str(seed / "model_packaging" / f), load_mapping(seed / "model_packaging" / f))
             for f in ("model.yaml", "data.yaml")]
    merged = merge_metadata(parts)
    assert merged["data"]["source_id"] == "IMDB-WIKI" and merged["name"] == "Facial Age estimator Model"
    validate_metadata("package", merged)


def test_seed_experiment_is_not_evaluate_metadata(seed: Path) -> None:
    """The seed run's {key, value: '0.77'} metrics are not the evaluate {name: number} shape."""
    path = seed / "experiment_tracking" / "experiment_example.yml"
    with pytest.raises(InputError, match=r"invalid at /metrics/"):
        validate_metadata("evaluate", dict(load_mapping(path), dataset="v.csv"), source=str(path))


# --- error messages --------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "metadata", "expected"),
    [
        ("evaluate", {"metrics": {"accuracy": "x"}, "dataset": "v"},
         "m.yaml: metadata for stage 'evaluate' is invalid at /metrics/accuracy: 'x' is not of type 'number'; "
         "see docs/stages.md"),
        ("evaluate", {"metrics": {"a/b~c": True}, "dataset": "v"}, "invalid at /metrics/a~1b~0c: True is not of type 'number'"),
        ("evaluate", {"metrics": {"accuracy": 0.9}}, "invalid at the top level: 'dataset' is a required property"),
        ("evaluate", {"metrics": {}, "dataset": "v"}, "invalid at /metrics: {} should be non-empty"),
        ("evaluate", {"metrics": {"a": 1}, "dataset": "v", "holdback": True}, "invalid at /holdback: True is not allowed"),
        ("evaluate", {"metrics": {"a": 1}, "dataset": "v", "slices": {"gender": {"f": {"acc": "high"}}}},
         "invalid at /slices/gender/f/acc: 'high' is not of type 'number'"),
        ("test", {"metrics": {"a": 1}, "dataset": "h"}, "'holdback' is a required property"),
        ("test", {"metrics": {"a": 1}, "dataset": "h", "holdback": False}, "invalid at /holdback: False is not allowed here; it must be true"),
        ("train", {}, "invalid at the top level: needs at least one of 'framework', 'hyperparameters', 'train'"),
        ("train", {"framework": 5}, "invalid at /framework: 5 is not of type ['string', 'object']"),
        ("train", {"hyperparameters": "lr=0.1"}, "invalid at /hyperparameters: 'lr=0.1' is not valid here; expected a mapping"),
        ("validate", {"schema": "v1"}, "needs at least one of 'results', 'passed'"),
        ("validate", {"schema": "v1", "passed": True, "isDeprecated": True}, "invalid at /isDeprecated:"),
        ("split", {"sets": {"train": {"size": -1}}}, "invalid at /sets/train/size: -1 is less than the minimum of 0"),
        ("objectives", {"criteria": []}, "invalid at /criteria: [] should be non-empty"),
        ("objectives", {"criteria": [{"name": "a"}]}, "invalid at /criteria/0: 'expression' is a required property"),
        ("objectives", {"criteria": [{"name": "a", "expression": "true", "stage": "trian"}]},
         "invalid at /criteria/0/stage: 'trian' is not one of objectives, ingest"),
        ("monitor", {"signals": {"d": 0.1}, "rollback_target": {"name": "m", "digest": {"sha256": "abc"}}},
         "invalid at /rollback_target/digest/sha256: 'abc' does not match"),
        ("monitor", {"signals": {"d": "low"}, "rollback_target": MINIMAL["monitor"]["rollback_target"]},
         "invalid at /signals/d: 'low' is not of type 'number'"),
        ("log", {"tree_size": "3", "root_hash": "b" * 64}, "invalid at /tree_size: '3' is not of type 'integer'"),
        ("log", {"tree_size": 3, "root_hash": "B" * 64}, "invalid at /root_hash:"),
        ("serve", {"rollout": {}}, "invalid at /rollout: 'status' is a required property"),
        ("ingest", ["not", "a", "mapping"], "invalid at the top level: ['not', 'a', 'mapping'] is not of type 'object'"),
    ],
)
def test_bad_metadata_names_the_pointer(stage: str, metadata: object, expected: str) -> None:
    with pytest.raises(InputError) as exc:
        validate_metadata(stage, metadata, source="m.yaml")
    message = str(exc.value)
    assert expected in message
    assert message.startswith(f"m.yaml: metadata for stage '{stage}' is invalid at ")
    assert message.endswith("; see docs/stages.md") and "\n" not in message


def test_long_values_are_shortened_in_messages() -> None:
    with pytest.raises(InputError) as exc:
        validate_metadata("log", {"tree_size": ["x" * 5000], "root_hash": "b" * 64})
    assert len(str(exc.value)) < 300


def test_monitor_and_log_allow_extra_fields() -> None:
    validate_metadata("monitor", dict(MINIMAL["monitor"], window="1h", thresholds={"drift": {"max": 0.2}, "p99": 50}))
    validate_metadata("log", dict(MINIMAL["log"], records=3, record_fields=["requestId"], format="ncsa"))


def test_jsonschema_is_not_imported_at_module_import() -> None:
    import subprocess
    import sys

    code = "import sys, mlspec_attest.model.metadata, mlspec_attest.attest.redaction; print('jsonschema' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_schema_files_are_plain_utf8_json() -> None:
    for path in SCHEMA_DIR.glob("*.json"):
        assert isinstance(json.loads(path.read_text("utf-8")), dict)


# --- merging ---------------------------------------------------------------------


def test_merge_is_top_level_and_ordered() -> None:
    merged = merge_metadata([("a.yaml", {"x": 1, "n": {"p": 1}}), ("b.yaml", {"y": 2})])
    assert merged == {"x": 1, "n": {"p": 1}, "y": 2}
    assert list(merged) == ["x", "n", "y"]


def test_merge_conflict_names_both_files() -> None:
    with pytest.raises(InputError) as exc:
        merge_metadata([("a.yaml", {"x": 1}), ("b.yaml", {"y": 2}), ("c.yaml", {"x": 3})])
    assert str(exc.value) == (
        "c.yaml: metadata key 'x' is also set, differently, by a.yaml; keep it in one file or override it with --set"
    )


def test_merge_nested_difference_is_a_conflict_but_equal_values_are_not() -> None:
    with pytest.raises(InputError, match="'n' is also set, differently, by a.yaml"):
        merge_metadata([("a.yaml", {"n": {"p": 1}}), ("b.yaml", {"n": {"q": 2}})])
    assert merge_metadata([("a.yaml", {"n": {"p": 1}}), ("b.yaml", {"n": {"p": 1}})]) == {"n": {"p": 1}}


def test_merge_refuses_non_mapping_and_does_not_alias_inputs() -> None:
    with pytest.raises(InputError, match="b.yaml: metadata must be a mapping at the top level, found list"):
        merge_metadata([("a.yaml", {}), ("b.yaml", [1])])  # type: ignore[list-item]
    part = {"n": {"p": 1}}
    merged = merge_metadata([("a.yaml", part)])
    merged["n"]["p"] = 2
    assert part == {"n": {"p": 1}}
    assert merge_metadata([]) == {}


# --- --set -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("lr=0.01", {"lr": 0.01}),
        ("hyperparameters.lr=0.01", {"hyperparameters": {"lr": 0.01}}),
        ("a.b.c=3", {"a": {"b": {"c": 3}}}),
        ("flag=true", {"flag": True}),
        ("flag=false", {"flag": False}),
        ("x=null", {"x": None}),
        ("x=", {"x": ""}),
        ("name=resnet", {"name": "resnet"}),
        ("version=1.10", {"version": 1.1}),
        ("version=\"1.10\"", {"version": "1.10"}),
        ("version='1.10'", {"version": "1.10"}),
        ("version=1.13.1", {"version": "1.13.1"}),
        ("when=2024-05-01", {"when": "2024-05-01"}),
        ("tags=[a, b]", {"tags": ["a", "b"]}),
        ("m={k: 1}", {"m": {"k": 1}}),
        ("note=see: here", {"note": "see: here"}),
        ("note=- item", {"note": "- item"}),
        ("handle=@home", {"handle": "@home"}),
        ("expr=a=b", {"expr": "a=b"}),
        (" spaced . key = 7 ", {"spaced": {"key": 7}}),
    ],
)
def test_set_parses_yaml_scalars(assignment: str, expected: dict) -> None:
    assert apply_set({}, assignment) == expected


def test_set_updates_in_place_and_keeps_siblings() -> None:
    metadata = {"hyperparameters": {"lr": 0.1, "epochs": 3}, "framework": "torch"}
    result = apply_set(metadata, "hyperparameters.lr=0.01")
    assert result is metadata
    assert metadata == {"hyperparameters": {"lr": 0.01, "epochs": 3}, "framework": "torch"}
    apply_set(metadata, "framework=jax")
    assert metadata["framework"] == "jax"


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("novalue", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("a..b=1", "empty segment in dotted key 'a..b'"),
        (".a=1", "empty segment"),
        ("a.=1", "empty segment"),
        ("tags.x=1", "'tags' is a list, not a mapping"),
        ("framework.name=x", "'framework' is a str, not a mapping"),
        ("x=[1,", "--set x: VALUE '[1,' is not valid YAML"),
        ("x={a: 1", "is not valid YAML"),
        ('x="open', "is not valid YAML"),
        ("x=9007199254740993", "outside the interoperable range"),
        ("x=.nan", "NaN or infinite"),
    ],
)
def test_set_errors(assignment: str, message: str) -> None:
    with pytest.raises(InputError) as exc:
        apply_set({"tags": ["a"], "framework": "torch"}, assignment)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_parse_set_returns_path_and_value() -> None:
    assert parse_set("a.b=2") == (["a", "b"], 2)


def test_set_then_validate_reports_the_pointer() -> None:
    metadata = apply_set(dict(MINIMAL["evaluate"]), "metrics.f1=bad")
    with pytest.raises(InputError, match=r"invalid at /metrics/f1: 'bad' is not of type 'number'"):
        validate_metadata("evaluate", metadata, source="--set")
