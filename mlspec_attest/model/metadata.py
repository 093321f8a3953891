"""Stage metadata: per-stage JSON Schemas, merging several files, ``--set`` overrides.

Each of the thirteen stages has a JSON Schema (Draft 2020-12) shipped as package
data in ``mlspec_attest/schemas/<stage>.json`` and documented in docs/stages.md.
Schemas require only what the seed calls essential for the stage and allow extra
fields, so the seed's own example files and hand-written minimal metadata pass.

One judge: ``jsonschema-rs`` (the Rust ``jsonschema`` crate, Draft 2020-12, formats as
annotations) decides whether metadata fits, at attest time and at the gate alike, so the
writer and the gate never disagree. It validates in well under a microsecond where the
pure-Python ``jsonschema`` took 20-90 us per document (a third of a long chain's time).
``jsonschema`` (Python) only explains a refusal: its ``best_match`` finds the most
relevant error, phrased for users below; should it find none for a document the judge
refused (their regex dialects differ: ``$`` before a trailing newline), the judge's own
message is used. Both are imported lazily: ``mlspec --help`` pays for neither.
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import Any

from mlspec_attest._internal.loaders import parse_yaml
from mlspec_attest.errors import InputError
from mlspec_attest.model.stages import resolve

DOCS_HINT = "see docs/stages.md"
_MAX_MESSAGE = 200


@functools.cache
def _load_schema(canonical_name: str) -> dict[str, Any]:
    try:
        text = (resources.files("mlspec_attest") / "schemas" / f"{canonical_name}.json").read_text("utf-8")
    except FileNotFoundError:  # a broken install, not user input
        raise InputError(
            f"metadata schema for stage {canonical_name!r} is missing from the installed package; reinstall it"
        ) from None
    return json.loads(text)


def schema_for(stage_name: str) -> dict[str, Any]:
    """The metadata JSON Schema of a stage (canonical name or alias).

    Returns a copy so callers cannot corrupt the cached schema.
    """
    return copy.deepcopy(_load_schema(resolve(stage_name).name))


@functools.cache
def _judge(canonical_name: str) -> Any:
    """The stage schema compiled by jsonschema-rs: the verdict everywhere (module docstring)."""
    import jsonschema_rs  # lazy: keeps the CLI start lean

    return jsonschema_rs.Draft202012Validator(_load_schema(canonical_name), validate_formats=False)


@functools.cache
def _validator(canonical_name: str) -> Any:
    """The same schema for python-jsonschema, which only explains refusals."""
    from jsonschema import Draft202012Validator  # lazy: keeps the CLI start lean

    return Draft202012Validator(_load_schema(canonical_name))


def metadata_fits(canonical_name: str, metadata: Any) -> bool:
    """Whether a stage's metadata (canonical stage name) fits its schema; a non-JSON value never does."""
    try:
        return bool(_judge(canonical_name).is_valid(metadata))
    except ValueError:  # jsonschema-rs refuses what is not a JSON value (a non-string key, bytes)
        return False


def _escape(token: Any) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def json_pointer(path: Any) -> str:
    """RFC 6901 pointer for a sequence of keys/indices ("" is the whole document)."""
    return "".join("/" + _escape(p) for p in path)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _any_of_message(error: Any) -> str:
    alternatives = error.validator_value
    if all(isinstance(s, dict) and set(s) == {"required"} for s in alternatives):
        names = ", ".join(repr(n) for s in alternatives for n in s["required"])
        return f"needs at least one of {names}"
    expected = error.schema.get("description") or "one of the allowed forms"
    return f"{_short(error.instance)} is not valid here; expected {expected}"


def _describe(error: Any) -> tuple[str, str]:
    """(pointer, message) for the most relevant jsonschema error, phrased for users."""
    parent = error.parent
    if error.validator in ("anyOf", "oneOf"):
        return json_pointer(error.absolute_path), _any_of_message(error)
    if parent is not None and parent.validator in ("anyOf", "oneOf"):
        same_place = list(error.absolute_path) == list(parent.absolute_path)
        if error.validator == "required" or (same_place and error.validator == "type"):
            return json_pointer(parent.absolute_path), _any_of_message(parent)
    if error.validator == "type":
        message = f"{_short(error.instance)} is not of type {error.validator_value!r}"
    elif error.validator == "const":
        message = f"{_short(error.instance)} is not allowed here; it must be {json.dumps(error.validator_value)}"
    elif error.validator == "enum":
        message = f"{_short(error.instance)} is not one of {', '.join(map(str, error.validator_value))}"
    else:
        message = error.message
    return json_pointer(error.absolute_path), _one_line(message)


