"""The objectives file: model outputs, possible errors, and CEL success criteria.

Objectives are the chain's genesis (DESIGN.md, "Trust, policy, objectives"): they
are written and attested before training, and the deploy gate evaluates every
criterion against the metrics the bound stage later attested. The classes follow
python-tuf's metadata style: ``from_dict`` validates at the boundary and names the
offending field, ``to_dict`` gives back plain JSON (the ``objectives`` stage's
signed metadata), and the two round-trip.

Checking (``check_file`` / ``Objectives.compile_all``) is separate from loading so
that a verifier can still report on a chain whose signed objectives do not compile:
``evaluate`` turns such a criterion into a failed result instead of an exception.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lark
from celpy import celtypes

from mlspec_attest._internal.loaders import load_mapping
from mlspec_attest.errors import InputError
from mlspec_attest.model import stages
from mlspec_attest.objectives.cel import (
    EXTENSION_FUNCTIONS,
    ExpressionError,
    compile_expression,
    describe_value,
    evaluate_expression,
)

FORMAT_VERSION = 1
SEVERITIES = ("block", "warn")
VARIABLES = ("metrics", "slices", "signals", "metadata")
# Besides its own stage, a criterion may read any stage of the same chain by name
# (``evaluate.metrics.r2``) and the verified predecessor release (``previous.test.metrics.r2``).
STAGE_VARIABLES = tuple(s.name for s in stages.STAGES)
PREVIOUS = "previous"
ALL_VARIABLES = VARIABLES + STAGE_VARIABLES + (PREVIOUS,)
FIRST_RELEASE = ("fail", "pass")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")
_MAX_LISTED = 8  # how many available keys / values a message lists before "..."

__all__ = [
    "EXTENSION_FUNCTIONS",
    "FORMAT_VERSION",
    "OBJECTIVES_TEMPLATE",
    "SEVERITIES",
    "VARIABLES",
    "ALL_VARIABLES",
    "PREVIOUS",
    "STAGE_VARIABLES",
    "reads_previous",
    "stages_read",
    "Criterion",
    "CriterionResult",
    "ErrorCase",
    "Objectives",
    "Outputs",
    "check_file",
    "evaluate",
    "vacuity",
    "gate_passed",
]


# --------------------------------------------------------------------------- validation helpers

def _fail(source: str, where: str, problem: str) -> InputError:
    return InputError(f"{source}: {where}: {problem}")


def _mapping(value: Any, source: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(source, where, f"expected a mapping, found {_json_type(value)}")
    return value


def _no_unknown(data: Mapping[str, Any], allowed: Sequence[str], source: str, where: str) -> None:
    """Refuse unknown keys: a typo such as ``critera:`` must not silently drop the gate."""
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        prefix = f"{where}." if where else ""
        raise _fail(
            source, f"{prefix}{unknown[0]}",
            f"unknown field; allowed here: {', '.join(allowed)}",
        )


def _string(value: Any, source: str, where: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(source, where, f"expected a non-empty string, found {_json_type(value)}")
    return value


def _name(value: Any, source: str, where: str) -> str:
    text = _string(value, source, where)
    assert text is not None
    if not _NAME.match(text):
        raise _fail(
            source, where,
            f"name {text!r} must start with a letter and use only letters, digits, '_', '.', '-' (max 128)",
        )
    return text


def _number(value: Any, source: str, where: str) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
        isinstance(value, float) and not math.isfinite(value)
    ):
        raise _fail(source, where, f"expected a number or null, found {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (", ..." if len(items) > _MAX_LISTED else "")


# --------------------------------------------------------------------------- model

@dataclass(frozen=True)
class Outputs:
    """What the model emits: its task, and its labels or value range."""

    task: str
    labels: tuple[str | int, ...] = ()
    range_min: float | int | None = None
    range_max: float | int | None = None
    has_range: bool = False
    description: str | None = None

    _FIELDS = ("task", "labels", "range", "description")

    @classmethod
    def from_dict(cls, data: Any, source: str, where: str = "outputs") -> Outputs:
        """Validate: classification needs labels, regression needs a range."""
        data = _mapping(data, source, where)
        _no_unknown(data, cls._FIELDS, source, where)
        task = _string(data.get("task"), source, f"{where}.task")
        assert task is not None
        labels: tuple[str | int, ...] = ()
        if "labels" in data:
            raw = data["labels"]
            if not isinstance(raw, list) or not raw:
                raise _fail(source, f"{where}.labels", "expected a non-empty list of labels")
            seen: set[str] = set()
            for i, label in enumerate(raw):
                if isinstance(label, bool) or not isinstance(label, (str, int)) or label == "":
                    raise _fail(source, f"{where}.labels[{i}]", "a label is a non-empty string or an integer")
                if str(label) in seen:
                    raise _fail(source, f"{where}.labels[{i}]", f"duplicate label {label!r}")
                seen.add(str(label))
            labels = tuple(raw)
        range_min = range_max = None
        has_range = "range" in data
        if has_range:
            rng = _mapping(data["range"], source, f"{where}.range")
            _no_unknown(rng, ("min", "max"), source, f"{where}.range")
            range_min = _number(rng.get("min"), source, f"{where}.range.min")
            range_max = _number(rng.get("max"), source, f"{where}.range.max")
            if range_min is None and range_max is None:
                raise _fail(source, f"{where}.range", "give min, max or both (null means unbounded)")
            if range_min is not None and range_max is not None and range_min >= range_max:
                raise _fail(source, f"{where}.range", f"min {range_min} is not below max {range_max}")
        kind = task.strip().lower()
        if kind == "classification" and not labels:
            raise _fail(source, f"{where}.labels", "a classification task must list its labels")
        if kind == "regression" and not has_range:
            raise _fail(source, f"{where}.range", "a regression task must give its value range (min, max)")
        description = _string(data.get("description"), source, f"{where}.description", required=False)
        return cls(task, labels, range_min, range_max, has_range, description)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.task}
        if self.labels:
            out["labels"] = list(self.labels)
        if self.has_range:
            out["range"] = {"min": self.range_min, "max": self.range_max}
        if self.description is not None:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class ErrorCase:
    """One way the model can be wrong, and what the system does about it."""

    name: str
    handling: str
    description: str | None = None

    _FIELDS = ("name", "description", "handling")

    @classmethod
    def from_dict(cls, data: Any, source: str, where: str) -> ErrorCase:
        data = _mapping(data, source, where)
        _no_unknown(data, cls._FIELDS, source, where)
        name = _name(data.get("name"), source, f"{where}.name")
        handling = _string(data.get("handling"), source, f"{where}.handling")
        assert handling is not None
        description = _string(data.get("description"), source, f"{where}.description", required=False)
        return cls(name, handling, description)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            out["description"] = self.description
        out["handling"] = self.handling
        return out


@dataclass(frozen=True)
class Criterion:
    """A named CEL success criterion, bound to the stage whose attested metrics it reads."""

    name: str
    stage: str  # canonical stage name
    expression: str
    severity: str = "block"
    description: str = ""
    where: str = field(default="criteria[?]", compare=False, repr=False)  # for error messages
    # What a criterion that reads previous.* does when the gate established there is no earlier
    # release (a history was given and holds none of this project): "fail" (default) or "pass".
    first_release: str = "fail"

    _FIELDS = ("name", "stage", "expression", "severity", "description", "first_release")

    @classmethod
    def from_dict(cls, data: Any, source: str, where: str) -> Criterion:
        """Validate one entry of ``criteria``; ``where`` is e.g. ``criteria[0]``."""
        data = _mapping(data, source, where)
        _no_unknown(data, cls._FIELDS, source, where)
        name = _name(data.get("name"), source, f"{where}.name")
        stage_name = _string(data.get("stage"), source, f"{where}.stage")
        assert stage_name is not None
        try:
            stage = stages.resolve(stage_name)
        except InputError as exc:
            raise _fail(source, f"criterion {name!r} ({where}.stage)", str(exc)) from None
        if stage.name == "objectives":
            raise _fail(
                source, f"criterion {name!r} ({where}.stage)",
                "a criterion cannot be bound to the objectives stage, which attests no metrics; "
                "bind it to the stage that measures them (evaluate, test, monitor...)",
            )
        expression = data.get("expression")
        if not isinstance(expression, str) or not expression.strip():
            raise _fail(
                source, f"criterion {name!r} ({where}.expression)",
                f"expected a non-empty CEL expression string, found {_json_type(expression)}",
            )
        severity = data.get("severity", "block")
        if severity not in SEVERITIES:
            raise _fail(
                source, f"criterion {name!r} ({where}.severity)",
                f"severity must be 'block' or 'warn', found {severity!r}",
            )
        description = _string(data.get("description"), source, f"criterion {name!r} ({where}.description)")
        assert description is not None
        first_release = data.get("first_release", "fail")
        if first_release not in FIRST_RELEASE:
            raise _fail(source, f"criterion {name!r} ({where}.first_release)",
                        f"first_release must be 'fail' or 'pass', found {first_release!r}")
        if "first_release" in data and not re.search(rf"\b{PREVIOUS}\b", expression):
            raise _fail(source, f"criterion {name!r} ({where}.first_release)",
                        "first_release says what a criterion that reads previous.* does for a first release; "
                        "this one does not read previous")
        return cls(name, stage.name, expression, severity, description, where, first_release)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stage": self.stage,
            "expression": self.expression,
            "severity": self.severity,
            "description": self.description,
            **({"first_release": self.first_release} if self.first_release != "fail" else {}),
        }

    def compile(self, source: str = "objectives") -> lark.Tree:
        """Parse and name-check the expression; raise InputError with the column on failure."""
        try:
            return compile_expression(self.expression, ALL_VARIABLES)
        except ExpressionError as exc:
            raise InputError(self.compile_error_text(exc, source)) from None

    def compile_error_text(self, exc: ExpressionError, source: str) -> str:
        return (
            f"{source}: criterion {self.name!r} ({self.where}.expression) "
            f"{exc.position()}: {exc.reason}; fix the expression"
        )


@dataclass(frozen=True)
class Objectives:
    """The whole objectives file."""

    outputs: Outputs
    errors: tuple[ErrorCase, ...]
    criteria: tuple[Criterion, ...]
    description: str | None = None
    version: int = FORMAT_VERSION
    source: str = field(default="objectives", compare=False, repr=False)
    project: str = ""  # the project these objectives are for; the policy pins it
    revision: int = 0  # the objectives' own version (raise it on every change); the policy pins a minimum

    _FIELDS = ("version", "project", "revision", "description", "outputs", "errors", "criteria")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Objectives:
        """Load and validate (not compile) an objectives YAML/JSON file."""
        data = load_mapping(path, what="objectives file")
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "objectives") -> Objectives:
        """Validate plain JSON values (a file, or the objectives attestation's metadata)."""
        if not isinstance(data, Mapping):
            raise InputError(f"{source}: expected a mapping at the top level, found {_json_type(data)}")
        _no_unknown(data, cls._FIELDS, source, "")
        version = data.get("version", FORMAT_VERSION)
        if isinstance(version, bool) or version != FORMAT_VERSION:
            raise _fail(source, "version", f"unsupported objectives format version {version!r}; this tool reads {FORMAT_VERSION}")
        if "project" not in data:
            raise _fail(source, "project", "missing: name the project (the trust policy pins it: objectives.project)")
        project = _name(data["project"], source, "project")
        revision = data.get("revision")
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
            raise _fail(source, "revision", f"expected an integer >= 1 (raise it on every change; the trust "
                        f"policy's objectives.min_revision retires older ones), found {_json_type(revision)}")
        if "outputs" not in data:
            raise _fail(source, "outputs", "missing: describe the model's outputs (task, labels or range)")
        outputs = Outputs.from_dict(data["outputs"], source)
        raw_errors = data.get("errors", [])
        if not isinstance(raw_errors, list):
            raise _fail(source, "errors", f"expected a list, found {_json_type(raw_errors)}")
        errors = tuple(ErrorCase.from_dict(e, source, f"errors[{i}]") for i, e in enumerate(raw_errors))
        seen_errors: dict[str, int] = {}
        for i, err in enumerate(errors):
            if err.name in seen_errors:
                raise _fail(source, f"errors[{i}].name", f"duplicate error name {err.name!r} (also errors[{seen_errors[err.name]}])")
            seen_errors[err.name] = i
        raw_criteria = data.get("criteria")
        if not isinstance(raw_criteria, list) or not raw_criteria:
            raise _fail(
                source, "criteria",
                "expected a non-empty list of success criteria; the deploy gate needs at least one",
            )
        criteria = tuple(Criterion.from_dict(c, source, f"criteria[{i}]") for i, c in enumerate(raw_criteria))
        seen: dict[str, int] = {}
        for i, crit in enumerate(criteria):
            if crit.name in seen:
                raise _fail(
                    source, f"criteria[{i}].name",
                    f"duplicate criterion name {crit.name!r} (also criteria[{seen[crit.name]}]); names must be unique",
                )
            seen[crit.name] = i
        description = _string(data.get("description"), source, "description", required=False)
        return cls(outputs, errors, criteria, description, FORMAT_VERSION, source, project, revision)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "project": self.project, "revision": self.revision}
        if self.description is not None:
            out["description"] = self.description
        out["outputs"] = self.outputs.to_dict()
        out["errors"] = [e.to_dict() for e in self.errors]
        out["criteria"] = [c.to_dict() for c in self.criteria]
        return out

    def compile_all(self) -> dict[str, lark.Tree]:
        """Compile every criterion; one InputError (one line) listing every failure."""
        compiled: dict[str, lark.Tree] = {}
        problems: list[str] = []
        for crit in self.criteria:
            try:
                compiled[crit.name] = compile_expression(crit.expression, ALL_VARIABLES)
            except ExpressionError as exc:
                problems.append(crit.compile_error_text(exc, self.source))
                continue
            vacuous = vacuity(compiled[crit.name])
            if vacuous:
                problems.append(f"{self.source}: criterion {crit.name!r} ({crit.where}.expression) {vacuous}; "
                                "fix the expression")
        if len(problems) == 1:
            raise InputError(problems[0])
        if problems:
            parts = [p.removeprefix(f"{self.source}: ").removesuffix("; fix the expression") for p in problems]
            raise InputError(
                f"{self.source}: {len(problems)} criteria do not compile: " + "; ".join(parts) + "; fix the expressions"
            )
        return compiled


