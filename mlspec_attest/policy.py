"""The trust policy: the verifier's only root of trust (never the bundle).

It names the keys (or Sigstore identities) allowed to sign each stage, how many
distinct signatures each needs, which stages are required or may repeat, the
allowed order, expiry, attestation age limits, revocations and per-stage CEL
checks. Unknown fields are errors: a typo must never silently weaken a gate.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mlspec_attest._internal.loaders import load_mapping, read_bounded
from mlspec_attest.errors import InputError
from mlspec_attest.keys import PublicKey
from mlspec_attest.model.stages import STAGES, resolve

_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_KEYID = re.compile(r"[0-9a-f]{64}")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DEFAULT_INTERLEAVE = ("monitor", "log")


def parse_duration(value: Any, where: str) -> timedelta:
    if isinstance(value, int) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        parts = _DURATION.findall(value.replace(" ", ""))
        if parts and "".join(n + u for n, u in parts) == value.replace(" ", ""):
            return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))
    raise InputError(f"{where}: {value!r} is not a duration; write e.g. '30d', '12h', '1w2d'")


def parse_time(value: Any, where: str) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    raise InputError(f"{where}: {value!r} is not an RFC 3339 time; write e.g. '2027-01-31T00:00:00Z'")


def _check_fields(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")


def _parse_head_rule(spec: Any, keys: Mapping[str, PublicKey], where: str) -> HeadRule:
    if not isinstance(spec, Mapping):
        raise InputError(f"{where}: expected a mapping like {{signers: [pipeline], required: true}}")
    _check_fields(spec, HeadRule.FIELDS, where)
    signers = spec.get("signers")
    if not isinstance(signers, list) or not signers or not all(isinstance(s, str) for s in signers):
        raise InputError(f"{where}: signers must list at least one key name")
    for s in signers:
        if s not in keys:
            raise InputError(f"{where}: signer {s!r} is not defined under keys")
    threshold = spec.get("threshold", 1)
    if not isinstance(threshold, int) or isinstance(threshold, bool) or not 1 <= threshold <= len(signers):
        raise InputError(f"{where}: threshold must be between 1 and the number of signers")
    required = spec.get("required", True)
    if not isinstance(required, bool):
        raise InputError(f"{where}: required must be true or false")
    max_validity = parse_duration(spec["max_validity"], f"{where}.max_validity") if "max_validity" in spec else None
    return HeadRule(signers=tuple(signers), threshold=threshold, required=required, max_validity=max_validity)


@dataclass(frozen=True)
class Check:
    name: str
    expression: str


@dataclass(frozen=True)
class Revocation:
    keyid: str
    after: datetime
    reason: str = ""

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

    FIELDS = {"name", "certificate", "roots", "intermediates"}

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.certificate, *self.roots, *self.intermediates)


def _parse_time_trust(data: Mapping[str, Any], base: Path, where: str) -> tuple[timedelta, tuple[TimestampAuthority, ...]]:
    """``clock_skew`` and ``timestamp_authorities``: what the gate accepts as time (docs/policy.md)."""
    skew = parse_duration(data["clock_skew"], f"{where}: clock_skew") if "clock_skew" in data else DEFAULT_CLOCK_SKEW
    raw = data.get("timestamp_authorities") or []
    if not isinstance(raw, list):
        raise InputError(f"{where}: timestamp_authorities must be a list of {{name, certificate, roots}}")
    authorities = []
    for i, spec in enumerate(raw):
        twhere = f"{where}: timestamp_authorities[{i}]"
        if not isinstance(spec, Mapping) or not isinstance(spec.get("certificate"), str):
            raise InputError(f"{twhere}: needs certificate: PATH (the TSA's PEM certificate)")
        _check_fields(spec, TimestampAuthority.FIELDS, twhere)
        lists = {}
        for name in ("roots", "intermediates"):
            value = spec.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InputError(f"{twhere}: {name} must list PEM certificate paths")
            lists[name] = tuple(base / v for v in value)
        cert = base / spec["certificate"]
        for path in (cert, *lists["roots"], *lists["intermediates"]):
            if not path.is_file():
                raise InputError(f"{twhere}: certificate file {path} not found")
        authorities.append(TimestampAuthority(name=str(spec.get("name", f"tsa-{i}")), certificate=cert,
                                              roots=lists["roots"] or (cert,), intermediates=lists["intermediates"]))
    return skew, tuple(authorities)


@dataclass(frozen=True)
class HeadRule:
    """Who may sign the chain head (head.dsse.json) and whether one is required (see head.py)."""

    signers: tuple[str, ...]
    threshold: int = 1
    required: bool = True
    max_validity: timedelta | None = None

    FIELDS = {"signers", "threshold", "required", "max_validity"}


@dataclass
class StageRule:
    name: str
    required: bool = True
    signers: tuple[str, ...] = ()  # key names
    identities: tuple[dict[str, Any], ...] = ()  # Sigstore identity rules (sigstore_support)
    threshold: int = 1
    repeat: bool = False
    checks: tuple[Check, ...] = ()
    evidence: tuple[dict[str, Any], ...] = ()

    FIELDS = {"required", "signers", "identities", "threshold", "repeat", "checks", "evidence"}


@dataclass
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
    external_roles: tuple[str, ...] = ("code", "config", "container", "base-model", "external")
    trust_config: Path | None = None
    objectives_required: bool = True
    head: HeadRule | None = None
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW
    timestamp_authorities: tuple[TimestampAuthority, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    TOP_FIELDS = {"version", "name", "keys", "stages", "defaults", "expires", "max_age", "freshness",
                  "revoked", "order", "artifact_flow", "trust_config", "description", "head",
                  "clock_skew", "timestamp_authorities"}

    @classmethod
    def from_file(cls, path: str | Path) -> Policy:
        p = Path(path)
        data_bytes = read_bounded(p, what="policy")
        data = load_mapping(p, "policy")
        return cls.from_dict(data, source=p, digest=hashlib.sha256(data_bytes).hexdigest())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: Path, digest: str = "") -> Policy:
        where = str(source)
        _check_fields(data, cls.TOP_FIELDS, where)
        if data.get("version", 1) != 1:
            raise InputError(f"{where}: version must be 1")
        base = source.parent
        keys: dict[str, PublicKey] = {}
        raw_keys = data.get("keys") or {}
        if not isinstance(raw_keys, Mapping):
            raise InputError(f"{where}: keys must map a name to a public key path")
        for name, spec in raw_keys.items():
            kwhere = f"{where}: keys.{name}"
            if isinstance(spec, str):
                spec = {"path": spec}
            if not isinstance(spec, Mapping) or "path" not in spec:
                raise InputError(f"{kwhere}: give a path to a .pub file (or {{path: ..., keyid: ...}})")
            _check_fields(spec, {"path", "keyid"}, kwhere)
            if "keyid" in spec and not (isinstance(spec["keyid"], str) and _KEYID.fullmatch(spec["keyid"])):
                raise InputError(f"{kwhere}: keyid must be 64 lowercase hex digits (see 'mlspec keys list')")
            key = PublicKey.from_file(base / spec["path"])
            if "keyid" in spec and spec["keyid"] != key.keyid:
                raise InputError(f"{kwhere}: pinned keyid {spec['keyid']} does not match {spec['path']} "
                                 f"(keyid {key.keyid}); the key file was replaced")
            keys[name] = key

        defaults = data.get("defaults") or {}
        _check_fields(defaults, {"signers", "threshold", "identities"}, f"{where}: defaults")
        raw_stages = data.get("stages")
        if not isinstance(raw_stages, Mapping) or not raw_stages:
            raise InputError(f"{where}: stages must list at least one stage")
        stages: dict[str, StageRule] = {}
        for stage_name, spec in raw_stages.items():
            swhere = f"{where}: stages.{stage_name}"
            stage = resolve(str(stage_name))
            if stage.name in stages:
                raise InputError(f"{swhere}: stage {stage.name} listed twice (aliases count)")
            spec = spec or {}
            if not isinstance(spec, Mapping):
                raise InputError(f"{swhere}: expected a mapping")
            _check_fields(spec, StageRule.FIELDS, swhere)
            signers = tuple(spec.get("signers", defaults.get("signers", ())))
            for s in signers:
                if s not in keys:
                    raise InputError(f"{swhere}: signer {s!r} is not defined under keys")
            identities = tuple(spec.get("identities", defaults.get("identities", ())))
            threshold = spec.get("threshold", defaults.get("threshold", 1))
            if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
                raise InputError(f"{swhere}: threshold must be a positive integer")
            if not signers and not identities:
                raise InputError(f"{swhere}: no signers or identities allowed; name at least one key")
            if signers and threshold > len(signers) and not identities:
                raise InputError(f"{swhere}: threshold {threshold} exceeds the {len(signers)} allowed signer(s)")
            checks = []
            for i, c in enumerate(spec.get("checks") or ()):
                if not isinstance(c, Mapping) or not isinstance(c.get("expression"), str):
                    raise InputError(f"{swhere}.checks[{i}]: needs an expression (CEL)")
                _check_fields(c, {"name", "expression", "description"}, f"{swhere}.checks[{i}]")
                checks.append(Check(name=str(c.get("name", f"{stage.name}-check-{i}")), expression=c["expression"]))
            stages[stage.name] = StageRule(
                name=stage.name, required=bool(spec.get("required", True)), signers=signers,
                identities=identities, threshold=threshold, repeat=bool(spec.get("repeat", False)),
                checks=tuple(checks), evidence=tuple(spec.get("evidence") or ()))

        revoked = []
        for i, r in enumerate(data.get("revoked") or ()):
            rwhere = f"{where}: revoked[{i}]"
            if not isinstance(r, Mapping) or not isinstance(r.get("keyid"), str):
                raise InputError(f"{rwhere}: needs keyid (and after: TIME)")
            _check_fields(r, {"keyid", "after", "reason"}, rwhere)
            if not _KEYID.fullmatch(r["keyid"]):
                # A mistyped keyid would silently revoke nothing.
                raise InputError(f"{rwhere}: keyid must be 64 lowercase hex digits (see 'mlspec keys list')")
            after = parse_time(r["after"], rwhere) if "after" in r else datetime.min.replace(tzinfo=timezone.utc)
            revoked.append(Revocation(keyid=r["keyid"], after=after, reason=str(r.get("reason", ""))))

        order = data.get("order") or {}
        if isinstance(order, str):
            order = {"mode": order}
        _check_fields(order, {"mode", "interleave"}, f"{where}: order")
        if order.get("mode", "lifecycle") != "lifecycle":
            raise InputError(f"{where}: order.mode must be 'lifecycle'")
        interleave = tuple(resolve(s).name for s in order.get("interleave", DEFAULT_INTERLEAVE))

        head = None
        if data.get("head") is not None:
            head = _parse_head_rule(data["head"], keys, f"{where}: head")

        flow = data.get("artifact_flow", True)
        external_roles: tuple[str, ...] = cls.external_roles
        if isinstance(flow, Mapping):
            _check_fields(flow, {"enabled", "external_roles"}, f"{where}: artifact_flow")
            external_roles = tuple(flow.get("external_roles", external_roles))
            flow = flow.get("enabled", True)

        clock_skew, authorities = _parse_time_trust(data, base, where)
        return cls(
            source=source, digest=digest, name=str(data.get("name", source.stem)), keys=keys, stages=stages,
            expires=parse_time(data["expires"], f"{where}: expires") if "expires" in data else None,
            max_age=parse_duration(data["max_age"], f"{where}: max_age") if "max_age" in data else None,
            freshness=parse_duration(data["freshness"], f"{where}: freshness") if "freshness" in data else None,
            revoked=tuple(revoked), interleave=interleave, artifact_flow=bool(flow),
            external_roles=external_roles,
            trust_config=(base / data["trust_config"]) if data.get("trust_config") else None,
            objectives_required="objectives" in stages and stages["objectives"].required,
            head=head, clock_skew=clock_skew, timestamp_authorities=authorities, raw=dict(data),
        )

    def allowed_keys(self, stage: str) -> list[PublicKey]:
        rule = self.stages.get(stage)
        return [self.keys[n] for n in rule.signers] if rule else []

    def key_name(self, keyid: str) -> str:
        for name, key in self.keys.items():
            if key.keyid == keyid:
                return name
        return keyid[:12]

    def all_stage_names(self) -> list[str]:
        return [s.name for s in STAGES if s.name in self.stages]