def _forbidden_fields(canonical_name: str, error: Any, metadata: Any) -> str | None:
    """The message for a field a stage must not carry (an ``allOf`` clause of forbidden ``properties``), or None.

    Why a clause of ``properties`` (``false``, or ``not``) rather than ``not: {anyOf: [{required}...]}``:
    the same language, but jsonschema then builds no error per absent name on every valid
    document (monitor metadata took 364 us to validate instead of ~20 us).
    """
    path = list(error.absolute_schema_path)
    if len(path) < 3 or path[0] != "allOf" or path[2] != "properties" or len(error.absolute_path) > 1:
        return None
    clause = _load_schema(canonical_name)["allOf"][path[1]]
    if "description" not in clause or not isinstance(metadata, dict):
        return None
    validator = _validator(canonical_name)
    names = [name for name, rule in clause["properties"].items()
             if name in metadata and not validator.evolve(schema=rule).is_valid(metadata[name])] or ["a field"]
    return f"holds {', '.join(map(repr, names[:3]))}: {clause['description']}"


def best_error(canonical_name: str, metadata: Any) -> Any:
    """The most relevant python-jsonschema error of metadata the judge refused, or None."""
    from jsonschema.exceptions import best_match  # lazy: keeps the CLI start lean

    return best_match(_validator(canonical_name).iter_errors(metadata))


WORDING_NODE_LIMIT = 20_000
"""JSON values in metadata beyond which a refusal is worded by the judge: python-jsonschema's
best_match costs about 1 us a byte, so a bundle holder's 64 MiB document took a minute to word."""


def _at_most(value: Any, limit: int) -> bool:
    """Whether a JSON value holds at most ``limit`` values (a walk that stops early)."""
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > limit:
            return False
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _judge_says(canonical_name: str, metadata: Any) -> tuple[str, str]:
    """(pointer, message) from jsonschema-rs itself: its first error, found without collecting the rest."""
    import jsonschema_rs

    try:
        _judge(canonical_name).validate(metadata)
    except jsonschema_rs.ValidationError as error:
        return json_pointer(error.instance_path), _one_line(error.message.split("\n", 1)[0])
    except ValueError as exc:
        return "", _one_line(f"not a JSON value ({exc})")
    return "", "refused by the schema"


def metadata_refusal(canonical_name: str, metadata: Any) -> str | None:
    """None when signed metadata (a parsed JSON value) fits its stage's schema, else "WHERE: WHY" in one line."""
    if metadata_fits(canonical_name, metadata):
        return None
    error = None
    if _at_most(metadata, WORDING_NODE_LIMIT):
        try:
            error = best_error(canonical_name, metadata)
        except Exception:  # only the wording is at stake: the verdict above stands
            error = None
    if error is None:
        pointer, message = _judge_says(canonical_name, metadata)
    else:
        pointer, message = _describe(error)
        forbidden = _forbidden_fields(canonical_name, error, metadata)
        if forbidden is not None:
            pointer, message = "", _one_line(forbidden)
    return f"{pointer if pointer else 'the top level'}: {message}"


def refusal_message(source: str, canonical_name: str, refusal: str) -> str:
    """The one line a refused document gets, at attest time (exit 2) and at the gate (METADATA_INVALID)."""
    return f"{source}: metadata for stage {canonical_name!r} is invalid at {refusal}; {DOCS_HINT}"