def vacuity(ast: lark.Tree) -> str:
    """Why a compiled criterion checks nothing ('' when it does).

    A criterion that reads no variable is a constant (``true``, ``1 < 2``); one that is
    true over a stage that attested nothing (``metrics.x >= 0.9 || true``,
    ``!has(metrics.x) || ...``) passes whenever the pipeline leaves the metric out.
    Either lets the objectives look strict while gating nothing.
    """
    names = _names(ast)
    if not names & set(ALL_VARIABLES):
        return "reads no metric, slice, signal or metadata: it is a constant and checks nothing"
    empty = evaluate_expression(ast, _bindings({}))
    # Missing reads are ignored here on purpose: CEL's || absorbed them and the value is still true.
    if empty.error is None and isinstance(empty.value, celtypes.BoolType) and bool(empty.value):
        return ("is true even when the stage attested nothing (a metric left out passes): "
                "it checks nothing; compare the metric itself, e.g. metrics.accuracy >= 0.85")
    if _true_for_every_probe(ast):
        return ("is true whatever values the stage attests (a tautology such as x >= 0.8 || x < 0.8): "
                "it checks nothing")
    return ""


_PROBES = (-1e9, -1.0, 0.0, 0.5, 1.0, 1e9)
_SIMPLE_PATH = re.compile(r"(metrics|slices|signals|metadata)(\.[A-Za-z_][A-Za-z0-9_]*)+")


