"""Loading user files (metadata YAML/JSON, policies, envelopes) safely.

Every file a user hands us is hostile until proven otherwise: size is bounded
before reading, YAML is parsed with the safe loader only, duplicate and
non-string keys are refused, alias expansion is bounded, and every error names
the file, the line and the column.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from pathlib import Path
from typing import Any

import yaml

from mlspec_attest._internal.files import MAX_FILE_BYTES, read_file
from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import MAX_SAFE_INTEGER, parse_json

MAX_INPUT_BYTES = MAX_FILE_BYTES  # metadata, policies, envelopes
MAX_EXPANDED_NODES = 1_000_000  # bounds YAML alias ("billion laughs") expansion
# Aliases may not make a document bigger, in scalar bytes, than max(the file itself, 16 MiB):
# a few thousand aliases of one long string are a bomb in bytes long before they are one in nodes.
MIN_EXPANDED_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 200


def read_bounded(path: str | os.PathLike[str], limit: int = MAX_INPUT_BYTES, what: str = "file") -> bytes:
    """Read a regular file the user named, whole, refusing special files and anything over ``limit``.

    Delegates to the one safe-open routine (_internal/files.py): O_NONBLOCK, fstat of
    what was opened, the size bound checked before reading and while reading.
    """
    return read_file(path, limit=limit, what=what)



class _StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate and non-string keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: dict[str, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found a non-string key {key!r}; quote it", key_node.start_mark,
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, tuple[int, int]], max_bytes: int,
                   depth: int = 0) -> tuple[int, int]:
    """(nodes, scalar bytes) of ``node`` with every alias expanded; refuses either past its bound."""
    if depth > MAX_DEPTH:
        raise InputError("nesting deeper than %d levels" % MAX_DEPTH)
    cached = memo.get(id(node))
    if cached is not None:
        return cached
    nodes, size = 1, 0
    if isinstance(node, yaml.ScalarNode):
        size = len(node.value)
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            n, b = _expanded_size(child, memo, max_bytes, depth + 1)
            nodes, size = nodes + n, size + b
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            kn, kb = _expanded_size(k, memo, max_bytes, depth + 1)
            vn, vb = _expanded_size(v, memo, max_bytes, depth + 1)
            nodes, size = nodes + kn + vn, size + kb + vb
    memo[id(node)] = (nodes, size)
    if nodes > MAX_EXPANDED_NODES:
        raise InputError(
            f"expands to more than {MAX_EXPANDED_NODES} nodes through aliases (an alias bomb?)"
        )
    if size > max_bytes:
        raise InputError(
            f"expands to more than {max_bytes} bytes of text through aliases (an alias bomb?); "
            "write the values out instead of aliasing them"
        )
    return nodes, size


def _to_json_value(value: Any, where: str) -> Any:
    """Convert YAML scalars JSON cannot carry; refuse those it must not."""
    if isinstance(value, dict):
        return {k: _to_json_value(v, f"{where}/{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json_value(v, f"{where}/{i}") for i, v in enumerate(value)]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise InputError(f"integer at {where or '/'} is outside the interoperable range ±2^53; quote it")
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise InputError(f"value at {where or '/'} is NaN or infinite, which JSON cannot carry")
        return value
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        raise InputError(f"binary value at {where or '/'}: use base64 text instead")
    raise InputError(f"unsupported YAML value at {where or '/'}: {type(value).__name__}")


def parse_yaml(data: bytes, *, source: str) -> Any:
    """Parse one YAML document into plain JSON values, with precise errors."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not valid UTF-8 at byte {exc.start}") from None
    loader = _StrictSafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            _expanded_size(node, {}, max(len(data), MIN_EXPANDED_BYTES))
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None
        value = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        raise InputError(f"{where}: invalid YAML: {problem}; fix the file and retry") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: invalid YAML: {exc}") from None
    except RecursionError:
        raise InputError(f"{source}: YAML nested too deeply") from None
    finally:
        loader.dispose()
    try:
        return _to_json_value(value, "")
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None


def load_document(path: str | os.PathLike[str], what: str = "file") -> Any:
    """Load a YAML or JSON file (by suffix; YAML otherwise) as plain JSON values."""
    p = Path(path)
    data = read_bounded(p, what=what)
    if p.suffix.lower() == ".json":
        value = parse_json(data, source=str(p))
        try:
            return _to_json_value(value, "")
        except InputError as exc:
            raise InputError(f"{p}: {exc}") from None
    return parse_yaml(data, source=str(p))


def load_mapping(path: str | os.PathLike[str], what: str = "file") -> dict[str, Any]:
    value = load_document(path, what)
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected a mapping at the top level, found {type(value).__name__}")
    return value
