"""The trust policy: the verifier's only root of trust (never the bundle).

It names the keys (or Sigstore identities) allowed to sign each stage, how many
distinct signatures each needs, which stages are required or may repeat, the
allowed order, expiry, attestation age limits, revocations, per-stage CEL checks
and evidence rules, and which objectives the chain must be built on.

The whole file is parsed at load into frozen objects (python-tuf style: one class
per policy object, validation at construction, messages that name the place):
unknown fields and wrong types are errors, CEL checks are compiled, so a typo can
never silently weaken the gate and verification never reads raw policy data.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mlspec_attest._internal.loaders import load_mapping, read_bounded
from mlspec_attest.errors import InputError
from mlspec_attest.evidence.identity import IdentityRule
from mlspec_attest.keys import PublicKey
from mlspec_attest.model.stages import PHASES, STAGES, resolve, resolve_phase

_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_KEYID = re.compile(r"[0-9a-f]{64}")
_PROJECT = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,127}")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DEFAULT_INTERLEAVE = ("monitor", "log")
DEFAULT_EXTERNAL_ROLES = ("code", "config", "container", "base-model", "external")
CHECK_VARIABLES = ("subject", "materials", "metadata", "run", "predicate")

# Codes of the warnings a weakened policy adds to every verification (docs/verify-output.md).
OBJECTIVES_OPTIONAL = "POLICY_OBJECTIVES_OPTIONAL"
OBJECTIVES_SIGNER_SHARED = "POLICY_OBJECTIVES_SIGNER_SHARED"
METRICS_BINDING_WAIVED = "POLICY_METRICS_BINDING_WAIVED"


# --------------------------------------------------------------------------- typed readers

def describe(value: Any) -> str:
    """A value's JSON type for messages: 'the string 'false'', 'the number 3', 'a list'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) <= 40 else "a long string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _bad(where: str, expected: str, value: Any) -> InputError:
    return InputError(f"{where}: expected {expected}, got {describe(value)}")


def _mapping(value: Any, where: str, example: str = "") -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad(where, f"a mapping{' like ' + example if example else ''}", value)
    return value


def _fields(data: Mapping[str, Any], allowed: frozenset[str] | set[str], where: str) -> None:
    unknown = sorted(str(k) for k in set(data) - set(allowed))
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):  # YAML 'false' in quotes is a string, and a string is truthy
        raise _bad(where, "true or false", value)
    return value