def _true(outcome: Any) -> bool:
    return (outcome.error is None and not outcome.missing
            and isinstance(outcome.value, celtypes.BoolType) and bool(outcome.value))


def _probe_metadata(paths: Sequence[str], values: Sequence[float]) -> dict[str, Any] | None:
    """Stage metadata with each dotted path set to a number, or None when the paths clash."""
    metadata: dict[str, Any] = {}
    for path, value in zip(paths, values):
        root, *keys = path.split(".")
        node = metadata if root == "metadata" else metadata.setdefault(root, {})
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                return None
        if keys[-1] in node and isinstance(node[keys[-1]], dict):
            return None
        node[keys[-1]] = value
    return metadata


def _true_for_every_probe(ast: lark.Tree) -> bool:
    """Fill every metric the expression reads with extreme and ordinary numbers: always true means a tautology.

    Only plain dotted paths are probed; an expression that needs more structure (slices
    for max_gap, strings) errs or is false on numbers and is left alone (no false alarm).
    """
    paths: list[str] = []
    for _ in range(8):  # reads can be nested behind other reads (a ? b : c)
        metadata = _probe_metadata(paths, [0.5] * len(paths))
        if metadata is None:
            return False
        new = [p for p in evaluate_expression(ast, _bindings(metadata)).missing if p not in paths]
        if not new:
            break
        if not all(_SIMPLE_PATH.fullmatch(p) for p in new):
            return False
        paths.extend(new)
    if not paths:
        return False
    n = len(_PROBES)
    assignments = [[_PROBES[(i + k) % n] for i in range(len(paths))] for k in range(n)]
    assignments += [[_PROBES[(k - i) % n] for i in range(len(paths))] for k in range(n)]
    for values in assignments:
        metadata = _probe_metadata(paths, values)
        if metadata is None or not _true(evaluate_expression(ast, _bindings(metadata))):
            return False
    return True


