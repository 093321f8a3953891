"""in-toto Statement v1 with the mlspec stage predicate.

We build the statement as plain JSON values (protobuf's Struct would turn every
integer into a float) and validate it with the ``in-toto-attestation`` bindings,
so what we sign is exactly what other in-toto tools parse.

At verify time the protobuf round trip (about 95 us a statement, plus ~15 ms of
imports) is skipped for statements a direct structural check proves the bindings
accept (``in_toto_accepts``); anything else still goes through the bindings, which
then decide and word the refusal. tests/unit/verify/test_fast_paths.py checks on valid, mutated
and generated statements that the check never accepts what the bindings refuse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import canonicalize, parse_canonical_fast, parse_json, sha256_hex
from mlspec_attest.model.stages import Stage, from_predicate_type

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
ROLE_ANNOTATION = "role"  # ResourceDescriptor annotation naming what an artifact is to its stage
_HEX64 = re.compile(r"[0-9a-f]{64}")


def resource_descriptor(name: str, sha256: str, *, annotations: Mapping[str, Any] | None = None,
                        uri: str | None = None) -> dict[str, Any]:
    rd: dict[str, Any] = {"name": name, "digest": {"sha256": sha256}}
    if uri:
        rd["uri"] = uri
    if annotations:
        rd["annotations"] = dict(annotations)
    return rd


def validate_with_in_toto(statement: Mapping[str, Any]) -> None:
    """Parse into the in-toto-attestation protobuf bindings and run their validator."""
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    pb = statement_pb2.Statement()
    try:
        json_format.ParseDict(dict(statement), pb)
        Statement.copy_from_pb(pb).validate()
    except (json_format.ParseError, ValueError) as exc:
        raise ValueError(f"not a valid in-toto Statement v1: {exc}") from None


# What the direct check understands; anything else (``content``, ``predicate_type`` spelt
# with its proto field name, nulls, ...) is left to the bindings.
_STATEMENT_KEYS = frozenset({"_type", "subject", "predicateType", "predicate"})
_RD_STRING_FIELDS = ("name", "uri", "downloadLocation", "mediaType")
_RD_KEYS = frozenset({*_RD_STRING_FIELDS, "digest", "annotations"})
# json_format.ParseDict refuses messages nested deeper than 100 protobuf levels, which is
# about 50 JSON levels of Struct/Value (measured: a predicate 48 levels below the statement
# passes, 49 fails). The direct check accepts at most this many JSON levels, well below.
IN_TOTO_FAST_MAX_DEPTH = 40


def _depth_at_most(value: Any, limit: int) -> bool:
    """True when ``value`` nests at most ``limit`` containers deep (the top one counts 1)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        children = item.values() if type(item) is dict else item
        stack.extend((c, depth + 1) for c in children if type(c) is dict or type(c) is list)
    return True


def in_toto_accepts(statement: Any, *, depth_bound: int | None = None) -> bool:
    """True only for statements that ``validate_with_in_toto`` accepts (never a false True).

    ``statement`` is a JSON value as ``parse_json`` returns it (str keys, no lone
    surrogates). Implements ``json_format.ParseDict`` into ``in_toto_attestation.v1``
    Statement (known fields only, right JSON types, Struct nesting bound) and the rules of
    ``Statement.validate`` / ``ResourceDescriptor.validate``: _type is the v1 URI; at least
    one subject; each subject has a non-empty digest (so name/uri/digest is set); a
    non-empty predicateType; a non-empty predicate object. False means: ask the bindings.
    ``depth_bound``: an upper bound on the nesting the caller already knows (the number of
    '{' and '[' bytes in the JSON text); the depth walk is skipped when it is low enough.
    """
    if type(statement) is not dict or statement.keys() != _STATEMENT_KEYS:
        return False
    if statement["_type"] != STATEMENT_TYPE:
        return False
    predicate_type, predicate, subjects = statement["predicateType"], statement["predicate"], statement["subject"]
    if type(predicate_type) is not str or not predicate_type:
        return False
    if type(predicate) is not dict or not predicate:
        return False
    if type(subjects) is not list or not subjects:
        return False
    for rd in subjects:
        if type(rd) is not dict or not rd.keys() <= _RD_KEYS:
            return False
        digest = rd.get("digest")
        if type(digest) is not dict or not digest:
            return False
        for algorithm, value in digest.items():
            if type(algorithm) is not str or type(value) is not str:
                return False
        for name in _RD_STRING_FIELDS:
            if name in rd and type(rd[name]) is not str:
                return False
        if "annotations" in rd and type(rd["annotations"]) is not dict:
            return False
    if depth_bound is not None and depth_bound <= IN_TOTO_FAST_MAX_DEPTH:
        return True
    return _depth_at_most(statement, IN_TOTO_FAST_MAX_DEPTH)


def validate_statement(statement: Mapping[str, Any], *, depth_bound: int | None = None) -> None:
    """What ``validate_with_in_toto`` decides, without protobuf when the direct check can vouch."""
    if not in_toto_accepts(statement, depth_bound=depth_bound):
        validate_with_in_toto(statement)