def validate_metadata(stage_name: str, metadata: Any, source: str = "metadata") -> None:
    """Check a stage's metadata, as it will be signed, against its schema; raise InputError (one line) if invalid.

    "As it will be signed": the value is canonicalised and parsed back first, so what is judged
    is the JSON the statement carries (a numpy float from a Python pipeline is the number it
    signs as; a tuple, the array), not the Python objects that happened to hold it.
    """
    from mlspec_attest.model.canonical import canonicalize, parse_json

    stage = resolve(stage_name)
    try:
        signed = parse_json(canonicalize(metadata), source=source)
    except InputError as exc:
        raise InputError(f"{source}: metadata for stage {stage.name!r} is not signable JSON: {exc}") from None
    except RecursionError:
        raise InputError(f"{source}: metadata for stage {stage.name!r} is nested too deeply to sign") from None
    refusal = metadata_refusal(stage.name, signed)
    if refusal is not None:
        raise InputError(refusal_message(source, stage.name, refusal))


def merge_metadata(parts: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Merge metadata files top-level, in order; a key set to different values is an error.

    A stage's metadata is often assembled from several user files (model.yaml +
    data.yaml...). Silently letting the last file win would sign something the user
    did not see, so a conflict names both files. Equal values are not a conflict.
    """
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, part in parts:
        if not isinstance(part, dict):
            raise InputError(f"{source}: metadata must be a mapping at the top level, found {type(part).__name__}")
        for key, value in part.items():
            if key in merged and merged[key] != value:
                raise InputError(
                    f"{source}: metadata key {key!r} is also set, differently, by {origin[key]}; "
                    "keep it in one file or override it with --set"
                )
            if key not in merged:
                merged[key] = copy.deepcopy(value)
                origin[key] = source
    return merged


def parse_set(assignment: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=VALUE`` into its path and YAML-typed value (``--set`` syntax).

    VALUE is read as a YAML scalar so ``3``, ``0.5``, ``true``, ``null`` keep their
    types; quote it (``'"1.10"'``) to force a string. ``[..]``/``{..}`` give flow
    lists/mappings (and must then be valid YAML); any other text that YAML would
    read as a collection (``a: b``) or cannot read at all stays a plain string.
    An empty VALUE is the empty string.
    """
    try:
        assignment.encode("utf-8")
    except UnicodeEncodeError as exc:  # a non-UTF-8 byte on the command line arrives as a surrogate
        shown = assignment.encode("utf-8", "backslashreplace").decode("utf-8")
        raise InputError(f"--set {shown.partition('=')[0]}: character {exc.start + 1} is not UTF-8; "
                         "give KEY=VALUE as UTF-8 text") from None
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InputError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set hyperparameters.lr=0.01")
    path = key.split(".")
    if any(not segment.strip() for segment in path):
        raise InputError(f"--set {assignment!r}: empty segment in dotted key {key!r}")
    path = [segment.strip() for segment in path]
    text = raw.strip()
    if text == "":
        return path, ""
    explicit = text.startswith(("[", "{", '"', "'"))
    try:
        value = parse_yaml(text.encode("utf-8"), source=f"--set {key}")
    except InputError as exc:
        if "invalid YAML: " not in str(exc):
            raise  # YAML, but not JSON-representable (NaN, integers past 2^53): say so
        if not explicit:
            return path, text  # e.g. "@home" or "a: b: c": plainly meant as text
        detail = str(exc).split("invalid YAML: ", 1)[-1].removesuffix("; fix the file and retry")
        raise InputError(f"--set {key}: VALUE {text!r} is not valid YAML ({detail})") from None
    if isinstance(value, (dict, list)) and not explicit:
        value = text
    return path, value