def check_file(path: str | os.PathLike[str]) -> Objectives:
    """``mlspec objectives check FILE``: load, validate and compile, or raise InputError."""
    objectives = Objectives.from_file(path)
    objectives.compile_all()
    return objectives


# --------------------------------------------------------------------------- evaluation

@dataclass(frozen=True)
class CriterionResult:
    """The verdict on one criterion, with the values it read (for reports and JSON)."""

    name: str
    stage: str
    expression: str
    severity: str
    passed: bool
    values: dict[str, Any]
    message: str
    description: str = ""

    @property
    def blocks(self) -> bool:
        """True when this result fails the gate (a failed ``block`` criterion)."""
        return not self.passed and self.severity == "block"

    @property
    def status(self) -> str:
        """``pass``, ``fail`` (blocking) or ``warn`` (failed, non-blocking)."""
        if self.passed:
            return "pass"
        return "fail" if self.severity == "block" else "warn"

    def to_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.name,
            "stage": self.stage,
            "expression": self.expression,
            "severity": self.severity,
            "description": self.description,
            "values": dict(self.values),
            "result": self.status,
            "passed": self.passed,
            "message": self.message,
        }


def _bindings(metadata: Mapping[str, Any], others: Mapping[str, Mapping[str, Any] | None] | None = None,
              previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The CEL variables: the bound stage's metadata, every stage of the chain by name (a stage not in
    the chain binds as an empty map, so reading it is a missing value, never an error) and ``previous``
    (the predecessor release's stages; empty without a verified predecessor)."""
    chain = others or {}
    return {
        "metrics": metadata.get("metrics", {}),
        "slices": metadata.get("slices", {}),
        "signals": metadata.get("signals", {}),
        "metadata": metadata,
        **{name: chain.get(name) or {} for name in STAGE_VARIABLES},
        PREVIOUS: previous or {},
    }


def _names(ast: lark.Tree) -> set[str]:
    return {str(node.children[0]) for node in ast.iter_subtrees() if node.data in ("ident", "dot_ident")}


def reads_previous(ast: lark.Tree) -> bool:
    """True when the compiled expression reads ``previous`` (the predecessor release)."""
    return PREVIOUS in _names(ast)


def stages_read(crit: Criterion) -> set[str]:
    """The stages of the chain a criterion reads: its own and those it names (not ``previous``)."""
    try:
        names = _names(crit.compile())
    except InputError:
        return {crit.stage}
    return {crit.stage} | (names & set(STAGE_VARIABLES))


@dataclass(frozen=True)
class PreviousRelease:
    """What ``previous`` reads, or why it reads nothing (the gate fills this in; verify/criteria.py)."""

    metadata: Mapping[str, Mapping[str, Any]] | None = None  # stage -> latest metadata of the verified predecessor
    first_release: bool = False  # established: no earlier release of this project exists
    reason: str = "no predecessor release was declared or verified"


def _missing_message(path: str, parent: str, available: list[str], stage: str,
                     chain: Mapping[str, Any] | None = None, previous: PreviousRelease | None = None) -> str:
    root, _, rest = path.partition(".")
    if root == PREVIOUS:
        if previous is None or previous.metadata is None:
            return f"{path!r} cannot be read: {(previous or PreviousRelease()).reason}"
        named = rest.partition(".")[0]
        if named and named not in previous.metadata:
            return f"{path!r}: stage {named!r} is not in the predecessor release's chain"
        stage = f"previous release's {named}" if named else "previous release"
    elif root in STAGE_VARIABLES:
        if chain is not None and not chain.get(root):
            return f"{path!r}: stage {root!r} is not in the chain (no authentic attestation of it)"
        stage = root
    if not available:
        had = f"it attested nothing under {parent}"
    else:
        had = f"{parent} has: {_listing(available)}"
    return f"{path!r} is missing from the latest {stage!r} attestation ({had})"


def _fmt(value: Any) -> str:
    """Short form for messages (the ``values`` dict keeps the exact numbers)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value)


def _values_text(values: Mapping[str, Any]) -> str:
    items = [f"{k} = {_fmt(v)}" for k, v in values.items()]
    return _listing(items) if items else "no metric values"


def _evaluate_one(crit: Criterion, metadata: Mapping[str, Any] | None, source: str,
                  chain: Mapping[str, Mapping[str, Any] | None] | None = None,
                  previous: PreviousRelease | None = None) -> CriterionResult:
    def result(passed: bool, values: dict[str, Any], message: str) -> CriterionResult:
        return CriterionResult(
            crit.name, crit.stage, crit.expression, crit.severity, passed, values, message, crit.description,
        )

    if metadata is None:
        return result(
            False, {},
            f"stage {crit.stage!r} has no attestation in the chain, so criterion {crit.name!r} cannot be checked",
        )
    if not isinstance(metadata, Mapping):
        return result(False, {}, f"the latest {crit.stage!r} attestation's metadata is not a mapping")
    try:
        ast = compile_expression(crit.expression, ALL_VARIABLES)
    except ExpressionError as exc:
        return result(False, {}, f"expression does not compile: {exc.position()}: {exc.reason}")
    if reads_previous(ast) and (previous is None or previous.metadata is None):
        if previous is not None and previous.first_release and crit.first_release == "pass":
            return result(True, {}, "first release: there is no earlier release to compare with "
                                    "(first_release: pass)")
        why = (previous or PreviousRelease()).reason
        if previous is not None and previous.first_release:
            why += "; say first_release: pass on the criterion to let a first release through"
        return result(False, {}, f"it reads previous.*, but {why}")
    prev = previous.metadata if previous is not None else None
    outcome = evaluate_expression(ast, _bindings(metadata, chain, prev))
    values = outcome.reads
    if outcome.missing:
        # Checked first: a missing metric fails even where || / && absorbed the error.
        texts = [
            _missing_message(path, parent, avail, crit.stage, chain, previous)
            for path, (parent, avail) in outcome.missing.items()
        ]
        return result(False, values, "; ".join(texts))
    if outcome.error is not None:
        return result(False, values, f"evaluation error: {outcome.error}")
    if not isinstance(outcome.value, celtypes.BoolType):  # BoolType subclasses int, not bool
        return result(
            False, values,
            f"expression gave {describe_value(outcome.value)}, not true/false; "
            f"a criterion must be a comparison (e.g. metrics.accuracy >= 0.85)",
        )
    if bool(outcome.value):
        return result(True, values, "")
    return result(False, values, f"false with {_values_text(values)}")


def evaluate(
    objectives: Objectives, metadata_by_stage: Mapping[str, Mapping[str, Any] | None],
    previous: PreviousRelease | None = None,
) -> list[CriterionResult]:
    """Evaluate every criterion against the metadata of the latest attestation of its stage.

    ``metadata_by_stage`` maps a stage name (canonical or alias) to the ``metadata``
    of that stage's latest attestation in the chain; a stage that is absent (or
    maps to None) never ran, and each criterion bound to it fails with that reason.
    A criterion may read the other stages by name; ``previous`` is what ``previous.*``
    reads (None: no predecessor, so a criterion that reads it fails).
    """
    by_stage: dict[str, Mapping[str, Any] | None] = {}
    for name, metadata in metadata_by_stage.items():
        by_stage[stages.resolve(name).name] = metadata
    return [_evaluate_one(crit, by_stage.get(crit.stage), objectives.source, by_stage, previous)
            for crit in objectives.criteria]


def gate_passed(results: Sequence[CriterionResult]) -> bool:
    """True unless some blocking criterion failed (warnings never fail the gate)."""
    return not any(r.blocks for r in results)


# --------------------------------------------------------------------------- template

OBJECTIVES_TEMPLATE = """\
# Objectives: what this model must achieve before it may be deployed.
#
# This file is the genesis of the attestation chain. Fix it BEFORE training:
#   mlspec objectives check objectives.yaml     # compiles every criterion
#   mlspec attest stage objectives --bundle bundle --key keys/owner.key \\
#       --metadata objectives.yaml
# The deploy gate (mlspec verify) evaluates every criterion against the metrics
# attested by the latest attestation of the stage it is bound to.
# Full reference: docs/objectives.md