@dataclass(frozen=True)
class ChainLink:
    genesis: str | None
    sequence: int
    previous: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"genesis": self.genesis, "sequence": self.sequence, "previous": self.previous}

    @classmethod
    def from_dict(cls, data: Any) -> ChainLink:
        if not isinstance(data, Mapping):
            raise ValueError("predicate.chain must be an object")
        seq = data.get("sequence")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError("predicate.chain.sequence must be a non-negative integer")
        genesis, previous = data.get("genesis"), data.get("previous")
        for label, value in (("genesis", genesis), ("previous", previous)):
            if value is not None and not (isinstance(value, str) and _HEX64.fullmatch(value)):
                raise ValueError(f"predicate.chain.{label} must be 64 lowercase hex digits or null")
        if seq == 0 and (genesis is not None or previous is not None):
            raise ValueError("sequence 0 must have null genesis and previous")
        if seq > 0 and (genesis is None or previous is None):
            raise ValueError(f"sequence {seq} must name its genesis and previous payload digests")
        return cls(genesis=genesis, sequence=seq, previous=previous)


@dataclass(frozen=True)
class StageStatement:
    """A parsed, checked statement: what the verifier reasons about."""

    stage: Stage
    chain: ChainLink
    subjects: list[dict[str, Any]]
    materials: list[dict[str, Any]]
    metadata: dict[str, Any]
    run: dict[str, Any]
    redactions: list[str]
    raw: dict[str, Any]
    evidence: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_payload(cls, payload: bytes) -> StageStatement:
        """Parse payload bytes; they must already be RFC 8785 canonical."""
        data = parse_canonical_fast(payload)  # None: the strict parser and rfc8785 decide (and explain)
        if data is None:
            data = parse_json(payload, source="payload")
            if canonicalize(data) != payload:
                raise ValueError("payload is not in RFC 8785 canonical form")
        if not isinstance(data, dict) or data.get("_type") != STATEMENT_TYPE:
            raise ValueError(f"_type is not {STATEMENT_TYPE}")
        validate_statement(data, depth_bound=payload.count(b"{") + payload.count(b"["))
        stage = from_predicate_type(data.get("predicateType", ""))
        if stage is None:
            raise ValueError(f"predicateType {data.get('predicateType')!r} is not an mlspec stage type")
        predicate = data["predicate"]
        if not isinstance(predicate, dict):
            raise ValueError("predicate must be an object")
        chain = ChainLink.from_dict(predicate.get("chain"))
        materials = predicate.get("materials", [])
        metadata = predicate.get("metadata", {})
        run = predicate.get("run", {})
        redactions = predicate.get("redactions", [])
        if not isinstance(materials, list) or not all(_is_descriptor(m) for m in materials):
            raise ValueError("predicate.materials must be a list of resource descriptors with sha256")
        if not all(_is_descriptor(s) for s in data["subject"]):
            raise ValueError("every subject needs a name and a sha256 digest")
        if not isinstance(metadata, dict) or not isinstance(run, dict) or not isinstance(redactions, list):
            raise ValueError("predicate.metadata/run must be objects and redactions a list")
        evidence = predicate.get("evidence", [])
        if not isinstance(evidence, list) or not all(_is_descriptor(e) and isinstance(e.get("name"), str)
                                                     for e in evidence):
            raise ValueError("predicate.evidence must be a list of named resource descriptors with sha256")
        return cls(stage=stage, chain=chain, subjects=list(data["subject"]), materials=materials,
                   metadata=metadata, run=run, redactions=redactions, raw=data, evidence=evidence)


    @classmethod
    def from_trusted_value(cls, data: dict[str, Any]) -> StageStatement:
        """Rebuild the statement ``from_payload`` returned for a payload whose parsed value is
        ``data``, without checking it again: only for values ``from_payload`` accepted (the
        verifier's worker processes send back the value, not the object; tested equal)."""
        predicate = data["predicate"]
        stage = from_predicate_type(data["predicateType"])
        assert stage is not None
        link = predicate["chain"]
        return cls(stage=stage, chain=ChainLink(genesis=link.get("genesis"), sequence=link["sequence"],
                                                previous=link.get("previous")),
                   subjects=list(data["subject"]), materials=predicate.get("materials", []),
                   metadata=predicate.get("metadata", {}), run=predicate.get("run", {}),
                   redactions=predicate.get("redactions", []), raw=data, evidence=predicate.get("evidence", []))


def _is_descriptor(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("name", ""), str)
            and isinstance(value.get("digest"), dict)
            and isinstance(value["digest"].get("sha256"), str)
            and bool(_HEX64.fullmatch(value["digest"]["sha256"])))


def build_statement(stage: Stage, *, chain: ChainLink, subjects: list[dict[str, Any]],
                    materials: list[dict[str, Any]], metadata: dict[str, Any], run: dict[str, Any],
                    redactions: list[str], evidence: list[dict[str, Any]] | None = None,
                    extra: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], bytes]:
    """Assemble and validate a statement; returns it with its canonical payload bytes."""
    if not subjects:
        raise InputError(f"stage {stage.name}: a statement needs at least one subject")
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": stage.predicate_type,
        "predicate": {
            "chain": chain.to_dict(),
            "materials": materials,
            "metadata": metadata,
            "run": run,
            "redactions": redactions,
        },
    }
    if evidence:
        statement["predicate"]["evidence"] = evidence  # type: ignore[index]
    for key, value in (extra or {}).items():  # further predicate fields (e.g. metadataSources)
        statement["predicate"][key] = value  # type: ignore[index]
    payload = canonicalize(statement)
    try:
        validate_with_in_toto(statement)
    except ValueError as exc:
        raise InputError(f"stage {stage.name}: {exc}") from None
    return statement, payload


def payload_digest(payload: bytes) -> str:
    return sha256_hex(payload)