def apply_set(metadata: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply one ``--set a.b.c=VALUE`` to ``metadata`` in place, creating mappings on the way.

    Returns the same dict for chaining. Refuses to walk through a non-mapping
    (overwriting a list or scalar with a mapping would silently drop data).
    """
    if not isinstance(metadata, dict):
        raise InputError(f"--set {assignment!r}: metadata is not a mapping")
    path, value = parse_set(assignment)
    node: dict[str, Any] = metadata
    for depth, segment in enumerate(path[:-1]):
        child = node.get(segment)
        if child is None:
            child = node[segment] = {}
        elif not isinstance(child, dict):
            where = ".".join(path[: depth + 1])
            raise InputError(
                f"--set {assignment!r}: {where!r} is a {type(child).__name__}, not a mapping; cannot set a key inside it"
            )
        node = child
    node[path[-1]] = value
    return metadata


_DEPRECATED_STATUS = frozenset({"deprecated"})


def _key_words(key: Any) -> str:
    """``is_deprecated``, ``isDeprecated``, ``Is-Deprecated`` all read ``isdeprecated``."""
    return "".join(c for c in str(key).lower() if c.isalnum())


def _says_yes(value: Any) -> bool:
    return value is True or (type(value) in (int, float) and value != 0) \
        or (isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "y"))


def deprecated_markers(metadata: Any, path: tuple[Any, ...] = ()) -> list[str]:
    """JSON pointers where metadata marks its data deprecated, at any depth.

    The seed's dataset model writes ``isDeprecated: true``; its object model a lifecycle
    ``status: Deprecated``. Either, anywhere (a source inside ``datasets``, ``sources``...),
    marks data that must not reach training (seed README, "Data Validation").
    """
    found: list[str] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [(path, metadata)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                here = (*where, key)
                name = _key_words(key)
                if name == "isdeprecated" and value is not False:
                    found.append(json_pointer(here))  # a flag: anything but a plain false (fail closed)
                elif name == "deprecated" and _says_yes(value):
                    found.append(json_pointer(here))  # true, 1, "yes" (a list names deprecated columns, not data)
                elif name.endswith(("status", "state")) and isinstance(value, str) \
                        and value.strip().lower() in _DEPRECATED_STATUS:
                    found.append(json_pointer(here))
                else:
                    stack.append((here, value))
        elif isinstance(node, list):
            stack.extend(((*where, i), v) for i, v in enumerate(node))
    return sorted(found)


def same_json(a: Any, b: Any) -> bool:
    """JSON equality without Python's coercions (``True == 1``, ``1 == 1.0`` stays as JSON would say)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def contradictions(source: dict[str, Any], signed: Any) -> list[str]:
    """JSON pointers where ``signed`` metadata differs from a ``source`` file's top-level keys."""
    if not isinstance(signed, dict):
        return [""]
    out: list[str] = []
    for key, value in source.items():
        if key not in signed or not same_json(value, signed[key]):
            out.append(json_pointer(_first_difference(value, signed.get(key), (key,))))
    return out


def _first_difference(a: Any, b: Any, path: tuple[Any, ...]) -> tuple[Any, ...]:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(a.keys() | b.keys(), key=str):
            if k not in a or k not in b or not same_json(a[k], b[k]):
                return _first_difference(a.get(k), b.get(k), (*path, k)) if k in a and k in b else (*path, k)
    return path


def bound_source_problems(metadata: Any, subjects: list[dict[str, Any]], sources: Any,
                          read_blob: Any) -> tuple[list[str], list[str]]:
    """Check ``metadataSources`` (metadata read from files this statement attests as products).

    Returns (invalid, contradictions): why a binding cannot be checked, and the JSON
    pointers where the signed metadata differs from the bound file. ``read_blob(sha256)``
    returns the stored bytes (raising OSError or InputError when absent); the verifier
    and replay pass their own, so both judge the same way.
    """
    from mlspec_attest.model.canonical import sha256_hex

    invalid: list[str] = []
    differ: list[str] = []
    names = {(s.get("name"), (s.get("digest") or {}).get("sha256")) for s in subjects if isinstance(s, dict)}
    for src in sources if isinstance(sources, list) else [sources]:
        try:
            if not isinstance(src, dict) or not isinstance(src.get("digest"), dict):
                raise ValueError("metadataSources entries must be {name, digest: {sha256}}")
            name, digest = src.get("name"), src["digest"].get("sha256")
            if not isinstance(digest, str) or (name, digest) not in names:
                raise ValueError(f"metadata source {name!r} is not a subject of this statement")
            data = read_blob(digest)
            if sha256_hex(data) != digest:
                raise ValueError(f"stored copy of {name} differs from the digest that was signed")
            part = parse_yaml(data, source=str(name))
            if not isinstance(part, dict):
                raise ValueError(f"{name} is not a mapping")
        except (InputError, OSError, ValueError) as exc:
            invalid.append(str(exc))
            continue
        differ.extend(f"{pointer or '/'} differs from {name}" for pointer in contradictions(part, metadata))
    return invalid, differ