version: 1                        # the file format
project: my-model                 # the trust policy pins it (objectives.project)
revision: 1                       # raise on every change; the policy's objectives.min_revision retires old ones

description: Loan-approval classifier for the retail credit pipeline.   # optional

# What the model emits. classification needs labels; regression needs a range.
outputs:
  task: classification            # classification, regression, ranking, generation...
  labels: [approve, deny]
  # range: {min: 0.0, max: 1.0}   # for regression instead of labels (null = unbounded)
  description: One label per application, with a score in [0, 1].

# The ways the model can be wrong, and how each is handled in production.
errors:
  - name: false_approve
    description: An application that should be denied is approved.
    handling: Scores within 0.05 of the threshold go to manual review.
  - name: false_deny
    description: A creditworthy applicant is denied.
    handling: Every denial can be appealed; appeals are re-scored by a person.

# Success criteria: CEL expressions that must be true.
#   stage:     the stage whose attested metadata the expression reads
#   variables: metrics.<name>, slices.<attribute>.<slice>.<metric>,
#              signals.<name> (monitor), metadata (the stage's whole metadata),
#              another stage by name (evaluate.metrics.r2), previous.<stage>... (the
#              verified release this one succeeds; docs/workflows.md)
#   helpers:   max_gap(slices.<attribute>, "metric") or slices.<attribute>.max_gap("metric"),
#              min(slices.<attribute>, "metric"), max(...), abs(x)
#   severity:  block (fails the deploy gate) or warn (reported only); default block
# A metric the stage did not attest is a failure, never a pass.
criteria:
  - name: evaluate_accuracy
    stage: evaluate
    expression: metrics.accuracy >= 0.85
    severity: block
    description: Validation accuracy of at least 85%.

  - name: evaluate_recall_gap
    stage: evaluate
    expression: slices.group.max_gap("recall") <= 0.05
    severity: block
    description: Recall differs by at most 5 points between the best and worst group.

  - name: evaluate_worst_group_recall
    stage: evaluate
    expression: min(slices.group, "recall") >= 0.75
    severity: warn
    description: No group's recall falls below 75%.

  - name: test_accuracy
    stage: test
    expression: metrics.accuracy >= 0.85
    severity: block
    description: Hold-back accuracy of at least 85%, measured separately from evaluate.

  - name: monitor_drift
    stage: monitor
    expression: signals.drift <= 0.2
    severity: warn
    description: Input drift stays under 0.2 after roll-out; above it, roll back.
"""