def _int(value: Any, where: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _bad(where, f"an integer >= {minimum}", value)
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(where, "a non-empty string", value)
    return value


def _str_list(value: Any, where: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not (allow_empty or value):
        raise _bad(where, "a list of names" if allow_empty else "a non-empty list of names", value)
    return tuple(_str(v, f"{where}[{i}]") for i, v in enumerate(value))


_MAX_DURATION_SECONDS = 1_000_000 * 86400


def parse_duration(value: Any, where: str) -> timedelta:
    seconds: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str):
        parts = _DURATION.findall(value.replace(" ", ""))
        if parts and "".join(n + u for n, u in parts) == value.replace(" ", ""):
            seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds is not None:
        # timedelta overflows past ~2.7 million years: a policy value that large is a typo, not a limit.
        if not 0 <= seconds <= _MAX_DURATION_SECONDS:
            raise InputError(f"{where}: {value!r} is out of range; write a duration from 0 to 1000000d")
        return timedelta(seconds=seconds)
    raise InputError(f"{where}: {value!r} is not a duration; write e.g. '30d', '12h', '1w2d'")


def format_duration(value: timedelta) -> str:
    """The duration as a policy spells it (``1d``, ``5m``, ``1w2d``): what parse_duration reads back."""
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_time(value: Any, where: str) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    raise InputError(f"{where}: {value!r} is not an RFC 3339 time; write e.g. '2027-01-31T00:00:00Z'")


def _keyid(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _KEYID.fullmatch(value):
        # A mistyped keyid would silently pin or revoke nothing.
        raise InputError(f"{where}: keyid must be 64 lowercase hex digits (see 'mlspec keys list'), "
                         f"got {describe(value)}")
    return value


def _identities(value: Any, where: str) -> tuple[IdentityRule, ...]:
    if not isinstance(value, list) or not value:
        raise _bad(where, "a non-empty list of identity rules {san or san_pattern, issuer, ...}", value)
    return tuple(IdentityRule.from_dict(d, where=f"{where}[{i}]") for i, d in enumerate(value))


def _signers(value: Any, keys: Mapping[str, PublicKey], where: str) -> tuple[str, ...]:
    names = _str_list(value, where)
    for s in names:
        if s not in keys:
            raise InputError(f"{where}: signer {s!r} is not defined under keys")
    if len(set(names)) != len(names):
        raise InputError(f"{where}: a signer is listed twice")
    return names


def parse_key_entry(spec: Any, base: Path, kwhere: str) -> PublicKey:
    """One ``keys:`` entry: a .pub path, ``{path, keyid}``, or an inline SPKI PEM ``{pem, keyid}``.

    Inline PEM makes the policy one self-contained file (no keys directory to
    travel with it, nothing beside it to swap). A pinned keyid must match.
    """
    if isinstance(spec, str):
        spec = {"pem": spec} if spec.lstrip().startswith("-----BEGIN") else {"path": spec}
    if not isinstance(spec, Mapping) or ("path" in spec) == ("pem" in spec):
        raise InputError(f"{kwhere}: give a path to a .pub file or an inline pem (not both), "
                         "optionally with keyid: {path: ..., keyid: ...} or {pem: ..., keyid: ...}")
    _fields(spec, {"path", "pem", "keyid"}, kwhere)
    if "keyid" in spec and not (isinstance(spec["keyid"], str) and _KEYID.fullmatch(spec["keyid"])):
        raise InputError(f"{kwhere}: keyid must be 64 lowercase hex digits (see 'mlspec keys list')")
    if "pem" in spec:
        if not isinstance(spec["pem"], str):
            raise InputError(f"{kwhere}: pem must be the text of a PEM 'PUBLIC KEY' block")
        text = spec["pem"].strip()
        if not (text.startswith("-----BEGIN PUBLIC KEY-----") and text.endswith("-----END PUBLIC KEY-----")
                and text.count("-----BEGIN") == 1):
            raise InputError(f"{kwhere}: pem must be exactly one PEM 'PUBLIC KEY' block (mlspec keys export-public)")
        key = PublicKey.from_pem(text.encode("ascii", "replace"), kwhere.split(": ", 1)[-1] + " (inline)")
        origin = "the inline pem"
    else:
        key = PublicKey.from_file(base / str(spec["path"]))
        origin = str(spec["path"])
    if "keyid" in spec and spec["keyid"] != key.keyid:
        raise InputError(f"{kwhere}: pinned keyid {spec['keyid']} does not match {origin} "
                         f"(keyid {key.keyid}); the key was replaced")
    return key

# --------------------------------------------------------------------------- policy objects

@dataclass(frozen=True)
class Check:
    """A policy CEL check on one stage's statement, compiled when the policy is loaded."""

    name: str
    expression: str
    description: str = ""
    program: Any = field(default=None, compare=False, repr=False)  # the compiled CEL tree

    FIELDS = frozenset({"name", "expression", "description"})

    @classmethod
    def from_dict(cls, data: Any, where: str, default_name: str) -> Check:
        data = _mapping(data, where, "{name: ..., expression: CEL}")
        _fields(data, cls.FIELDS, where)
        if "expression" not in data:
            raise InputError(f"{where}: needs an expression (CEL)")
        expression = _str(data["expression"], f"{where}.expression")
        name = _str(data["name"], f"{where}.name") if "name" in data else default_name
        description = _str(data["description"], f"{where}.description") if "description" in data else ""
        # Lazy: CEL is loaded only for policies that have checks (lean start, tests/cli/test_lean_start.py).
        from mlspec_attest.objectives.cel import ExpressionError, compile_expression

        try:
            program = compile_expression(expression, CHECK_VARIABLES)
        except ExpressionError as exc:
            raise InputError(f"{where}.expression: {exc.position()}: {exc.reason}; fix the expression") from None
        return cls(name=name, expression=expression, description=description, program=program)


@dataclass(frozen=True)
class Revocation:
    """Signatures by this key (``keyid``) or keyless identity (``san``) made at or after ``after`` do not count."""

    keyid: str | None = None
    after: datetime = datetime.min.replace(tzinfo=timezone.utc)
    reason: str = ""
    san: str | None = None
    issuer: str | None = None

    FIELDS = frozenset({"keyid", "san", "issuer", "after", "reason"})

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Revocation:
        data = _mapping(data, where, "{keyid: HEX, after: TIME, reason: ...}")
        _fields(data, cls.FIELDS, where)
        if ("keyid" in data) == ("san" in data):
            raise InputError(f"{where}: give exactly one of keyid (a key) or san (a keyless identity)")
        if "issuer" in data and "san" not in data:
            raise InputError(f"{where}: issuer narrows a san revocation; give san too")
        return cls(
            keyid=_keyid(data["keyid"], f"{where}.keyid") if "keyid" in data else None,
            san=_str(data["san"], f"{where}.san") if "san" in data else None,
            issuer=_str(data["issuer"], f"{where}.issuer") if "issuer" in data else None,
            after=parse_time(data["after"], f"{where}.after") if "after" in data else cls.after,
            reason=_str(data["reason"], f"{where}.reason") if "reason" in data else "")

    def matches_identity(self, san: str | None, issuer: str | None) -> bool:
        return self.san is not None and san == self.san and (self.issuer is None or issuer == self.issuer)

    @property
    def unconditional(self) -> bool:
        """Revoked with no ``after``: no signature by the key counts, whatever proves its time."""
        return self.after == datetime.min.replace(tzinfo=timezone.utc)


DEFAULT_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class TimestampAuthority:
    """An RFC 3161 TSA whose tokens the policy trusts as time (the only time that can outlast a revocation)."""

    name: str
    certificate: Path  # the TSA's signing certificate (PEM), pinned
    roots: tuple[Path, ...]  # trust anchors for its chain (the certificate itself when self-signed)
    intermediates: tuple[Path, ...] = ()

    FIELDS = frozenset({"name", "certificate", "roots", "intermediates"})

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.certificate, *self.roots, *self.intermediates)

    @classmethod
    def from_dict(cls, data: Any, where: str, *, base: Path, default_name: str) -> TimestampAuthority:
        data = _mapping(data, where, "{name: tsa, certificate: tsa.pem, roots: [root.pem]}")
        _fields(data, cls.FIELDS, where)
        if "certificate" not in data:
            raise InputError(f"{where}: needs certificate: PATH (the TSA's PEM certificate)")
        cert = base / _str(data["certificate"], f"{where}.certificate")
        roots = tuple(base / p for p in _str_list(data.get("roots", []), f"{where}.roots", allow_empty=True))
        intermediates = tuple(base / p for p in _str_list(data.get("intermediates", []), f"{where}.intermediates",
                                                          allow_empty=True))
        for path in (cert, *roots, *intermediates):
            if not path.is_file():
                raise InputError(f"{where}: certificate file {path} not found")
        return cls(name=_str(data["name"], f"{where}.name") if "name" in data else default_name,
                   certificate=cert, roots=roots or (cert,), intermediates=intermediates)


def _parse_authorities(raw: Any, base: Path, where: str) -> tuple[TimestampAuthority, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InputError(f"{where}: must be a list of {{name, certificate, roots}}, got {describe(raw)}")
    return tuple(TimestampAuthority.from_dict(spec, f"{where}[{i}]", base=base, default_name=f"tsa-{i}")
                 for i, spec in enumerate(raw))


@dataclass(frozen=True)
class HeadRule:
    """Who may sign the chain head (head.dsse.json) and whether one is required (see head.py)."""

    signers: tuple[str, ...]
    threshold: int = 1
    required: bool = True
    max_validity: timedelta | None = None

    FIELDS = frozenset({"signers", "threshold", "required", "max_validity"})

    @classmethod
    def from_dict(cls, data: Any, keys: Mapping[str, PublicKey], where: str) -> HeadRule:
        data = _mapping(data, where, "{signers: [pipeline], required: true}")
        _fields(data, cls.FIELDS, where)
        if "signers" not in data:
            raise InputError(f"{where}: signers must list at least one key name")
        signers = _signers(data["signers"], keys, f"{where}.signers")
        threshold = _int(data.get("threshold", 1), f"{where}.threshold")
        if threshold > len(signers):
            raise InputError(f"{where}: threshold must be between 1 and the number of signers")
        return cls(signers=signers, threshold=threshold, required=_bool(data.get("required", True), f"{where}.required"),
                   max_validity=parse_duration(data["max_validity"], f"{where}.max_validity")
                   if "max_validity" in data else None)


@dataclass(frozen=True)
class EvidenceRule:
    """An external attestation (Sigstore bundle) a stage must carry, who signed it and what it covers."""

    name: str
    subject_role: str | None = None
    predicate_type: str | None = None
    identities: tuple[IdentityRule, ...] = ()
    key: Path | None = None

    FIELDS = frozenset({"name", "subject_role", "predicate_type", "identities", "key"})

    @classmethod
    def from_dict(cls, data: Any, where: str, *, base: Path, default_name: str,
                  has_trust_config: bool) -> EvidenceRule:
        data = _mapping(data, where, "{name: ..., subject_role: code, identities: [...]}")
        _fields(data, cls.FIELDS, where)
        identities = _identities(data["identities"], f"{where}.identities") if "identities" in data else ()
        key = base / _str(data["key"], f"{where}.key") if "key" in data else None
        if bool(identities) == (key is not None):
            # Neither would accept any signer at all; both is ambiguous in sigstore's API.
            raise InputError(f"{where}: give either identities (keyless signer) or key (a public key file)")
        if key is not None and not key.is_file():
            raise InputError(f"{where}.key: {key} is not a file; give the evidence signer's public key")
        if identities and not has_trust_config:
            raise InputError(f"{where}: keyless evidence needs trust_config (a Sigstore trusted root) at the top level")
        return cls(
            name=_str(data["name"], f"{where}.name") if "name" in data else default_name,
            subject_role=_str(data["subject_role"], f"{where}.subject_role") if "subject_role" in data else None,
            predicate_type=_str(data["predicate_type"], f"{where}.predicate_type")
            if "predicate_type" in data else None,
            identities=identities, key=key)


@dataclass(frozen=True)
class StageRule:
    """What the policy allows for one stage: who signs, how many, whether it repeats, its checks."""

    name: str
    required: bool = True
    signers: tuple[str, ...] = ()  # key names
    identities: tuple[IdentityRule, ...] = ()  # Sigstore identities for keyless attestations
    threshold: int = 1
    repeat: bool = False
    checks: tuple[Check, ...] = ()
    evidence: tuple[EvidenceRule, ...] = ()

    FIELDS = frozenset({"required", "signers", "identities", "threshold", "repeat", "checks", "evidence"})

    @classmethod
    def from_dict(cls, name: str, data: Any, where: str, *, keys: Mapping[str, PublicKey],
                  defaults: Defaults, base: Path, has_trust_config: bool) -> StageRule:
        data = _mapping({} if data is None else data, where)
        _fields(data, cls.FIELDS, where)
        names_own = "signers" in data or "identities" in data
        if name == "objectives" and not names_own:
            raise InputError(f"{where}: name the objectives' own signers (or identities); the objectives never "
                             "inherit defaults, so the pipeline's key cannot sign its own success criteria")
        # A stage that names its signers (or identities) defines its whole signer set: it inherits neither
        # from defaults, so a keyless identity in defaults never leaks into a key-signed stage.
        inherit = not names_own
        signers = (_signers(data["signers"], keys, f"{where}.signers") if "signers" in data
                   else defaults.signers if inherit else ())
        identities = (_identities(data["identities"], f"{where}.identities") if "identities" in data
                      else defaults.identities if inherit else ())
        threshold = (_int(data["threshold"], f"{where}.threshold") if "threshold" in data
                     else 1 if name == "objectives" else defaults.threshold)
        if not signers and not identities:
            raise InputError(f"{where}: no signers or identities allowed; name at least one key")
        if threshold > len(signers) and not (identities and threshold == 1):
            # One keyless attestation carries one certificate: it counts as one signature.
            raise InputError(f"{where}: threshold {threshold} exceeds the {len(signers)} allowed signer(s)")
        if identities and not has_trust_config:
            raise InputError(f"{where}: keyless identities need trust_config (a Sigstore trusted root) at the top level")
        raw_checks = data.get("checks") or []
        if not isinstance(raw_checks, list):
            raise _bad(f"{where}.checks", "a list of {name, expression}", raw_checks)
        checks = tuple(Check.from_dict(c, f"{where}.checks[{i}]", f"{name}-check-{i}") for i, c in enumerate(raw_checks))
        if len({c.name for c in checks}) != len(checks):
            raise InputError(f"{where}.checks: check names must be unique")
        raw_evidence = data.get("evidence") or []
        if not isinstance(raw_evidence, list):
            raise _bad(f"{where}.evidence", "a list of evidence rules", raw_evidence)
        evidence = tuple(EvidenceRule.from_dict(r, f"{where}.evidence[{i}]", base=base,
                                                default_name=f"evidence[{i}]", has_trust_config=has_trust_config)
                         for i, r in enumerate(raw_evidence))
        return cls(name=name, required=_bool(data.get("required", True), f"{where}.required"), signers=signers,
                   identities=identities, threshold=threshold, repeat=_bool(data.get("repeat", False), f"{where}.repeat"),
                   checks=checks, evidence=evidence)


@dataclass(frozen=True)
class Defaults:
    """``defaults:``: the signer set of stages that name none (never of the objectives)."""

    signers: tuple[str, ...] = ()
    identities: tuple[IdentityRule, ...] = ()
    threshold: int = 1

    FIELDS = frozenset({"signers", "threshold", "identities"})

    @classmethod
    def from_dict(cls, data: Any, keys: Mapping[str, PublicKey], where: str) -> Defaults:
        data = _mapping({} if data is None else data, where)
        _fields(data, cls.FIELDS, where)
        return cls(signers=_signers(data["signers"], keys, f"{where}.signers") if "signers" in data else (),
                   identities=_identities(data["identities"], f"{where}.identities") if "identities" in data else (),
                   threshold=_int(data.get("threshold", 1), f"{where}.threshold"))


@dataclass(frozen=True)
class ObjectivesPin:
    """``objectives:``: which owner-signed objectives the chain must start from, and separation of duties.

    Without a pin, a new chain built on an older, laxer objectives file the owner once
    signed would pass: the pin names the project, the lowest revision still in force
    and, optionally, the exact digests allowed.
    """

    project: str
    min_revision: int = 1
    sha256: tuple[str, ...] = ()
    separate_signer: bool = True

    FIELDS = frozenset({"project", "min_revision", "sha256", "separate_signer"})

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ObjectivesPin:
        data = _mapping(data, where, "{project: NAME, min_revision: N}")
        _fields(data, cls.FIELDS, where)
        if "project" not in data:
            raise InputError(f"{where}.project: missing; name the project the objectives file declares")
        project = _str(data["project"], f"{where}.project")
        if not _PROJECT.fullmatch(project):
            raise InputError(f"{where}.project: {project!r} must start with a letter and use only letters, "
                             "digits, '_', '.', '-'")
        digests: tuple[str, ...] = ()
        if "sha256" in data:
            raw = data["sha256"] if isinstance(data["sha256"], list) else [data["sha256"]]
            digests = tuple(_hex64(v, f"{where}.sha256") for v in raw)
            if not digests:
                raise _bad(f"{where}.sha256", "one digest or a non-empty list", data["sha256"])
        return cls(project=project, min_revision=_int(data.get("min_revision", 1), f"{where}.min_revision"),
                   sha256=digests, separate_signer=_bool(data.get("separate_signer", True),
                                                         f"{where}.separate_signer"))


def _hex64(value: Any, where: str) -> str:
    text = value.removeprefix("sha256:") if isinstance(value, str) else value
    if not isinstance(text, str) or not _KEYID.fullmatch(text):
        raise _bad(where, "a sha256 digest (64 lowercase hex digits, from 'mlspec objectives check')", value)
    return text


@dataclass(frozen=True)
class Policy:
    source: Path
    digest: str
    name: str
    keys: dict[str, PublicKey]
    stages: dict[str, StageRule]
    expires: datetime | None = None
    max_age: timedelta | None = None
    freshness: timedelta | None = None
    revoked: tuple[Revocation, ...] = ()
    interleave: tuple[str, ...] = DEFAULT_INTERLEAVE
    artifact_flow: bool = True
    external_roles: tuple[str, ...] = DEFAULT_EXTERNAL_ROLES
    trust_config: Path | None = None
    objectives_required: bool = True
    head: HeadRule | None = None
    leakage_required: bool = True  # split must attest row fingerprints (verify/leakage.py)
    log_required: bool = True  # log: {required: ...}: sealed log attestations need the log itself at hand
    metrics_binding_required: bool = True  # metrics_binding: criteria read metadata bound to an attested file
    objectives: ObjectivesPin | None = None
    weaknesses: tuple[tuple[str, str], ...] = ()  # (code, message): warnings every verification prints
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW  # how far ahead of now a stated time may lie (TIME_IN_FUTURE)
    timestamp_authorities: tuple[TimestampAuthority, ...] = ()  # RFC 3161 TSAs trusted as time (revocation.py)
    phases: tuple[str, ...] = tuple(p.name for p in PHASES)  # the phases a gate may verify under (PHASE_NOT_ALLOWED)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # Top-level fields; each is parsed by one line of from_dict below. Add new ones to both.
    TOP_FIELDS = {"version", "name", "keys", "stages", "defaults", "expires", "max_age", "freshness",
                  "revoked", "order", "artifact_flow", "trust_config", "description", "head", "objectives", "log",
                  "leakage", "clock_skew", "timestamp_authorities", "metrics_binding",
                  "phases"}

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Policy:
        p = Path(path)
        data_bytes = read_bounded(p, what="policy")
        data = load_mapping(p, "policy")
        return cls.from_dict(data, source=p, digest=hashlib.sha256(data_bytes).hexdigest())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: Path, digest: str = "") -> Policy:
        where = str(source)
        data = _mapping(data, where)
        _fields(data, cls.TOP_FIELDS, where)

        def at(name: str) -> str:
            return f"{where}: {name}"

        if data.get("version", 1) != 1 or isinstance(data.get("version"), bool):
            raise InputError(f"{at('version')}: must be 1")
        base = source.parent
        if "description" in data:
            _str(data["description"], at("description"))
        name = _str(data["name"], at("name")) if "name" in data else source.stem
        keys = _parse_keys(data.get("keys"), base, at("keys"))
        trust_config = base / _str(data["trust_config"], at("trust_config")) if "trust_config" in data else None
        defaults = Defaults.from_dict(data.get("defaults"), keys, at("defaults"))
        stages = _parse_stages(data.get("stages"), at("stages"), keys=keys, defaults=defaults, base=base,
                               has_trust_config=trust_config is not None)
        revoked = _parse_revoked(data.get("revoked"), at("revoked"))
        interleave = _parse_order(data.get("order"), at("order"))
        head = HeadRule.from_dict(data["head"], keys, at("head")) if "head" in data else None  # "head:" alone is refused
        flow, external_roles = _parse_artifact_flow(data.get("artifact_flow", True), at("artifact_flow"))
        pin = ObjectivesPin.from_dict(data["objectives"], at("objectives")) if "objectives" in data else None
        expires = parse_time(data["expires"], at("expires")) if "expires" in data else None
        max_age = parse_duration(data["max_age"], at("max_age")) if "max_age" in data else None
        freshness = parse_duration(data["freshness"], at("freshness")) if "freshness" in data else None
        log_required = _required_rule(data.get("log"), at("log"))
        leakage_required = _required_rule(data.get("leakage"), at("leakage"))
        metrics_binding_required = _required_rule(data.get("metrics_binding"), at("metrics_binding"))
        # (time-related fields: parse here, one line each, and add them to TOP_FIELDS)
        clock_skew = parse_duration(data["clock_skew"], at("clock_skew")) if "clock_skew" in data else DEFAULT_CLOCK_SKEW
        authorities = _parse_authorities(data.get("timestamp_authorities"), base, at("timestamp_authorities"))
        phases = _parse_phases(data["phases"], at("phases")) if "phases" in data else cls.phases
        weaknesses = _objectives_duties(stages, keys, pin, where)
        if not metrics_binding_required:
            weaknesses += ((METRICS_BINDING_WAIVED, f"the policy {where} does not require the metadata criteria read "
                            "to be bound to an attested report file (metrics_binding: {required: false}): a stage's "
                            "runner can sign metrics its report does not say"),)
        return cls(
            source=source, digest=digest, name=name, keys=keys, stages=stages, expires=expires, max_age=max_age,
            freshness=freshness, revoked=revoked, interleave=interleave, artifact_flow=flow,
            external_roles=external_roles, trust_config=trust_config,
            objectives_required="objectives" in stages and stages["objectives"].required,
            head=head, log_required=log_required, leakage_required=leakage_required, objectives=pin, weaknesses=weaknesses,
            clock_skew=clock_skew, timestamp_authorities=authorities, raw=dict(data),
            metrics_binding_required=metrics_binding_required, phases=phases)

    def allowed_keys(self, stage: str) -> list[PublicKey]:
        rule = self.stages.get(stage)
        return [self.keys[n] for n in rule.signers] if rule else []

    def key_name(self, keyid: str) -> str:
        for name, key in self.keys.items():
            if key.keyid == keyid:
                return name
        return keyid[:12]

    def revocation_of(self, keyid: str) -> Revocation | None:
        """The revocation in force for a key: every entry counts, so the earliest ``after`` wins.

        Taking the first match let a harmless ``after: 2099`` entry listed first hide a later
        unconditional one for the same key.
        """
        return min((r for r in self.revoked if r.keyid == keyid), key=lambda r: r.after, default=None)

    def revocation_of_identity(self, san: str | None, issuer: str | None) -> Revocation | None:
        """The earliest revocation matching a keyless identity (same rule as revocation_of)."""
        return min((r for r in self.revoked if r.matches_identity(san, issuer)), key=lambda r: r.after, default=None)

    def all_stage_names(self) -> list[str]:
        return [s.name for s in STAGES if s.name in self.stages]


# --------------------------------------------------------------------------- top-level sections

def _parse_keys(raw: Any, base: Path, where: str) -> dict[str, PublicKey]:
    raw = _mapping({} if raw is None else raw, where, "{owner: keys/owner.pub}")
    return {str(name): parse_key_entry(spec, base, f"{where}.{name}") for name, spec in raw.items()}


def _required_rule(raw: Any, where: str) -> bool:
    """``log: {required: true}`` / ``leakage: {required: true}``: a protection that is on unless turned off."""
    rule = _mapping({} if raw is None else raw, where, "{required: true}")
    _fields(rule, {"required"}, where)
    return _bool(rule["required"], f"{where}.required") if "required" in rule else True


def _parse_stages(raw: Any, where: str, **kwargs: Any) -> dict[str, StageRule]:
    if not isinstance(raw, Mapping) or not raw:
        raise InputError(f"{where}: stages must list at least one stage")
    stages: dict[str, StageRule] = {}
    for stage_name, spec in raw.items():
        swhere = f"{where}.{stage_name}"
        stage = resolve(str(stage_name))
        if stage.name in stages:
            raise InputError(f"{swhere}: stage {stage.name} listed twice (aliases count)")
        stages[stage.name] = StageRule.from_dict(stage.name, spec, swhere, **kwargs)
    return stages


def _parse_phases(raw: Any, where: str) -> tuple[str, ...]:
    """``phases: [full]``: the phases a gate may verify under (a CI may not judge a served model as pre-deploy)."""
    names = _str_list(raw, where)
    try:
        return tuple(dict.fromkeys(resolve_phase(n).name for n in names))
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def _parse_revoked(raw: Any, where: str) -> tuple[Revocation, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _bad(where, "a list of {keyid or san, after, reason}", raw)
    return tuple(Revocation.from_dict(r, f"{where}[{i}]") for i, r in enumerate(raw))


def _parse_order(raw: Any, where: str) -> tuple[str, ...]:
    order = {"mode": raw} if isinstance(raw, str) else _mapping({} if raw is None else raw, where)
    _fields(order, {"mode", "interleave"}, where)
    if order.get("mode", "lifecycle") != "lifecycle":
        raise InputError(f"{where}.mode: must be 'lifecycle'")
    if "interleave" not in order:
        return DEFAULT_INTERLEAVE
    return tuple(resolve(s).name for s in _str_list(order["interleave"], f"{where}.interleave", allow_empty=True))


def _parse_artifact_flow(raw: Any, where: str) -> tuple[bool, tuple[str, ...]]:
    if not isinstance(raw, Mapping):
        return _bool(raw, where), DEFAULT_EXTERNAL_ROLES
    _fields(raw, {"enabled", "external_roles"}, where)
    roles = (_str_list(raw["external_roles"], f"{where}.external_roles", allow_empty=True)
             if "external_roles" in raw else DEFAULT_EXTERNAL_ROLES)
    return _bool(raw.get("enabled", True), f"{where}.enabled"), roles


def _objectives_duties(stages: Mapping[str, StageRule], keys: Mapping[str, PublicKey], pin: ObjectivesPin | None,
                       where: str) -> tuple[tuple[str, str], ...]:
    """Separation of duties: the objectives' signer signs nothing else, unless the policy says otherwise.

    Returns the warnings a policy that weakens this makes every verification print.
    """
    rule = stages.get("objectives")
    weaknesses: list[tuple[str, str]] = []
    if rule is None or not rule.required:
        weaknesses.append((OBJECTIVES_OPTIONAL, f"the policy {where} does not require the owner-signed objectives: "
                           "a chain without success criteria can pass this gate"))
    if rule is None:
        return tuple(weaknesses)
    if pin is None:
        raise InputError(f"{where}: objectives: missing; pin the objectives in force with "
                         "objectives: {project: NAME, min_revision: N} (docs/policy.md#objectives)")
    # Compared by key, not by name: two names for one key file are one signer.
    own_keys = {keys[n].keyid for n in rule.signers}
    shared: list[str] = []
    for other in stages.values():
        if other.name == "objectives":
            continue
        if own_keys & {keys[n].keyid for n in other.signers} or set(rule.identities) & set(other.identities):
            shared.append(other.name)
    if shared:
        message = (f"the objectives' signer also signs {', '.join(shared)}: whoever runs the pipeline can "
                   "also write its success criteria")
        if pin.separate_signer:
            raise InputError(f"{where}: stages.objectives: {message}; give the objectives a key (or identity) of "
                             "their own, or set objectives.separate_signer: false to accept it (every verify warns)")
        weaknesses.append((OBJECTIVES_SIGNER_SHARED, f"policy {where}: {message} (objectives.separate_signer: false)"))
    return tuple(weaknesses)
